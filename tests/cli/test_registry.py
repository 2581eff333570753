"""The measurement registry: declarations, generated documentation, one pass, plug-ins."""
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from nnft import measurements as registry
from nnft.config import ConfigError, resolve_config
from nnft.lattice import FieldStore, Lattice, free_propagator
from nnft.run import run_config

ROOT = Path(__file__).resolve().parents[2]
SMALL = """
seed = 5
[[ensemble]]
name = "cos"
arch = "LatticeCosNet"
lattice = {{ shape = [8, 8] }}
widths = [4, 16]
samples = 1200
chunk = 200
params = {{ m2 = 0.5 }}
measure = {measure}
"""


def _cfg(measure):
    return resolve_config(tomllib.loads(SMALL.format(measure=json.dumps(measure))))


def test_docs_are_generated_from_the_registry():
    """docs/measurements.md is what `python -m nnft.measurements` prints (regenerate it after
    changing a declaration)."""
    doc = (ROOT / "docs" / "measurements.md").read_text()
    assert doc.strip() == registry.registry_markdown().strip()
    for name in registry.names():
        assert f"## `{name}`" in doc


def test_every_declaration_is_complete():
    for name, m in registry.REGISTRY.items():
        assert m.name == name and m.summary and callable(m.run)
        assert set(m.requires) <= {"spec", "kernel", "lattice", "periodic", "stored"}, name
        for o in m.options:
            assert o.doc and o.type in (int, float, bool, str, list), (name, o.name)
            if o.default is not None:
                assert o.check(o.name, o.default) == o.default, (name, o.name)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.REGISTRY["cluster"])


class _CountingReads:
    def __init__(self, monkeypatch):
        self.n = 0
        orig = FieldStore.read_chunk

        def counted(store, k):
            self.n += 1
            return orig(store, k)

        monkeypatch.setattr(FieldStore, "read_chunk", counted)


def test_shared_measurements_read_each_chunk_once(tmp_path, monkeypatch):
    """The default run's measurements (propagator, four_point, cluster, symmetry) and the
    6-point on a stored ensemble: one pass (each chunk read once per width), where the code
    before the registry read every store once per measurement and more (moments, connected
    correlator, m_n, the cluster profile and each symmetry check made a pass each)."""
    reads = _CountingReads(monkeypatch)
    cfg = _cfg(["propagator", "four_point", "six_point", "cluster", "symmetry"])
    res = run_config(cfg, tmp_path / "r", quiet=True)
    n_chunks = 1200 // 200
    assert reads.n == n_chunks * 2  # two widths
    row = res["ensembles"]["cos"]["per_width"][16]
    assert np.isfinite(row["four_point"]["m_n"]) and row["propagator"]["max_abs_z"] < 5


def test_read_counter_sees_repeated_passes(tmp_path, monkeypatch):
    """Companion: the counter does count a second pass (so the test above can fail)."""
    from nnft.observables import moments

    run_config(_cfg(["propagator"]), tmp_path / "r", quiet=True)
    store = FieldStore.open(tmp_path / "r" / "stores" / "cos-N4.zarr")
    reads = _CountingReads(monkeypatch)
    moments(store, [(0, 1)])
    moments(store, [(0, 2)])
    assert reads.n == 2 * (1200 // 200)


def test_a_new_measurement_is_one_declaration(tmp_path, monkeypatch):
    """A measurement registered from outside (as a new module would) is accepted by the config
    (with its options checked), runs in the shared pass and lands in results.json."""
    from nnft.observables import moments

    def site_variance(ctx):
        ds = moments(ctx.store, [(0, 0)])
        return {"quantity": "phi(0)^2", "value": float(ds["value"].values[0]),
                "error": float(ds["error"].values[0]), "scale": ctx.opt("scale")}

    m = registry.Measurement(name="site_variance", summary="<phi(0)^2>", run=site_variance,
                             tuples=lambda ctx: np.array([[0, 0]]),
                             options=(registry.Option("scale", float, 1.0, "a factor"),))
    monkeypatch.setitem(registry.REGISTRY, "site_variance", m)
    raw = tomllib.loads(SMALL.format(measure='["site_variance"]'))
    raw["ensemble"][0]["options"] = {"scale": "big"}
    with pytest.raises(ConfigError, match="options.scale: must be a number"):
        resolve_config(raw)
    raw["ensemble"][0]["options"] = {"scale": 2}
    res = run_config(resolve_config(raw), tmp_path / "r", quiet=True)
    row = res["ensembles"]["cos"]["per_width"][4]["site_variance"]
    G0 = float(free_propagator(Lattice((8, 8)), 0.5)[0, 0])  # <phi(0)^2> at every width
    assert row["scale"] == 2.0 and abs(row["value"] - G0) < 5 * row["error"]


def test_streamed_and_stored_runs_agree(tmp_path):
    """keep_stores = false measures the same chunks in the same shared pass: identical numbers."""
    cfg = _cfg(["propagator", "four_point"])
    a = run_config(cfg, tmp_path / "a", quiet=True)
    cfg = dict(cfg, keep_stores=False)
    b = run_config(cfg, tmp_path / "b", quiet=True)
    for w in (4, 16):
        ra, rb = a["ensembles"]["cos"]["per_width"][w], b["ensembles"]["cos"]["per_width"][w]
        assert ra["four_point"]["m_n"] == pytest.approx(rb["four_point"]["m_n"], rel=1e-10)
        assert ra["propagator"]["chi2_dof"] == pytest.approx(rb["propagator"]["chi2_dof"],
                                                           rel=1e-10)
    assert not list((tmp_path / "b" / "stores").iterdir())


def test_run_wide_holm_correction_of_verdicts():
    """A run makes many tests: an "inconsistent" needs its Holm-adjusted p-value over all of
    them below 0.05 (the default run at 1e5 samples showed two single-test rejections at
    p = 0.023 and 0.037 among 10 tests of correct data). Companion: a strong rejection stays."""
    from nnft.report import verdict_table

    def res(*ps):
        rows = {f"m{i}": {"test_outcome": "inconsistent" if p < 0.05 else "consistent",
                          "test_p_value": p, "test": "t"} for i, p in enumerate(ps)}
        return {"ensembles": {"e": {"widths": [4], "per_width": {4: rows}}}}

    v = verdict_table(res(0.03, 0.5, 0.6))
    assert [r["verdict"] for r in v] == ["consistent"] * 3
    assert v[0]["p_family"] == pytest.approx(0.09) and "Holm over 3 tests" in v[0]["note"]
    v = verdict_table(res(0.001, 0.5, 0.6))
    assert v[0]["verdict"] == "inconsistent" and v[0]["p_family"] == pytest.approx(0.003)
