"""`nnft run`: the default config, streaming equals storing, an interrupted run is never 'complete'."""
import json
import tomllib

import numpy as np
import pytest

from nnft import measurements
from nnft.config import ConfigError, resolve_config
from nnft.run import run_config
from nnft.run_cli import default_config_text, override

SMALL = """
title = "small"
seed = 11
keep_stores = {keep}
[[ensemble]]
name = "erf"
arch = "ErfNet"
lattice = {{ points = [-1, -0.6, -0.2, 0.2, 0.6, 1] }}
widths = [2, 8]
samples = 6000
chunk = 1500
params = {{ d_in = 1 }}
measure = ["two_point", "four_point", "six_point"]
"""


def test_default_config_is_valid_and_shrinkable():
    cfg = resolve_config(tomllib.loads(default_config_text()))
    assert cfg["ensemble"][0]["arch"] == "LatticeCosNet"
    small = override(cfg, samples=500, widths="2,4")
    assert small["ensemble"][0]["samples"] == 500 and small["ensemble"][0]["widths"] == [2, 4]
    with pytest.raises(ConfigError, match="--widths"):
        override(cfg, widths="two")


def test_streaming_equals_stored(tmp_path):
    res = {}
    for keep in ("true", "false"):
        cfg = resolve_config(tomllib.loads(SMALL.format(keep=keep)))
        res[keep] = run_config(cfg, tmp_path / keep, quiet=True)
    assert list((tmp_path / "true" / "stores").iterdir())
    assert not list((tmp_path / "false" / "stores").iterdir())
    for w in (2, 8):
        a = res["true"]["ensembles"]["erf"]["per_width"][w]
        b = res["false"]["ensembles"]["erf"]["per_width"][w]
        for what, key in (("two_point", "chi2_dof"), ("four_point", "formula_chi2_dof"),
                          ("six_point", "mean_abs_connected")):
            assert a[what][key] == pytest.approx(b[what][key], rel=1e-9, abs=1e-12), (w, what)
        np.testing.assert_allclose(a["four_point"]["data"]["value"], b["four_point"]["data"]["value"],
                                   rtol=1e-9, atol=1e-14)


def test_streaming_refuses_store_only_measurements():
    text = SMALL.format(keep="false").replace('"six_point"]', '"six_point", "generating"]')
    with pytest.raises(ConfigError, match="keep_stores"):
        resolve_config(tomllib.loads(text))


def test_report_numbers_match_results_and_status(tmp_path):
    cfg = resolve_config(tomllib.loads(SMALL.format(keep="true")))
    run_config(cfg, tmp_path / "r", quiet=True)
    out = tmp_path / "r"
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    results = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    row = results["ensembles"]["erf"]["per_width"]["2"]
    from nnft.report import _fmt

    assert f"| 2 | {_fmt(row['generate_s'], 3)} | {_fmt(row['two_point']['chi2_dof'])} |" in md
    assert (out / "report.html").exists() and (out / "config.toml").exists()
    assert resolve_config(tomllib.loads((out / "config.toml").read_text())) == cfg


def _break_measurement(monkeypatch, name, exc):
    import dataclasses

    def boom(ctx):
        raise exc

    m = measurements.REGISTRY[name]
    monkeypatch.setitem(measurements.REGISTRY, name, dataclasses.replace(m, run=boom))


def test_failed_run_says_failed_with_the_error(tmp_path, monkeypatch):
    _break_measurement(monkeypatch, "six_point", RuntimeError("killed mid-measurement"))
    cfg = resolve_config(tomllib.loads(SMALL.format(keep="true")))
    with pytest.raises(RuntimeError):
        run_config(cfg, tmp_path / "r", quiet=True)
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["error"] == "RuntimeError: killed mid-measurement"
    assert not (tmp_path / "r" / "report.md").exists()
    assert not (tmp_path / "r" / "results.json").exists()


def test_interrupted_run_says_interrupted(tmp_path, monkeypatch):
    _break_measurement(monkeypatch, "six_point", KeyboardInterrupt())
    cfg = resolve_config(tomllib.loads(SMALL.format(keep="true")))
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg, tmp_path / "r", quiet=True)
    assert json.loads((tmp_path / "r" / "status.json").read_text())["state"] == "interrupted"
    assert not (tmp_path / "r" / "report.md").exists()


def test_refuses_foreign_output_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    cfg = resolve_config(tomllib.loads(SMALL.format(keep="true")))
    with pytest.raises(ValueError, match="not an nnft run folder"):
        run_config(cfg, tmp_path / "mine", quiet=True)
