"""HMC and checkerboard Metropolis against the exact free field (docs/conventions.md, 4)."""
import math

import numpy as np
import pytest

from nnft.lattice import FieldStore, Lattice, free_field_exact
from nnft.lattice.actions import Phi4Action, free_action
from nnft.lattice.mcmc import HMC, Metropolis, load_chain_diagnostics, run_chain
from nnft.observables.gamma import chain_observables, gamma_error, primary_series

TABLE = {  # docs/conventions.md, d = 2, m_E L = 4
    8: dict(chi=3.917698, G0=0.383296, E=0.157755, abs_M=0.197408),
    16: dict(chi=15.916926, G0=0.501146, E=0.259017, abs_M=0.198953),
}
OBS = ("G0", "chi", "E", "abs_M")


def m2_for(L):
    return (2 * math.sinh(2.0 / L)) ** 2


# (kind, L) -> (n_chains, n_times, every, sampler kwargs)
RUNS = {
    ("hmc", 8): (32, 1000, 1, dict(traj_length=3.0)),
    ("hmc", 16): (32, 1000, 1, dict(traj_length=4.0)),
    ("metropolis", 8): (32, 400, 5, dict(delta=1.0)),
    ("metropolis", 16): (32, 400, 10, dict(delta=1.0)),
}
_CACHE = {}


def chain(kind, L):
    """Run (once per session) a free-field chain and return (observables, result, exact)."""
    if (kind, L) not in _CACHE:
        lat = Lattice((L, L))
        m2 = m2_for(L)
        R, T, every, kw = RUNS[(kind, L)]
        act = free_action(lat, m2)
        sampler = HMC(act, **kw) if kind == "hmc" else Metropolis(act, **kw)
        series = []
        res = run_chain(sampler, R, T, callback=lambda k, phi, lw: series.append(primary_series(phi)),
                        every=every, n_therm=200, seed=1000 + L)
        ds = chain_observables(np.concatenate(series), n_replicas=R, volume=lat.volume)
        _CACHE[(kind, L)] = (ds, res, free_field_exact(lat, m2))
    return _CACHE[(kind, L)]


@pytest.mark.parametrize("kind", ["hmc", "metropolis"])
@pytest.mark.parametrize("L", [8, 16])
def test_free_field_exact_values(kind, L):
    ds, res, exact = chain(kind, L)
    for o in OBS:
        assert exact[o] == pytest.approx(TABLE[L][o], abs=2e-6)
        v = ds.sel(observable=o)
        z = float((v.value - exact[o]) / v.error)
        assert abs(z) < 4, f"{kind} L={L} {o}: {float(v.value):.5f} +- {float(v.error):.5f} " \
                           f"vs exact {exact[o]:.5f} (z = {z:.2f})"
        assert 0.4 < float(v.tau_int) < 50
    target = 0.8 if kind == "hmc" else 0.5
    assert abs(res.acceptance - target) < 0.08


@pytest.mark.parametrize("L", [8, 16])
def test_hmc_exp_minus_dH_is_one(L):
    _, res, _ = chain("hmc", L)
    g = gamma_error(res.exp_mdH.ravel(), n_replicas=res.n_chains)  # (T, R) -> time-major
    assert abs(g.value - 1.0) < 4 * g.error, (g.value, g.error)
    m, e = res.exp_mdH_mean()
    assert abs(m - 1.0) < 5 * e


@pytest.mark.parametrize("kind", ["hmc", "metropolis"])
def test_comparison_rejects_wrong_target(kind):
    """Companion: the same comparison fails against the exact values at a 20% larger m^2."""
    ds, _, _ = chain(kind, 8)
    wrong = free_field_exact(Lattice((8, 8)), 1.2 * m2_for(8))
    z = [float((ds.sel(observable=o).value - wrong[o]) / ds.sel(observable=o).error) for o in OBS]
    assert max(abs(x) for x in z) > 5, z


def _small(tmp_path, name, kind="hmc", **kw):
    act = Phi4Action((4, 4), "A", m2=-1.0, lam=0.5)  # interacting, convention A
    sampler = HMC(act, traj_length=1.0) if kind == "hmc" else Metropolis(act)
    return run_chain(sampler, 3, 25, tmp_path / name, chunk_times=10, n_therm=10,
                     n_tune_rounds=5, seed=42, **kw)


@pytest.mark.parametrize("kind", ["hmc", "metropolis"])
def test_store_layout_and_bitwise_resume(tmp_path, kind):
    full = _small(tmp_path, "full.zarr", kind)
    st = full.store
    assert st.source == "mcmc" and st.n_replicas == 3 and st.n_samples == 75 and st.chunk == 30
    assert st.is_complete and st.extra["sampler"]["sampler"] == kind
    assert st.extra["requested"]["every"] == 1
    phi_full = np.concatenate([p for _, p, _ in st.iter_chunks()])
    # time-major: the last n_chains samples are the final state of chains 0..R-1
    np.testing.assert_array_equal(phi_full[-3:], full.phi)

    class Stop(Exception):
        pass

    def stop_after_first(k, phi, lw):
        if k == 1:
            raise Stop

    with pytest.raises(Stop):
        _small(tmp_path, "part.zarr", kind, callback=stop_after_first)
    part = FieldStore.open(tmp_path / "part.zarr")
    assert part.complete_chunks() == [0, 1]
    resumed = _small(tmp_path, "part.zarr", kind)
    assert resumed.store.is_complete
    phi_res = np.concatenate([p for _, p, _ in resumed.store.iter_chunks()])
    np.testing.assert_array_equal(phi_res, phi_full)
    np.testing.assert_array_equal(resumed.phi, full.phi)
    d1, d2 = load_chain_diagnostics(st), load_chain_diagnostics(resumed.store)
    np.testing.assert_array_equal(d1["accept_prob"], d2["accept_prob"])
    assert d1["accept_prob"].shape == (25, 3)
    # streaming gives the same chain as storing
    got = []
    act = Phi4Action((4, 4), "A", m2=-1.0, lam=0.5)
    sampler = HMC(act, traj_length=1.0) if kind == "hmc" else Metropolis(act)
    run_chain(sampler, 3, 25, chunk_times=10, n_therm=10, n_tune_rounds=5, seed=42,
              callback=lambda k, phi, lw: got.append(phi))
    np.testing.assert_array_equal(np.concatenate(got), phi_full)
    # the Gamma analysis reads chain stores directly
    ds = chain_observables(st)
    assert set(ds.observable.values) >= set(OBS)


def test_resume_refuses_different_settings(tmp_path):
    _small(tmp_path, "a.zarr")
    act = Phi4Action((4, 4), "A", m2=-1.0, lam=0.5)
    with pytest.raises(ValueError, match="different chain settings"):
        run_chain(HMC(act, traj_length=1.0), 3, 25, tmp_path / "a.zarr", chunk_times=10,
                  n_therm=11, n_tune_rounds=5, seed=42)


def test_bad_input():
    with pytest.raises(ValueError, match="even"):
        Metropolis(free_action((5, 4), 0.5))
    act = free_action((4, 4), 0.5)
    with pytest.raises(ValueError, match="integrator"):
        HMC(act, integrator="rk4")
    with pytest.raises(ValueError, match="eps"):
        HMC(act, eps=-0.1)
    with pytest.raises(ValueError, match="n_steps_jitter"):
        HMC(act, n_steps_jitter=1.5)
    with pytest.raises(ValueError, match="n_chains"):
        run_chain(HMC(act), 0, 10, callback=lambda *a: None)
    with pytest.raises(ValueError, match="store"):
        run_chain(HMC(act), 2, 10)
    with pytest.raises(ValueError, match="init"):
        run_chain(HMC(act), 2, 10, init="warm", callback=lambda *a: None)


def test_integrators_are_reversible_and_accurate():
    """Leapfrog and Omelyan are time-reversible; dH falls as eps^2 (Omelyan: much smaller)."""
    rng = np.random.default_rng(0)
    act = Phi4Action((6, 6), "C", m2=-0.5, g=3.0)
    phi = 0.5 * rng.standard_normal((4, 6, 6))
    pi = rng.standard_normal(phi.shape)
    errs = {}
    for integ in ("leapfrog", "omelyan"):
        h = HMC(act, eps=0.05, integrator=integ)
        p1, q1 = h._integrate(phi, pi, 20)
        p0, q0 = h._integrate(p1, -q1, 20)
        np.testing.assert_allclose(p0, phi, atol=1e-10)
        np.testing.assert_allclose(-q0, pi, atol=1e-10)
        dH = []
        for eps in (0.1, 0.05):
            h.eps = eps
            a, b = h._integrate(phi, pi, int(round(1.0 / eps)))
            H0 = 0.5 * (pi**2).sum(axis=(1, 2)) + act.action(phi)
            H1 = 0.5 * (b**2).sum(axis=(1, 2)) + act.action(a)
            dH.append(np.abs(H1 - H0).mean())
        ratio = dH[0] / dH[1]
        assert 2.5 < ratio < 6.0, (integ, ratio)  # second order: ~4
        errs[integ] = dH[1]
    assert errs["omelyan"] < 0.3 * errs["leapfrog"]


@pytest.mark.gpu
def test_hmc_on_cupy():
    import cupy

    lat = Lattice((8, 8))
    m2 = m2_for(8)
    series = []
    res = run_chain(HMC(free_action(lat, m2), traj_length=3.0), 32, 400, backend="cupy",
                    callback=lambda k, phi, lw: series.append(primary_series(cupy.asnumpy(phi))),
                    seed=5, n_therm=100)
    ds = chain_observables(np.concatenate(series), n_replicas=32, volume=64)
    exact = free_field_exact(lat, m2)
    for o in OBS:
        v = ds.sel(observable=o)
        assert abs(float((v.value - exact[o]) / v.error)) < 5
    assert isinstance(res.phi, cupy.ndarray)


def test_mcmc_cli(tmp_path, capsys):
    from nnft.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[lattice]\nshape = [4, 4]\n[action]\nconvention = "C"\nm2 = 0.5\n'
                   '[sampler]\nkind = "metropolis"\n[chain]\nn_chains = 2\nn_times = 20\n'
                   'chunk_times = 10\nn_therm = 5\nn_tune_rounds = 3\nseed = 1\n')
    assert main(["mcmc", str(cfg), "--store", str(tmp_path / "s.zarr"), "--quiet"]) == 0
    st = FieldStore.open(tmp_path / "s.zarr")
    assert st.is_complete and st.n_replicas == 2 and st.source == "mcmc"
    out = capsys.readouterr().out
    assert "acceptance" in out and "thermalisation: " in out
    cfg.write_text(cfg.read_text().replace("[sampler]\n", "[sampler]\nbogus = 1\n"))
    assert main(["mcmc", str(cfg), "--store", str(tmp_path / "t.zarr")]) == 2
    assert "sampler.bogus" in capsys.readouterr().err
