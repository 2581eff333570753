"""Every example config runs end to end through `nnft run` (subprocess, smoke size), the report's
numbers agree with the library run in-process on the same stores, and the measurements of
nnft.measurements / the [mcmc] comparison of nnft.compare are checked against closed forms.

Every example must be runnable: one whose measurements are not wired into `nnft run` fails with
the reason; the direct tests below cover those functions regardless.
"""
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from nnft import measurements as M
from nnft.config import ConfigError
from nnft.measurements import Context

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
sys.path.insert(0, str(Path(__file__).parent))
from smoke import SMOKE_ARGS, strip_timings  # noqa: E402


def _wired(cfg):
    """Reason why ``cfg`` cannot run through `nnft run` yet, or None."""
    missing = sorted({m for e in cfg.get("ensemble", []) for m in e.get("measure", [])}
                     - set(M.REGISTRY))
    if missing:
        return f"measurements {missing} are not registered in nnft.measurements yet"
    return None


def _run_example(path, out):
    args = [sys.executable, "-m", "nnft", "run", str(path), "--out", str(out), "--quiet",
            *SMOKE_ARGS(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every wired example once; {stem: (cfg, out, CompletedProcess) or skip reason}."""
    base = tmp_path_factory.mktemp("examples")
    done = {}
    for path in EXAMPLES:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
        why = _wired(cfg)
        if why:
            done[path.stem] = why
            continue
        out = base / path.stem
        done[path.stem] = (cfg, out, _run_example(path, out))
    return done


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_end_to_end(runs, path):
    entry = runs[path.stem]
    assert not isinstance(entry, str), entry  # every example must run through `nnft run`
    cfg, out, r = entry
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    for name in ("report.md", "report.html", "config.toml", "results.json"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    for ens in cfg.get("ensemble", []):
        got = res["ensembles"][ens["name"]]["per_width"]
        assert got, ens["name"]
        for w, row in got.items():
            for m in ens.get("measure", ["propagator"]):
                assert isinstance(row.get(m), dict) and row[m], (ens["name"], w, m)
    if "mcmc" in cfg:
        assert "mcmc" in res, "[mcmc] table not run by nnft run"
        rows = res["mcmc"]["rows"]
        assert {r["L"] for r in rows} and all(r["cost_per_indep_sample_s"] > 0 for r in rows)
        assert (out / "plots" / "mcmc-cost.png").stat().st_size > 0
    assert (out / "report.md").read_text().startswith("# ")


def _compare_to_baseline(base, got, where="", scale=0.0):
    """Every entry of ``base`` is in ``got``, numbers equal to float64 rounding (new entries
    in ``got`` are allowed: measurements may add results).

    Fitted parameters come from an iterative optimiser (scipy curve_fit, stopping at relative
    tolerances ~1.5e-8), which turns rounding-level changes of its inputs into changes at
    its own tolerance: a number with a sibling ``<key>_error`` may differ by 1e-6 of that
    error, and such an error itself by 1e-6 relative; both far below anything physical."""
    if isinstance(base, dict):
        assert isinstance(got, dict), where
        for k, v in base.items():
            assert k in got, f"{where}/{k} missing"
            err = base.get(f"{k}_error")
            sc = 1e-6 * abs(err) if isinstance(err, float) else 0.0
            if k.endswith("_error") and k[:-6] in base and isinstance(v, float):
                sc = 1e-6 * abs(v)  # the error of a fitted parameter
            _compare_to_baseline(v, got[k], f"{where}/{k}", sc)
    elif isinstance(base, list):
        assert isinstance(got, list) and len(got) == len(base), where
        for i, (a, b) in enumerate(zip(base, got)):
            _compare_to_baseline(a, b, f"{where}[{i}]")
    elif isinstance(base, float) and not isinstance(base, bool):
        assert isinstance(got, (int, float)), where
        assert got == pytest.approx(base, rel=1e-9, abs=max(1e-13, scale)), where
    else:
        assert got == base, where


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_results_unchanged_from_baseline(runs, path):
    """The numbers of every example at smoke size equal those recorded before the registry
    refactor (tests/cli/baseline/, made by tests/cli/record_baseline.py on the code before it),
    timings aside. Re-record only for a deliberate change of physics, and say why."""
    entry = runs[path.stem]
    assert not isinstance(entry, str), entry
    cfg, out, r = entry
    assert r.returncode == 0, r.stderr[-3000:]
    base = strip_timings(json.loads(
        (ROOT / "tests" / "cli" / "baseline" / f"{path.stem}.json").read_text()))
    got = strip_timings(json.loads((out / "results.json").read_text()))
    _compare_to_baseline(base, got)


def test_baseline_comparison_can_fail():
    """Companion: a changed number, a missing entry or a changed verdict is caught."""
    base = {"a": {"x": 1.0, "v": "symmetric", "l": [1.0, 2.0]}}
    _compare_to_baseline(base, {"a": {"x": 1.0 + 1e-12, "v": "symmetric", "l": [1.0, 2.0],
                                      "new": 3}})
    _compare_to_baseline({"r": 1e-3, "r_error": 0.03}, {"r": 1e-3 + 1e-8, "r_error": 0.03})
    with pytest.raises(AssertionError):  # beyond 1e-6 of its error
        _compare_to_baseline({"r": 1e-3, "r_error": 0.03}, {"r": 1e-3 + 1e-7, "r_error": 0.03})
    for bad in ({"a": {"x": 1.0 + 1e-6, "v": "symmetric", "l": [1.0, 2.0]}},
                {"a": {"v": "symmetric", "l": [1.0, 2.0]}},
                {"a": {"x": 1.0, "v": "broken", "l": [1.0, 2.0]}},
                {"a": {"x": 1.0, "v": "symmetric", "l": [1.0]}}):
        with pytest.raises(AssertionError):
            _compare_to_baseline(base, bad)


def test_report_numbers_match_library_cosnet(runs):
    """cosnet_free_scalar: the propagator chi^2/dof in results.json is the library's, recomputed
    in-process on the run's own store (moments at G(r) = <phi(0) phi(r)> vs the exact lattice
    propagator)."""
    entry = runs.get("cosnet_free_scalar")
    assert entry is not None and not isinstance(entry, str), entry
    cfg, out, r = entry
    assert r.returncode == 0, r.stderr[-3000:]
    from nnft.ensembles import gp_kernel
    from nnft.lattice import FieldStore
    from nnft.observables import moments

    res = json.loads((out / "results.json").read_text())
    ens = cfg["ensemble"][0]
    (w, row), = res["ensembles"][ens["name"]]["per_width"].items()
    store = FieldStore.open(out / "stores" / f"{ens['name']}-N{w}.zarr")
    V = store.lattice.volume
    pairs = np.array([(0, j) for j in range(V)])
    ds = moments(store, pairs)
    from nnft.config import spec_for

    K = gp_kernel(spec_for(ens, int(w)), store.lattice)
    z = (ds["value"].values - K[0]) / ds["error"].values
    assert row["propagator"]["chi2_dof"] == pytest.approx(float(np.mean(z ** 2)), rel=1e-9)
    assert row["propagator"]["max_abs_z"] == pytest.approx(float(np.max(np.abs(z))), rel=1e-9)
    assert row["propagator"]["max_abs_z"] < 5.5  # exact propagator at every width


def test_report_numbers_match_library_reweight(runs):
    """cosnet_phi4_reweighting: reweighted chi, E and the ESS in results.json equal the library's
    reweighted_observables on the same store; the tree-level lambda equals quartic_coupling's."""
    entry = runs.get("cosnet_phi4_reweighting")
    assert entry is not None and not isinstance(entry, str), entry
    cfg, out, r = entry
    assert r.returncode == 0, r.stderr[-3000:]
    from nnft.lattice import FieldStore, free_propagator
    from nnft.lattice.actions import Phi4Action
    from nnft.observables.couplings import local_tuples, quartic_coupling
    from nnft.observables.reweighting import reweighted_observables

    res = json.loads((out / "results.json").read_text())
    ens = cfg["ensemble"][0]
    for w, row in res["ensembles"][ens["name"]]["per_width"].items():
        store = FieldStore.open(out / "stores" / f"{ens['name']}-N{w}.zarr")
        rw = row["reweight"]
        tgt = Phi4Action(tuple(store.lattice.shape), "C", m2=rw["m2_target"], g=rw["g"])
        ds = reweighted_observables(store, tgt, ens["params"]["m2"])
        assert rw["ess"] == pytest.approx(ds.attrs["ess"], rel=1e-10)
        for o in ("chi", "E", "G0"):
            assert rw[o] == pytest.approx(float(ds["value"].sel(observable=o)), rel=1e-10)
        lam = quartic_coupling(store, store.lattice, free_propagator(store.lattice, ens["params"]["m2"]),
                               tuples=local_tuples(store.lattice, 4, 24, seed=cfg["seed"]),
                               n_blocks=32).attrs["lam"]
        assert row["couplings"]["lam"] == pytest.approx(lam, rel=1e-10)


# ---------------------------------------------------------------- direct tests (in-process)
@pytest.fixture(scope="module")
def cos8(tmp_path_factory):
    """LatticeCosNet stores on 8x8 (m2 = 0.5) at N = 4 and N = 1024."""
    from nnft.ensembles import LatticeCosNet, generate
    from nnft.lattice import Lattice

    lat = Lattice((8, 8))
    base = tmp_path_factory.mktemp("cos8")
    out = {}
    for N, n in ((4, 20000), (1024, 40000)):
        spec = LatticeCosNet(N, 0.5)
        out[N] = (spec, lat, generate(spec, lat, n, base / f"c{N}.zarr", chunk=4000, seed=11 + N))
    return out


def _ctx(entry, N, **options):
    spec, lat, store = entry
    return Context("t", spec, lat, store, N, options, seed=2)


def _no_bad_json(out):
    from nnft.run import _jsonable

    json.dumps(_jsonable(out))
    for row in out["summary"]:
        assert len(row) == 3 and isinstance(row[0], str)


def test_reweight_mass_shift_closed_form(cos8):
    """g = 0, target m^2 = 0.55 from a base of 0.5: reweighting is exactly the free field at 0.55.
    Companion: the same numbers are far from the free values at the base mass."""
    from nnft.lattice import free_field_exact
    from nnft.measurements import reweight

    out = reweight(_ctx(cos8[1024], 1024, g=0.0, m2_target=0.55))
    _no_bad_json(out)
    good = free_field_exact(cos8[1024][1], 0.55)
    wrong = free_field_exact(cos8[1024][1], 0.5)
    for o in ("chi", "E", "G0"):
        assert abs(out[o] - good[o]) / out[f"{o}_error"] < 5, o
    assert abs(out["chi"] - wrong["chi"]) / out["chi_error"] > 5
    assert out["ess"] > 0.9 * out["n_samples"]


def test_reweight_hartree_against_hmc(cos8):
    from nnft.measurements import reweight

    out = reweight(_ctx(cos8[1024], 1024, g=1.0, hmc_trajectories=600))
    assert out["m2_target"] < 0.5 and out["ess_fraction"] > 0.5
    for o in ("chi", "E", "G0"):
        assert abs(out[f"{o}_z_vs_hmc"]) < 5, (o, out)
    with pytest.raises(ValueError, match="options.g"):
        reweight(_ctx(cos8[1024], 1024))


def test_couplings_lattice_against_cosnet_formula(cos8):
    """Fitted lambda vs the same fit of the exact finite-N G4c (N = 4); companion: the formula
    at N = 8 (half the coupling) is rejected."""
    from nnft.measurements import couplings

    out = couplings(_ctx(cos8[4], 4))
    _no_bad_json(out)
    assert abs(out["lam_z"]) < 5
    assert abs(out["lam"] - out["lam_expected"] / 2) / out["lam_error"] > 5


def test_couplings_points_running():
    """Continuum vertex: ReLU (sigma_b = 0, x > 0) has V4 ~ Lambda^5 in d = 1, so
    lambda(2 Lambda)/lambda(Lambda) = 1/32 exactly; the Gauss-net vertex converges (ratio 1)."""
    from nnft.ensembles import GaussNet, ReLUNet, generate
    from nnft.lattice import PointSet
    from nnft.measurements import couplings

    res = {}
    for spec, pts in ((ReLUNet(width=5, d_in=1, sigma_b=0.0), [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]),
                      (GaussNet(width=5, d_in=1), [-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])):
        ps = PointSet(np.array(pts)[:, None])
        phis = []
        generate(spec, ps, 20000, chunk=5000, seed=3, callback=lambda k, p, lw: phis.append(p))
        ctx = Context("p", spec, ps, np.concatenate(phis), 5, {"coupling_cutoffs": [2.0, 4.0]})
        res[type(spec).__name__] = out = couplings(ctx)
        _no_bad_json(out)
        assert out["six_point_verdict"] in ("consistent", "inconsistent")
    assert res["ReLUNet"]["running_ratio"] == pytest.approx(1 / 32, rel=1e-6)
    assert res["GaussNet"]["running_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert res["ReLUNet"]["lam"][0] < 0  # ReLU G4c > 0: negative tree-level lambda


def test_rg_fisher_shell_flow(cos8):
    """Fisher cutoffs on the N = 4 store: the coarse-grained propagator matches
    Gt(p) theta(Lambda - |p|); the kept fraction of neurons equals the Gt-weighted fraction of
    momenta inside the cutoff (binomial error); companion: not the fraction of the next cutoff."""
    from nnft.lattice import free_propagator_momentum
    from nnft.measurements import rg
    from nnft.observables.rg import fisher_to_momentum

    cuts = [1 / (1.0 + 0.5), 1 / (4.0 + 0.5)]
    out = rg(_ctx(cos8[4], 4, rg_mode="fisher", rg_cutoffs=cuts, n_blocks=16))
    _no_bad_json(out)
    assert out["verdict"] == "matches the momentum-shell flow" and all(out["passed"])
    lat = cos8[4][1]
    Gt = np.asarray(free_propagator_momentum(lat, 0.5))
    p2 = np.asarray(lat.pmag2())
    frac = [float(Gt[p2 <= fisher_to_momentum(c, 0.5) ** 2 * (1 + 1e-12)].sum() / Gt.sum())
            for c in cuts]
    n = 20000 * 4
    for f, got in zip(frac, out["kept_fraction"]):
        assert abs(got - f) / math.sqrt(f * (1 - f) / n) < 5
    assert abs(out["kept_fraction"][0] - frac[1]) / math.sqrt(frac[1] * (1 - frac[1]) / n) > 5
    with pytest.raises(ValueError, match="cos-net"):
        from nnft.ensembles import GaussNet
        from nnft.lattice import PointSet
        rg(Context("g", GaussNet(width=3, d_in=1), PointSet(np.zeros((2, 1))), None, 3, {}))


def test_generating_functional_near_gaussian(cos8):
    """N = 1024: kappa_2(J.phi) = J.K.J exactly at every width and W ~ J.K.J/2;
    companion: kappa_2 against 1.1 J.K.J is rejected."""
    from nnft.measurements import generating

    out = generating(_ctx(cos8[1024], 1024))
    _no_bad_json(out)
    assert out["max_abs_z_kappa2"] < 5 and out["max_abs_z_gp"] < 5
    ds = out["dataset"]
    k2, e2 = np.asarray(ds["kappa"])[:, 1], np.asarray(ds["kappa_error"])[:, 1]
    assert np.max(np.abs(k2 - 1.1 * 2 * np.asarray(out["W_gp"])) / e2) > 5


# ---------------------------------------------------------------- [mcmc] comparison
def test_mcmc_section_validation():
    from nnft.compare import validate_mcmc_section

    s = validate_mcmc_section({})
    assert s["sizes"] == [8, 16, 32] and s["target_rel_error"] == 0.01
    bad = [({"colour": 1}, "mcmc.colour: unknown key"), ({"sizes": [7]}, "mcmc.sizes"),
           ({"sizes": "8"}, "mcmc.sizes: must be a list"), ({"samplers": ["gibbs"]}, "mcmc.samplers"),
           ({"networks": ["resnet"]}, "mcmc.networks"), ({"trajectories": 5}, "mcmc.trajectories"),
           ({"target_rel_error": 2.0}, "mcmc.target_rel_error"), ({"seed": True}, "mcmc.seed")]
    for section, words in bad:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as e:
            validate_mcmc_section(section)
        assert "\n" not in str(e.value)


def test_mcmc_comparison_smoke(tmp_path):
    from nnft.compare import run_mcmc_comparison, smoke_mcmc_section

    s = smoke_mcmc_section({"sizes": [16, 8], "samplers": ["hmc", "metropolis"],
                            "networks": ["cosnet-V", "exact"]}, 1600)
    assert s["sizes"] == [8, 16] and s["trajectories"] == 100
    s["sizes"] = [8]
    res = run_mcmc_comparison(s, tmp_path, quiet=True)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"cos-net N=V", "exact sampler", "HMC tau=1", "Metropolis"}
    for m in ("cos-net N=V", "exact sampler"):  # independent: tau_int = 1/2, unbiased
        assert abs(rows[m]["tau_int"] - 0.5) < 0.25 and abs(rows[m]["bias_z_chi"]) < 5
    assert rows["Metropolis"]["tau_int"] > 1.5  # local updates are autocorrelated
    assert Path(res["plot"]).stat().st_size > 0
    assert len(res["summary"]) == 3 * len(rows)
    json.dumps(res, default=float)
