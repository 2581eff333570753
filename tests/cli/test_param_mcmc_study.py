"""The [param_mcmc] study of `nnft run` (nnft/param_mcmc.py): config validation, the smoke
shrinker, and a small run whose N -> infinity extrapolation agrees with field-space HMC on the
lattice action, with a companion that rejects a reference at the wrong coupling."""
import json
from pathlib import Path

import pytest

from nnft.errors import ConfigError
from nnft.param_mcmc import (compare_to_reference, field_hmc_reference, run_param_mcmc,
                             smoke_param_mcmc, target_action, validate_param_mcmc)

WEAK = {"label": "weak", "shape": [4, 4], "convention": "C", "m2": 0.5, "g": 1.0}
OBS = ["abs_M", "chi", "E"]


def test_defaults_and_target_forms():
    s = validate_param_mcmc({"target": WEAK})
    assert s["target"] == [WEAK] and s["widths"] == [144, 288, 576, 1152]
    assert s["sampler"] == "hmc" and s["base_m2"] == "hartree" and s["observables"] == OBS
    strong = {"label": "s", "shape": [6, 6], "convention": "A", "m2": -4.0, "lam": 6.975}
    s = validate_param_mcmc({"target": [WEAK, strong], "widths": [64, 16, 32, 16],
                             "base_m2": 2, "sampler": "independence"})
    assert [t["label"] for t in s["target"]] == ["weak", "s"] and s["widths"] == [16, 32, 64]
    assert s["base_m2"] == 2.0
    act = target_action(s["target"][1]).to("C")
    assert act.m2 == -4.0 and act.g == pytest.approx(24 * 6.975 / 4)  # lambda_A = g/24 * 4


@pytest.mark.parametrize("section, words", [
    ({"colour": 1, "target": WEAK}, "param_mcmc.colour: unknown key"),
    ({}, "param_mcmc.target: required"),
    ({"target": 3}, "param_mcmc.target: must be a table"),
    ({"target": {**WEAK, "shape": [4]}}, None),
    ({"target": {**WEAK, "shape": [1, 4]}}, "param_mcmc.target[0].shape"),
    ({"target": {**WEAK, "convention": "H"}}, "param_mcmc.target[0].convention"),
    ({"target": {**WEAK, "lam": 1.0}}, "param_mcmc.target[0].lam: convention C uses g"),
    ({"target": {**WEAK, "g": -1.0}}, "param_mcmc.target[0].g: must be >= 0"),
    ({"target": {**WEAK, "m2": "x"}}, "param_mcmc.target[0].m2: must be a finite number"),
    ({"target": [WEAK, WEAK]}, "param_mcmc.target: labels must differ"),
    ({"target": WEAK, "widths": [16, 0]}, "param_mcmc.widths"),
    ({"target": WEAK, "widths": [16]}, "param_mcmc.widths: order 1 needs at least 2"),
    ({"target": WEAK, "widths": "16"}, "param_mcmc.widths: must be a list"),
    ({"target": WEAK, "base_m2": "free"}, "param_mcmc.base_m2"),
    ({"target": WEAK, "base_m2": -1.0}, "param_mcmc.base_m2"),
    ({"target": {**WEAK, "m2": -1.0}, "base_m2": "bare"}, "param_mcmc.base_m2: 'bare'"),
    ({"target": WEAK, "sampler": "gibbs"}, "param_mcmc.sampler"),
    ({"target": WEAK, "n_chains": 1}, "param_mcmc.n_chains: must be >= 2"),
    ({"target": WEAK, "n_times": 5}, "param_mcmc.n_times"),
    ({"target": WEAK, "hmc": 1}, "param_mcmc.hmc: must be true or false"),
    ({"target": WEAK, "seed": True}, "param_mcmc.seed: must be an integer"),
    ({"target": WEAK, "observables": ["chi", "xi"]}, "param_mcmc.observables"),
    ({"target": WEAK, "order": 3}, "param_mcmc.order"),
    ({"target": WEAK, "alpha": 1.5}, "param_mcmc.alpha"),
])
def test_validation_errors_name_the_key(section, words):
    if words is None:  # a 1-D lattice is allowed
        validate_param_mcmc(section)
        return
    with pytest.raises(ConfigError) as e:
        validate_param_mcmc(section)
    msg = str(e.value)
    assert msg.startswith(words) and "\n" not in msg, msg


def test_smoke_shrinker():
    s = smoke_param_mcmc({"target": WEAK, "widths": [16, 32, 64, 128, 256], "n_chains": 16,
                          "n_times": 1000, "n_therm": 200}, 800)
    assert s["n_chains"] == 8 and s["n_times"] == 100 and s["hmc_times"] == 100
    assert s["n_therm"] == 20 and s["widths"] == [16, 32, 64]
    s = smoke_param_mcmc({"target": WEAK, "widths": [8, 16, 32, 64], "order": 2}, 10)
    assert s["n_times"] == 20 and s["widths"] == [8, 16, 32, 64]


@pytest.fixture(scope="module")
def weak_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("param_mcmc")
    sec = {"target": WEAK, "widths": [16, 32, 64, 128], "n_chains": 8, "n_times": 150,
           "hmc_times": 300, "n_therm": 20, "observables": OBS, "seed": 5}
    return out, run_param_mcmc(sec, out, quiet=True)


def test_extrapolation_agrees_with_field_hmc(weak_run):
    """4x4 phi^4 (C) at m^2 = 0.5, g = 1: the 1/N extrapolation of the deformed cos-net from
    N = 16 .. 128 agrees with field-space HMC (|z| < 5, verdict consistent); the fit passes."""
    out, res = weak_run
    rows = res["rows"]
    assert [r["method"] for r in rows] == ["param hmc"] * 4 + ["field HMC", "N -> infinity (1/N fit)"]
    ext = rows[-1]
    for o in OBS:
        assert abs(ext[f"{o}_z_vs_hmc"]) < 5, (o, ext)
        assert ext[f"{o}_verdict"] == "consistent" and ext[f"{o}_fit_verdict"] == "consistent"
    for r in rows[:4]:
        assert 0.6 < r["acceptance"] < 1 and abs(r["exp_mdH"] - 1) < 0.2
    assert res["points"][0]["verdicts"] == {o: "consistent" for o in OBS}
    # the 1/N + 1/N^2 form beside the 1/N one (four widths leave it a degree of freedom)
    for o in OBS:
        assert ext[f"{o}_other_order"] == 2 and ext[f"{o}_other_error"] > ext[f"{o}_error"]
        assert abs(ext[f"{o}_other_z_vs_hmc"]) < 5, (o, ext)
    assert "width-N" in res["points"][0]["sampled_theory"]
    assert "g=1 (C)" in res["points"][0]["limit"]
    assert Path(res["plot"]).stat().st_size > 0 and not list((out / "plots").glob(".*tmp"))
    assert all(len(row) == 3 and isinstance(row[0], str) for row in res["summary"])
    from nnft.run import _jsonable

    json.dumps(_jsonable(res))


def test_wrong_coupling_reference_is_rejected(weak_run):
    """Companion: the same extrapolation against field HMC at g = 8 instead of 1 is
    inconsistent (|z| > 5) for every observable."""
    _, res = weak_run
    ext = res["rows"][-1]
    wrong = field_hmc_reference(target_action({**WEAK, "g": 8.0}), 8, 300, seed=7,
                                observables=OBS)
    cmp_ = compare_to_reference(ext, wrong, OBS)
    for o in OBS:
        assert cmp_[o]["verdict"] == "inconsistent" and abs(cmp_[o]["z"]) > 5, (o, cmp_)
        z_other = (ext[f"{o}_other_value"] - wrong[o]) / (
            ext[f"{o}_other_error"] ** 2 + wrong[f"{o}_error"] ** 2) ** 0.5
        assert abs(z_other) > 5, (o, z_other)
    # a rejected 1/N fit makes the comparison inconclusive, whatever z says
    bad_fit = {**ext, "chi_fit_verdict": "inconsistent"}
    assert compare_to_reference(bad_fit, wrong, ["chi"])["chi"]["verdict"] == "inconclusive"


def test_report_renders_the_study(weak_run):
    from nnft.report import _study_section
    from nnft.studies import STUDIES

    out, res = weak_run
    lines = _study_section("param_mcmc", STUDIES["param_mcmc"], res, out)
    text = "\n".join(lines)
    assert text.startswith("## Study [param_mcmc]")
    assert "| point | method | N | acceptance | abs_M | chi | E |" in text
    assert " ± " in text and "![param_mcmc](plots/param-mcmc-extrapolation.png)" in text
    assert "weak: chi extrapolation vs HMC" in text


def test_interrupted_study_resumes_to_the_same_numbers(weak_run, tmp_path, monkeypatch):
    """The chains of each width are stored in the run folder (param_mcmc/<label>-N<N>.zarr): a
    study killed while writing its third width resumes (complete widths are read back, the rest
    re-run from their saved chain state) and reproduces
    every number of an uninterrupted run; companion: another seed gives other numbers."""
    from nnft.lattice import FieldStore

    out, res = weak_run
    assert sorted(p.name for p in (out / "param_mcmc").iterdir()) == [
        f"weak-N{n}.zarr" for n in (128, 16, 32, 64)]
    sec = {"target": WEAK, "widths": [16, 32, 64, 128], "n_chains": 8, "n_times": 150,
           "hmc_times": 300, "n_therm": 20, "observables": OBS, "seed": 5}
    real = FieldStore.write_chunk
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def dying_write(self, *a, **k):  # the third chunk written in the whole study dies
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed
        return real(self, *a, **k)

    monkeypatch.setattr(FieldStore, "write_chunk", dying_write)
    with pytest.raises(Killed):
        run_param_mcmc(sec, tmp_path, quiet=True)
    monkeypatch.setattr(FieldStore, "write_chunk", real)
    again = run_param_mcmc(sec, tmp_path, quiet=True)
    for a, b in zip(res["rows"], again["rows"]):
        for o in OBS:
            assert a[o] == b[o] and a[f"{o}_error"] == b[f"{o}_error"], (o, a, b)
    other = run_param_mcmc({**sec, "seed": 6, "widths": [16, 32], "hmc": False},
                           tmp_path / "other", quiet=True)
    assert other["rows"][0]["chi"] != res["rows"][0]["chi"]
