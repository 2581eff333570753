"""Derivative terms in the deformation Delta S of the deformed cos-net.

Delta S = sum_x [(c_kin/2) sum_mu (phi(x+mu) - phi(x))^2 + V(phi_x)]. Checked here: the energy and
its field gradient (explicit loops, finite differences), the parameter gradients that the
parameter-space HMC uses (finite differences), the normalisability checks, the naming of the
limit, and the propagator against closed forms:

- N -> infinity (exact Gaussian base, by reweighting) and field-space HMC on the named limit
  action: G(p) = 1/((1 + c_kin) phat^2 + m^2);
- finite width N = 2 on a 4-site ring: the parameter-space HMC chain against the exact
  parameter-space integral (sum over momenta, quadrature over phases, Gaussian amplitudes
  integrated in closed form).

Each comparison has a companion in which a wrong c_kin is rejected.
"""
import itertools
import math

import numpy as np
import pytest

from nnft.ensembles import LatticeCosNet
from nnft.ensembles.deformed import (DeformedCosNet, LatticePotential, gradient_energy,
                                     minus_laplacian)
from nnft.ensembles.param_chains import ParamHMC, run_param_chain
from nnft.lattice import Lattice, Phi4Action


def _explicit_gradient_energy(phi):
    """sum_x sum_mu (phi(x+mu) - phi(x))^2 by loops over sites (one configuration)."""
    shape = phi.shape
    tot = 0.0
    for x in itertools.product(*map(range, shape)):
        for mu in range(len(shape)):
            y = list(x)
            y[mu] = (y[mu] + 1) % shape[mu]
            tot += (phi[tuple(y)] - phi[x]) ** 2
    return tot


@pytest.mark.parametrize("shape", [(2,), (4, 3), (3, 2, 2)])
def test_gradient_energy_and_force_match_loops_and_finite_differences(shape):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(3,) + shape)
    d = len(shape)
    ge = gradient_energy(phi, d)
    assert np.allclose(ge, [_explicit_gradient_energy(p) for p in phi])
    th = DeformedCosNet(LatticeCosNet(width=4, m2=0.7), Lattice(shape),
                        LatticePotential({4: 0.1, 1: 0.2}), kinetic=0.8)
    assert np.allclose(th.delta_S(phi), th.potential.action(phi, d) + 0.4 * ge)
    f = th.site_force(phi)
    assert np.allclose(0.8 * minus_laplacian(phi, d), f - th.potential.derivative(phi))
    h = 1e-6
    for site in [(0,) * d, tuple(n - 1 for n in shape)]:
        q = phi.copy()
        q[(1,) + site] += h
        fd = (th.delta_S(q)[1] - th.delta_S(phi)[1]) / h
        assert abs(fd - f[(1,) + site]) < 1e-4 * max(1.0, abs(fd))
        # companion: the force without the derivative term is wrong
        assert abs(fd - th.potential.derivative(phi)[(1,) + site]) > 1e-3


@pytest.mark.parametrize("amplitude", ["gaussian", "constant"])
def test_parameter_gradients_with_derivative_term_match_finite_differences(amplitude):
    """Both routes to dDelta S/dtheta (DeformedCosNet.param_gradient and the FFT kernel of the
    parameter-space HMC) include the derivative term (chain rule through site_force)."""
    th = DeformedCosNet(LatticeCosNet(width=6, m2=0.5, amplitude=amplitude),
                        Lattice((4, 3), origin=0.5), LatticePotential({4: 0.1, 3: 0.05}),
                        kinetic=1.3)
    p = th.draw(2, np.random.default_rng(2))
    phi = th.fields(p)
    ga, gc = th.param_gradient(p, phi)
    phi2, gal, gc2 = ParamHMC(th)._grad(p["k"], p["c"], p["a"])
    assert np.allclose(phi2, phi) and np.allclose(gc2, gc) and np.allclose(gal, ga * th.sigma_a)
    nokin = DeformedCosNet(th.spec, th.lattice, th.potential)
    ga0, _ = nokin.param_gradient(p, phi)
    h = 1e-6
    # neurons at non-zero momentum (a zero-momentum neuron does not feel the derivative term)
    for r in (0, 1):
        i = int(np.flatnonzero(p["k"][r])[0])
        q = {k: v.copy() for k, v in p.items()}
        q["a"][r, 0, i] += h
        fd = (th.delta_S(th.fields(q))[r] - th.delta_S(phi)[r]) / h
        assert abs(fd - ga[r, i]) < 1e-4 * max(1, abs(fd))
        assert abs(fd - ga0[r, i]) > 1e-3  # companion: without the derivative term
        q = {k: v.copy() for k, v in p.items()}
        q["c"][r, i] += h
        fd = (th.delta_S(th.fields(q))[r] - th.delta_S(phi)[r]) / h
        assert abs(fd - gc[r, i]) < 1e-4 * max(1, abs(fd))


def test_derivative_term_validation_and_normalisability():
    net, lat = LatticeCosNet(width=2, m2=0.5), Lattice((4,))
    for bad in (float("nan"), "x", True, None):
        with pytest.raises(ValueError, match="kinetic"):
            DeformedCosNet(net, lat, {4: 0.1}, kinetic=bad)
    # limit: (1 + c) phat^2 + m^2 must be positive at every momentum (phat^2 <= 4 in 1-D)
    with pytest.raises(ValueError, match="kinetic: .*quadratic form"):
        DeformedCosNet(LatticeCosNet(width=2, m2=0.5, amplitude="constant"), lat, None,
                       kinetic=-1.2)
    DeformedCosNet(LatticeCosNet(width=2, m2=0.5, amplitude="constant"), lat, None, kinetic=-1.1)
    # finite N, Gaussian amplitudes: min_p (c/2) phat^2 > -1/(4 V G0) = -1/(4 sum_p Gt(p))
    bound = -1.0 / (4.0 * float(np.sum(1.0 / (lat.phat2() + 0.5))))
    c_edge = bound / 2.0  # (c/2) * phat^2_max = bound, phat^2_max = 4
    DeformedCosNet(net, lat, None, kinetic=0.98 * c_edge)
    with pytest.raises(ValueError, match="-1/\\(4 V G0\\)"):
        DeformedCosNet(net, lat, None, kinetic=1.02 * c_edge)
    # the bound is sharp: all neurons on the pi mode with zero phases make the amplitude
    # integral diverge just beyond it (det(1 + 2 sigma^2 M) <= 0), not just inside it
    for c, sign in ((0.98 * c_edge, 1), (1.02 * c_edge, -1)):
        u = np.cos(np.pi * np.arange(4.0))
        M = 0.5 * c * gradient_energy(u[None], 1)[0] * np.ones((2, 2))  # Delta S = a^T M a
        sig2 = 2 * float(np.mean(1.0 / (lat.phat2() + 0.5))) / 2
        assert sign * np.linalg.det(np.eye(2) + 2 * sig2 * M) > 0
    # the same bound holds without a derivative term (c_2 alone: minimum at p = 0), stricter
    # than the limit's c_2 > -m^2/2 = -0.25
    assert -0.25 < bound
    DeformedCosNet(net, lat, {2: 0.98 * bound})
    with pytest.raises(ValueError, match="c_2 must exceed -1/\\(4 V G0\\)"):
        DeformedCosNet(net, lat, {2: 1.02 * bound})
    DeformedCosNet(LatticeCosNet(width=2, m2=0.5, amplitude="constant"), lat, {2: 1.02 * bound})
    with pytest.raises(ValueError, match="kinetic must exceed -1"):
        DeformedCosNet.from_action(Phi4Action((4,), "C", m2=0.5, g=1.0), 4, kinetic=-1.0)


def test_names_the_limit_with_its_derivative_term():
    target = Phi4Action((6, 6), "A", m2=-4.0, lam=6.975)
    th = DeformedCosNet.from_action(target, 36, kinetic=0.5)
    assert "sum_x (0.5/2) sum_mu (phi(x+mu) - phi(x))^2 + sum_x [" in th.name
    lim = th.limit()
    assert lim["action"] is None and lim["kinetic_factor"] == 1.5
    assert math.isclose(lim["field_scale"], math.sqrt(1.5))
    resc = lim["rescaled_action"]
    tC = target.to("C")
    assert math.isclose(resc.m2, tC.m2 / 1.5) and math.isclose(resc.g, tC.g / 1.5 ** 2)
    assert math.isclose(lim["m2"], tC.m2)
    d = lim["description"]
    assert "(1.5/2) sum_mu (d_mu phi)^2" in d and "phi(x+mu) - phi(x)" in d
    assert "phi' = sqrt(1.5) phi" in d and f"m'^2={resc.m2:.6g}" in d
    assert th.to_dict()["kinetic"] == 0.5 and th.to_dict()["limit"] == d
    # default base: the rescaled field's Hartree mass; Delta S carries the rest
    from nnft.ensembles.deformed import hartree_mass

    assert math.isclose(th.spec.m2, hartree_mass(resc.m2, resc.g, target.shape))
    assert math.isclose(th.spec.m2 + 2 * th.potential.c(2), tC.m2)
    # without a derivative term nothing changes
    th0 = DeformedCosNet.from_action(target, 36)
    assert th0.limit()["action"] is not None and th0.limit()["rescaled_action"] is None
    assert th0.limit()["field_scale"] == 1.0 and "phi(x+mu)" not in th0.name


# -- closed forms ---------------------------------------------------------------------------

def _power_spectrum(phi):
    """|phi_p|^2 / V per configuration (n, V), phi (n, *shape)."""
    axes = tuple(range(1, phi.ndim))
    V = int(np.prod(phi.shape[1:]))
    return (np.abs(np.fft.fftn(phi, axes=axes)) ** 2).reshape(len(phi), V) / V


def test_gaussian_limit_propagator_by_reweighting():
    """N -> infinity: the exact Gaussian base (m^2 = 0.6) reweighted with the pure derivative
    deformation has G(p) = 1/((1 + c) phat^2 + m^2) on a 6-site ring; a wrong c is rejected."""
    from nnft.lattice import chunk_rng, free_field_chunk

    lat, m2, c = Lattice((6,)), 0.6, 0.25
    th = DeformedCosNet(LatticeCosNet(width=8, m2=m2), lat, None, kinetic=c)
    phi = np.asarray(free_field_chunk(lat, m2, 60000, chunk_rng(11, 0, np), np))
    lw = -th.delta_S(phi)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    assert 1.0 / (w * w).sum() > 0.5 * len(phi)
    P = _power_spectrum(phi)
    G = (w[:, None] * P).sum(0)
    err = np.sqrt((w[:, None] ** 2 * (P - G) ** 2).sum(0))
    ph2 = lat.phat2().ravel()
    z = (G - 1.0 / ((1 + c) * ph2 + m2)) / err
    assert np.max(np.abs(z)) < 5, z
    z_wrong = (G - 1.0 / ((1 + 2 * c) * ph2 + m2)) / err
    assert np.max(np.abs(z_wrong)) > 5, z_wrong


def test_named_limit_action_by_field_hmc():
    """The limit named by DeformedCosNet (rescaled action and field scale) sampled by field-space
    HMC reproduces G(p) = 1/((1 + c) phat^2 + m^2); a wrong c is rejected."""
    from nnft.lattice.mcmc import make_sampler, run_chain

    lat, m2, c = Lattice((8,)), 0.5, 0.6
    th = DeformedCosNet(LatticeCosNet(width=8, m2=m2), lat, None, kinetic=c)
    lim = th.limit()
    act, s = lim["rescaled_action"], lim["field_scale"]
    assert act is not None and math.isclose(act.m2, m2 / (1 + c)) and act.g == 0
    R, T = 32, 300
    spec = []
    run_chain(make_sampler("hmc", act, traj_length=1.0), R, T, seed=3, n_therm=50,
              callback=lambda k, phi, lw: spec.append(_power_spectrum(np.asarray(phi) / s)))
    P = np.concatenate(spec).reshape(-1, R, lat.volume)  # time-major
    chain_means = P.mean(axis=0)
    G, err = chain_means.mean(0), chain_means.std(0, ddof=1) / math.sqrt(R)
    ph2 = lat.phat2().ravel()
    z = (G - 1.0 / ((1 + c) * ph2 + m2)) / err
    assert np.max(np.abs(z)) < 5, z
    z_wrong = (G - 1.0 / ((1 + 0.5 * c) * ph2 + m2)) / err
    assert np.max(np.abs(z_wrong)) > 5, z_wrong


def _exact_width2_propagator(th, n_phase=48):
    """G(p) of the deformed width-2 cos-net with a quadratic Delta S, exactly.

    For fixed momenta k and phases c, Delta S = a^T M a is quadratic in the amplitudes, so the
    amplitude integral is Gaussian: weight P(k) det(1 + 2 sigma^2 M)^(-1/2) and
    E[a a^T | k, c] = (1/sigma^2 + 2 M)^(-1). Momenta are summed, phases integrated on a uniform
    grid (exponentially accurate for this periodic analytic integrand).
    """
    V, N = th.volume, th.width
    assert N == 2 and th.potential.degree <= 2
    pos = np.asarray(th.lattice.positions(), float).reshape(V, th.dim)
    Pm = np.asarray(th.lattice.momenta(), float).reshape(V, th.dim)
    grid = 2 * np.pi * np.arange(n_phase) / n_phase
    kk = np.array(list(itertools.product(range(V), repeat=2)))          # (K, 2)
    cc = np.array(list(itertools.product(grid, repeat=2)))              # (C, 2)
    arg = (pos @ Pm.T).T                                                # (V_p, V_x)
    u = np.cos(arg[kk][:, None, :, :] + cc[None, :, :, None])           # (K, C, 2, V)
    shape = th.shape
    ur = u.reshape(-1, 2, *shape)
    quad = th.potential.c(2) * np.einsum("nix,njx->nij", ur.reshape(-1, 2, V), ur.reshape(-1, 2, V))
    for ax in range(2, 2 + th.dim):
        du = (np.roll(ur, -1, axis=ax) - ur).reshape(-1, 2, V)
        quad = quad + 0.5 * th.kinetic * np.einsum("nix,njx->nij", du, du)
    M = quad
    s2 = th.sigma_a ** 2
    A = np.eye(2) / s2 + 2 * M
    w = np.prod(th.momentum_prob[kk], axis=1)[:, None].repeat(len(cc), 1).ravel()
    w = w * np.linalg.det(np.eye(2) + 2 * s2 * M) ** -0.5
    cov = np.linalg.inv(A)                                               # E[a a^T | k, c]
    uf = np.fft.fftn(ur, axes=tuple(range(2, 2 + th.dim))).reshape(-1, 2, V)
    Gp = np.einsum("nip,nij,njp->np", uf, cov, uf.conj()).real / V       # E|phi_p|^2/V | k, c
    return (w[:, None] * Gp).sum(0) / w.sum()


def test_width2_chain_matches_exact_parameter_integral():
    """Finite width: ParamHMC on the deformed width-2 cos-net (pure derivative deformation,
    c = 0.8, 4-site ring) reproduces the exact parameter-space integral of G(p); the exact
    integral at a wrong c (0.4), and the N -> infinity closed form, are rejected."""
    lat, m2, c = Lattice((4,)), 0.5, 0.8
    th = DeformedCosNet(LatticeCosNet(width=2, m2=m2), lat, None, kinetic=c)
    exact = _exact_width2_propagator(th)
    assert np.allclose(exact, _exact_width2_propagator(th, n_phase=64), rtol=1e-6)
    R, T = 32, 400
    spec = []
    res = run_param_chain(ParamHMC(th), R, T, seed=1, n_therm=50,
                          callback=lambda k, phi, lw: spec.append(_power_spectrum(phi)))
    assert 0.6 < res.acceptance < 1.0
    P = np.concatenate(spec).reshape(-1, R, lat.volume)
    chain_means = P.mean(axis=0)
    G, err = chain_means.mean(0), chain_means.std(0, ddof=1) / math.sqrt(R)
    z = (G - exact) / err
    assert np.max(np.abs(z)) < 5, (G, exact, z)
    wrong = _exact_width2_propagator(DeformedCosNet(th.spec, lat, None, kinetic=0.5 * c))
    assert np.max(np.abs((G - wrong) / err)) > 5
    ph2 = lat.phat2().ravel()
    z_inf = (G - 1.0 / ((1 + c) * ph2 + m2)) / err
    assert np.max(np.abs(z_inf)) > 5, z_inf  # width 2 is not the N -> infinity theory


def _exact_width1_moments(th, n_phase=64, n_amp=801):
    """<phi_x^2> and <phi_0 phi_1> (site average) of the deformed width-1 cos-net, exactly.

    phi = a u(x), u = cos(p.x + c): Delta S = a^2 Q2 + a^4 Q4 + (odd powers) with Q's from u, so
    the momentum is summed, the phase integrated on a uniform grid and the amplitude on a fine
    grid over +- 12 sigma_a (the Gaussian prior times exp(-Delta S) decays faster)."""
    V = th.volume
    pos = np.asarray(th.lattice.positions(), float).reshape(V, th.dim)
    Pm = np.asarray(th.lattice.momenta(), float).reshape(V, th.dim)
    c = 2 * np.pi * np.arange(n_phase) / n_phase
    u = np.cos((Pm @ pos.T)[:, None, :] + c[None, :, None]).reshape(-1, *th.shape)   # (K*C, *shape)
    a = np.linspace(-12, 12, n_amp) * th.sigma_a
    phi = a[None, :, None] * u.reshape(len(u), 1, V)                                  # (KC, A, V)
    dS = th.delta_S(phi.reshape(-1, *th.shape)).reshape(len(u), n_amp)
    lw = np.log(th.momentum_prob).repeat(n_phase)[:, None] - a[None] ** 2 / (2 * th.sigma_a ** 2) - dS
    w = np.exp(lw - lw.max())
    phi2 = (phi ** 2).mean(-1)
    link = (phi.reshape(len(u), n_amp, *th.shape) * np.roll(phi.reshape(len(u), n_amp, *th.shape), -1, axis=2)
            ).reshape(len(u), n_amp, V).mean(-1)
    return np.array([(w * phi2).sum(), (w * link).sum()]) / w.sum()


def test_width1_chain_with_quartic_and_derivative_terms_matches_exact_integral():
    """Interacting, finite width: ParamHMC on the deformed width-1 cos-net with
    Delta S = sum_x [(1.5/2) (d phi)^2 - 0.1 phi^2 + 0.3 phi^4] on a 2-site ring reproduces the
    exact parameter integral of <phi^2> and <phi_0 phi_1>; the integral without the derivative
    term is rejected."""
    lat = Lattice((2,))
    th = DeformedCosNet(LatticeCosNet(width=1, m2=0.5), lat, {2: -0.1, 4: 0.3}, kinetic=1.5)
    exact = _exact_width1_moments(th)
    assert np.allclose(exact, _exact_width1_moments(th, n_phase=48, n_amp=601), rtol=1e-4)
    R, T = 32, 400
    ser = []

    def collect(k, phi, lw):
        ser.append(np.stack([(phi ** 2).mean(1), (phi * np.roll(phi, -1, axis=1)).mean(1)], 1))

    res = run_param_chain(ParamHMC(th), R, T, seed=4, n_therm=50, callback=collect)
    assert 0.6 < res.acceptance < 1.0
    chain_means = np.concatenate(ser).reshape(-1, R, 2).mean(0)
    m, err = chain_means.mean(0), chain_means.std(0, ddof=1) / math.sqrt(R)
    z = (m - exact) / err
    assert np.max(np.abs(z)) < 5, (m, exact, z)
    no_kin = _exact_width1_moments(DeformedCosNet(th.spec, lat, th.potential))
    assert np.max(np.abs((m - no_kin) / err)) > 5
