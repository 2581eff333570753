"""Exact parameter-space theory (ensembles/exact.py) against closed forms and Monte Carlo.

* exact vs the existing closed forms (single_neuron_connected with neuron_moment, the lattice
  cos-net G4c/G6c, gp_kernel) to 1e-10 relative;
* quadrature error estimates are honest: |value - value with a much finer rule| <= stated error;
* exact vs Monte Carlo (nnft.ensembles.generate) at several widths, orders 2/4/6, |z| < 5, with
  companions that must fail (width off by one, the other amplitude law);
* W[J] exact vs Monte Carlo, and its cumulant expansion converging to it as N grows.
"""
import itertools

import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles import exact as X_
from nnft.ensembles.kernels import gp_kernel, neuron_moment
from nnft.lattice import Lattice, PointSet, free_propagator
from nnft.observables.cluster import cosnet_g4c, cosnet_g6c
from nnft.observables.cumulants import single_neuron_connected

SIX = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
T2 = np.array(list(itertools.combinations_with_replacement(range(6), 2)))
T4 = np.array(list(itertools.combinations_with_replacement(range(6), 4)))
RNG = np.random.default_rng(7)
T6 = np.sort(RNG.integers(0, 6, (25, 6)), axis=1)


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ------------------------------------------------------------------------------------------------
# against the existing closed forms
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [E.GaussNet(width=5, sigma_w=1.0, sigma_b=0.5),
                                  E.ErfNet(width=3), E.ReLUNet(width=4, sigma_b=0.0)],
                         ids=["gauss", "erf", "relu"])
def test_single_layer_matches_closed_forms(spec):
    P = SIX.points
    if isinstance(spec, E.GaussNet):
        P = 0.3 * P
    geom = PointSet(P)
    v2, m2 = E.exact_connected(spec, geom, T2)
    K = gp_kernel(spec, geom)
    assert _rel(v2, K[T2[:, 0], T2[:, 1]]) < 1e-10
    cache = {}

    def E2(*i):  # any order: E[h(x_i1) .. h(x_ik)] (memoised)
        key = tuple(sorted(i))
        if key not in cache:
            cache[key] = neuron_moment(spec, P[list(key)])
        return cache[key]

    v4, m4 = E.exact_connected(spec, geom, T4[:30])
    ref4 = single_neuron_connected(E2, E2, T4[:30], spec.width, spec.sigma_w)
    assert _rel(v4, ref4) < 1e-10
    v6, m6 = E.exact_connected(spec, geom, T6[:8])
    ref6 = single_neuron_connected(E2, E2, T6[:8], spec.width, spec.sigma_w, E6=E2)
    assert _rel(v6, ref6) < 1e-10
    if isinstance(spec, E.GaussNet):
        assert m2 == m4 == "closed form"
    else:
        assert m4.startswith("quadrature (err <= ")


@pytest.mark.parametrize("amplitude,k4,k6", [("gaussian", 3.0, 15.0), ("constant", 1.0, 1.0)])
def test_lattice_cosnet_matches_closed_forms(amplitude, k4, k6):
    L = Lattice((6, 6))
    spec = E.LatticeCosNet(width=7, m2=0.4, amplitude=amplitude)
    G = np.asarray(free_propagator(L, 0.4))
    t4, t6 = RNG.integers(0, 36, (40, 4)), RNG.integers(0, 36, (30, 6))
    v2, m = E.exact_connected(spec, L, T2)
    assert m == "closed form" and _rel(v2, gp_kernel(spec, L)[T2[:, 0], T2[:, 1]]) < 1e-10
    v4, _ = E.exact_connected(spec, L, t4)
    assert _rel(v4, cosnet_g4c(G, t4, 7, kurtosis=k4)) < 1e-10
    v6, _ = E.exact_connected(spec, L, t6)
    assert _rel(v6, cosnet_g6c(G, t6, 7, k4=k4, k6=k6)) < 1e-10
    # the wrong amplitude law is not the same theory
    other = cosnet_g4c(G, t4, 7, kurtosis=4.0 - k4)
    assert _rel(v4, other) > 1e-2


@pytest.mark.parametrize("spec", [E.GaussianCosNet(width=3, sigma_w=1.3),
                                  E.ContinuumCosNet(width=3, m2=0.5, cutoff=4.0),
                                  E.ContinuumCosNet(width=2, form="density", amplitude="constant")],
                         ids=["gauss-cos", "continuum-amp", "continuum-density"])
def test_cosnet_two_point_is_the_kernel(spec):
    v, m = E.exact_connected(spec, SIX, T2)
    assert _rel(v, gp_kernel(spec, SIX)[T2[:, 0], T2[:, 1]]) < 1e-10
    assert m.startswith("quadrature")


# ------------------------------------------------------------------------------------------------
# quadrature error estimates are honest
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [E.ErfNet(width=3), E.TanhNet(width=2, sigma_b=0.7),
                                  E.ActivationNet(width=2, activation="x * tanh(x)"),
                                  E.GaussianCosNet(width=2, sigma_w=2.0),
                                  E.ContinuumCosNet(width=2, m2=0.3, cutoff=5.0),
                                  E.ReLUNet(width=2, sigma_b=0.3)],
                         ids=["erf", "tanh", "xtanh", "gauss-cos", "continuum", "relu"])
def test_quadrature_error_estimate_bounds_the_error(spec):
    for tuples in (T4[::3], T6[:6]):
        vals, method = E.exact_connected(spec, SIX, tuples)
        err = float(method.split("<= ")[1].rstrip(")"))
        finer, _ = X_._apply(X_._cumulants_full, spec, SIX, tuples, fine=1.7)
        assert np.max(np.abs(vals - finer)) <= err + 1e-15


def test_neuron_moments_match_kernels_and_tanh_kernel_accuracy():
    P = SIX.points
    for spec in (E.ReLUNet(width=1, sigma_b=0.0), E.GaussNet(width=1), E.ErfNet(width=1)):
        t = np.array([[0, 1, 2, 5], [3, 3, 3, 3], [0, 1, 4, 4]])
        v, _ = E.neuron_moments(spec, SIX, t)
        ref = [neuron_moment(spec, P[list(r)]) for r in t]
        assert _rel(v, np.array(ref)) < 1e-10
    # r = 8 by the finer rule
    spec = E.ErfNet(width=1)
    t8 = np.sort(RNG.integers(0, 6, (5, 8)), axis=1)
    v, m = E.neuron_moments(spec, SIX, t8)
    err = float(m.split("<= ")[1].rstrip(")"))
    fine, _ = X_._apply(lambda mo, s, p: X_._node_moments(mo.H, mo.w, s % mo.V, {2 ** 8 - 1} | set(
        range(2 ** 8)))[:, -1, 0], spec, SIX, t8, fine=1.7)
    assert np.max(np.abs(v - fine)) <= err + 1e-15


def test_bad_input_raises():
    with pytest.raises(ValueError, match="tuples"):
        E.exact_connected(E.ErfNet(width=2), SIX, [[0, 6]])
    with pytest.raises(ValueError, match="tuples"):
        E.exact_connected(E.ErfNet(width=2), SIX, np.array([[0, 1, 2, 3, 4, 5] * 3]))
    with pytest.raises(ValueError, match="d_in"):
        E.exact_connected(E.ErfNet(width=2, d_in=2), SIX, [[0, 1]])
    assert E.exact_connected(E.ContinuumCosNet(width=2, d_in=2), PointSet(np.zeros((3, 2))),
                             [[0, 1]]) == (None, None)


def test_mixed_orders_in_one_call():
    spec = E.ErfNet(width=3)
    mixed, method = E.exact_connected(spec, SIX, [(0, 1), (0, 1, 2, 3), (2, 5)])
    two, _ = E.exact_connected(spec, SIX, [(0, 1), (2, 5)])
    four, _ = E.exact_connected(spec, SIX, [(0, 1, 2, 3)])
    assert np.array_equal(mixed, [two[0], four[0], two[1]]) and method.startswith("quadrature")


# ------------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------------
def samples(spec, geom, M, seed):
    out = []
    E.generate(spec, geom, M, chunk=25000, seed=seed,
               callback=lambda k, phi, lw: out.append(phi.reshape(len(phi), -1)))
    return np.concatenate(out)


def _subsets(n):
    return [c for r in range(2, n + 1) for c in itertools.combinations(range(n), r)]


def _connected_from(m, n):
    """Connected n-point (n = 2, 4, 6) of centred fields from a dict subset -> moment."""
    if n == 2:
        return m[(0, 1)]
    if n == 4:
        return m[(0, 1, 2, 3)] - m[(0, 1)] * m[(2, 3)] - m[(0, 2)] * m[(1, 3)] - m[(0, 3)] * m[(1, 2)]
    tot = m[tuple(range(6))]
    for a, b in itertools.combinations(range(6), 2):
        tot = tot - m[(a, b)] * m[tuple(i for i in range(6) if i not in (a, b))]
    for p in X_._pairings(6):
        tot = tot + 2 * np.prod([m[tuple(q)] for q in p], axis=0)
    return tot


def mc_z(f, tuples, exact, K=20):
    """z = (plug-in estimate - exact)/jackknife error per tuple (delete-one-block over K blocks;
    fields centred by the sample mean)."""
    f = f - f.mean(0)
    M = (len(f) // K) * K
    z = []
    for t, e in zip(tuples, exact):
        x = f[:M, list(t)]
        sums = {S: np.prod(x[:, list(S)], axis=1).reshape(K, -1).sum(1) for S in _subsets(len(t))}
        full = _connected_from({S: v.sum() / M for S, v in sums.items()}, len(t))
        jk = _connected_from({S: (v.sum() - v) / (M - M // K) for S, v in sums.items()}, len(t))
        se = np.sqrt((K - 1) / K * np.sum((jk - jk.mean()) ** 2))
        z.append((full - e) / se)
    return np.array(z)


TUP = {2: [(0, 5), (2, 3)], 4: [(0, 1, 2, 3), (0, 0, 5, 5), (1, 2, 4, 5)],
       6: [(0, 1, 2, 3, 4, 5), (0, 0, 2, 2, 5, 5)]}


@pytest.mark.parametrize("cls,kw,widths", [
    (E.ErfNet, {}, (1, 3, 10)),
    (E.ReLUNet, {"sigma_b": 0.0}, (1, 4)),
    (E.TanhNet, {"sigma_b": 0.5}, (2,)),
], ids=["erf", "relu", "tanh"])
def test_single_layer_exact_vs_monte_carlo(cls, kw, widths):
    for N in widths:
        spec = cls(width=N, **kw)
        f = samples(spec, SIX, 200_000, seed=11 + N)
        for order, tuples in TUP.items():
            ex, _ = E.exact_connected(spec, SIX, tuples)
            assert np.all(np.abs(mc_z(f, tuples, ex)) < 5), (N, order)
    # companion: width off by one (N = 1 sampled, N = 2 theory) is rejected by the 4-point
    spec = cls(width=1, **kw)
    f = samples(spec, SIX, 200_000, seed=5)
    wrong, _ = E.exact_connected(cls(width=2, **kw), SIX, TUP[4])
    assert np.max(np.abs(mc_z(f, TUP[4], wrong))) > 5


def test_gauss_net_exact_vs_monte_carlo():
    geom = PointSet(0.3 * SIX.points)
    spec = E.GaussNet(width=2, sigma_b=0.3)
    f = samples(spec, geom, 200_000, seed=3)
    for order, tuples in TUP.items():
        ex, m = E.exact_connected(spec, geom, tuples)
        assert m == "closed form"
        assert np.all(np.abs(mc_z(f, tuples, ex)) < 5), order
    wrong, _ = E.exact_connected(E.GaussNet(width=3, sigma_b=0.3), geom, TUP[4])
    assert np.max(np.abs(mc_z(f, TUP[4], wrong))) > 5


def test_lattice_cosnet_exact_vs_monte_carlo_and_wrong_amplitude_law():
    L = Lattice((8,))
    tuples = {2: [(0, 3)], 4: [(0, 1, 2, 3), (0, 0, 4, 4)], 6: [(0, 1, 2, 3, 4, 5)]}
    for N, amp in ((2, "gaussian"), (5, "constant"), (1, "constant")):
        spec = E.LatticeCosNet(width=N, m2=0.5, amplitude=amp)
        f = samples(spec, L, 200_000, seed=N)
        for order, t in tuples.items():
            ex, m = E.exact_connected(spec, L, t)
            assert m == "closed form"
            assert np.all(np.abs(mc_z(f, t, ex)) < 5), (N, amp, order)
    # f holds N = 1 constant amplitudes: the Gaussian law's theory must be rejected
    wrong, _ = E.exact_connected(E.LatticeCosNet(width=1, m2=0.5, amplitude="gaussian"), L,
                                 tuples[4])
    assert np.max(np.abs(mc_z(f, tuples[4], wrong))) > 5


# ------------------------------------------------------------------------------------------------
# W[J]
# ------------------------------------------------------------------------------------------------
def _mc_W(f, J, K=20):
    X = f @ J
    W = np.log(np.mean(np.exp(X)))
    n = len(X) // K
    jk = np.array([np.log(np.mean(np.exp(np.delete(X, np.s_[k * n:(k + 1) * n])))) for k in range(K)])
    return W, np.sqrt((K - 1) / K * np.sum((jk - jk.mean()) ** 2))


@pytest.mark.parametrize("spec,geom,scale", [
    (E.ErfNet(width=1), SIX, 1.0),
    (E.ReLUNet(width=1, sigma_b=0.0), SIX, 0.6),
    (E.LatticeCosNet(width=1, m2=0.5, amplitude="constant"), Lattice((8,)), 2.0)],
    ids=["erf", "relu", "cos"])
def test_W_exact_vs_monte_carlo(spec, geom, scale):
    f = samples(spec, geom, 200_000, seed=21)
    V = geom.volume
    small = np.zeros(V)
    small[[0, 3]] = [0.2, -0.1]
    large = scale * np.linspace(-0.6, 0.8, V)
    Ws, method = E.exact_W(spec, geom, np.stack([small, large]))
    for J, W in zip((small, large), Ws):
        mc, se = _mc_W(f, J)
        assert abs(mc - W) < 5 * se, (mc, W, se)
    # companion: the theory at the wrong width is rejected for the large source
    Wwrong, _ = E.exact_W(type(spec)(**_with_width(spec, spec.width + 1)), geom, large)
    mc, se = _mc_W(f, large)
    assert abs(mc - Wwrong[0]) > 5 * se


def test_relu_W_diverges_beyond_its_radius():
    # E exp(J.f) = E_theta 1/(1 - sigma_w^2 Y(theta)^2/N): infinite once sigma_w^2 Y^2/N >= 1
    spec = E.ReLUNet(width=1, sigma_b=0.0)
    W, method = E.exact_W(spec, SIX, np.stack([0.6 * np.linspace(-0.6, 0.8, 6),
                                                np.linspace(-0.6, 0.8, 6)]))
    assert np.isfinite(W[0]) and np.isinf(W[1]) and "diverges" in method


def _with_width(spec, N):
    d = spec.to_dict()
    d.pop("arch")
    d["width"] = N
    return d


def test_W_cumulant_expansion_converges_with_width():
    J = np.linspace(-1.0, 1.0, 6)
    gaps = []
    for N in (1, 4, 16, 64, 256):
        spec = E.ErfNet(width=N)
        W, _ = E.exact_W(spec, SIX, J)
        kap, partial, _ = E.W_cumulant_series(spec, SIX, J, n_max=6)
        gaps.append(abs(W[0] - partial[0, -1]))
        # kappa_2 is J.G.J with the exact two-point function, at every width
        G2, _ = E.exact_connected(spec, SIX, T2)
        K = np.zeros((6, 6))
        K[T2[:, 0], T2[:, 1]] = G2
        K[T2[:, 1], T2[:, 0]] = G2
        assert abs(kap[0, 1] - J @ K @ J) < 1e-9
    gaps = np.array(gaps)
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 1e-6 * gaps[0]


def test_gauss_net_W_is_infinite():
    W, method = E.exact_W(E.GaussNet(width=10), PointSet(0.01 * SIX.points), np.full(6, 0.1))
    assert np.isinf(W[0]) and "diverges" in method


@pytest.mark.parametrize("spec,geom", [
    (E.ErfNet(width=2, components=2), SIX),
    (E.LatticeCosNet(width=2, m2=0.5, amplitude="constant", components=3), Lattice((8,))),
], ids=["erf-D2", "cos-constant-D3"])
def test_vector_outputs_exact_vs_monte_carlo(spec, geom):
    V = geom.volume
    t4 = [(0, 1, V + 2, V + 3), (0, V, 1, V + 1), (V, V, V + 4, V + 4)]
    t2 = [(0, V), (V + 1, V + 2)]
    f = samples(spec, geom, 200_000, seed=31)
    for t in (t2, t4):
        ex, _ = E.exact_connected(spec, geom, t)
        assert np.all(np.abs(mc_z(f, t, ex)) < 5)
    # the cross-component covariance vanishes, the same-component one is the kernel
    ex2, _ = E.exact_connected(spec, geom, [(0, V), (V + 1, V + 1)])
    assert ex2[0] == 0 and abs(ex2[1] - gp_kernel(spec, geom)[1, 1]) < 1e-10
    # companion: treating the components as independent networks (no shared hidden layer) is
    # rejected: that theory has no cross-component connected 4-point
    assert np.max(np.abs(mc_z(f, t4[:2], np.zeros(2)))) > 5


def test_delta_G_and_m_n():
    # full moments (exp in the ring) minus the Wick sums of the exact two-point function equal
    # the connected parts (log in the ring): Delta G_4 = G4c, Delta G_6 = G6c + sum_15 G4c G2
    spec = E.ErfNet(width=3)
    d4, m4, _ = E.deviation_exact(spec, SIX, T4)
    c4, _ = E.exact_connected(spec, SIX, T4)
    assert _rel(d4, c4) < 1e-10
    d6, m6, _ = E.deviation_exact(spec, SIX, T6[:3])
    c6, _ = E.exact_connected(spec, SIX, T6[:3])
    G2 = dict(zip(map(tuple, T2), E.exact_connected(spec, SIX, T2)[0]))
    G4 = dict(zip(map(tuple, T4), c4))
    ref = []
    for t, tot in zip(T6[:3], c6):
        for a, b in itertools.combinations(range(6), 2):
            rest = tuple(sorted(t[i] for i in range(6) if i not in (a, b)))
            tot += G4[rest] * G2[tuple(sorted((t[a], t[b])))]
        ref.append(tot)
    assert _rel(d6, np.array(ref)) < 1e-9
    gp4 = E.gp_connected(spec, SIX, T4)
    assert abs(m4 - np.mean(np.abs(d4) / np.abs(gp4))) < 1e-15
    # m_4 falls like 1/N
    _, m4_30, _ = E.deviation_exact(E.ErfNet(width=30), SIX, T4)
    assert abs(m4 / m4_30 - 10) < 1e-6
