"""The deformed cos-net theory: potential, densities, gradients, naming, extrapolation, honesty check."""
import math

import numpy as np
import pytest

from nnft.ensembles import LatticeCosNet
from nnft.ensembles.deformed import (DeformedCosNet, LatticePotential, hartree_mass,
                                     reweighting_nongaussianity, width_extrapolation)
from nnft.lattice import Lattice, Phi4Action


def _theory(N=8, shape=(4, 4), m2=0.5, coeffs=None, amplitude="gaussian"):
    coeffs = coeffs or {4: 0.05, 2: 0.1, 3: 0.02, 1: -0.01, 6: 0.001}
    return DeformedCosNet(LatticeCosNet(width=N, m2=m2, amplitude=amplitude), Lattice(shape),
                          LatticePotential(coeffs))


def test_potential_matches_explicit_polynomial():
    pot = LatticePotential({4: 0.3, 1: -0.2, 3: 0.1, 6: 0.01, 2: 0.0})
    assert pot.coefficients == {1: -0.2, 3: 0.1, 4: 0.3, 6: 0.01}
    phi = np.random.default_rng(0).normal(size=(5, 3, 3))
    v = -0.2 * phi + 0.1 * phi ** 3 + 0.3 * phi ** 4 + 0.01 * phi ** 6
    dv = -0.2 + 0.3 * phi ** 2 + 1.2 * phi ** 3 + 0.06 * phi ** 5
    assert np.allclose(pot.density(phi), v)
    assert np.allclose(pot.derivative(phi), dv)
    assert np.allclose(pot.action(phi, 2), v.sum(axis=(1, 2)))
    # wrong: the action is not the sum of a different polynomial
    assert not np.allclose(pot.action(phi, 2), (v + 0.01 * phi ** 2).sum(axis=(1, 2)))
    assert LatticePotential.from_dict(pot.to_dict()) == pot
    p4 = LatticePotential.phi4(2.4, dm2=0.2)
    assert p4.coefficients == pytest.approx({2: 0.1, 4: 0.1})


@pytest.mark.parametrize("bad", [{5: 1.0}, {4: -1.0}, {0: 1.0}, {2.5: 1.0}, {}, {4: float("nan")}, "x"])
def test_potential_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        LatticePotential(bad)


def test_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="spec"):
        DeformedCosNet("net", Lattice((4,)), LatticePotential({4: 1.0}))
    with pytest.raises(ValueError, match="c_2"):
        DeformedCosNet(LatticeCosNet(width=2, m2=0.5), Lattice((4,)), LatticePotential({2: -0.3}))
    with pytest.raises(ValueError, match="components"):
        DeformedCosNet(LatticeCosNet(width=2, components=2), Lattice((4,)), {4: 1.0})


def test_fields_and_log_density_match_direct_evaluation():
    th = _theory()
    rng = np.random.default_rng(1)
    p = th.draw(3, rng)
    phi = th.fields(p)
    pos = np.asarray(th.lattice.positions()).reshape(th.volume, 2)
    P = np.asarray(th.lattice.momenta()).reshape(th.volume, 2)
    for r in range(3):
        direct = sum(p["a"][r, 0, i] * np.cos(pos @ P[p["k"][r, i]] + p["c"][r, i])
                     for i in range(th.width))
        assert np.allclose(direct, phi[r].ravel())
    a = p["a"][:, 0, :]
    lp = np.log(th.momentum_prob[p["k"]]).sum(1) - (a * a).sum(1) / (2 * th.sigma_a ** 2)
    assert np.allclose(th.log_density(p), lp - th.potential.action(phi, 2))
    assert math.isclose(th.sigma_a ** 2 * th.width, 2 * th.G0)


@pytest.mark.parametrize("amplitude", ["gaussian", "constant"])
def test_parameter_gradient_matches_finite_differences(amplitude):
    th = DeformedCosNet(LatticeCosNet(width=6, m2=0.5, amplitude=amplitude),
                        Lattice((4, 3), origin=0.5), LatticePotential({4: 0.1, 3: 0.05, 1: 0.2}))
    p = th.draw(2, np.random.default_rng(2))
    phi = th.fields(p)
    ga, gc = th.param_gradient(p, phi)
    h = 1e-6
    for r, i in [(0, 1), (1, 4)]:
        q = {k: v.copy() for k, v in p.items()}
        q["a"][r, 0, i] += h
        fd = (th.delta_S(th.fields(q))[r] - th.delta_S(phi)[r]) / h
        assert abs(fd - ga[r, i]) < 1e-4 * max(1, abs(fd))
        q = {k: v.copy() for k, v in p.items()}
        q["c"][r, i] += h
        fd = (th.delta_S(th.fields(q))[r] - th.delta_S(phi)[r]) / h
        assert abs(fd - gc[r, i]) < 1e-4 * max(1, abs(fd))
    # a wrong sign would fail
    assert not np.allclose(-ga, ga)


def test_names_the_sampled_theory_and_its_limit():
    target = Phi4Action((6, 6), "A", m2=-4.0, lam=6.975)
    th = DeformedCosNet.from_action(target, 36)
    assert th.name.startswith("deformed width-36 lattice cos-net")
    lim = th.limit()
    act = lim["action"]
    assert act.convention == "C"
    assert math.isclose(act.m2, -4.0) and math.isclose(act.g, 6 * 6.975)
    back = act.to("A")
    assert math.isclose(back.lam, 6.975) and math.isclose(back.m2, -4.0)
    # negative bare mass: the base is the Hartree mass, the deformation carries the difference
    mh = hartree_mass(-4.0, 6 * 6.975, target.shape)
    assert math.isclose(th.spec.m2, mh) and mh > 0
    assert mh - (-4.0) - 0.5 * 6 * 6.975 * float(np.mean(1 / (Lattice((6, 6)).phat2() + mh))) \
        == pytest.approx(0, abs=1e-10)
    assert math.isclose(th.potential.c(2), 0.5 * (-4.0 - mh))
    assert "N -> infinity" in lim["description"] and "lambda_A=6.975" in lim["description"]
    # non-phi^4 deformations have no Phi4Action limit but are named
    th6 = _theory()
    assert th6.limit()["action"] is None and "phi^6" in th6.limit()["description"]
    assert th6.to_dict()["name"] == th6.name


def test_width_extrapolation_recovers_intercept_and_is_calibrated():
    rng = np.random.default_rng(3)
    Ns = np.array([4, 8, 16, 32, 64])
    err = np.full(Ns.size, 0.01)
    zs, ps = [], []
    for _ in range(300):
        y = 1.0 + 0.8 / Ns + err * rng.standard_normal(Ns.size)
        fit = width_extrapolation(Ns, y, err)
        zs.append((fit["value"] - 1.0) / fit["error"])
        ps.append(fit["p_value"])
    zs = np.array(zs)
    assert abs(zs.mean()) < 0.25 and 0.85 < zs.std() < 1.15
    assert 0.4 < np.mean(np.array(ps) > 0.5) < 0.6
    # a 1/N^2-dominated truth is rejected by the first-order fit, and its intercept is off
    y = 1.0 + 20.0 / Ns ** 2
    fit = width_extrapolation(Ns, y, err)
    assert fit["p_value"] < 1e-6 and fit["fit_verdict"] == "inconsistent"
    assert width_extrapolation(Ns, 1.0 + 0.8 / Ns, err)["fit_verdict"] == "consistent"
    assert width_extrapolation(Ns[:2], [1.1, 1.05], err[:2])["fit_verdict"] == "inconclusive"
    fit2 = width_extrapolation(Ns, y, err, order=2)
    assert abs(fit2["value"] - 1.0) < 1e-8
    with pytest.raises(ValueError, match="order"):
        width_extrapolation(Ns, y, err, order=3)
    with pytest.raises(ValueError, match="distinct"):
        width_extrapolation([4, 4], [1, 1], [0.1, 0.1])


def test_reweighting_nongaussianity_flags_narrow_base_and_not_gaussian_base():
    from nnft.lattice import chunk_rng, free_field_chunk

    lat, m2 = Lattice((4, 4)), 0.5
    pot = LatticePotential({4: 0.5 / 24})
    phi2 = lambda phi: (phi ** 2).mean(axis=(1, 2))  # noqa: E731
    N, M = 4, 40000
    th = DeformedCosNet(LatticeCosNet(width=N, m2=m2), lat, pot)
    base = th.fields(th.draw(M, np.random.default_rng(4)))
    res = reweighting_nongaussianity(base, pot, phi2, m2=m2, seed=5)
    # closed form of the connected 4-point at coincident points: (3 G0^2 / N)(k/2 - 1), k = 3
    u4_exact = 3 * th.G0 ** 2 / N * 0.5
    assert abs(res["u4"] - u4_exact) < 5 * res["u4_error"]
    assert res["ess_fraction"] > 0.5 and res["warning"] is not None and abs(res["z"]) > 5
    # companion: an exact Gaussian base has u4 consistent with 0 and no warning
    gauss = np.asarray(free_field_chunk(lat, m2, M, chunk_rng(6, 0, np), np))
    res_g = reweighting_nongaussianity(gauss, pot, phi2, m2=m2, seed=7)
    assert abs(res_g["u4"]) < 5 * res_g["u4_error"]
    assert abs(res_g["z"]) < 5 and res_g["warning"] is None
