"""[param_mcmc] in `nnft run`: its comparisons against field HMC go into the run-wide verdict
table (results["verdicts"], report.md) with Holm's correction; a wrong reference moves the
verdicts. And a target with a derivative term (``kinetic``): its extrapolation agrees with field
HMC on the rescaled action, which a reference without the derivative term does not."""
import json
import math
import tomllib

import pytest

import nnft.param_mcmc as pm
from nnft.config import ConfigError, resolve_config
from nnft.lattice import Phi4Action
from nnft.report import _holm
from nnft.run import run_config

CONFIG = """
title = "param_mcmc verdicts"
seed = 3
backend = "numpy"

[param_mcmc]
widths = [16, 32, 64]
n_chains = 8
n_times = 120
hmc_times = 240
n_therm = 20
observables = ["abs_M", "chi", "E", "G0"]
seed = 5

[[param_mcmc.target]]
label = "weak"
shape = [4, 4]
convention = "C"
m2 = 0.5
g = 1.0

[[param_mcmc.target]]
label = "kin"
shape = [4, 4]
convention = "C"
m2 = 0.5
g = 1.0
kinetic = 0.6
"""
OBS = ["abs_M", "chi", "E", "G0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = resolve_config(tomllib.loads(CONFIG))
    out = tmp_path_factory.mktemp("pm_verdicts")
    return cfg, out, run_config(cfg, out / "ok", quiet=True)


def test_study_verdicts_are_in_the_run_wide_table(run):
    _, out, res = run
    rows = [r for r in res["verdicts"] if r["ensemble"].startswith("param_mcmc: ")]
    assert [r["ensemble"] for r in rows] == ["param_mcmc: weak"] * 4 + ["param_mcmc: kin"] * 4
    assert rows == [r for r in res["verdicts"]]  # no ensembles in this run: nothing else
    for r in rows:
        assert r["N"] == "N -> infinity" and "against field HMC" in r["check"]
        assert r["verdict"] == "consistent", r
        assert 0 <= r["p_value"] <= r["p_family"] <= 1
    # Holm over the run's eight tests
    assert [r["p_family"] for r in rows] == pytest.approx(_holm([r["p_value"] for r in rows]))
    # same numbers as the study's own comparison
    ext = {r["point"]: r for r in res["param_mcmc"]["rows"] if r["N"] is None
           and r["method"].startswith("N -> infinity")}
    for r in rows:
        label, o = r["ensemble"].split(": ")[1], r["check"].split(" ")[0]
        assert r["p_value"] == ext[label][f"{o}_p_vs_hmc"]
        assert r["note"] == f"z = {ext[label][f'{o}_z_vs_hmc']:+.2f}"
    saved = json.loads((out / "ok" / "results.json").read_text())["verdicts"]
    assert len(saved) == 8 and saved[0]["p_family"] == pytest.approx(rows[0]["p_family"])
    md = (out / "ok" / "report.md").read_text()
    assert "## Verdicts" in md and "| param_mcmc: kin | N -> infinity | chi (convention C)" in md


def test_wrong_reference_moves_the_verdicts(run, monkeypatch):
    """Companion: the same run against field HMC at three times the bare mass^2: every
    comparison is inconsistent, and stays so after Holm's correction over the run."""
    cfg, out, _ = run
    right = pm.reference_action

    def wrong(target):
        act, s = right(target)
        return Phi4Action(act.shape, "C", m2=3.0 * act.m2, g=act.g), s

    monkeypatch.setattr(pm, "reference_action", wrong)
    res = run_config(cfg, out / "wrong", quiet=True)
    rows = res["verdicts"]
    assert len(rows) == 8
    for r in rows:
        assert r["verdict"] == "inconsistent" and r["p_family"] < 0.05, r


def test_derivative_term_target(run):
    """The target with kinetic = 0.6: the deformation carries the derivative term, the limit
    names it, and field HMC on the rescaled field (converted back) agrees (the verdict rows
    above); a reference that drops the derivative term is rejected."""
    _, _, res = run
    pt = {p["label"]: p for p in res["param_mcmc"]["points"]}["kin"]
    assert "(0.6/2) sum_mu (phi(x+mu) - phi(x))^2" in pt["sampled_theory"]
    assert "(1.6/2) sum_mu (d_mu phi)^2" in pt["limit"] and "phi' = sqrt(1.6) phi" in pt["limit"]
    assert pt["target_convention_C"] == {"m2": 0.5, "g": 1.0, "kinetic": 0.6}
    assert pt["reference"]["field_scale"] == pytest.approx(math.sqrt(1.6))
    assert pt["reference"]["m2"] == pytest.approx(0.5 / 1.6)
    assert pt["reference"]["g"] == pytest.approx(1.0 / 1.6 ** 2)
    assert any(label == "kin: field HMC reference" and "phi' = 1.26491 phi" in v
               for label, v, _ in res["param_mcmc"]["summary"])
    assert not any("weak: field HMC reference" in label for label, _, _ in res["param_mcmc"]["summary"])
    rows = [r for r in res["param_mcmc"]["rows"] if r["point"] == "kin"]
    ref, ext = rows[-2], rows[-1]
    assert ref["method"] == "field HMC" and ref["field_scale"] == pytest.approx(math.sqrt(1.6))
    # the reference without the derivative term: the plain target action, no rescaling
    plain = pm.field_hmc_reference(Phi4Action((4, 4), "C", m2=0.5, g=1.0), 8, 240, seed=9,
                                   observables=OBS)
    cmp_ = pm.compare_to_reference(ext, plain, OBS)
    assert cmp_["G0"]["verdict"] == "inconsistent" and abs(cmp_["G0"]["z"]) > 5, cmp_


def test_non_normalisable_quadratic_targets_are_config_errors():
    """A free target whose deformation has a negative quadratic direction beyond the prior's
    (negative derivative term, or a base mass far above the target's) is refused up front."""
    for sec in ({"target": {"shape": [4], "m2": 0.5, "g": 0.0, "kinetic": -0.3}},
                {"target": {"shape": [4, 4], "m2": 0.5, "g": 0.0}, "base_m2": 3.0}):
        with pytest.raises(ConfigError, match=r"^param_mcmc.target\[0\]: the deformed density "
                                              r"is not normalisable .*-1/\(4 V G0\)"):
            pm.validate_param_mcmc(sec)
    pm.validate_param_mcmc({"target": {"shape": [4], "m2": 0.5, "g": 0.0, "kinetic": 0.3}})
    pm.validate_param_mcmc({"target": {"shape": [4], "m2": 0.5, "g": 0.1, "kinetic": -0.3}})


@pytest.mark.parametrize("kinetic, words", [
    (-1.0, "param_mcmc.target[0].kinetic: must be > -1"),
    ("x", "param_mcmc.target[0].kinetic: must be a finite number > -1"),
    (True, "param_mcmc.target[0].kinetic: must be a finite number > -1"),
    (float("inf"), "param_mcmc.target[0].kinetic: must be a finite number > -1"),
])
def test_kinetic_validation(kinetic, words):
    t = {"shape": [4, 4], "m2": 0.5, "g": 1.0, "kinetic": kinetic}
    with pytest.raises(ConfigError) as e:
        pm.validate_param_mcmc({"target": t})
    assert str(e.value).startswith(words) and "\n" not in str(e.value)
    ok = pm.validate_param_mcmc({"target": {**t, "kinetic": 0}})
    assert ok["target"][0]["kinetic"] == 0.0
    act, s = pm.reference_action({**ok["target"][0], "kinetic": 0.44})
    assert s == pytest.approx(1.2) and act.m2 == pytest.approx(0.5 / 1.44)
    assert act.g == pytest.approx(1.0 / 1.44 ** 2)
