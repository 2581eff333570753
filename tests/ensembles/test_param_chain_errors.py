"""Errors of parameter-space chains: replica scatter against the quoted Gamma-method errors.

The momenta of the neurons are a slow mode of ParamHMC: the conditional variance of a Fourier
mode is proportional to the number of neurons sitting on its momentum, so chi and |M| follow the
occupation numbers. With only single-neuron refreshes (4 per update) these relax in ~N/4 updates,
much longer than the automatic Gamma window, and the quoted errors were too small. The momentum
moves (momentum_fraction) renew them in a few updates. These tests run many independent groups of
chains (replicas) and compare the scatter of their values with their quoted errors.
"""
import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist

from nnft.ensembles import LatticeCosNet
from nnft.ensembles.deformed import DeformedCosNet, LatticePotential
from nnft.ensembles.param_chains import ParamHMC, run_param_chain
from nnft.lattice import Lattice
from nnft.observables.gamma import chain_observables, gamma_error, primary_series

OBS = ("chi", "abs_M", "E")


def replica_scatter(sampler, n_groups, n_chains, n_times, seed, n_therm=20):
    """Values and errors of OBS in ``n_groups`` independent groups of ``n_chains`` chains each.

    Returns ``{o: (values, errors, p)}`` with ``p`` the upper-tail p-value of
    ``F = var(values) / mean(errors^2)`` under ``(K - 1) F ~ chi^2_{K-1}`` (correct errors), and
    the occupation series of the zero momentum (time-major, all chains).
    """
    th = sampler.theory
    K, R = n_groups, n_chains
    parts, occ = [], []

    def cb(k, phi, lw):
        parts.append(primary_series(phi, th.dim))

    res = run_param_chain(sampler, K * R, n_times, callback=cb, seed=seed, n_therm=n_therm)
    ser = np.concatenate(parts)
    ser = ser.reshape(n_times, K, R, ser.shape[-1])
    out = {}
    vals = {o: [] for o in OBS}
    errs = {o: [] for o in OBS}
    for g in range(K):
        ds = chain_observables(ser[:, g].reshape(n_times * R, -1), n_replicas=R,
                               volume=th.volume, include_primary=False)
        for o in OBS:
            d = ds.sel(observable=o)
            vals[o].append(float(d.value))
            errs[o].append(float(d.error))
    for o in OBS:
        v, e = np.asarray(vals[o]), np.asarray(errs[o])
        F = v.var(ddof=1) / np.mean(e * e)
        out[o] = (v, e, float(chi2_dist.sf(F * (K - 1), K - 1)))
    return out, res


def _theory():
    # heavy base (m^2 = 8 on 6x6): the zero momentum holds ~6 of the 144 neurons, so the
    # occupation noise of chi is large and, with single-neuron refreshes only, slow (tau ~ N/4)
    return DeformedCosNet(LatticeCosNet(width=144, m2=8.0), Lattice((6, 6)),
                          LatticePotential.phi4(0.5))


def test_replica_scatter_matches_quoted_errors():
    out, res = replica_scatter(ParamHMC(_theory()), 48, 4, 100, seed=41)
    for o, (v, e, p) in out.items():
        assert p > 1e-3, (o, v.std(ddof=1), np.sqrt(np.mean(e * e)), p)
    assert 0.3 < res.acceptance < 0.99


def test_replica_scatter_exposes_slow_momenta_without_momentum_moves():
    # companion: the sampler as it was (4 neuron refreshes per update, no momentum moves) quotes
    # errors the replicas contradict
    # (scatter 1.6-2.0 times the quoted errors at seeds 41-44; p < 1e-8)
    out, _ = replica_scatter(ParamHMC(_theory(), neuron_updates=4, momentum_fraction=0.0),
                             48, 4, 100, seed=41)
    for o in OBS:
        assert out[o][2] < 1e-5, (o, out[o])


def test_momentum_occupation_mixes_fast():
    """tau_int of the zero-momentum occupation number: a few updates with the momentum moves,
    ~N/4 without them."""
    th = _theory()
    taus = []
    for kw in ({}, {"neuron_updates": 4, "momentum_fraction": 0.0}):
        s = ParamHMC(th, **kw)
        rng, hrng = np.random.default_rng(3), np.random.default_rng(4)
        from nnft.ensembles.param_chains import initial_state

        st = initial_state(th, 16, rng)
        s.step_size = 0.8
        n0 = []
        for _ in range(400):
            st, _, _ = s.update(st, rng, hrng)
            n0.append((st["k"] == 0).sum(axis=1))
        taus.append(gamma_error(np.asarray(n0, dtype=float).ravel(), 16).tau_int)
    assert taus[0] < 5, taus
    assert taus[1] > 10, taus


def test_momentum_moves_reproduce_quadrature():
    """Exactness of the momentum moves alone (no neuron refreshes): 2 sites, N = 2."""
    from test_param_chains import COEFFS, _chain_moments, exact_moments

    def theory(c4):
        return DeformedCosNet(LatticeCosNet(width=2, m2=0.5), Lattice((2,)),
                              LatticePotential({**COEFFS, 4: c4}))

    th = theory(COEFFS[4])
    e2, e4 = exact_moments(th, n_a=41)  # trapezoid in alpha with step 0.4: converged
    s = ParamHMC(th, neuron_updates=0, momentum_fraction=1.0, momentum_blocks=1)
    g2, g4, res = _chain_moments(s, 32, 400, seed=5)
    assert abs(g2.z(e2)) < 5 and abs(g4.z(e4)) < 5, (g2, e2, g4, e4)
    assert abs(g2.z(exact_moments(theory(2 * COEFFS[4]), n_a=41)[0])) > 5


def test_momentum_argument_checks():
    th = _theory()
    with pytest.raises(ValueError, match="momentum_fraction"):
        ParamHMC(th, momentum_fraction=1.5)
    with pytest.raises(ValueError, match="momentum_blocks"):
        ParamHMC(th, momentum_blocks=0)
