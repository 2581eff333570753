"""The network EFT across widths by Monte Carlo: couplings fitted on the measured G4c at
several widths, G6c predicted, and the residual's 1/N^2 law fitted with its error."""
import numpy as np
import pytest

from nnft.ensembles import ReLUNet, generate
from nnft.lattice import PointSet
from nnft.measurements import Context, run_one, width_scan_summary
from nnft.measurements.eft import eft_width_scan
from nnft.observables.eft import power_law_fit

RELU_PTS = PointSet(np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])[:, None])  # the papers' points
WIDTHS = [2, 4, 8, 16]


@pytest.fixture(scope="module")
def relu_rows():
    """The eft measurement on 10^5 ReLU nets (sigma_b = 0) at each width, independent seeds."""
    rows = []
    for i, w in enumerate(WIDTHS):
        spec = ReLUNet(width=w, d_in=1, sigma_w=1.0, sigma_b=0.0)
        phis = []
        generate(spec, RELU_PTS, 100_000, chunk=100_000, seed=100 + i,
                 callback=lambda k, p, lw: phis.append(p))
        rows.append(run_one("eft", Context("relu", spec, RELU_PTS, np.concatenate(phis), w,
                                           {"eft_width_factors": [1], "eft_tuples_4": 12,
                                            "eft_tuples_6": 12, "n_blocks": 20}, seed=8601)))
    return rows


def test_relu_residual_falls_as_inverse_width_squared(relu_rows):
    """lambda fitted on the measured G4c at N = 2..16 falls as 1/N and the residual of the
    6-point prediction (G6c - lambda^2 trees) as 1/N^2: slopes within 4 standard errors of -1
    and -2, the 1/N^2 law not rejected; the measured residual agrees with the exact
    parameter-space theory at every width (|z| < 4), whose own slope is -2."""
    sc = eft_width_scan(WIDTHS, relu_rows)
    res, lam = sc["g6_residual_scaling"], sc["lam_scaling"]
    assert abs(res["slope"] + 2) < 4 * res["slope_error"] and res["slope_error"] < 0.1
    assert abs(lam["slope"] + 1) < 4 * lam["slope_error"] and lam["slope_error"] < 0.05
    assert res["p_value"] > 1e-3 and lam["p_value"] > 1e-3
    assert all(abs(r["g6_residual_z"]) < 4 for r in relu_rows)
    assert sc["exact_slope_g6_residual"] == pytest.approx(-2.0, abs=1e-6)
    assert sc["verdict"] == "consistent"
    # relevance at every width: lambda for G4c, lambda^2 trees + kappa for G6c
    assert set(sc["relevant"]["G4c"]) == {"lambda"}
    assert sc["relevant"]["G6c"] == {"lambda^2+kappa": WIDTHS}


def test_relu_residual_rejects_wrong_laws(relu_rows):
    """Companions on the same data: a 1/N law of the residual is rejected; mislabelled widths
    (the ensembles at N relabelled N^2: true exponent -1 in the new labels) are detected as
    inconsistent with 1/N^2; the lambda 1/N^2 law is rejected."""
    sc = eft_width_scan(WIDTHS, relu_rows)
    assert sc["g6_residual_scaling"]["alternative_p_value"] < 1e-6
    assert sc["lam_scaling"]["alternative_p_value"] < 1e-6
    wrong = eft_width_scan([w * w for w in WIDTHS], relu_rows)
    assert wrong["g6_residual_scaling"]["verdict"] == "inconsistent"
    assert abs(wrong["g6_residual_scaling"]["slope"] + 2) > 8 * \
        wrong["g6_residual_scaling"]["slope_error"]


def test_width_scan_in_run_summary(relu_rows):
    """`nnft run`'s width-scan summary carries the eft scan (three widths or more)."""
    per_width = {w: {"eft": r} for w, r in zip(WIDTHS, relu_rows)}
    out = width_scan_summary(WIDTHS, per_width)
    assert out["eft"]["widths"] == WIDTHS and "g6_residual_scaling" in out["eft"]
    assert "eft" not in width_scan_summary(WIDTHS[:2], per_width)


def test_power_law_fit_is_calibrated():
    """On data drawn from C N^-2 with Gaussian errors the p-value of the 1/N^2 law is uniform
    (rejection rate at 0.05 within binomial limits over 400 draws) and the slope pull has unit
    spread; with a 1/N truth the 1/N^2 law is rejected (companion)."""
    rng = np.random.default_rng(0)
    N = np.array([2.0, 4, 8, 16, 32])
    truth = 3.0 * N ** -2.0
    err = 0.05 * truth + 2e-4
    pv, pull = [], []
    for _ in range(400):
        f = power_law_fit(N, truth + err * rng.standard_normal(N.size), err)
        pv.append(f["p_value"])
        pull.append(f["slope_z"])
    rate = np.mean(np.array(pv) < 0.05)
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 400)
    assert np.std(pull) == pytest.approx(1.0, abs=0.15)
    bad = power_law_fit(N, 3.0 / N + err * rng.standard_normal(N.size), err)
    assert bad["verdict"] == "inconsistent" and bad["p_value"] < 1e-6
    with pytest.raises(ValueError, match="widths"):
        power_law_fit(N[:2], truth[:2], err[:2])
