"""Connected correlators of network ensembles against the closed forms of docs/conventions.md and 7."""
import itertools

import numpy as np
import pytest

from nnft.lattice import Lattice, PointSet, free_propagator

ens = pytest.importorskip("nnft.ensembles")
from nnft.observables import (connected_correlator, cosnet_connected_4pt,  # noqa: E402
                              deviation_measure, scaling_fit, single_neuron_connected)


def test_lattice_cosnet_connected_4pt(tmp_path):
    lat, m2, N = Lattice((6, 6)), 0.5, 4
    st = ens.generate(ens.LatticeCosNet(width=N, m2=m2), lat, 100000, tmp_path / "c",
                      chunk=5000, seed=3)
    tup = [(0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 2, 3), (0, 1, 6, 7), (0, 7, 14, 21),
           (0, 0, 0, 1), (0, 3, 18, 21)]
    ds = connected_correlator(st, tup, order=4)
    G = free_propagator(lat, m2)
    exact = cosnet_connected_4pt(G, tup, N, kurtosis=3.0)
    assert np.all(np.abs((ds.value - exact) / ds.error) < 5)
    wrong = cosnet_connected_4pt(G, tup, N, kurtosis=1.0)  # constant-amplitude formula
    assert np.any(np.abs((ds.value - wrong) / ds.error) > 5)


def test_single_layer_gaussnet_connected_4pt(tmp_path):
    sb = sw = 0.5
    x = np.array([-1, -0.5, 0, 0.5, 1.0]) * 0.8
    pts = PointSet(x[:, None])

    def E(idx):  # one Gauss-net neuron: E[prod_i h(x_i)] in closed form
        xs = x[list(idx)]
        k = len(xs)
        return (np.exp(0.5 * (sb ** 2 * k ** 2 + sw ** 2 * xs.sum() ** 2))
                / np.prod(np.exp(sb ** 2 + sw ** 2 * xs ** 2)))

    N = 2
    st = ens.generate(ens.GaussNet(width=N, d_in=1, sigma_w=sw, sigma_b=sb), pts, 200000,
                      tmp_path / "g", chunk=10000, seed=4)
    tup = [(0, 0, 0, 0), (0, 1, 2, 3), (2, 2, 2, 2), (0, 0, 4, 4), (1, 2, 3, 4)]
    ds = connected_correlator(st, tup)

    def formula(width):
        return single_neuron_connected(lambda i, j: E((i, j)), lambda *a: E(a), tup, width,
                                       sigma=sw)

    assert np.all(np.abs((ds.value - formula(N)) / ds.error) < 5)
    assert np.any(np.abs((ds.value - formula(N + 1)) / ds.error) > 5)


def test_m4_scales_as_one_over_width_and_m2_at_background(tmp_path):
    lat, m2 = Lattice((4, 4)), 0.5
    K = ens.gp_kernel(ens.LatticeCosNet(width=2, m2=m2), lat)
    tup4 = [(0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 2, 3), (0, 1, 4, 5), (0, 5, 10, 15),
            (0, 0, 5, 5), (1, 2, 7, 13)]
    tup2 = [(0, 0), (0, 1), (0, 5), (1, 7)]
    rows = []
    for N in (2, 4, 8, 16):
        st = ens.generate(ens.LatticeCosNet(width=N, m2=m2), lat, 100000, tmp_path / f"c{N}",
                          chunk=5000, seed=4)
        d4 = deviation_measure(st, tup4, K, n_sub=10)
        d2 = deviation_measure(st, tup2, K, n_sub=10)
        assert float(d4.value) > 3 * float(d4.background)  # signal above background
        diff = float(d2.value - d2.background)
        assert abs(diff) < 5 * float(np.hypot(d2.error, d2.background_error))  # 2-point: noise
        rows.append((N, float(d4.value), float(d4.error)))
    r = np.array(rows)
    fit = scaling_fit(r[:, 0], r[:, 1], r[:, 2])
    assert abs(float(fit.slope) + 1) < 3 * float(fit.slope_error)
    assert abs(float(fit.slope) + 0.5) > 3 * float(fit.slope_error)  # companion: not 1/sqrt(N)
