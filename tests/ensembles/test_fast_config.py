"""Config option ``generator``: validation, and a run with ``generator = "fast"`` end to end."""
import pytest

from nnft.config import resolve_config
from nnft.errors import ConfigError


def _cfg(**top):
    ens = top.pop("ensemble", {"arch": "ErfNet", "lattice": {"points": [[0.1], [0.5]]},
                               "widths": [8], "samples": 40, "chunk": 20})
    return {"ensemble": [ens], **top}


def test_generator_default_and_values():
    assert resolve_config(_cfg())["generator"] == "reference"
    assert resolve_config(_cfg(generator="fast"))["generator"] == "fast"
    with pytest.raises(ConfigError, match=r"^generator: must be one of \('reference', 'fast'\)"):
        resolve_config(_cfg(generator="float32"))
    with pytest.raises(ConfigError, match="generator: 'fast' is a CPU path"):
        resolve_config(_cfg(generator="fast", method="fused"))
    deep = {"arch": "DeepMLP", "lattice": {"points": [[0.1], [0.5]]}, "widths": [8],
            "samples": 40, "params": {"depth": 2}}
    with pytest.raises(ConfigError, match=r"ensemble\[0\]\.arch: generator = 'fast' supports"):
        resolve_config(_cfg(generator="fast", ensemble=deep))
    resolve_config(_cfg(ensemble=deep))  # fine with the reference generator


def test_run_with_fast_generator(tmp_path):
    from nnft.lattice import FieldStore
    from nnft.run import run_config

    cfg = resolve_config(_cfg(generator="fast", dtype="float32"))
    run_config(cfg, tmp_path / "out", quiet=True)
    store = FieldStore.open(tmp_path / "out" / "stores" / "ErfNet-0-N8.zarr")
    assert store.extra["generator"] == "fast" and store.dtype.name == "float32"
    # re-running the same config resumes (nothing to do); another generator is refused
    run_config(cfg, tmp_path / "out", quiet=True)
    from nnft.run import prepare_output, _check_same_ensembles  # noqa: F401
    from nnft.errors import RunError

    with pytest.raises(RunError, match="generator"):
        _check_same_ensembles(tmp_path / "out", resolve_config(_cfg(dtype="float32")))
