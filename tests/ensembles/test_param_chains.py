"""Parameter-space chains of the deformed cos-net against exact quadrature, reweighting and HMC."""
import functools
import itertools
import math

import numpy as np
import pytest

from nnft.ensembles import LatticeCosNet
from nnft.ensembles.deformed import DeformedCosNet, LatticePotential, width_extrapolation
from nnft.ensembles.param_chains import (IndependenceSampler, ParamHMC, load_param_chunk,
                                         run_param_chain)
from nnft.lattice import FieldStore, Lattice, Phi4Action
from nnft.observables.gamma import chain_observables, gamma_error, primary_series

COEFFS = {4: 0.5, 2: -0.1, 3: 0.1}  # phi^4 with a mass shift and an odd term


def exact_moments(th, n_a=81, n_c=32):
    """<phi^2>, <phi^4> (site averages) of the deformed theory by quadrature over all parameters.

    Sum over momenta, periodic trapezoid over phases (spectrally accurate), trapezoid over the
    whitened amplitudes on [-8, 8] with the N(0, 1) weight.
    """
    N, V = th.width, th.volume
    x = np.linspace(-8, 8, n_a)
    w = np.exp(-x ** 2 / 2)
    w /= w.sum()
    if th.spec.amplitude == "constant":  # a_i = sigma_a exactly
        x, w = np.ones(1), np.ones(1)
    cs = -np.pi + 2 * np.pi * np.arange(n_c) / n_c
    pos = np.asarray(th.lattice.positions()).reshape(V, th.dim)
    P = np.asarray(th.lattice.momenta()).reshape(V, th.dim)
    G = np.meshgrid(*([x] * N), cs, indexing="ij")
    W = np.prod(np.meshgrid(*([w] * N), np.ones(n_c), indexing="ij"), axis=0).ravel()
    al, clast = [g.ravel() for g in G[:N]], G[N].ravel()
    num2 = num4 = den = 0.0
    for ks in itertools.product(range(V), repeat=N):
        pk = np.prod(th.momentum_prob[list(ks)])
        for cfix in itertools.product(cs, repeat=N - 1):
            phi = 0.0
            for i in range(N):
                ci = clast[:, None] if i == N - 1 else cfix[i]
                phi = phi + th.sigma_a * al[i][:, None] * np.cos((pos @ P[ks[i]])[None, :] + ci)
            e = W * np.exp(-th.potential.density(phi).sum(1))
            den += pk * e.sum()
            num2 += pk * (e * (phi ** 2).mean(1)).sum()
            num4 += pk * (e * (phi ** 4).mean(1)).sum()
    return num2 / den, num4 / den


@functools.lru_cache(maxsize=None)
def _exact(shape, N, c4, amplitude="gaussian"):
    """Quadrature moments of the test theory (cached: shared by both samplers' tests)."""
    th = DeformedCosNet(LatticeCosNet(width=N, m2=0.5, amplitude=amplitude), Lattice(shape),
                        LatticePotential({**COEFFS, 4: c4}))
    return exact_moments(th)


def _chain_moments(sampler, R, T, seed):
    out = []
    res = run_param_chain(sampler, R, T, callback=lambda k, phi, lw: out.append(
        phi.reshape(phi.shape[0], -1)), seed=seed, n_therm=20)
    phi = np.concatenate(out)
    return (gamma_error((phi ** 2).mean(1), R), gamma_error((phi ** 4).mean(1), R), res)


@pytest.mark.parametrize("shape,N", [((1,), 1), ((1,), 2), ((2,), 1)])
@pytest.mark.parametrize("kind", ["independence", "hmc"])
def test_chains_reproduce_quadrature(shape, N, kind):
    th = DeformedCosNet(LatticeCosNet(width=N, m2=0.5), Lattice(shape), LatticePotential(COEFFS))
    e2, e4 = _exact(shape, N, COEFFS[4])
    sampler = IndependenceSampler(th) if kind == "independence" else ParamHMC(th)
    g2, g4, res = _chain_moments(sampler, 32, 400, seed=11 + N)
    assert abs(g2.z(e2)) < 5 and abs(g4.z(e4)) < 5, (g2, e2, g4, e4)
    assert 0.3 < res.acceptance < 0.95
    # companion: the same chains are inconsistent with the theory at twice the quartic coupling
    w2, _ = _exact(shape, N, 2 * COEFFS[4])
    assert abs(g2.z(w2)) > 5


@pytest.mark.parametrize("kind", ["independence", "hmc"])
def test_constant_amplitudes_reproduce_quadrature(kind):
    th = DeformedCosNet(LatticeCosNet(width=2, m2=0.5, amplitude="constant"), Lattice((2,)),
                        LatticePotential(COEFFS))
    e2, e4 = _exact((2,), 2, COEFFS[4], "constant")
    sampler = IndependenceSampler(th) if kind == "independence" else ParamHMC(th)
    g2, g4, _ = _chain_moments(sampler, 32, 400, seed=21)
    assert abs(g2.z(e2)) < 5 and abs(g4.z(e4)) < 5, (g2, e2, g4, e4)
    assert abs(g2.z(_exact((2,), 2, 2 * COEFFS[4], "constant")[0])) > 5


def test_hmc_energy_identity_and_store_format(tmp_path):
    th = DeformedCosNet.from_action(Phi4Action((4, 4), "C", m2=0.5, g=3.0), 16)
    s = ParamHMC(th, eps=0.3)
    res = run_param_chain(s, 8, 60, tmp_path / "chain", chunk_times=20, tune=False, seed=3,
                          n_therm=10, save_params=True)
    m, e = res.exp_mdH_mean()
    assert abs(m - 1) < 5 * e and e < 0.02
    fs = FieldStore.open(tmp_path / "chain")
    assert fs.source == "mcmc" and fs.n_replicas == 8 and fs.n_samples == 480 and fs.is_complete
    assert fs.spec["name"] == th.name and "N -> infinity" in fs.extra["limit"]
    ds = chain_observables(fs)
    assert set(["chi", "E", "abs_M"]) <= set(ds.observable.values)
    # stored parameters reproduce the stored fields (time-major, chunk 1)
    p = load_param_chunk(fs, 1)
    phi, _ = fs.read_chunk(1)
    assert np.allclose(th.fields(p), phi)
    with pytest.raises(ValueError, match="no saved parameters"):
        load_param_chunk(fs, 7)


def test_bad_arguments():
    th = DeformedCosNet.from_action(Phi4Action((4,), "C", m2=0.5, g=1.0), 2)
    with pytest.raises(ValueError, match="sampler"):
        run_param_chain("hmc", 2, 2, callback=lambda *a: None)
    with pytest.raises(ValueError, match="store"):
        run_param_chain(ParamHMC(th), 2, 2)
    with pytest.raises(ValueError, match="eps"):
        ParamHMC(th, eps=-1)
    with pytest.raises(ValueError, match="n_chains"):
        run_param_chain(IndependenceSampler(th), 0, 2, callback=lambda *a: None)
    with pytest.raises(ValueError, match="theory"):
        IndependenceSampler("theory")


def test_chain_agrees_with_reweighting_where_reliable():
    from nnft.observables.reweighting import kish_ess, reweighted_mean

    th = DeformedCosNet(LatticeCosNet(width=8, m2=0.5), Lattice((4, 4)), LatticePotential.phi4(0.3))
    base = th.fields(th.draw(40000, np.random.default_rng(5)))
    lw = -th.delta_S(base)
    assert kish_ess(lw) / lw.size > 0.9
    obs = (base ** 2).mean(axis=(1, 2))
    rw, rw_err = reweighted_mean(obs, lw)
    out = []
    run_param_chain(ParamHMC(th), 16, 500, callback=lambda k, phi, w: out.append(
        (phi ** 2).mean(axis=(1, 2))), seed=6, n_therm=20)
    g = gamma_error(np.concatenate(out), 16)
    z = (g.value - rw) / math.hypot(g.error, rw_err)
    assert abs(z) < 5
    # companion: the unreweighted free ensemble is inconsistent with the chain
    z_free = (g.value - obs.mean()) / math.hypot(g.error, obs.std() / math.sqrt(obs.size))
    assert abs(z_free) > 5


def test_width_extrapolation_agrees_with_field_space_hmc():
    from nnft.lattice import HMC, run_chain

    act = Phi4Action((4, 4), "C", m2=0.5, g=3.0)
    hmc = []
    run_chain(HMC(act), 16, 300, callback=lambda k, phi, w: hmc.append(primary_series(phi, 2)),
              seed=1, n_therm=50)
    ref = gamma_error(np.concatenate(hmc)[:, 3], 16)  # <phi^2>
    widths, vals, errs = [8, 16, 64], [], []
    for N in widths:
        th = DeformedCosNet.from_action(act, N)
        out = []
        run_param_chain(ParamHMC(th), 16, 200, callback=lambda k, phi, w: out.append(
            primary_series(phi, 2)), seed=N, n_therm=20)
        g = gamma_error(np.concatenate(out)[:, 3], 16)
        vals.append(g.value)
        errs.append(g.error)
    fit = width_extrapolation(widths, vals, errs)
    z = (fit["value"] - ref.value) / math.hypot(fit["error"], ref.error)
    assert abs(z) < 5, (fit, ref)
    # companion: the width-8 deformed network theory is not lattice phi^4
    z8 = (vals[0] - ref.value) / math.hypot(errs[0], ref.error)
    assert abs(z8) > 5


def test_hmc_fast_evaluation_matches_theory():
    th = DeformedCosNet(LatticeCosNet(width=20, m2=0.3), Lattice((4, 6), origin=0.3),
                        LatticePotential({4: 0.1, 3: 0.2, 1: 0.1}))
    p = th.draw(3, np.random.default_rng(0))
    phi, ga, gc = ParamHMC(th)._grad(p["k"], p["c"], p["a"])
    ref = th.fields(p)
    ga2, gc2 = th.param_gradient(p, ref)
    assert np.allclose(phi, ref) and np.allclose(ga, ga2 * th.sigma_a) and np.allclose(gc, gc2)
    assert not np.allclose(ga, -ga2 * th.sigma_a)
