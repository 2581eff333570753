"""Correlated-parameter families: exact theory vs Monte Carlo, and the 1/N law failing.

Families (P(h | alpha) != prod_i P(h_i)): CorrelatedNet (equicorrelated output weights rho),
ScaleMixtureNet (one random output scale per network), MassMixtureCosNet (a random mass shared by
all neurons: momenta coupled across neurons). Exact theory: mixtures over the shared latent
variable with exact Gauss rules / finite sums (ensembles.exact). As N -> infinity the connected
4-point tends to a non-zero limit computed here independently from the GP kernel / propagators:
ScaleMixture ``Var(s^2) sum_3 K K``, Correlated ``2 rho^2 sum_3 K K`` (erf, zero bias mean),
MassMixture ``p (1 - p) sum_3 dG dG``.
"""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.kernels import gp_kernel
from nnft.lattice import Lattice, PointSet, free_propagator

from test_exact import mc_z, samples  # noqa: E402 (same folder, pytest rootdir import)

SIX = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
L8 = Lattice((8,))
PAIR3 = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
T4 = [(0, 1, 2, 3), (0, 0, 5, 5), (1, 2, 4, 5)]


def _sum3(K, t):
    return sum(K[t[a], t[b]] * K[t[c], t[d]] for (a, b), (c, d) in PAIR3)


def _limit(spec, geom, t):
    """Independent N -> infinity limit of the connected 4-point (see the module docstring)."""
    if isinstance(spec, E.MassMixtureCosNet):
        G = [np.asarray(free_propagator(geom, m)) for m in spec.masses]
        dG = G[1] - G[0]
        K = dG[(np.subtract.outer(np.arange(8), np.arange(8))) % 8]
        return spec.p_alt * (1 - spec.p_alt) * _sum3(K, t)
    K = gp_kernel(E.ErfNet(width=1, sigma_w=spec.sigma_w, sigma_b=spec.sigma_b), geom) \
        - spec.sigma_b ** 2
    if isinstance(spec, E.ScaleMixtureNet):
        return _sum3(K, t) / spec.shape
    return 2 * spec.rho ** 2 * _sum3(K, t)


FAMILIES = [
    (E.CorrelatedNet, dict(rho=0.5, activation="erf"), SIX),
    (E.ScaleMixtureNet, dict(shape=2.0), SIX),
    (E.MassMixtureCosNet, dict(m2=0.3, m2_alt=3.0, p_alt=0.4), L8),
]
IDS = ["rho", "scale", "mass"]


@pytest.mark.parametrize("cls,kw,geom", FAMILIES, ids=IDS)
def test_connected_4pt_does_not_vanish_at_large_width(cls, kw, geom):
    limit = np.array([_limit(cls(width=1, **kw), geom, t) for t in T4])
    assert np.all(np.abs(limit) > 1e-3)
    vals = {}
    for N in (10, 1000, 10 ** 9):
        vals[N], _ = E.exact_connected(cls(width=N, **kw), geom, T4)
    # the approach is 1/N: |G4c(N) - limit| shrinks by ~100 from N = 10 to 1000
    assert np.allclose(vals[10 ** 9], limit, rtol=1e-7, atol=0)
    d10, d1000 = np.abs(vals[10] - limit), np.abs(vals[1000] - limit)
    assert np.all(d1000 < 0.03 * d10 + 1e-9)


@pytest.mark.parametrize("cls,kw,geom", FAMILIES, ids=IDS)
def test_exact_vs_monte_carlo(cls, kw, geom):
    tuples = {2: [(0, 5), (2, 3)], 4: T4, 6: [(0, 1, 2, 3, 4, 5), (0, 0, 2, 2, 5, 5)]}
    spec = cls(width=3, **kw)
    f = samples(spec, geom, 200_000, seed=17)
    for order, t in tuples.items():
        ex, _ = E.exact_connected(spec, geom, t)
        assert np.all(np.abs(mc_z(f, t, ex)) < 5), order
    # the two-point function through gp_kernel is the exact one
    K = gp_kernel(spec, geom)
    ex2, _ = E.exact_connected(spec, geom, tuples[2])
    assert np.allclose([K[a, b] for a, b in tuples[2]], ex2, rtol=1e-12)


@pytest.mark.parametrize("cls,kw,geom,N", [
    (E.ScaleMixtureNet, dict(shape=2.0), SIX, 100),
    (E.CorrelatedNet, dict(rho=0.8, activation="erf"), SIX, 100),
    (E.MassMixtureCosNet, dict(m2=0.3, m2_alt=3.0, p_alt=0.4), L8, 200)], ids=IDS[1::-1] + ["mass"])
def test_measured_4pt_at_large_width_is_nonzero_and_exact(cls, kw, geom, N):
    spec = cls(width=N, **kw)
    f = samples(spec, geom, 100_000 if N <= 100 else 50_000, seed=23)
    ex, _ = E.exact_connected(spec, geom, T4)
    assert np.all(np.abs(mc_z(f, T4, ex)) < 5)
    # measured G4c is many standard errors away from zero ...
    assert np.all(np.abs(mc_z(f, T4, np.zeros(len(T4)))) > 5)
    # ... and the i.i.d. (uncorrelated) theory at the same width, ~1/N small, is rejected
    if cls is E.MassMixtureCosNet:
        iid = E.LatticeCosNet(width=N, m2=kw["m2"])
    else:
        iid = E.ErfNet(width=N)
    ex_iid, _ = E.exact_connected(iid, geom, T4)
    assert np.max(np.abs(mc_z(f, T4, ex_iid))) > 5


def test_specs_round_trip_and_validate():
    for spec in (E.ScaleMixtureNet(width=3, shape=1.5, activation="tanh"),
                 E.MassMixtureCosNet(width=3, m2=0.2, m2_alt=1.0, p_alt=0.1, amplitude="constant")):
        assert E.spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="shape"):
        E.ScaleMixtureNet(width=3, shape=0.0)
    with pytest.raises(ValueError, match="p_alt"):
        E.MassMixtureCosNet(width=3, p_alt=1.5)
    with pytest.raises(ValueError, match="m2_alt"):
        E.MassMixtureCosNet(width=3, m2_alt=-1.0)


def test_gamma_scale_and_mass_choice_are_drawn_per_network():
    from nnft.ensembles.params import draw_params

    rng = np.random.default_rng(0)
    p = draw_params(E.ScaleMixtureNet(width=400, shape=2.0), SIX, 4000, rng)
    s2 = (p["W1"][:, 0, :] ** 2).mean(1)  # ~ s^2 sigma_w^2/N * N/N, per network
    s2 = s2 * 400
    assert abs(s2.mean() - 1) < 0.05 and abs(s2.var() - 0.5) < 0.1
    p = draw_params(E.MassMixtureCosNet(width=50, m2=0.3, m2_alt=3.0, p_alt=0.4), L8, 4000, rng)
    amp2 = (p["a"][:, 0, :] ** 2).mean(1) * 50
    G0 = [float(np.asarray(free_propagator(L8, m))[0]) for m in (0.3, 3.0)]
    # two populations of networks with E a^2 N = 2 G_m(0)
    frac_alt = np.mean(np.abs(amp2 - 2 * G0[1]) < np.abs(amp2 - 2 * G0[0]))
    assert abs(frac_alt - 0.4) < 0.04


@pytest.mark.parametrize("cls,kw,geom", FAMILIES, ids=IDS)
def test_W_exact_vs_monte_carlo(cls, kw, geom):
    from test_exact import _mc_W

    spec = cls(width=3, **kw)
    f = samples(spec, geom, 200_000, seed=29)
    J = np.stack([0.3 * np.eye(geom.volume)[0], 0.5 * np.linspace(-1, 1, geom.volume)])
    W, method = E.exact_W(spec, geom, J)
    assert method.startswith(("closed form", "quadrature"))
    for j, w in zip(J, W):
        mc, se = _mc_W(f, j)
        assert abs(mc - w) < 5 * se, (mc, w, se)
    # the cumulant series of the mixture converges to W for a small source
    kap, partial, _ = E.W_cumulant_series(spec, geom, 0.3 * J[1], n_max=8)
    W2, _ = E.exact_W(spec, geom, 0.3 * J[1])
    assert abs(partial[0, -1] - W2[0]) < 1e-4 * abs(W2[0])
