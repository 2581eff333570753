"""Exact finite-width 2- and 4-point functions of deep linear networks vs Monte Carlo."""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.kernels import gp_kernel
from nnft.lattice import PointSet

from test_exact import mc_z, samples  # noqa: E402 (same folder)

SIX = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
T4 = [(0, 1, 2, 3), (0, 0, 5, 5), (1, 2, 4, 5), (3, 3, 3, 3)]


@pytest.mark.parametrize("depth,width", [(2, 2), (3, 4)])
def test_deep_linear_exact_vs_monte_carlo(depth, width):
    spec = E.DeepMLP(depth=depth, width=width, activation="identity", sigma_w=1.0, sigma_b=0.5)
    v2, m = E.exact_connected(spec, SIX, [(0, 5), (2, 2)])
    K = gp_kernel(spec, SIX)
    assert m == "closed form" and np.allclose(v2, [K[0, 5], K[2, 2]], rtol=1e-12)
    f = samples(spec, SIX, 200_000, seed=depth * 10 + width)
    ex, _ = E.exact_connected(spec, SIX, T4)
    assert np.all(np.abs(mc_z(f, T4, ex)) < 5)
    assert np.all(np.abs(mc_z(f, [(0, 5), (2, 2)], v2)) < 5)
    # companion: the theory at width + 1 is rejected
    wrong, _ = E.exact_connected(E.DeepMLP(depth=depth, width=width + 1, activation="identity",
                                           sigma_w=1.0, sigma_b=0.5), SIX, T4)
    assert np.max(np.abs(mc_z(f, T4, wrong))) > 5


def test_deep_linear_vector_outputs_and_scaling():
    spec = E.DeepMLP(depth=2, width=3, activation="identity", components=2)
    V = 6
    # cross-component 4-point: only the pairing (a a)(b b) survives
    v, _ = E.exact_connected(spec, SIX, [(0, 1, V + 2, V + 3), (0, V + 1, 2, V + 3)])
    C = E.exact_connected(E.DeepMLP(depth=2, width=3, activation="identity"), SIX,
                          [(0, 1, 2, 3)])[0]
    assert v[0] != 0 and v[0] < C[0]
    # at large width the 4-point falls like depth/N
    a = E.exact_connected(E.DeepMLP(depth=3, width=1000, activation="identity"), SIX, T4)[0]
    b = E.exact_connected(E.DeepMLP(depth=3, width=2000, activation="identity"), SIX, T4)[0]
    assert np.allclose(a / b, 2.0, rtol=2e-3)


def test_deep_nonlinear_has_no_exact_theory():
    assert E.exact_connected(E.DeepMLP(depth=2, width=3, activation="relu"), SIX,
                             [(0, 1, 2, 3)]) == (None, None)


def test_leading_order_recursion_matches_the_exact_linear_theory():
    from nnft.ensembles.deep import deep_leading_connected, deep_linear_connected

    rel = []
    for N in (100, 1000):
        spec = E.DeepMLP(depth=3, width=N, activation="identity", sigma_b=0.5)
        lead, method = deep_leading_connected(spec, SIX, T4, n_nodes=4)  # exact for cubics
        exact, _ = deep_linear_connected(spec, SIX, T4)
        rel.append(np.abs(lead / exact - 1))
    # the neglected terms are O(1/N^2) against the O(1/N) signal: relative error ~ 1/N
    assert np.all(rel[0] < 0.05) and np.allclose(rel[0] / rel[1], 10, rtol=0.05)


def test_leading_order_relu_vs_monte_carlo():
    from nnft.ensembles.deep import deep_leading_connected

    spec = E.DeepMLP(depth=2, width=20, activation="relu", sigma_b=0.0)
    lead, method = deep_leading_connected(spec, SIX, T4, n_nodes=12)
    assert method.startswith("leading 1/N (quadrature err <= ")
    f = samples(spec, SIX, 200_000, seed=3)
    assert np.all(np.abs(mc_z(f, T4, lead)) < 5)
    # companion: the leading-order prediction at width 2N is rejected
    wrong, _ = deep_leading_connected(E.DeepMLP(depth=2, width=40, activation="relu",
                                                sigma_b=0.0), SIX, T4, n_nodes=12)
    assert np.max(np.abs(mc_z(f, T4, wrong))) > 5
