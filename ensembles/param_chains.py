"""Markov chains in parameter space for deformed network theories (exact samplers).

The target is the density of :class:`~nnft.ensembles.deformed.DeformedCosNet` on the parameters
theta = (momenta k_i, phases c_i, amplitudes a_i) of a width-N lattice cos-net,

    P_Delta(theta) proportional to P(theta) exp(-Delta S[phi_theta]).

Both samplers leave it exactly invariant, at any coupling; their acceptance and autocorrelation
are the diagnostics. Chains are written to the ordinary :class:`nnft.lattice.FieldStore` format
exactly as field-space chains are (``source="mcmc"``, ``n_replicas`` = number of chains, samples
time-major ``s = t * n_chains + r``), so every observable and the Gamma-method errors of
:mod:`nnft.observables` work on them unchanged. The store's ``spec`` is the theory
(:meth:`DeformedCosNet.to_dict`, which names the sampled theory and its N -> infinity limit).

Samplers
--------
:class:`IndependenceSampler`
    Proposes a whole new parameter set from the base density P(theta) (i.e. a fresh free network)
    and accepts it with ``min(1, exp(Delta S[phi_old] - Delta S[phi_new]))``. Exact; its acceptance
    rate measures the overlap of the free network ensemble with the deformed one (it is the
    Markov-chain counterpart of reweighting and collapses where reweighting does).
:class:`ParamHMC`
    Hybrid Monte Carlo in the continuous parameters with whitened amplitudes
    ``alpha_i = a_i / sigma_a`` (prior N(0, 1)) and phases c_i, Hamiltonian
    ``H = sum_i [pi_alpha^2/2 + alpha_i^2/2 + pi_c^2/(2 mu)] + Delta S[phi]``. The Gaussian prior
    part is integrated exactly (a rotation of (alpha, pi_alpha) by the step size) between kicks by
    ``-dDelta S/dtheta``, so the integrator is exact for Delta S = 0 and every amplitude, whatever
    its momentum p_i, oscillates with the same unit frequency: this is Fourier acceleration (see
    docs/parameter-space-mcmc.md). After each trajectory the discrete momenta move: momentum
    moves re-draw the momenta of the fraction ``momentum_fraction`` of neurons with the smallest
    amplitudes (in blocks), and ``neuron_updates`` Metropolis moves each refresh one randomly
    chosen neuron (k, c, a) from its prior, all accepted with ``min(1, exp(-dDelta S))``. The
    momentum moves keep the occupation numbers of the momenta (a slow mode of chi and |M| otherwise,
    with tau ~ N / neuron_updates updates) mixing in a few updates.

Streams: production chunk k uses ``chunk_rng(seed, k)`` (all draws), the warm-up the key
``WARMUP_KEY`` of :mod:`nnft.lattice.mcmc`. Chains written to a store resume from their last
complete chunk, bit for bit (:func:`run_param_chain`, Notes).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lattice.mcmc import _pos_float, _pos_int, n_steps_range
from .deformed import DeformedCosNet

__all__ = ["IndependenceSampler", "ParamHMC", "ParamChainResult", "run_param_chain",
           "load_param_chunk"]

PARAMS_DIR = "_nnft_params"


def _check_theory(theory):
    if not isinstance(theory, DeformedCosNet):
        raise ValueError(f"theory must be a DeformedCosNet, got {type(theory).__name__}")
    return theory


def _nonneg_int(v, name, minimum=0):
    return _pos_int(v, name, minimum)


def initial_state(theory, n_chains, rng):
    """Chain state drawn from the base density P: dict k, c, a, phi, dS."""
    p = theory.draw(n_chains, rng)
    phi = theory.fields(p)
    return {"k": p["k"], "c": p["c"], "a": p["a"], "phi": phi, "dS": theory.delta_S(phi)}


def _select(acc, new, old):
    """Per-chain choice between two arrays (leading axis = chains)."""
    return np.where(acc.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


class IndependenceSampler:
    """Independence Metropolis with proposals from the base density P(theta).

    Parameters
    ----------
    theory : DeformedCosNet
    """

    kind = "independence"

    def __init__(self, theory):
        self.theory = _check_theory(theory)

    step_size = None

    def settings(self):
        return {"sampler": "independence", "proposal": "base density P(theta) (fresh network)"}

    def update(self, state, rng, host_rng=None):
        """One proposal per chain. Returns ``(state, accept_prob, None)``."""
        th = self.theory
        R = state["phi"].shape[0]
        prop = th.draw(R, rng)
        phi = th.fields(prop)
        dS = th.delta_S(phi)
        with np.errstate(over="ignore"):
            logr = state["dS"] - dS
        acc = np.log(rng.random(R)) < logr
        out = {"k": _select(acc, prop["k"], state["k"]), "c": _select(acc, prop["c"], state["c"]),
               "a": _select(acc, prop["a"], state["a"]), "phi": _select(acc, phi, state["phi"]),
               "dS": np.where(acc, dS, state["dS"])}
        return out, np.minimum(1.0, np.exp(np.minimum(logr, 0.0))), None


class ParamHMC:
    """HMC on whitened amplitudes and phases, plus Metropolis neuron refreshes.

    Parameters
    ----------
    theory : DeformedCosNet
        Base network with Gaussian amplitudes (amplitudes and phases move) or constant amplitudes
        (phases move, amplitudes fixed by the law).
    eps : float
        Step size in molecular-dynamics time (tuned by :func:`run_param_chain`).
    traj_length : float
        Mean trajectory length; the default pi/2 maps a free amplitude onto its own momentum
        (a fresh, independent draw) when Delta S = 0.
    n_steps_jitter : float in [0, 1)
        The number of steps is uniform on ``[round(n0 (1 - j)), round(n0 (1 + j))]``,
        ``n0 = traj_length / eps`` (one draw per trajectory on the host stream).
    phase_mass : float
        Kinetic mass mu of the phases (their momentum is N(0, mu)).
    neuron_updates : int, optional
        Single-neuron refresh proposals per trajectory (default ``min(N, 4)``).
    momentum_fraction : float in [0, 1]
        Fraction q of the neurons whose momenta are re-drawn per trajectory by the momentum moves
        (default 0.5; 0 switches them off). With Gaussian amplitudes these are the ``round(q N)``
        neurons of smallest ``|alpha_i|`` (the cheapest to move; the selection depends only on the
        amplitudes, which the move keeps, so detailed balance holds); with constant amplitudes a
        random subset. Their new momenta are drawn from P(p) with (a_i, c_i) kept and accepted
        with ``min(1, exp(-dDelta S))``, in ``momentum_blocks`` blocks (a random partition).
        Without them only the neuron refreshes change the momentum occupation numbers, whose
        autocorrelation time is then ~ N / neuron_updates updates (the slow mode of chi and |M|).
    momentum_blocks : int, optional
        Number of Metropolis blocks the selected neurons are split into. Default: tuned by
        :func:`run_param_chain` during the warm-up (start at 4, doubled until the momentum-move
        acceptance reaches 0.5; the acceptance falls with the volume at fixed block size).

    Both ``neuron_updates = 0`` and ``momentum_fraction = 0`` keep the momenta fixed (the chain is
    then not ergodic in k: use only for diagnostics).
    """

    kind = "hmc"

    def __init__(self, theory, *, eps=0.2, traj_length=math.pi / 2, n_steps_jitter=0.5,
                 phase_mass=1.0, neuron_updates=None, momentum_fraction=0.5,
                 momentum_blocks=None):
        self.theory = _check_theory(theory)
        self.eps = _pos_float(eps, "eps")
        self.traj_length = _pos_float(traj_length, "traj_length")
        j = float(n_steps_jitter)
        if not 0.0 <= j < 1.0:
            raise ValueError(f"n_steps_jitter must be in [0, 1), got {n_steps_jitter!r}")
        self.n_steps_jitter = j
        self.phase_mass = _pos_float(phase_mass, "phase_mass")
        if neuron_updates is None:
            neuron_updates = min(theory.width, 4)
        self.neuron_updates = _nonneg_int(neuron_updates, "neuron_updates")
        try:
            q = float(momentum_fraction)
        except (TypeError, ValueError):
            q = float("nan")
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"momentum_fraction must be in [0, 1], got {momentum_fraction!r}")
        self.momentum_fraction = q
        self.tune_blocks = momentum_blocks is None
        self.momentum_blocks = 4 if momentum_blocks is None else \
            _nonneg_int(momentum_blocks, "momentum_blocks", 1)
        self.last_neuron_acceptance = self.last_momentum_acceptance = float("nan")
        self.gaussian = theory.spec.amplitude == "gaussian"
        lat = theory.lattice
        self._pos = np.asarray(lat.positions(np), dtype=np.float64).reshape(theory.volume, theory.dim)
        self._P = np.asarray(lat.momenta(np), dtype=np.float64).reshape(theory.volume, theory.dim)
        self._cos = self._sin = None
        if theory.volume <= 1024:  # plane-wave tables cos(p.x), sin(p.x): V^2 doubles each
            arg = self._P @ self._pos.T
            self._cos, self._sin = np.cos(arg), np.sin(arg)

    @property
    def step_size(self):
        return self.eps

    @step_size.setter
    def step_size(self, v):
        self.eps = _pos_float(v, "eps")

    def n_steps_range(self):
        return n_steps_range(self.traj_length, self.eps, self.n_steps_jitter)

    def settings(self):
        lo, hi = self.n_steps_range()
        return {"sampler": "param_hmc", "eps": self.eps, "traj_length": self.traj_length,
                "n_steps_jitter": self.n_steps_jitter, "n_steps_range": [lo, hi],
                "phase_mass": self.phase_mass, "neuron_updates": self.neuron_updates,
                "momentum_fraction": self.momentum_fraction,
                "momentum_blocks": self.momentum_blocks,
                "integrator": "exact prior rotation + Delta S kicks (leapfrog splitting)",
                "coordinates": "alpha = a/sigma_a, c" if self.gaussian else "c (constant amplitudes)"}

    # -- dynamics
    def _grad(self, k, c, a):
        """Field and (dDelta S/dalpha, dDelta S/dc) at fixed momenta, by complex FFTs.

        ``phi = Re(V ifftn(A))`` with ``A_p = sum_{i: p_i = p} a_i e^{i(c_i + p.origin)}`` (two
        bincounts), and ``sum_x f_x e^{i p.x} = V ifftn(f)(p)``; the phase factors are shared by
        the field and the force. Same values as ``theory.fields`` / ``theory.param_gradient``.
        """
        th = self.theory
        R, N = c.shape
        V = th.volume
        axes = tuple(range(1, 1 + th.dim))
        phi, idx, ct, st = self._fields(k, c, a)
        a1 = a[:, 0, :]
        f = th.site_force(phi)
        Gk = (np.fft.ifftn(f, axes=axes).reshape(R * V) * V)[idx].reshape(R, N)
        zr = Gk.real * ct - Gk.imag * st
        zi = Gk.real * st + Gk.imag * ct
        return phi, zr * th.sigma_a, -a1 * zi

    def _fields(self, k, c, a):
        """Fields (R, *shape) by one complex inverse FFT; also the bin indices and phase factors."""
        th = self.theory
        R, N = c.shape
        V = th.volume
        idx = (k + (np.arange(R, dtype=np.int64) * V)[:, None]).ravel()
        theta = c + th._origin_phase[k]
        ct, st = np.cos(theta), np.sin(theta)
        a1 = a[:, 0, :]
        A = np.empty(R * V, dtype=np.complex128)
        A.real = np.bincount(idx, weights=(a1 * ct).ravel(), minlength=R * V)
        A.imag = np.bincount(idx, weights=(a1 * st).ravel(), minlength=R * V)
        phi = np.fft.ifftn(A.reshape((R,) + th.shape), axes=tuple(range(1, 1 + th.dim))).real
        phi *= V
        return phi, idx, ct, st

    def _trajectory(self, state, rng, n):
        th, eps, mu = self.theory, self.eps, self.phase_mass
        k, c0 = state["k"], state["c"]
        sig = th.sigma_a
        al0 = state["a"][:, 0, :] / sig
        R, N = c0.shape
        pa0 = rng.standard_normal((R, N)) if self.gaussian else None
        pc0 = rng.standard_normal((R, N)) * math.sqrt(mu)
        H0 = 0.5 * (pc0 * pc0).sum(axis=1) / mu + state["dS"]
        if self.gaussian:
            H0 = H0 + 0.5 * (pa0 * pa0 + al0 * al0).sum(axis=1)
        al, c, pa, pc = al0, c0, pa0, pc0
        ce, se = math.cos(eps), math.sin(eps)
        with np.errstate(over="ignore", invalid="ignore"):
            _, ga, gc = self._grad(k, c, al[:, None, :] * sig)
            for _ in range(n):
                pc = pc - 0.5 * eps * gc
                if self.gaussian:
                    pa = pa - 0.5 * eps * ga
                    al, pa = al * ce + pa * se, pa * ce - al * se
                c = c + (eps / mu) * pc
                phi, ga, gc = self._grad(k, c, al[:, None, :] * sig)
                pc = pc - 0.5 * eps * gc
                if self.gaussian:
                    pa = pa - 0.5 * eps * ga
            dS = th.delta_S(phi)
            H1 = 0.5 * (pc * pc).sum(axis=1) / mu + dS
            if self.gaussian:
                H1 = H1 + 0.5 * (pa * pa + al * al).sum(axis=1)
            dH = H1 - H0
        acc = (np.log(rng.random(R)) < -dH) & np.isfinite(dH)
        with np.errstate(invalid="ignore"):
            c = np.mod(c + np.pi, 2 * np.pi) - np.pi
        new = {"k": k, "c": _select(acc, c, c0),
               "a": _select(acc, al[:, None, :] * sig, state["a"]),
               "phi": _select(acc, phi, state["phi"]), "dS": np.where(acc, dS, state["dS"])}
        with np.errstate(over="ignore", invalid="ignore"):
            emdh = np.where(np.isfinite(dH), np.exp(-np.where(np.isfinite(dH), dH, 0.0)), 0.0)
        return new, np.minimum(1.0, emdh), emdh

    def _waves(self, k, c):
        """cos(p_k . x + c) for one (k, c) per chain: shape (R, V)."""
        if self._cos is not None:
            cc, sc = np.cos(c)[:, None], np.sin(c)[:, None]
            return self._cos[k] * cc - self._sin[k] * sc
        return np.cos(self._P[k] @ self._pos.T + c[:, None])

    def _neuron_refresh(self, state, rng):
        """Refresh one random neuron per chain from its prior; Metropolis on Delta S (in place)."""
        th = self.theory
        k, c, a = state["k"], state["c"], state["a"]
        R, N = c.shape
        shape = state["phi"].shape
        j = rng.integers(0, N, size=R)
        rows = np.arange(R)
        kn = th.draw_momenta(R, rng)
        cn = math.pi * (2.0 * rng.random(R) - 1.0)
        ao = a[rows, 0, j]
        an = th.sigma_a * rng.standard_normal(R) if self.gaussian else ao
        delta = an[:, None] * self._waves(kn, cn) - ao[:, None] * self._waves(k[rows, j], c[rows, j])
        phi = state["phi"] + delta.reshape(shape)
        dS = th.delta_S(phi)
        acc = np.log(rng.random(R)) < state["dS"] - dS
        r, ja = rows[acc], j[acc]
        k[r, ja] = kn[acc]
        c[r, ja] = cn[acc]
        a[r, 0, ja] = an[acc]
        state["phi"][acc] = phi[acc]
        state["dS"] = np.where(acc, dS, state["dS"])
        return state, acc.mean()

    def n_momentum_moves(self):
        """(neurons whose momenta are proposed per trajectory, block size)."""
        N = self.theory.width
        m = int(round(self.momentum_fraction * N))
        if m == 0:
            return 0, 0
        nb = min(self.momentum_blocks, m)
        return m, -(-m // nb)

    def _momentum_moves(self, state, rng):
        """Re-draw the momenta of the selected neurons (amplitudes, phases kept), in blocks.

        The field change of a block is ``Re V ifftn(dA)`` with
        ``dA_p = sum_{i in block} a_i (e^{i theta_i(p_i')} [p = p_i'] - e^{i theta_i(p_i)} [p = p_i])``
        (two scatter-adds and one FFT), accepted per chain with ``min(1, exp(-dDelta S))``: the
        proposal P(p') cancels the prior ratio of the momenta.
        """
        th = self.theory
        k, c, a = state["k"], state["c"], state["a"]
        R, N = c.shape
        V = th.volume
        m, B = self.n_momentum_moves()
        if m == 0:
            return state, float("nan")
        a1 = a[:, 0, :]
        if self.gaussian:  # the m neurons of smallest |alpha| (a function of the kept amplitudes)
            sel = np.argpartition(np.abs(a1), m - 1, axis=1)[:, :m] if m < N else \
                np.broadcast_to(np.arange(N), (R, N))
        else:
            sel = np.argsort(rng.random((R, N)), axis=1)[:, :m]
        # random partition into blocks (independent of the state)
        sel = np.take_along_axis(sel, np.argsort(rng.random((R, m)), axis=1), axis=1)
        rows = np.arange(R)[:, None]
        axes = tuple(range(1, 1 + th.dim))
        off = (np.arange(R, dtype=np.int64) * V)[:, None]
        rates = []
        for b0 in range(0, m, B):
            J = sel[:, b0:b0 + B]
            nJ = J.shape[1]
            ko, aj, cj = k[rows, J], a1[rows, J], c[rows, J]
            kn = th.draw_momenta((R, nJ), rng)
            to, tn = cj + th._origin_phase[ko], cj + th._origin_phase[kn]
            idx = np.concatenate([(kn + off).ravel(), (ko + off).ravel()])
            wr = np.concatenate([(aj * np.cos(tn)).ravel(), -(aj * np.cos(to)).ravel()])
            wi = np.concatenate([(aj * np.sin(tn)).ravel(), -(aj * np.sin(to)).ravel()])
            dA = np.empty(R * V, dtype=np.complex128)
            dA.real = np.bincount(idx, weights=wr, minlength=R * V)
            dA.imag = np.bincount(idx, weights=wi, minlength=R * V)
            dphi = np.fft.ifftn(dA.reshape((R,) + th.shape), axes=axes).real * V
            phi = state["phi"] + dphi
            dS = th.delta_S(phi)
            with np.errstate(invalid="ignore", over="ignore"):
                acc = np.log(rng.random(R)) < state["dS"] - dS
            r = np.flatnonzero(acc)
            k[r[:, None], J[r]] = kn[r]
            state["phi"][acc] = phi[acc]
            state["dS"] = np.where(acc, dS, state["dS"])
            rates.append(acc.mean())
        return state, float(np.mean(rates))

    def tune_momentum_blocks(self, state, rng, host_rng, target=0.5, updates_per_round=5,
                             max_rounds=8):
        """Double ``momentum_blocks`` until the momentum-move acceptance reaches ``target``.

        Runs ``updates_per_round`` updates per round (warm-up only: the production chain uses the
        final value). Returns ``(state, history)`` with history ``[(blocks, acceptance), ...]``.
        """
        hist = []
        m, _ = self.n_momentum_moves()
        if m == 0:
            return state, hist
        for _ in range(max_rounds):
            rates = []
            for _ in range(updates_per_round):
                state, _, _ = self.update(state, rng, host_rng)
                rates.append(self.last_momentum_acceptance)
            r = float(np.mean(rates))
            hist.append((self.momentum_blocks, r))
            if r >= target or self.momentum_blocks >= m:
                break
            self.momentum_blocks = min(2 * self.momentum_blocks, m)
        return state, hist

    def update(self, state, rng, host_rng):
        """One trajectory, the momentum moves and ``neuron_updates`` neuron refreshes per chain.

        Returns ``(state, accept_prob, exp_mdH)`` of the trajectory (host arrays per chain).
        """
        lo, hi = self.n_steps_range()
        n = int(host_rng.integers(lo, hi + 1))
        state, acc, emdh = self._trajectory(state, rng, n)
        state = {key: np.array(v) for key, v in state.items()}  # owned copies (updated in place)
        state, self.last_momentum_acceptance = self._momentum_moves(state, rng)
        rates = []
        for _ in range(self.neuron_updates):
            state, r = self._neuron_refresh(state, rng)
            rates.append(r)
        self.last_neuron_acceptance = float(np.mean(rates)) if rates else float("nan")
        # recompute the field from the parameters now and then to stop round-off drift
        if self.neuron_updates or self.momentum_fraction:
            phi = self._fields(state["k"], state["c"], state["a"])[0]
            state = dict(state, phi=phi, dS=self.theory.delta_S(phi))
        return state, acc, emdh


def _host_rng(seed, k):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(int(k), 1))))


@dataclass
class ParamChainResult:
    """What :func:`run_param_chain` returns.

    Attributes
    ----------
    store : FieldStore or None
    state : dict
        Final chain state (k, c, a, phi, dS).
    settings : dict
        Sampler settings after tuning.
    accept_prob : ndarray (n_updates, n_chains)
        Acceptance probability per production update.
    exp_mdH : ndarray or None
        exp(-dH) per HMC trajectory (production), whose mean must be 1.
    theory : str
        Name of the sampled theory; ``limit`` its N -> infinity lattice action (text).
    """

    store: object
    state: dict
    settings: dict
    accept_prob: np.ndarray
    exp_mdH: np.ndarray | None
    theory: str
    limit: str
    timings: dict = field(default_factory=dict)
    neuron_acceptance: float = float("nan")

    @property
    def acceptance(self):
        return float(np.mean(self.accept_prob)) if self.accept_prob.size else float("nan")

    def exp_mdH_mean(self):
        """(mean, error) of exp(-dH) from per-chain means (chains are independent)."""
        if self.exp_mdH is None or self.exp_mdH.size == 0:
            return float("nan"), float("nan")
        x = np.asarray(self.exp_mdH)
        m = x.mean(axis=0)
        if m.size < 2:
            return float(x.mean()), float("nan")
        return float(m.mean()), float(m.std(ddof=1) / math.sqrt(m.size))


def run_param_chain(sampler, n_chains, n_times, store=None, *, chunk_times=None, every=1,
                    n_therm=100, tune=True, target_accept=0.8, n_tune_rounds=15, seed=None,
                    dtype="float64", save_params=False, callback=None, overwrite=False,
                    progress=False):
    """Run ``n_chains`` parameter-space chains and store (or stream) ``n_times`` fields of each.

    Parameters
    ----------
    sampler : IndependenceSampler or ParamHMC
        Its ``theory`` fixes the density sampled.
    n_chains, n_times : int
        Independent chains (the store's ``n_replicas``) and measurements per chain.
    store : str or os.PathLike, optional
        FieldStore directory (``source="mcmc"``, time-major). Created when absent; an existing
        store of the same theory and chain settings is **resumed** at its first missing chunk from
        the chain state saved with its last complete chunk, bit for bit (``overwrite`` replaces it
        instead). See Notes.
    chunk_times : int, optional
        Measurements per chain per chunk (default ``min(n_times, max(1, 4096 // n_chains))``).
    every : int
        Updates between stored measurements.
    n_therm : int
        Updates after tuning before the first measurement (chains start from exact draws of the
        base density P, so a short thermalisation suffices at weak coupling).
    tune : bool
        Tune the HMC step size to ``target_accept`` and, when ``momentum_blocks`` was not given,
        the momentum-move blocks (ignored by the independence sampler).
    seed : int, optional
        Seed entropy (see module docstring). A resumed store keeps its own seed.
    dtype : {"float64", "float32"}
        Storage precision of the fields.
    save_params : bool
        Also save the parameters of every stored sample under ``<store>/_nnft_params/``
        (one ``.npz`` per chunk with arrays k, c, a, time-major; :func:`load_param_chunk`).
    callback : callable(k, phi, log_weight), optional
        Receives each chunk of fields (time-major ``(chunk_times * n_chains, *shape)``). When a
        store is resumed, the chunks already complete are read back and passed first, in order,
        so a streaming analysis sees the whole chain.

    Returns
    -------
    ParamChainResult

    Notes
    -----
    Resuming. With a store, the chain state at the start of every chunk k (parameters k, c, a,
    field and Delta S of every chain, and the bit-generator states of the chunk's two streams) is
    written to ``<store>/_nnft_param_state/state_<k>.npz`` together with the per-update
    diagnostics of chunk k-1, each file atomically (temporary file + rename), *before* chunk k-1
    is marked complete in the store; the sampler settings after tuning (step size, momentum
    blocks) are in ``store.extra["sampler"]``. A run killed at any moment therefore resumes from
    its last complete chunk and produces the same bytes as an uninterrupted run.
    """
    from nnft.lattice import FieldStore, chunk_rng, resolve_seed
    from nnft.lattice.mcmc import WARMUP_KEY, tune_step_size
    from nnft.lattice.store import StoreError

    if not isinstance(sampler, (IndependenceSampler, ParamHMC)):
        raise ValueError(f"sampler must be an IndependenceSampler or ParamHMC, got {sampler!r}")
    th = sampler.theory
    R = _nonneg_int(n_chains, "n_chains", 1)
    n_times = _nonneg_int(n_times, "n_times", 1)
    every = _nonneg_int(every, "every", 1)
    n_therm = _nonneg_int(n_therm, "n_therm", 0)
    if chunk_times is None:
        chunk_times = min(n_times, max(1, 4096 // R))
    chunk_times = _nonneg_int(chunk_times, "chunk_times", 1)
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if store is None and callback is None:
        raise ValueError("give a store to write to, a callback to stream to, or both")
    lim = th.limit()["description"]
    requested = {"n_chains": R, "n_times": n_times, "chunk_times": chunk_times, "every": every,
                 "n_therm": n_therm, "tune": bool(tune), "target_accept": float(target_accept),
                 "n_tune_rounds": int(n_tune_rounds), "save_params": bool(save_params),
                 "initial": sampler.settings()}
    n_chunks = -(-n_times // chunk_times)
    t0 = time.perf_counter()
    fs, resumed = None, False
    if store is not None and Path(store).exists() and not overwrite:
        fs = FieldStore.open_or_create(Path(store), th.lattice, n_times * R, chunk_times * R,
                                       source="mcmc", spec=th.to_dict(), seed=seed, dtype=dtype,
                                       n_replicas=R)
        old = fs.extra.get("requested", {})
        if _canon(old) != _canon(requested):
            raise StoreError(f"store {str(store)!r} was made with different chain settings: "
                             f"store has {old}, asked for {requested}")
        _restore_settings(sampler, fs.extra["sampler"])
        seed, resumed = fs.seed, True
    seed = resolve_seed(seed)

    hist, bhist = [], []
    if not resumed:
        rng = chunk_rng(seed, WARMUP_KEY, np)
        hrng = _host_rng(seed, WARMUP_KEY)
        state = initial_state(th, R, rng)
        if tune and sampler.step_size is not None:
            state, hist = tune_step_size(sampler, state, rng, hrng, target=float(target_accept),
                                         n_rounds=n_tune_rounds, updates_per_round=5)
        if tune and getattr(sampler, "tune_blocks", False):
            state, bhist = sampler.tune_momentum_blocks(state, rng, hrng)
        for _ in range(n_therm):
            state, _, _ = sampler.update(state, rng, hrng)
    t_warm = time.perf_counter() - t0

    if store is not None and not resumed:
        extra = {"sampler": sampler.settings(), "theory": th.name, "limit": lim,
                 "time_major": True, "updates_per_measurement": every, "parameter_space": True,
                 "requested": requested,
                 "warmup": {"tune_history": [[float(s), float(a)] for s, a in hist],
                            "momentum_blocks_history": [[int(b), float(a)] for b, a in bhist]},
                 "streams": {"chunk": "chunk_rng(seed, k); host SeedSequence(seed, spawn_key=(k, 1))",
                             "warmup_key": WARMUP_KEY},
                 "resume": f"chain state per chunk in {STATE_DIR}/"}
        fs = FieldStore.create(Path(store), th.lattice, n_times * R, chunk_times * R,
                               source="mcmc", spec=th.to_dict(), seed=seed, dtype=dtype,
                               n_replicas=R, extra=extra, overwrite=overwrite)
        _save_state(fs.path, 0, state, seed)
    if save_params and fs is not None:
        (Path(fs.path) / PARAMS_DIR).mkdir(exist_ok=True)

    if fs is not None:
        todo = fs.missing_chunks()
        if todo and todo != list(range(todo[0], n_chunks)):
            raise StoreError(f"store {str(fs.path)!r}: missing chunks {todo} are not a suffix; "
                             "a Markov chain can only be continued from its end")
        done = [k for k in range(n_chunks) if k not in todo]
        if resumed:
            for k in done:  # replay the complete chunks to the streaming analysis
                if callback is not None:
                    phi_k, _ = fs.read_chunk(k)
                    callback(k, np.asarray(phi_k), None)
            state = _load_state(fs.path, todo[0]) if todo else None
    else:
        todo, done = list(range(n_chunks)), []
    mem_diags = []
    t1 = time.perf_counter()
    for kc in todo:
        rng = chunk_rng(seed, kc, np)
        hrng = _host_rng(seed, kc)
        if resumed and kc == todo[0]:  # the saved stream states (equal to the keyed ones)
            rs = _load_rng_state(fs.path, kc)
            rng.bit_generator.state, hrng.bit_generator.state = rs["device"], rs["host"]
        T = min(chunk_times, n_times - kc * chunk_times)
        out = np.empty((T, R) + th.shape, dtype=np.float64)
        pk = {"k": [], "c": [], "a": []} if (save_params and fs is not None) else None
        accs, ems, nacc = [], [], []
        for t in range(T):
            for _ in range(every):
                state, a, e = sampler.update(state, rng, hrng)
                accs.append(a)
                if e is not None:
                    ems.append(e)
                nacc.append(getattr(sampler, "last_neuron_acceptance", float("nan")))
            out[t] = state["phi"]
            if pk is not None:
                for key in pk:
                    pk[key].append(np.array(state[key]))
        chunk_phi = out.reshape((T * R,) + th.shape)
        diag = {"accept_prob": np.asarray(accs), "neuron_acceptance": np.asarray(nacc)}
        if ems:
            diag["exp_mdH"] = np.asarray(ems)
        if fs is not None:
            if pk is not None:
                _atomic_savez(Path(fs.path) / PARAMS_DIR / f"params_{kc:010d}.npz",
                              **{key: np.concatenate(v) for key, v in pk.items()})
            _save_state(fs.path, kc + 1, state, seed, diag=(kc, diag))
            fs.write_chunk(kc, chunk_phi)  # marks the chunk complete last
        else:
            mem_diags.append(diag)
        if callback is not None:
            callback(kc, chunk_phi if dtype == "float64" else chunk_phi.astype(dtype), None)
        if progress:
            print(f"[param-mcmc] chunk {kc + 1}/{n_chunks}: acceptance {np.mean(accs):.3f}",
                  flush=True)
    t_prod = time.perf_counter() - t1
    if fs is not None:
        diags = _load_diags(fs.path, fs.complete_chunks())
    else:
        diags = mem_diags
    acc_all = np.concatenate([d["accept_prob"] for d in diags]) if diags else np.zeros((0, R))
    em = [d["exp_mdH"] for d in diags if "exp_mdH" in d]
    nacc = np.concatenate([d["neuron_acceptance"] for d in diags]) if diags else np.zeros(0)
    if state is None and fs is not None:
        state = _load_state(fs.path, n_chunks)
    return ParamChainResult(
        store=fs, state=state, settings=sampler.settings(), accept_prob=acc_all,
        exp_mdH=np.concatenate(em) if em else None, theory=th.name, limit=lim,
        timings={"warmup": t_warm, "production": t_prod},
        neuron_acceptance=float(np.nanmean(nacc)) if np.any(np.isfinite(nacc)) else float("nan"))


STATE_DIR = "_nnft_param_state"
_STATE_KEYS = ("k", "c", "a", "phi", "dS")


def _canon(d):
    import json

    return json.loads(json.dumps(d, sort_keys=True, default=float))


def _restore_settings(sampler, saved):
    """Sampler settings after tuning, as saved in the store (step size, momentum blocks)."""
    if sampler.step_size is not None and saved.get("eps") is not None:
        sampler.step_size = saved["eps"]
    if isinstance(sampler, ParamHMC) and "momentum_blocks" in saved:
        sampler.momentum_blocks = int(saved["momentum_blocks"])
        sampler.tune_blocks = False


def _atomic_savez(path, **arrays):
    """``np.savez`` to a temporary file in the same directory, then rename (atomic)."""
    import os
    import uuid

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _save_state(path, k, state, seed, diag=None, keep=2):
    """Chain state at the start of chunk ``k`` (+ diagnostics of chunk k-1), atomically."""
    import json

    from nnft.lattice import chunk_rng

    d = Path(path) / STATE_DIR
    d.mkdir(exist_ok=True)
    if diag is not None:
        _atomic_savez(d / f"diag_{diag[0]:010d}.npz", **diag[1])
    rng_state = {"device": chunk_rng(seed, k, np).bit_generator.state,
                 "host": _host_rng(seed, k).bit_generator.state}
    _atomic_savez(d / f"state_{k:010d}.npz", chunk=np.int64(k),
                  rng_state=np.array(json.dumps(rng_state, default=int)),
                  **{key: np.asarray(state[key]) for key in _STATE_KEYS})
    for p in sorted(d.glob("state_*.npz"))[:-keep]:
        try:
            p.unlink()
        except OSError:
            pass


def _load_state(path, k):
    """Chain state at the start of chunk ``k`` saved by :func:`_save_state`."""
    p = Path(path) / STATE_DIR / f"state_{int(k):010d}.npz"
    if not p.exists():
        raise ValueError(f"cannot resume {str(path)!r}: the chain state before chunk {k} was not "
                         f"saved (missing {p.name}); delete the store and rerun")
    with np.load(p) as z:
        return {key: np.array(z[key]) for key in _STATE_KEYS}


def _load_rng_state(path, k):
    import json

    with np.load(Path(path) / STATE_DIR / f"state_{int(k):010d}.npz") as z:
        return json.loads(str(z["rng_state"]))


def _load_diags(path, chunks):
    d = Path(path) / STATE_DIR
    out = []
    for k in chunks:
        p = d / f"diag_{int(k):010d}.npz"
        if p.exists():
            with np.load(p) as z:
                out.append({key: z[key] for key in z.files})
    return out


def load_param_chunk(store, k):
    """Parameters (k, c, a; time-major) of production chunk ``k`` saved with ``save_params``."""
    p = Path(getattr(store, "path", store)) / PARAMS_DIR / f"params_{int(k):010d}.npz"
    if not p.exists():
        raise ValueError(f"no saved parameters for chunk {k} at {str(p)!r} (run with save_params=True)")
    with np.load(p) as z:
        return {key: z[key] for key in z.files}
