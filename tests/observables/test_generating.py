"""Generating functional W[J] on the exact free field, where W[J] = 1/2 J.G.J exactly."""
import numpy as np
import pytest

from nnft.lattice import Lattice, free_propagator, sample_free_field
from nnft.observables.couplings import _kernel_matrix
from nnft.observables.generating import cumulants_from_moments, gaussian_W, generating_functional


@pytest.fixture(scope="module")
def free_field():
    lat = Lattice((8, 8))
    out = []
    sample_free_field(lat, 0.5, 80000, seed=31, chunk=5000,
                      callback=lambda k, p, lw: out.append(p))
    G = _kernel_matrix(free_propagator(lat, 0.5), lat)
    rng = np.random.default_rng(0)
    J = rng.standard_normal((6, 64))
    J /= np.sqrt(np.einsum("si,ij,sj->s", J, G, J))[:, None]  # J.G.J = 1: W = 1/2
    return lat, np.concatenate(out), G, J.reshape(6, 8, 8)


def test_cumulant_recursion():
    # standard normal moments 0, 1, 0, 3, 0, 15 -> cumulants 0, 1, 0, 0, 0, 0
    k = cumulants_from_moments(np.array([0.0, 1, 0, 3, 0, 15]))
    np.testing.assert_allclose(k, [0, 1, 0, 0, 0, 0], atol=1e-12)
    # Poisson(2): all cumulants equal 2; raw moments 2, 6, 22, 94
    np.testing.assert_allclose(cumulants_from_moments(np.array([2.0, 6, 22, 94])), 2.0)


def test_free_field_W_is_quadratic(free_field):
    lat, phi, G, J = free_field
    exact = gaussian_W(J.reshape(6, -1), G)
    np.testing.assert_allclose(exact, 0.5)
    ds = generating_functional(phi, J, n_max=4, expected=exact, n_blocks=32)
    assert ds.attrs["verdict"] == "consistent" and ds.attrs["max_abs_z"] < 5
    kz = ds["kappa"] / ds["kappa_error"]
    assert np.all(np.abs(kz.sel(order=[1, 3, 4])) < 5)  # only kappa_2 survives
    np.testing.assert_allclose(ds["kappa"].sel(order=2), 1.0, atol=5 * ds["kappa_error"].sel(order=2).max().item())
    # the series truncated at order 2 agrees with W within the errors
    assert np.all(np.abs(ds["W_series"].sel(order=2) - ds["W"]) < 5 * ds["W_error"])
    # a propagator 5% too large is rejected
    bad = generating_functional(phi, J, n_max=2, expected=gaussian_W(J.reshape(6, -1), 1.05 * G),
                                n_blocks=32)
    assert bad.attrs["verdict"] == "inconsistent"
    with pytest.raises(ValueError, match="J"):
        generating_functional(phi, np.ones((3, 3)))


def test_weighted_W_matches_direct_estimate():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 3))
    lw = 0.2 * rng.standard_normal(4000)
    J = np.array([0.3, -0.2, 0.1])
    ds = generating_functional(x, J, log_weight=lw, n_blocks=20, n_max=3)
    w = np.exp(lw)
    X = x @ J
    assert ds["W"].item() == pytest.approx(np.log(np.sum(w * np.exp(X)) / w.sum()), rel=1e-10)
    mu = np.sum(w * X) / w.sum()
    assert ds["kappa"].sel(order=2).item() == pytest.approx(np.sum(w * (X - mu) ** 2) / w.sum(), rel=1e-10)
