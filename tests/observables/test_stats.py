"""Verdicts and the two-point goodness-of-fit tests against exact free-field data."""
import math
import warnings

import numpy as np
import pytest

from nnft.lattice import Lattice, free_propagator, free_propagator_momentum, sample_free_field
from nnft.observables import measure
from nnft.observables.stats import (FourierModeMoments, SeparationCovariance, Verdict,
                                    combine_verdicts, compare_error_estimates,
                                    detectable_noncentrality, momentum_space_test,
                                    oas_shrinkage, position_space_test, relative_or_absolute,
                                    unique_half_modes, verdict_from_chi2, verdict_from_z)

L, M2 = 8, 0.255252


@pytest.fixture(scope="module")
def free_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "free8"
    return sample_free_field(Lattice((L, L)), M2, 20000, path, chunk=500, seed=20261201)


@pytest.fixture(scope="module")
def meas(free_store):
    return measure(free_store, {"m": FourierModeMoments(2)}, blocks=20)


# ---------------------------------------------------------------------------- verdicts
def test_detectable_noncentrality_has_the_stated_power():
    from scipy import stats
    lam = detectable_noncentrality(10, 0.05, 0.8)
    assert stats.ncx2.sf(stats.chi2.isf(0.05, 10), 10, lam) == pytest.approx(0.8, abs=1e-6)
    # one dof: sqrt(lambda*) = z_{0.975} + z_{0.8} up to the neglected far tail
    assert math.sqrt(detectable_noncentrality(1)) == pytest.approx(1.959964 + 0.841621, abs=1e-3)


def test_verdict_outcomes_and_samples_needed():
    ok = verdict_from_chi2(10.0, 10, 1000, effect_scale=100.0)
    assert ok.outcome == "consistent" and 0.3 < ok.p_value < 0.6
    lam = detectable_noncentrality(10)
    assert ok.detectable_effect == pytest.approx(math.sqrt(lam) / 100.0)
    bad = verdict_from_chi2(40.0, 10, 1000, effect_scale=100.0)
    assert bad.outcome == "inconsistent"
    # the user wants to see a 1% effect but the test sees only ~4.4%: inconclusive, and
    # the samples needed scale as (detectable/tolerance)^2
    inc = verdict_from_chi2(10.0, 10, 1000, effect_scale=100.0, tolerance=0.01)
    assert inc.outcome == "inconclusive"
    assert inc.samples_needed == pytest.approx(1000 * (inc.detectable_effect / 0.01) ** 2, rel=1e-3)
    assert "samples needed" in inc.message
    # Bonferroni: p = 0.01 fails alone, passes among 10 tests
    assert verdict_from_chi2(6.635, 1, 100).outcome == "inconsistent"
    assert verdict_from_chi2(6.635, 1, 100, n_tests=10).outcome == "consistent"
    # an untrusted error bar makes a non-rejection inconclusive
    assert verdict_from_chi2(10.0, 10, 100, warnings_=["heavy tail"]).outcome == "inconclusive"
    a = ok.to_attrs()
    assert {"outcome", "p_value", "statistic", "dof", "detectable_effect", "samples_needed",
            "warnings", "correction"} <= set(a)
    with pytest.raises(ValueError, match="outcome"):
        Verdict("maybe", 1.0, 1, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        verdict_from_chi2(1.0, 1, 10, alpha=2.0)


def test_verdict_from_z_and_holm():
    v = verdict_from_z(1.0, 100, error=0.1)
    assert v.outcome == "consistent" and v.detectable_effect == pytest.approx(0.2802, abs=1e-3)
    assert verdict_from_z(4.0, 100).outcome == "inconsistent"
    vs = [verdict_from_z(z, 100) for z in (0.1, 0.2, 2.2)]   # p = 0.028 alone
    assert combine_verdicts(vs).outcome == "consistent"       # Holm: 3 * 0.028 > 0.05
    vs = [verdict_from_z(z, 100) for z in (0.1, 0.2, 3.5)]
    assert combine_verdicts(vs).outcome == "inconsistent"


# ---------------------------------------------------------------------------- two-point tests
def test_unique_half_modes_count():
    assert unique_half_modes((8, 8)).sum() == 34          # classes {k, -k} on 8 x 8
    assert unique_half_modes((32, 32)).sum() == 514
    assert unique_half_modes((5, 6)).sum() == 16


def test_mode_accumulator_merge_with_different_shifts(free_store):
    phi = np.asarray(free_store.read_chunk(0)[0])
    a = FourierModeMoments(2).update(phi[:200])
    b = FourierModeMoments(2).update(phi[200:] + 0.0)
    b.shift = b.shift  # its own (different) shift
    whole = FourierModeMoments(2).update(phi)
    ra, rw = a.merge(b).result(), whole.result()
    np.testing.assert_allclose(ra["Gt"], rw["Gt"], rtol=1e-10)
    np.testing.assert_allclose(ra["var"], rw["var"], rtol=1e-8)
    # the zero mode is the connected susceptibility V var(M)
    M = phi.mean(axis=(1, 2))
    assert rw["Gt"][0, 0] == pytest.approx(64 * M.var(), rel=1e-10)


def test_momentum_test_accepts_exact_and_rejects_wrong_mass(meas):
    ok = momentum_space_test(meas, m2=M2)
    assert ok.attrs["outcome"] == "consistent" and ok.attrs["dof"] == 34
    assert ok.attrs["p_value"] > 0.01
    assert ok.attrs["error_check_flag"] == 0
    # the expected Gt in the output is the exact one
    Gt = free_propagator_momentum(Lattice((L, L)), M2)
    assert float(ok.expected[0]) == pytest.approx(Gt[0, 0])
    # companion: m^2 off by 10% and a 3% overall factor are rejected
    assert momentum_space_test(meas, m2=M2 * 1.1).attrs["outcome"] == "inconsistent"
    assert momentum_space_test(meas, Gt * 1.03).attrs["outcome"] == "inconsistent"
    # asking for 0.1% precision at 20000 samples is inconclusive with a sample-size estimate
    inc = momentum_space_test(meas, m2=M2, tolerance=0.001)
    assert inc.attrs["outcome"] == "inconclusive" and inc.attrs["samples_needed"] > 20000
    # a mass tolerance: m^2 to 0.1 % is out of reach, to 50 % is not
    incm = momentum_space_test(meas, m2=M2, mass_tolerance=0.001)
    assert incm.attrs["outcome"] == "inconclusive" and incm.attrs["samples_needed"] > 20000
    assert "samples needed" in incm.attrs["message"]
    assert momentum_space_test(meas, m2=M2, mass_tolerance=0.5).attrs["outcome"] == "consistent"


def test_position_test_full_covariance(free_store):
    ok = position_space_test(free_store, m2=M2)
    assert ok.attrs["outcome"] == "consistent" and ok.attrs["dof"] == 34
    bad = position_space_test(free_store, m2=M2 * 1.1)
    assert bad.attrs["outcome"] == "inconsistent"
    # few separations, covariance from blocks (the Markov-chain route), shrunk
    seps = [(0, t) for t in range(5)] + [(1, 1), (2, 2)]
    okb = position_space_test(free_store, m2=M2, separations=seps, covariance="blocks",
                              blocks=40)
    assert okb.attrs["outcome"] == "consistent" and okb.attrs["dof"] == 7
    assert position_space_test(free_store, m2=M2 * 1.1, separations=seps, covariance="blocks",
                               blocks=40).attrs["outcome"] == "inconsistent"
    G = free_propagator(Lattice((L, L)), M2)
    np.testing.assert_allclose(okb.expected.values,
                               [G[0, t] for t in range(5)] + [G[1, 1], G[2, 2]])
    with pytest.raises(ValueError, match="covariance"):
        position_space_test(free_store, m2=M2, covariance="jackknife")


def test_separation_covariance_reshift_is_exact(free_store):
    phi = np.asarray(free_store.read_chunk(0)[0])
    seps = [0, 1, 9, 20]
    a = SeparationCovariance(2, seps).update(phi[:100])
    b = SeparationCovariance(2, seps).update(phi[100:] + 0.3)
    b2 = SeparationCovariance(2, seps).update(phi[100:] + 0.3)
    w = SeparationCovariance(2, seps).update(np.concatenate([phi[:100], phi[100:] + 0.3]))
    r = a.merge(b).result()
    np.testing.assert_allclose(r["G"], w.result()["G"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r["cov"], w.result()["cov"], rtol=1e-8, atol=1e-12)
    assert b2.n_samples == 400


def test_oas_shrinkage_limits():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 20))
    S = np.cov(X, rowvar=False)
    Sh, rho = oas_shrinkage(S, 5)
    assert 0 < rho <= 1 and np.all(np.linalg.eigvalsh(Sh) > 0)
    np.testing.assert_allclose(np.diag(Sh), np.diag(S))
    # strongly correlated, many samples: almost no shrinkage
    z = rng.normal(size=(100000, 1))
    X = z + 0.3 * rng.normal(size=(100000, 3))
    assert oas_shrinkage(np.cov(X, rowvar=False), 100000)[1] < 1e-3


# ---------------------------------------------------------------------------- error checks
def test_compare_error_estimates_flags_a_factor_two():
    rng = np.random.default_rng(3)
    B = 20
    true = np.ones(50)
    jk = true * np.sqrt(rng.chisquare(B - 1, 50) / (B - 1))
    ok = compare_error_estimates({"per-sample": true, "jackknife": jk},
                                 {"per-sample": 0.01, "jackknife": 1 / math.sqrt(2 * (B - 1))})
    assert ok.attrs["flag"] == 0
    bad = compare_error_estimates({"per-sample": true, "jackknife": 0.5 * jk},
                                  {"per-sample": 0.01, "jackknife": 1 / math.sqrt(2 * (B - 1))})
    assert bad.attrs["flag"] == 1 and "DISAGREE" in bad.attrs["message"]


def test_relative_or_absolute():
    ds = relative_or_absolute([1.1, 0.05], [1.0, 0.01], [0.01, 0.02])
    assert list(ds.kind.values) == ["relative", "absolute"]
    assert ds.deviation.values[0] == pytest.approx(0.1)
    assert ds.deviation.values[1] == pytest.approx(0.04)


def test_series_error_crosscheck_independent_and_autocorrelated():
    from nnft.observables.stats import series_error_crosscheck
    rng = np.random.default_rng(4)
    iid = rng.standard_normal(20000)
    ok = series_error_crosscheck(iid, 1)
    assert ok.attrs["flag"] == 0 and ok.attrs["autocorrelated"] == 0
    e = ok.error.to_series()
    assert e["jackknife"] == pytest.approx(e["per-sample"], rel=0.5)
    # AR(1) chains with tau_int = 4.5: the per-sample error is too small, the others agree
    rho = 0.8
    x = np.empty((5000, 4))
    x[0] = rng.standard_normal(4)
    for t in range(1, 5000):
        x[t] = rho * x[t - 1] + math.sqrt(1 - rho ** 2) * rng.standard_normal(4)
    ch = series_error_crosscheck(x.ravel(), 4)
    assert ch.attrs["autocorrelated"] == 1 and ch.attrs["flag"] == 0
    assert ch.attrs["tau_int"] == pytest.approx(4.5, rel=0.3)
    # companion: a jackknife with blocks shorter than tau_int underestimates -> flagged
    bad = series_error_crosscheck(x.ravel(), 4, blocks=2500)
    assert bad.attrs["flag"] == 1


def test_momentum_test_p_values_uniform_over_seeds():
    """A 20-seed calibration: p-values on correct data look uniform, on a wrong mass they don't."""
    from scipy import stats
    lat = Lattice((L, L))
    good, bad = [], []
    for s in range(20):
        phi = []
        sample_free_field(lat, M2, 1000, None, chunk=50, seed=3000 + s,
                          callback=lambda k, p, lw: phi.append(np.asarray(p)))
        m = measure(np.concatenate(phi), {"m": FourierModeMoments(2)}, lattice=lat, chunk=50)
        good.append(momentum_space_test(m, m2=M2, error_check=False).attrs["omnibus_p_value"])
        bad.append(momentum_space_test(m, m2=M2 * 1.1, error_check=False).attrs["p_value"])
    assert stats.kstest(good, "uniform").pvalue > 1e-3
    assert stats.kstest(bad, "uniform").pvalue < 1e-3


def test_correlator_test_on_a_degenerate_field():
    """A rank-one field phi(x) = x c (what a ReLU net with sigma_b = 0 gives on positive
    inputs) has a singular covariance over tuples: the test runs on its range instead of
    failing; it accepts the true connected 4-point function (zero for Gaussian c) and rejects
    a wrong one."""
    from nnft.observables import correlator_test

    rng = np.random.default_rng(3)
    x = np.array([0.2, 0.4, 0.6, 0.8])
    phi = rng.standard_normal((40000, 1)) * x[None, :]
    tuples = [(0, 0, 1, 1), (0, 1, 2, 3), (1, 1, 2, 2), (0, 0, 0, 0)]
    ok = correlator_test(phi, tuples, np.zeros(4), heavy_tail=False)
    assert ok.attrs["p_value"] > 1e-3 and "singular" in ok.attrs["null_distribution"]
    wrong = np.array([np.prod(x[list(t)]) for t in tuples])  # kurtosis excess 1 instead of 0
    bad = correlator_test(phi, tuples, wrong, heavy_tail=False)
    assert bad.attrs["p_value"] < 1e-6


def test_momentum_test_on_a_narrow_undersampled_cosnet():
    """A width-2 cos-net with few samples reaches each momentum mode a handful of times or not
    at all: such modes must be pooled (their sample variance says nothing about their spread).
    They once gave chi^2 ~ 1e6 (p = 0) on correct data at `nnft run --samples 3000`.
    Companion: a propagator wrong by a factor 1.5 is still rejected."""
    from nnft.ensembles import LatticeCosNet, generate
    from nnft.lattice import Lattice, free_propagator_momentum
    from nnft.observables import momentum_space_test

    lat, m2 = Lattice((32, 32)), 0.015645  # the default run's lattice: ~6 hits per mode
    out = []
    generate(LatticeCosNet(2, m2), lat, 3000, None, chunk=500, seed=8,
             callback=lambda k, phi, lw: out.append(np.asarray(phi)))
    phi = np.concatenate(out).reshape(3000, 32, 32)
    ok = momentum_space_test(phi, m2=m2, lattice=lat)
    assert ok.attrs["outcome"] != "inconsistent" and ok.attrs["p_value"] > 1e-3, ok.attrs["message"]
    bad = momentum_space_test(phi, 1.5 * free_propagator_momentum(lat, m2), lattice=lat)
    assert bad.attrs["outcome"] == "inconsistent"
