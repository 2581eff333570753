"""Two-point functions of generated ensembles against the closed-form kernels (docs/conventions.md).

Every comparison is a z-test (|z| < 5 for every entry) and has a companion that must FAIL: the
same comparison against the kernel scaled by 1.05 gives max |z| > 5.
"""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.kernels import (deep_kernel, erf_expectation, k0_matrix,
                                    quadrature_expectation, relu_expectation)
from nnft.lattice import Lattice, PointSet, free_propagator

X1 = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
PAPER_SETS = {
    "gauss1": PointSet(0.01 * X1),
    "erf1": PointSet(X1),
    "relu1": PointSet([0.2, 0.4, 0.6, 0.8, 1.0, 1.2]),
    "gauss2": PointSet(0.01 * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1.0]])),
    "erf2": PointSet(np.array([[-1, -1], [-1, 1], [1, -1], [1, 1.0]])),
    "relu2": PointSet(np.array([[0.5, 0.5], [0.5, 1], [1, 0.5], [1, 1.0]])),
}
GRID = Lattice((4, 4), spacing=0.4, origin=-0.6, boundary="open")  # d_in = 2 input grid


def samples(spec, geom, M, seed, chunk=20000):
    out = []
    E.generate(spec, geom, M, chunk=chunk, seed=seed,
               callback=lambda k, phi, lw: out.append(
                   (phi if spec.components is None else phi[:, 0]).reshape(len(phi), -1)))
    return np.concatenate(out)


def two_point_z(f, K):
    """z-scores of the measured E[f(x) f(y)] against K (upper triangle incl. diagonal)."""
    iu = np.triu_indices(f.shape[1])
    prod = f[:, iu[0]] * f[:, iu[1]]
    return (prod.mean(0) - K[iu]) / (prod.std(0, ddof=1) / np.sqrt(len(f)))


CASES = [
    # (id, spec, geometry, M)
    ("gauss-paper1", E.GaussNet(100), PAPER_SETS["gauss1"], 100000),
    ("gauss-paper2", E.GaussNet(100, d_in=2), PAPER_SETS["gauss2"], 100000),
    ("gauss-grid", E.GaussNet(20, d_in=2), GRID, 60000),
    ("erf-paper1", E.ErfNet(20), PAPER_SETS["erf1"], 60000),
    ("erf-paper2", E.ErfNet(20, d_in=2), PAPER_SETS["erf2"], 60000),
    ("erf-grid", E.ErfNet(20, d_in=2), GRID, 60000),
    ("relu-paper1", E.ReLUNet(20, sigma_b=0.0), PAPER_SETS["relu1"], 60000),
    ("relu-paper2", E.ReLUNet(20, d_in=2, sigma_b=0.0), PAPER_SETS["relu2"], 60000),
    ("relu-grid", E.ReLUNet(20, d_in=2), GRID, 60000),
    ("tanh-grid", E.TanhNet(20, d_in=2), GRID, 60000),
    ("activation-grid", E.ActivationNet(20, d_in=2, activation="x * tanh(x)"), GRID, 60000),
    ("deep-relu", E.DeepMLP(3, 16, "relu", d_in=2), GRID, 60000),
    ("deep-erf", E.DeepMLP(2, 16, "erf", d_in=1), PAPER_SETS["erf1"], 60000),
    ("deep-tanh", E.DeepMLP(2, 16, "tanh", d_in=2), GRID, 60000),
    ("correlated-erf", E.CorrelatedNet(20, d_in=2, rho=0.5), GRID, 60000),
    ("correlated-relu", E.CorrelatedNet(10, d_in=2, rho=0.3, activation="relu"), GRID, 60000),
    ("vector-erf", E.ErfNet(20, d_in=2, components=3), GRID, 60000),
    ("gauss-cos", E.GaussianCosNet(20, d_in=2), GRID, 60000),
    ("gauss-cos-const-paper", E.GaussianCosNet(20, amplitude="constant"), PAPER_SETS["erf1"], 60000),
    ("continuum-amp-2d", E.ContinuumCosNet(20, d_in=2, m2=0.5, cutoff=3.0), GRID, 60000),
    ("continuum-density-2d", E.ContinuumCosNet(20, d_in=2, m2=0.5, cutoff=3.0, form="density"),
     GRID, 60000),
    ("continuum-density-1d", E.ContinuumCosNet(20, m2=0.5, cutoff=3.0, form="density"),
     PAPER_SETS["erf1"], 60000),
    ("continuum-density-3d", E.ContinuumCosNet(20, d_in=3, m2=0.5, cutoff=3.0, form="density",
                                                amplitude="constant"),
     Lattice((2, 2, 2), boundary="open"), 60000),
    ("lattice-cos", E.LatticeCosNet(8, m2=0.3, components=2), Lattice((4, 4)), 60000),
]


@pytest.mark.parametrize("spec, geom, M", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_two_point_matches_kernel(spec, geom, M):
    f = samples(spec, geom, M, seed=20260)
    K = E.gp_kernel(spec, geom)
    z = two_point_z(f, K)
    assert np.abs(z).max() < 5, f"max |z| = {np.abs(z).max():.2f}"
    z_wrong = two_point_z(f, 1.05 * K)
    assert np.abs(z_wrong).max() > 5, f"5% perturbed kernel not rejected: {np.abs(z_wrong).max():.2f}"


def _translation_averaged(f, lat):
    """(1/V) sum_y phi(y) phi(y + r) per configuration, by FFT; shape (M, V)."""
    phi = f.reshape((len(f),) + lat.shape)
    ft = np.fft.fftn(phi, axes=(1, 2))
    return (np.fft.ifftn(np.abs(ft) ** 2, axes=(1, 2)).real / lat.volume).reshape(len(f), -1)


@pytest.mark.parametrize("N", [4, 1000])
@pytest.mark.parametrize("amplitude", ["gaussian", "constant"])
def test_lattice_cosnet_is_exact_propagator(N, amplitude):
    lat, m2 = Lattice((8, 8)), 0.25
    spec = E.LatticeCosNet(N, m2=m2, amplitude=amplitude)
    f = samples(spec, lat, 20000 if N < 100 else 5000, seed=4 + N)
    C = _translation_averaged(f, lat)
    G = free_propagator(lat, m2).ravel()
    z = (C.mean(0) - G) / (C.std(0, ddof=1) / np.sqrt(len(C)))
    assert np.abs(z).max() < 5
    assert np.abs((C.mean(0) - 1.05 * G) / (C.std(0, ddof=1) / np.sqrt(len(C)))).max() > 5
    # the field is exactly periodic and gp_kernel is the propagator at the displacement
    K = E.gp_kernel(spec, lat)
    np.testing.assert_allclose(K[0], G, rtol=1e-12)
    np.testing.assert_allclose(K[9], np.roll(G.reshape(8, 8), (1, 1), axis=(0, 1)).ravel(),
                               rtol=1e-12)


def test_kernel_identities():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 2))
    # quadrature agrees with the closed forms
    K0 = k0_matrix(X, X, 1.3, 0.4)
    d = np.diag(K0)
    for closed, name in ((erf_expectation, "erf"), (relu_expectation, "relu")):
        q = quadrature_expectation(name, K0, d[:, None], d[None, :], n_nodes=200)
        np.testing.assert_allclose(q, closed(K0, d[:, None], d[None, :]),
                                   rtol=2e-4 if name == "erf" else 2e-2, atol=1e-6 if name == "erf" else 2e-3)
    # depth 1 deep net = single layer net
    for act, cls in (("relu", E.ReLUNet), ("erf", E.ErfNet), ("tanh", E.TanhNet)):
        np.testing.assert_allclose(deep_kernel(X, act, 1, 1.3, 0.4),
                                   E.gp_kernel(cls(5, d_in=2, sigma_w=1.3, sigma_b=0.4), X),
                                   rtol=1e-12)
    # Gauss-net kernel of docs/conventions.md and the cos-net with the same frequencies
    K = E.gp_kernel(E.GaussNet(3, d_in=2, sigma_w=1.3, sigma_b=0.4), X)
    r2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.testing.assert_allclose(K, 0.16 + 1.69 * np.exp(-1.69 * r2 / 4))
    Kc = E.gp_kernel(E.GaussianCosNet(3, d_in=2, sigma_w=1.3, s=np.sqrt(2)), X)
    np.testing.assert_allclose(Kc, np.exp(-1.69 * r2 / 4))
    # both continuum forms share the kernel; r = 0 is the cut-off tadpole
    a = E.gp_kernel(E.ContinuumCosNet(3, d_in=2, m2=0.5, cutoff=3.0), X)
    b = E.gp_kernel(E.ContinuumCosNet(3, d_in=2, m2=0.5, cutoff=3.0, form="density"), X)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a[0, 0], np.log1p(9 / 0.5) / (4 * np.pi), rtol=1e-10)
    # xp round trip and errors
    with pytest.raises(ValueError, match="mu"):
        E.gp_kernel(E.ErfNet(3, mu_w1=0.1), X[:, :1])
    with pytest.raises(ValueError, match="d_in"):
        E.gp_kernel(E.ErfNet(3), X)
