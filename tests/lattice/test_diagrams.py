"""Diagram engine: Wick-contraction counts, the papers' coefficients, evaluation, exact series."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import erf

from nnft.lattice import Lattice, free_propagator, free_propagator_momentum
from nnft.lattice.diagrams import (Interaction, PropagatorContext, diagrams, evaluate_diagram,
                                   perturbative_correlator, topologies,
                                   wick_contractions_bruteforce)

VALENCES = (3, 4, 5, 6)


def _cases(max_legs):
    for n in range(0, 7):
        for r in (1, 2):
            for vs in itertools.combinations_with_replacement(VALENCES, r):
                legs = n + sum(vs)
                if legs % 2 == 0 and legs <= max_legs:
                    yield n, vs


def _engine_counts(n, vs):
    return {d.adjacency: d.contractions
            for d in diagrams(n, vs, len(vs), vacuum=True, exact_order=True)
            if d.valences == tuple(sorted(vs))}


@pytest.mark.parametrize("n,vs", list(_cases(14)))
def test_contraction_counts_match_bruteforce(n, vs):
    """Every diagram (vacuum ones included) with <= 14 legs: formula == enumerated matchings."""
    bf = wick_contractions_bruteforce(n, vs)
    eng = _engine_counts(n, vs)
    assert eng == bf
    legs = n + sum(vs)
    assert sum(eng.values()) == math.prod(range(legs - 1, 0, -2))  # (legs - 1)!!


@pytest.mark.slow
def test_contraction_counts_match_bruteforce_16_legs():
    """One 16-leg case (2,027,025 matchings, ~8 s): 5 external points, a phi^5 and a phi^6
    vertex. The other 16-leg cases ((4; 6,6), (6; 4,6), (6; 5,5), ~45 s together, checked once
    when this was written) and the 18-leg (6; 6,6) case are covered by the total count below."""
    assert _engine_counts(5, (5, 6)) == wick_contractions_bruteforce(5, (5, 6))


def test_total_contractions_all_second_order_cases():
    """Including the 16- and 18-leg cases: the counts sum to (legs - 1)!!."""
    for n, vs in _cases(18):
        legs = n + sum(vs)
        assert sum(_engine_counts(n, vs).values()) == math.prod(range(legs - 1, 0, -2))


def test_bruteforce_counter_detects_wrong_count():
    """Failing companion: a diagram whose count is altered is caught by the comparison."""
    eng = _engine_counts(4, (4,))
    key = next(iter(eng))
    eng[key] += 1
    assert eng != wick_contractions_bruteforce(4, (4,))


def test_papers_first_order_four_point():
    """G4 = 3 (free) - lambda [72 + 24] - kappa [540 + 360] (plain convention)."""
    free = topologies(4, (4, 6), 1, exact_order=True)
    mult = {(t.valences, t.connected): t.multiplicity for t in free}
    assert mult == {((4,), False): 72, ((4,), True): 24, ((6,), False): 540, ((6,), True): 360}
    coef = {(t.valences, t.connected): t.coefficient() for t in free}
    assert coef[((4,), False)] == -72 and coef[((6,), True)] == -360
    (t0,) = topologies(4, (4,), 0)
    assert t0.multiplicity == 3 and len(t0.diagrams) == 3
    # factorial convention: (g/4!) phi^4 gives the cross -g and the tadpole line -g/2 per pair
    cross = [t for t in free if t.valences == (4,) and t.connected][0]
    assert cross.coefficient("factorial") == -1
    line = [t for t in free if t.valences == (4,) and not t.connected][0]
    assert line.coefficient("factorial") == Fraction(-72, 24)
    assert all(d.coefficient("factorial") == Fraction(-1, 2) for d in line.diagrams)


def test_second_order_topologies():
    """lambda^2 bubble of G4 (3 channels x 576, symmetry factor 1/2 in the 1/4! convention) and
    the two-vertex tree of G6 (10 splittings x 4!^2 x 4 ... computed, not typed)."""
    t4 = {t.describe(): t for t in topologies(4, (4,), 2, connected=True, exact_order=True)}
    bubble = [t for t in t4.values() if any(v == 2 for row in t.diagrams[0].adjacency[4:]
                                             for v in row[4:])][0]
    assert len(bubble.diagrams) == 3
    assert all(d.coefficient("factorial") == Fraction(1, 2) for d in bubble.diagrams)
    (tree,) = topologies(6, (4,), 2, connected=True, exact_order=True)
    assert len(tree.diagrams) == 10
    assert all(d.coefficient("factorial") == 1 for d in tree.diagrams)


def test_first_order_g4_equals_nnft_vertex_template():
    """Engine's first-order connected G4 = -24 lambda vertex_sum (nnft's tree-level template);
    the two-vertex G6 tree = nnft's tree_g6c."""
    from nnft.observables.couplings import tree_g6c, vertex_sum

    lat = Lattice((6, 6))
    G = free_propagator(lat, 0.5)
    ctx = PropagatorContext.lattice(lat, G)
    rng = np.random.default_rng(1)
    t4 = rng.integers(0, lat.volume, (8, 4))
    t6 = rng.integers(0, lat.volume, (8, 6))
    lam = 0.013
    r4 = perturbative_correlator(4, Interaction({"lambda": lam}), ctx, t4, connected=True)
    np.testing.assert_allclose(r4["value"], -24 * lam * vertex_sum(G, t4, lattice=lat),
                               rtol=1e-12)
    r6 = perturbative_correlator(6, Interaction({"lambda": lam}), ctx, t6, order=2,
                                 connected=True)
    np.testing.assert_allclose(r6["by_order"][2], tree_g6c(lam, G, t6, lattice=lat), rtol=1e-10)
    # companion: the factorial convention with the same number is 24x weaker
    r4f = perturbative_correlator(4, Interaction({4: lam}, "factorial"), ctx, t4, connected=True)
    assert not np.allclose(r4f["value"], r4["value"], rtol=0.5)


def test_fft_lines_equal_matrix_lines_and_amputation():
    lat = Lattice((4, 6))
    G = free_propagator(lat, 0.7)
    c_fft = PropagatorContext.lattice(lat, G)
    c_mat = PropagatorContext.lattice(lat, c_fft.ext_ext)
    rng = np.random.default_rng(2)
    t4 = rng.integers(0, lat.volume, (6, 4))
    inter = Interaction({"lambda": 0.02, "g": 0.05})
    a = perturbative_correlator(4, inter, c_fft, t4, order=2)
    b = perturbative_correlator(4, inter, c_mat, t4, order=2)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-11)
    # amputated first-order connected 4-point: -24 lambda at coincident points, 0 elsewhere
    t = np.array([[3, 3, 3, 3], [3, 3, 3, 4]])
    amp = perturbative_correlator(4, Interaction({"lambda": 0.02}), c_fft, t, connected=True,
                                  amputated=True)
    np.testing.assert_allclose(amp["value"], [-24 * 0.02, 0.0], atol=1e-15)


def _gauss_box_integral(x, cutoff):
    """int_{[-c, c]^d} prod_i exp(-|x_i - y|^2 / 2) dy, per dimension in closed form."""
    x = np.asarray(x)  # (k, d)
    k = x.shape[0]
    mu = x.mean(0)
    q = (x ** 2).sum(0) - k * mu ** 2
    per = np.exp(-q / 2) * np.sqrt(np.pi / (2 * k)) * (
        erf(np.sqrt(k / 2) * (cutoff - mu)) - erf(np.sqrt(k / 2) * (-cutoff - mu)))
    return per.prod()


def _gauss(x, y):
    return np.exp(-0.5 * np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=-1))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_continuum_quadrature_box(d):
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, (5, d))
    ctx = PropagatorContext.continuum(_gauss, pts, 1.5, domain="box", n_nodes=20 if d < 3 else 16)
    (cross,) = diagrams(4, 4, 1, connected=True)
    tup = np.array([[0, 1, 2, 3], [0, 0, 4, 2]])
    val, err = evaluate_diagram(cross, tup, ctx)
    exact = [_gauss_box_integral(pts[t], 1.5) for t in tup]
    np.testing.assert_allclose(val, exact, rtol=1e-9)
    assert np.all(err == 0)


def test_continuum_ball_matches_nnft_vertex_integral():
    from nnft.observables.couplings import gauss_kernel_fn, vertex_integral

    K = gauss_kernel_fn(1.0, 1.0, 1)
    pts = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])[:, None]
    ctx = PropagatorContext.continuum(lambda x, y: K(x, y) - 1.0, pts, 2.0, n_nodes=48)
    t4 = np.array([[0, 1, 2, 3], [2, 3, 4, 5], [0, 0, 5, 5]])
    (cross,) = diagrams(4, 4, 1, connected=True)
    np.testing.assert_allclose(evaluate_diagram(cross, t4, ctx)[0],
                               vertex_integral(K, pts, t4, 2.0, offset=1.0), rtol=1e-10)


def test_montecarlo_integration_d4_within_errors_and_companion():
    """d = 4 (beyond quadrature): MC value within 5 sigma of the closed form; a wrong cutoff is
    rejected at > 5 sigma with the same error bars."""
    rng = np.random.default_rng(4)
    pts = rng.uniform(-0.5, 0.5, (4, 4))
    tup = np.array([[0, 1, 2, 3]])
    (cross,) = diagrams(4, 4, 1, connected=True)
    exact = _gauss_box_integral(pts, 1.2)
    ctx = PropagatorContext.continuum(_gauss, pts, 1.2, domain="box", n_mc=2048, n_batches=16,
                                      seed=5)
    assert ctx.info["integration"] == "montecarlo"
    val, err = evaluate_diagram(cross, tup, ctx)
    assert abs(val[0] - exact) / err[0] < 5
    assert err[0] / exact < 0.02
    wrong = _gauss_box_integral(pts, 1.0)
    assert abs(val[0] - wrong) / err[0] > 5
    # two internal vertices (independent node streams per vertex): finite error, no bias check
    small = PropagatorContext.continuum(_gauss, pts, 1.2, domain="box", n_mc=256, n_batches=8)
    (tree,) = diagrams(6, 4, 2, connected=True, exact_order=True)[:1]
    v2, e2 = evaluate_diagram(tree, np.array([[0, 1, 2, 3, 0, 1]]), small)
    assert np.isfinite(v2).all() and e2[0] > 0


# --------------------------------------------------------------------------------------------
# Gaussian in disguise: the mass shift delta phi^2 treated as a vertex
# --------------------------------------------------------------------------------------------
def _shift_setup(delta, convention="plain", order=3):
    lat = Lattice((6, 4))
    m2 = 0.6
    ctx = PropagatorContext.lattice(lat, free_propagator(lat, m2))
    tup = np.stack([np.zeros(lat.volume, dtype=int), np.arange(lat.volume)], 1)
    r = perturbative_correlator(2, Interaction({2: delta}, convention), ctx, tup, order=order)
    exact = free_propagator(lat, m2 + 2 * delta).ravel()
    Gt = free_propagator_momentum(lat, m2)
    terms = [np.fft.ifftn((-2 * delta) ** k * Gt ** (k + 1)).real.ravel() for k in range(5)]
    return r, exact, terms


def test_mass_shift_series_term_by_term_and_remainder():
    """S = 1/2 m^2 phi^2 + delta phi^2 (plain): order r of the engine's G2 equals
    (-2 delta)^r Gt^{r+1} exactly, and the third-order remainder is the fourth term."""
    for delta in (0.02, 0.01):
        r, exact, terms = _shift_setup(delta)
        for k in range(4):
            np.testing.assert_allclose(r["by_order"][k], terms[k], rtol=1e-10, atol=1e-15)
        rem = exact - r["value"]
        np.testing.assert_allclose(rem, terms[4], rtol=0.15)


def _shift_g4(delta, order):
    lat = Lattice((4, 4))
    m2 = 0.8
    ctx = PropagatorContext.lattice(lat, free_propagator(lat, m2))
    t = np.random.default_rng(6).integers(0, lat.volume, (6, 4))
    Gx = PropagatorContext.lattice(lat, free_propagator(lat, m2 + 2 * delta)).ext_ext
    exact = sum(Gx[t[:, a], t[:, b]] * Gx[t[:, c], t[:, e]]
                for a, b, c, e in ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2)))
    r = perturbative_correlator(4, Interaction({2: delta}), ctx, t, order=order)
    return np.abs(r["value"] - exact)


def test_mass_shift_four_point_is_the_exact_gaussian():
    """Full G4 (disconnected diagrams with their 1/n! and counts) to third order =
    sum_3 G2exact G2exact up to O(delta^4): halving delta divides the remainder by ~16; a
    second-order truncation gives ~8 (companion). G4c has no diagram at all."""
    ratio3 = _shift_g4(0.02, 3) / _shift_g4(0.01, 3)
    assert np.all((ratio3 > 14) & (ratio3 < 18))
    ratio2 = _shift_g4(0.02, 2) / _shift_g4(0.01, 2)
    assert np.all((ratio2 > 7) & (ratio2 < 9))
    assert diagrams(4, 2, 3, connected=True) == []


def test_mass_shift_companion_wrong_convention_fails():
    """Failing companion: reading delta in the 1/n! convention shifts m^2 by delta, not 2 delta;
    the third-order series then misses the exact G2 by far more than the O(delta^4) remainder."""
    delta = 0.02
    r, exact, terms = _shift_setup(delta, convention="factorial")
    rem = np.abs(exact - r["value"])
    assert np.max(rem) > 100 * np.max(np.abs(terms[4]))


def test_bad_input_messages():
    with pytest.raises(ValueError, match="convention"):
        Interaction({4: 1.0}, "wrong")
    with pytest.raises(ValueError, match="couplings"):
        Interaction({"mu": 1.0})
    with pytest.raises(ValueError, match="order"):
        diagrams(4, 4, 9)
    lat = Lattice((4,))
    with pytest.raises(ValueError, match="propagator"):
        PropagatorContext.lattice(lat, np.ones(3))
