"""Gamma-method errors: tau_int of AR(1) chains and of independent ensembles (docs/conventions.md)."""
import numpy as np
import pytest

from nnft.lattice import Lattice, effective_mass_exact, sample_free_field
from nnft.observables.gamma import (chain_observables, gamma_effective_mass, gamma_error,
                                    make_obs, tau_int)


def ar1(rho, T, R, seed):
    """R independent stationary AR(1) chains, returned as (T, R)."""
    rng = np.random.default_rng(seed)
    x = np.empty((T, R))
    x[0] = rng.standard_normal(R)
    eta = rng.standard_normal((T, R)) * np.sqrt(1 - rho**2)
    for t in range(1, T):
        x[t] = rho * x[t - 1] + eta[t]
    return x


def tau_exact(rho):
    return 0.5 * (1 + rho) / (1 - rho)


def test_ar1_tau_int_matches_exact():
    x = ar1(0.9, 20000, 8, seed=1)
    r = gamma_error(x.ravel(), n_replicas=8)  # time-major s = t * R + r
    assert abs(r.tau_int - tau_exact(0.9)) < 4 * r.dtau_int, (r.tau_int, r.dtau_int)
    assert r.n_eff == pytest.approx(x.size / (2 * r.tau_int))
    # the error of the mean: exact variance of an AR(1) mean is 2 tau / N (unit variance)
    assert r.error == pytest.approx(np.sqrt(2 * tau_exact(0.9) / x.size), rel=0.15)
    assert abs(r.value) < 4 * r.error


def test_ar1_companions():
    x = ar1(0.8, 20000, 8, seed=2)
    r = gamma_error(x.ravel(), n_replicas=8)
    assert abs(r.tau_int - tau_exact(0.8)) < 4 * r.dtau_int
    # a wrong target (rho = 0.9) is rejected ...
    assert abs(r.tau_int - tau_exact(0.9)) > 5 * r.dtau_int
    # ... and so is the wrong (replica-major) sample order
    bad = gamma_error(x.T.ravel(), n_replicas=8)
    assert abs(bad.tau_int - tau_exact(0.8)) > 5 * bad.dtau_int


def test_tau_int_helpers_and_errors():
    x = ar1(0.5, 4000, 1, seed=3)[:, 0]
    t, dt = tau_int(x)
    assert abs(t - tau_exact(0.5)) < 4 * dt
    o = make_obs(x)
    assert o.value == pytest.approx(x.mean())
    with pytest.raises(ValueError, match="multiple of n_replicas"):
        gamma_error(np.zeros(10), n_replicas=3)
    with pytest.raises(ValueError, match="one-dimensional"):
        gamma_error(np.zeros((4, 2)))


@pytest.fixture(scope="module")
def exact_store(tmp_path_factory):
    lat = Lattice((8, 8))
    m2 = 0.255252
    path = tmp_path_factory.mktemp("g") / "exact.zarr"
    return sample_free_field(lat, m2, 20000, path, chunk=5000, seed=11)


def test_exact_sampler_tau_int_is_one_half(exact_store):
    ds = chain_observables(exact_store)
    for o in ("chi", "G0", "E", "abs_M", "M", "phi2"):
        v = ds.sel(observable=o)
        assert abs(float(v.tau_int) - 0.5) < 4 * float(v.dtau_int) + 1e-3, (o, float(v.tau_int))
    # companion: a correlated series with the same marginal is not consistent with 1/2
    x = ar1(0.5, 20000, 1, seed=4)[:, 0]
    r = gamma_error(x)
    assert abs(r.tau_int - 0.5) > 5 * r.dtau_int


def test_effective_mass_of_exact_store(exact_store):
    ds = gamma_effective_mass(exact_store)
    mE = effective_mass_exact(0.255252)
    z = (ds.m_eff.values - mE) / ds.m_eff_error.values
    assert ds.sizes["t_eff"] >= 2
    assert np.all(np.abs(z[:2]) < 4), z
    zw = (ds.m_eff.values[:2] - 1.3 * mE) / ds.m_eff_error.values[:2]
    assert np.all(np.abs(zw) > 5)


def test_network_ensemble_tau_int_is_one_half(tmp_path):
    ens = pytest.importorskip("nnft.ensembles")
    if not hasattr(ens, "LatticeCosNet") or not hasattr(ens, "generate"):
        pytest.skip("nnft.ensembles has no LatticeCosNet/generate yet")
    lat = Lattice((8, 8))
    store = ens.generate(ens.LatticeCosNet(64, 0.255252), lat, 8000, tmp_path / "net.zarr",
                         chunk=2000, seed=3)
    ds = chain_observables(store)
    for o in ("chi", "G0", "E"):
        v = ds.sel(observable=o)
        assert abs(float(v.tau_int) - 0.5) < 4 * float(v.dtau_int) + 1e-3


def test_registered_as_error_method():
    from nnft.observables import errors

    m = errors.get_error_method("gamma")
    assert m.__name__ == "gamma_blocks"


# --------------------------------------------------------------------------- thermalisation
def test_split_rhat_mser_and_split_half_on_ar1():
    from nnft.observables.thermalization import (geweke_z, mser_cut, split_half_consistency,
                                                 split_rhat)
    x = ar1(0.5, 2000, 4, seed=5)
    assert split_rhat(x) < 1.01
    z, p = split_half_consistency(x)
    assert p > 0.01 and abs(geweke_z(x)) < 4
    assert mser_cut(x) < 100
    # companions: chains offset from each other, and a decaying transient at the start
    off = x + np.array([0.0, 0.0, 0.0, 1.0])
    assert split_rhat(off) > 1.1
    tr = x + 5.0 * np.exp(-np.arange(2000) / 100.0)[:, None]
    assert 200 <= mser_cut(tr) <= 1000
    assert abs(geweke_z(tr)) > 5


def _phi4_chain(n_therm, init):
    from nnft.lattice import Phi4Action
    from nnft.lattice.mcmc import HMC, run_chain
    from nnft.observables.gamma import primary_series

    act = Phi4Action((8, 8), convention="C", m2=-1.0, g=1.0)   # broken phase, slow ordering
    out = []
    run_chain(HMC(act, eps=0.2), 8, 200, None, n_therm=n_therm, init=init, seed=4, tune=False,
              callback=lambda k, p, lw: out.append(primary_series(np.asarray(p), 2)))
    return np.concatenate(out)[:, 1:]  # |M|, M^2, phi^2, link (M itself does not tunnel)


def test_cold_started_short_chain_is_caught():
    from nnft.observables.thermalization import thermalization_check
    ds = thermalization_check(_phi4_chain(0, "cold"), 8, observables=("abs_M", "M2", "phi2",
                                                                      "link"))
    assert ds.attrs["outcome"] == "inconsistent" and ds.attrs["p_value"] < 1e-3
    assert ds.attrs["recommended_cut"] >= 10
    assert ds.attrs["after_cut_outcome"] != "inconsistent"
    assert "discard" in ds.attrs["message"]


def test_thermalised_chain_passes():
    from nnft.observables.thermalization import thermalization_check
    ds = thermalization_check(_phi4_chain(500, "hot"), 8, observables=("abs_M", "M2", "phi2",
                                                                       "link"))
    assert ds.attrs["outcome"] == "consistent" and ds.attrs["p_value"] > 0.05
