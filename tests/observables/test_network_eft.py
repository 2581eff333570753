"""The `eft` measurement: local couplings of Gauss/Erf/ReLU nets on the papers' point sets,
checked against the exact finite-width (parameter-space) theory."""
import numpy as np
import pytest

from nnft.ensembles import ErfNet, ReLUNet, TanhNet, generate
from nnft.lattice import Lattice, PointSet, UserError
from nnft.measurements import Context, run_one
from nnft.measurements.eft import exact_eft, width_residuals

RELU_PTS = PointSet(np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])[:, None])
ERF_PTS = PointSet(np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])[:, None])


def _measure(spec, ps, samples, seed=3, **options):
    phis = []
    generate(spec, ps, samples, chunk=100_000, seed=seed,
             callback=lambda k, p, lw: phis.append(p))
    return run_one("eft", Context("t", spec, ps, np.concatenate(phis), spec.width, options,
                                  seed=8601))


def test_relu_lambda_kappa_against_exact_theory():
    """ReLU (sigma_b = 0, x > 0): lambda from G4c and kappa from G6c agree with the same fits
    on the exact N = 4 correlators; companion: the exact theory at N = 5 is rejected."""
    spec = ReLUNet(width=4, d_in=1, sigma_w=1.0, sigma_b=0.0)
    out = _measure(spec, RELU_PTS, 400_000)
    assert abs(out["lam_z"]) < 5 and abs(out["kappa_z"]) < 5
    assert out["lam"] < 0  # positive G4c: negative quartic coupling
    # relevance: lambda alone is the minimal action for G4c (it reproduces the exact G4c to
    # rounding), kappa is needed for G6c; lambda alone does not predict G6c
    assert out["chosen"] == "lambda"
    assert out["exact_rel_res4"] < 1e-10
    assert out["g6_model"] == "lambda^2+kappa"
    assert out["g6_p_value"] < 1e-6 and out["exact_rel_res6"] > 1
    assert out["verdict"] == ("inconclusive" if out["g6_heavy_tail"] else "inconsistent")
    # companion: the exact theory one width off is many errors away
    ds = out["dataset"]
    t4, t6 = ds["points4"].values, ds["points6"].values
    wrong = exact_eft(ReLUNet(width=5, d_in=1, sigma_w=1.0, sigma_b=0.0), RELU_PTS, t4, t6,
                      cutoff=out["cutoff"], weights4=ds["error4"].values,
                      weights6=ds["error6"].values)
    assert abs(out["lam"] - wrong["couplings"]["lambda"]) / out["lam_error"] > 5
    assert abs(out["kappa"] - wrong["kappa"]) / out["kappa_error"] > 5


def test_erf_lambda_against_exact_theory():
    """Erf-net at the papers' points: lambda agrees with the exact-theory fit; the local
    lambda leaves most of G4c unexplained (exact relative residual > 0.3)."""
    spec = ErfNet(width=4, d_in=1, sigma_w=1.0, sigma_b=1.0)
    out = _measure(spec, ERF_PTS, 200_000, eft_width_factors=[1])
    assert abs(out["lam_z"]) < 5
    assert out["exact_rel_res4"] > 0.3
    assert "exact_slope_res6_fitted" not in out  # one width: no scan
    assert out["verdict"] in ("consistent", "inconsistent", "inconclusive")


def test_eft_rejects_bad_input():
    with pytest.raises(UserError, match="spec"):
        _measure(TanhNet(width=4, d_in=1), ERF_PTS, 1000)
    lat = Lattice((4,))
    with pytest.raises(UserError, match="point sets"):
        run_one("eft", Context("t", ReLUNet(width=4, d_in=1), lat,
                               np.zeros((10, 4)), 4, {}))


@pytest.mark.parametrize("spec, ps", [
    (ReLUNet(width=4, d_in=1, sigma_w=1.0, sigma_b=0.0), RELU_PTS),
    (ErfNet(width=4, d_in=1, sigma_w=1.0, sigma_b=1.0), ERF_PTS)])
def test_residual_scaling_from_exact_theory(spec, ps):
    """The fitted EFT's residual in G6c falls as 1/N^2 (lambda and kappa carry the 1/N and
    1/N^2 pieces); the un-fitted (Gaussian) residual in G4c falls only as 1/N."""
    r = width_residuals(spec, ps, [4, 8, 16, 32, 64])
    assert r["slope_res6_fitted"] == pytest.approx(-2.0, abs=0.05)
    assert r["slope_res4_free"] == pytest.approx(-1.0, abs=0.05)
    assert abs(r["slope_res4_free"] + 2.0) > 0.5  # companion: the 1/N^2 check rejects it
    rel4 = np.array(r["res4_fitted"]) / np.array(r["res4_free"])
    if isinstance(spec, ReLUNet):  # lambda captures the whole 1/N piece of G4c
        assert rel4.max() < 1e-10
    else:  # Erf: a 1/N piece of G4c stays outside the local lambda template
        assert rel4.min() > 0.3
