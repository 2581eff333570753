"""Lattice actions: conventions C, B, A, H, exact conversions, force = -gradient."""
import math

import numpy as np
import pytest

from nnft.lattice import Lattice
from nnft.lattice.actions import (CONVENTIONS, Phi4Action, convert_couplings, field_scale,
                                  free_action)


def literal_action(phi, conv, p):
    """The formulas of docs/conventions.md written out site by site (one configuration)."""
    d = phi.ndim
    kin = sum((np.roll(phi, -1, axis=mu) - phi) ** 2 for mu in range(d)).sum()
    hop = sum(phi * np.roll(phi, -1, axis=mu) for mu in range(d)).sum()
    if conv == "C":
        return 0.5 * kin + (0.5 * p["m2"] * phi**2 + p["g"] / 24 * phi**4).sum()
    if conv == "B":
        return 0.5 * kin + (0.5 * p["m2"] * phi**2 + p["lam"] * phi**4).sum()
    if conv == "A":
        return kin + (p["m2"] * phi**2 + p["lam"] * phi**4).sum()
    return -2 * p["kappa"] * hop + (phi**2 + p["lam"] * (phi**2 - 1) ** 2).sum()


SHAPES = [(6,), (4, 6), (3, 4, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conv", CONVENTIONS)
def test_action_matches_literal_formula(shape, conv):
    rng = np.random.default_rng(1)
    base = Phi4Action(shape, "C", m2=-0.7, g=2.3)
    act = base.to(conv)
    phi = rng.standard_normal((3,) + shape)
    S = act.action(phi)
    want = [literal_action(p, conv, act.couplings()) for p in phi]
    np.testing.assert_allclose(S, want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_same_action_in_all_conventions(shape):
    """One configuration, converted with the exact field scalings, has one action value."""
    rng = np.random.default_rng(2)
    for m2, g in [(-0.7, 2.3), (0.4, 0.0), (-4.0, 36.048)]:
        C = Phi4Action(shape, "C", m2=m2, g=g)
        phiC = rng.standard_normal((4,) + shape)
        SC = C.action(phiC)
        for conv in CONVENTIONS:
            other = C.to(conv)
            phi = C.convert_field(phiC, conv)
            S = other.action(phi) - other.constant
            np.testing.assert_allclose(S, SC, rtol=1e-12)
            # and back again
            np.testing.assert_allclose(other.convert_field(phi, "C"), phiC, rtol=1e-14)
            back = other.to("C")
            assert back.m2 == pytest.approx(m2, rel=1e-12, abs=1e-12)
            assert back.g == pytest.approx(g, rel=1e-12, abs=1e-12)
        # companion: a wrong field scale (phi_A taken equal to phi_C) changes the action
        A = C.to("A")
        assert not np.allclose(A.action(phiC), SC, rtol=1e-3)


def test_conversion_formulas():
    d = 2
    A = {"convention": "A", "m2": -4.0, "lam": 6.008}
    H = convert_couplings(A, "H", d)
    c = -4.0 + 2 * d
    kappa = (-c + math.sqrt(c * c + 8 * 6.008)) / (4 * 6.008)
    assert H["kappa"] == pytest.approx(kappa, rel=1e-14)
    assert H["lam"] == pytest.approx(6.008 * kappa**2, rel=1e-14)
    assert (1 - 2 * H["lam"]) / H["kappa"] - 2 * d == pytest.approx(-4.0, rel=1e-12)
    B = convert_couplings(A, "B", d)
    C = convert_couplings(A, "C", d)
    assert B["lam"] == pytest.approx(6.008 / 4) and C["g"] == pytest.approx(24 * 6.008 / 4)
    # free theory: kappa = 1/(m^2 + 2d); lambda_H = 0 gives kappa_c = 1/(2d) at m^2 = 0
    Hf = convert_couplings({"convention": "C", "m2": 0.0, "g": 0.0}, "H", d)
    assert Hf["kappa"] == pytest.approx(1 / (2 * d)) and Hf["lam"] == 0.0
    assert field_scale("H", "A", 0.25) == pytest.approx(0.5)
    assert field_scale("A", "C", 0.25) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("conv", CONVENTIONS)
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_force_is_minus_numerical_gradient(conv, shape):
    rng = np.random.default_rng(3)
    act = Phi4Action(shape, "C", m2=-0.3, g=1.7).to(conv)
    phi = rng.standard_normal((2,) + shape)
    F = act.force(phi)
    h = 1e-5
    num = np.zeros_like(phi)
    for idx in np.ndindex(phi.shape):
        e = np.zeros_like(phi)
        e[idx] = h
        num[idx] = (act.action(phi + e)[idx[0]] - act.action(phi - e)[idx[0]]) / (2 * h)
    np.testing.assert_allclose(F, -num, rtol=1e-6, atol=1e-7)
    # companion: the force of a different mass is not the gradient
    wrong = Phi4Action(shape, "C", m2=-0.3 * 1.05, g=1.7).to(conv).force(phi)
    assert not np.allclose(wrong, -num, rtol=1e-4, atol=1e-6)


def test_local_delta_matches_action_difference():
    rng = np.random.default_rng(4)
    act = Phi4Action((4, 4), "A", m2=-4.0, lam=6.008)
    phi = rng.standard_normal((1, 4, 4))
    new = phi.copy()
    new[0, 1, 2] += 0.37
    nbr = act.neighbour_sum(phi)[0, 1, 2]
    dS = act.local_delta(phi[0, 1, 2], new[0, 1, 2], nbr)
    assert dS == pytest.approx(act.action(new)[0] - act.action(phi)[0], rel=1e-10)


def test_free_action_and_propagator():
    lat = Lattice((6, 4))
    act = free_action(lat, 0.3)
    assert act.is_free and act.convention == "C"
    from nnft.lattice import free_propagator_momentum

    np.testing.assert_allclose(act.free_propagator_momentum(), free_propagator_momentum(lat, 0.3))
    # convention A propagator is 1/(2 (phat^2 + m^2))
    np.testing.assert_allclose(act.to("A").free_propagator_momentum(),
                               0.5 * free_propagator_momentum(lat, 0.3))
    d = Phi4Action.from_dict(act.to_dict())
    assert d == act


def test_bad_input():
    with pytest.raises(ValueError, match="convention"):
        Phi4Action((4,), "X", m2=1.0)
    with pytest.raises(ValueError, match="m2"):
        Phi4Action((4,), "C")
    with pytest.raises(ValueError, match="kappa"):
        Phi4Action((4,), "H", lam=0.1)
    with pytest.raises(ValueError, match="lam"):
        Phi4Action((4,), "C", m2=1.0, lam=0.1)
    with pytest.raises(ValueError, match="boundary"):
        Phi4Action.from_lattice(Lattice((4,), boundary="open"), m2=1.0)
    with pytest.raises(ValueError, match="trailing axes"):
        Phi4Action((4, 4), m2=1.0).action(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="quartic"):
        Phi4Action((4,), m2=1.0, g=-1.0)


@pytest.mark.gpu
def test_cupy_matches_numpy():
    import cupy

    rng = np.random.default_rng(5)
    act = Phi4Action((4, 6), "C", m2=-0.7, g=2.3)
    phi = rng.standard_normal((3, 4, 6))
    np.testing.assert_allclose(cupy.asnumpy(act.action(cupy.asarray(phi))), act.action(phi))
    np.testing.assert_allclose(cupy.asnumpy(act.force(cupy.asarray(phi))), act.force(phi))
