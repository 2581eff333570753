"""Finite-width connected correlators against docs/conventions.md.

G4c = (sigma^4/N) [3 E_4 - sum_3 E_2 E_2] (single neuron moments from ``neuron_moment``:
closed form for Gauss, quadrature for Erf and ReLU), the lattice cos-net formula of section 6,
and G6c = (sigma^6/N^2) [15 E_6 - 3 sum_15 E_4 E_2 + 2 sum_15 E_2 E_2 E_2]. Errors by jackknife
over 20 blocks; |z| < 5. Companion checks: the formula at the wrong width (2N: half the signal) and,
for the 6-point, 1/N instead of 1/N^2 scaling are rejected.
"""
import itertools

import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.kernels import neuron_moment
from nnft.lattice import Lattice, PointSet, free_propagator

X1 = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])[:, None]
PAIRINGS4 = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        yield [[first]] + part


def _pairings(n):
    return [p for p in _set_partitions(list(range(n))) if all(len(b) == 2 for b in p)]


def _four_two(n=6):
    return [p for p in _set_partitions(list(range(n))) if sorted(map(len, p)) == [2, 4]]


PAIRINGS6 = _pairings(6)
FOURTWO6 = _four_two(6)
assert len(PAIRINGS6) == 15 and len(FOURTWO6) == 15


def samples(spec, geom, M, seed):
    out = []
    E.generate(spec, geom, M, chunk=25000, seed=seed,
               callback=lambda k, phi, lw: out.append(phi.reshape(len(phi), -1)))
    return np.concatenate(out)


SUBSETS = {n: [c for r in range(2, n + 1, 2) for c in itertools.combinations(range(n), r)]
           for n in (4, 6)}


def _cumulant(m, n):
    """Zero-mean connected n-point (n = 4, 6) from a dict subset -> moment (arrays allowed)."""
    if n == 4:
        return m[(0, 1, 2, 3)] - sum(m[a] * m[b] for a, b in PAIRINGS4)
    s42 = sum(m[tuple(b4)] * m[tuple(b2)] for b in FOURTWO6 for b2, b4 in [sorted(b, key=len)])
    s222 = sum(np.prod([m[tuple(b)] for b in p], axis=0) for p in PAIRINGS6)
    return m[tuple(range(6))] - s42 + 2 * s222


def jackknife(f, tuples, blocks=20):
    """Connected n-point functions of the tuples with delete-one-block jackknife errors."""
    n_tot = len(f) // blocks * blocks
    fb = f[:n_tot].reshape(blocks, -1, f.shape[1])
    vals, errs = [], []
    for t in tuples:
        n = len(t)
        subs = SUBSETS[n]
        sums = {S: np.prod(fb[:, :, [t[i] for i in S]], axis=2).sum(1) for S in subs}  # (blocks,)
        full = _cumulant({S: v.sum() / n_tot for S, v in sums.items()}, n)
        loo = _cumulant({S: (v.sum() - v) / (n_tot - n_tot // blocks) for S, v in sums.items()}, n)
        vals.append(full)
        errs.append(np.sqrt((blocks - 1) / blocks * ((loo - loo.mean()) ** 2).sum()))
    return np.array(vals), np.array(errs)


def g4c_theory(spec, X, tuples):
    out = []
    for t in tuples:
        E4 = neuron_moment(spec, X[list(t)])
        s = sum(neuron_moment(spec, X[[t[a], t[b]]]) * neuron_moment(spec, X[[t[c], t[d]]])
                for (a, b), (c, d) in PAIRINGS4)
        out.append(spec.sigma_w ** 4 / spec.width * (3 * E4 - s))
    return np.array(out)


def g6c_theory(spec, X, tuples):
    out = []
    for t in tuples:
        Em = lambda idx: neuron_moment(spec, X[[t[i] for i in idx]])  # noqa: E731
        E6 = Em(range(6))
        s42 = sum(Em(b4) * Em(b2) for b in FOURTWO6 for b2, b4 in [sorted(b, key=len)])
        s222 = sum(np.prod([Em(b) for b in p]) for p in PAIRINGS6)
        out.append(spec.sigma_w ** 6 / spec.width ** 2 * (15 * E6 - 3 * s42 + 2 * s222))
    return np.array(out)


TUPLES4 = [(0, 0, 0, 0), (0, 0, 5, 5), (5, 5, 5, 5), (0, 1, 2, 3), (2, 2, 3, 3), (1, 2, 4, 5)]

CASES4 = [
    # (id, make spec from N, points, widths, M)
    ("gauss", lambda N: E.GaussNet(N, sigma_b=0.3), 0.01 * X1, (2, 5), 100000),
    ("erf", lambda N: E.ErfNet(N), X1, (2, 4), 200000),
    ("relu", lambda N: E.ReLUNet(N, sigma_b=0.0), np.array([.2, .4, .6, .8, 1., 1.2])[:, None],
     (2, 5), 60000),
]


@pytest.mark.parametrize("make, X, widths, M", [c[1:] for c in CASES4], ids=[c[0] for c in CASES4])
def test_four_point_finite_width(make, X, widths, M):
    z_wrong = []
    for N in widths:
        spec = make(N)
        f = samples(spec, PointSet(X), M, seed=100 + N)
        val, err = jackknife(f, TUPLES4)
        th = g4c_theory(spec, X, TUPLES4)
        z = (val - th) / err
        assert np.abs(z).max() < 5, (N, z)
        z_wrong.append((val - th / 2) / err)  # the formula at width 2N
    assert np.abs(z_wrong).max() > 5, z_wrong


@pytest.mark.parametrize("amplitude, kurt", [("gaussian", 3.0), ("constant", 1.0)])
def test_four_point_lattice_cosnet(amplitude, kurt):
    L, m2 = 8, 0.5
    lat = Lattice((L, L))
    G = free_propagator(lat, m2)
    coords = lat.positions().astype(int)
    tuples = [(0, 0, 0, 0), (0, 1, 0, 1), (0, 9, 18, 27), (0, 0, 36, 36), (1, 9, 18, 36)]

    def Gd(r):
        return G[r[0] % L, r[1] % L]

    for N in (2, 6):
        f = samples(E.LatticeCosNet(N, m2=m2, amplitude=amplitude), lat, 100000, seed=7 + N)
        val, err = jackknife(f, tuples)
        th = []
        for t in tuples:
            x = [coords[i] for i in t]
            s1 = sum(Gd(x[a] + x[b] - x[c] - x[d]) for (a, b), (c, d) in PAIRINGS4)
            s2 = sum(Gd(x[a] - x[b]) * Gd(x[c] - x[d]) for (a, b), (c, d) in PAIRINGS4)
            th.append((kurt * G[0, 0] / 2 * s1 - s2) / N)
        th = np.array(th)
        assert np.abs((val - th) / err).max() < 5
        assert np.abs((val - th / 2) / err).max() > 5


def test_six_point_scales_as_inverse_width_squared():
    """ReLU (sigma_b = 0, the papers' points) at N = 1, 2, 4: G6c matches the 1/N^2 formula and
    N^2 G6c is width independent; the 1/N law G6c(N) = G6c(1)/N is rejected."""
    X = np.array([.2, .4, .6, .8, 1., 1.2])[:, None]
    tuples = [(0, 1, 2, 3, 4, 5), (0, 0, 5, 5, 5, 5)]
    res = {}
    for N in (1, 2, 4):
        spec = E.ReLUNet(N, sigma_b=0.0)
        f = samples(spec, PointSet(X), 150000, seed=300 + N)
        val, err = jackknife(f, tuples)
        th = g6c_theory(spec, X, tuples)
        assert np.abs((val - th) / err).max() < 5, (N, (val - th) / err)
        res[N] = (val, err, th)
    v1, e1, th1 = res[1]
    for N in (2, 4):
        v, e, _ = res[N]
        z = (N ** 2 * v - v1) / np.hypot(N ** 2 * e, e1)
        assert np.abs(z).max() < 5, (N, z)
    z_wrong = [(res[N][0] - th1 / N) / res[N][1] for N in (2, 4)]
    assert np.abs(z_wrong).max() > 5, z_wrong
