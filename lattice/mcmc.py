"""Markov-chain Monte Carlo for lattice scalar actions: HMC and checkerboard Metropolis.

Many independent chains run side by side in one array of shape ``(n_chains, *lattice.shape)``
(NumPy or CuPy). Chains write the ordinary :class:`~nnft.lattice.FieldStore` format with
``source="mcmc"``, ``n_replicas = n_chains`` and samples stored time-major
(sample ``s = t * n_chains + r``), so every observable works on them unchanged.

Samplers (docs/conventions.md)
-------------------------------
:class:`HMC`
    Momenta pi ~ N(0, 1), H = pi^2/2 + S, leapfrog or Omelyan 2MN (xi = 0.1931833) integration,
    Metropolis accept with min(1, exp(-dH)). The number of integration steps is drawn afresh for
    every trajectory, uniformly in ``[round(n0 (1 - jitter)), round(n0 (1 + jitter))]`` with
    ``n0 = traj_length / eps`` (one draw shared by all chains of that trajectory; given the draw
    the chains are independent, so each still satisfies detailed balance). With ``jitter = 0``
    the length is fixed, which fails for modes whose rotation angle per trajectory is near pi.
:class:`Metropolis`
    Checkerboard single-site updates: all sites of one parity are updated at once (their
    neighbours all have the other parity), proposals ``phi + delta * U(-1, 1)``, ``n_hits``
    hits per site per sweep. Needs every lattice extent even (periodic checkerboard).

Chains, streams and resume
--------------------------
:func:`run_chain` tunes the step size (HMC: ``eps``; Metropolis: ``delta``) to a target
acceptance, thermalises, then produces ``n_times`` measurements per chain, ``every`` updates
(trajectories or sweeps) apart, in chunks of ``chunk_times`` measurements. Production chunk
``k`` draws all its random numbers from ``chunk_rng(seed, k)`` (device stream) and
``SeedSequence(seed, spawn_key=(k, 1))`` (host stream: the number of steps per trajectory); the
warm-up uses chunk key :data:`WARMUP_KEY`. The chain state at the end of every chunk (and of
the warm-up) is saved in float64 under ``<store>/_nnft_mcmc/``, together with the per-update
diagnostics, so an interrupted run resumes from the first missing chunk and continues the same
chains bit for bit. The tuned step size and all sampler settings go into the store's provenance
(``extra``).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .actions import Phi4Action
from .backend import backend_name, get_xp, module_name, to_numpy
from .random import bit_generator_name, chunk_rng, resolve_seed

__all__ = [
    "Sampler",
    "SAMPLERS",
    "register_sampler",
    "make_sampler",
    "HMC",
    "Metropolis",
    "ChainResult",
    "run_chain",
    "load_chain_diagnostics",
    "tune_step_size",
    "WARMUP_KEY",
    "OMELYAN_XI",
]

OMELYAN_XI = 0.1931833
WARMUP_KEY = 2**32
STATE_DIR = "_nnft_mcmc"
INTEGRATORS = ("leapfrog", "omelyan")


def _host_rng(seed, k):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(int(k), 1))))


def _pos_float(v, name):
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return v


def _pos_int(v, name, minimum=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_action(action):
    if not isinstance(action, Phi4Action):
        raise ValueError(f"action must be an nnft.lattice.actions.Phi4Action, got {action!r}")
    return action


# ============================================================================ samplers
class Sampler:
    """Base class of the Markov-chain samplers :func:`run_chain` drives (NetKet-style).

    A sampler holds its target ``action`` and updates a batch of chains at once. To add one,
    copy :class:`Metropolis` (the smaller), set the class attributes and implement
    :meth:`update` and :meth:`settings`, and decorate the class with
    :func:`register_sampler` so that configs can name it.

    Class attributes
    ----------------
    kind : str
        The name configs use (``sampler.kind`` in `nnft mcmc`).
    step_name : str
        The attribute holding the tunable step size (``eps``, ``delta``, ...).
    target_accept : float
        Default acceptance the step size is tuned to.
    """

    kind = ""
    step_name = ""
    target_accept = 0.5

    @property
    def step_size(self):
        return getattr(self, self.step_name)

    @step_size.setter
    def step_size(self, v):
        setattr(self, self.step_name, _pos_float(v, self.step_name))

    def update(self, phi, rng, host_rng):
        """One update (trajectory, sweep) of every chain.

        Returns ``(phi, accept_prob, extra)``: the new states, the per-chain acceptance
        probability (NumPy, shape (n_chains,)) and a per-chain diagnostic or None (HMC:
        exp(-dH)).
        """
        raise NotImplementedError

    def settings(self) -> dict:
        """Every setting, JSON-able, with ``"sampler": kind`` (stored as provenance)."""
        raise NotImplementedError

    def force_evals_per_update(self) -> float:
        """Gradient evaluations per update (the cost unit of benchmarks)."""
        return 0


def n_steps_range(traj_length: float, eps: float, jitter: float) -> tuple[int, int]:
    """(lo, hi) of a randomised trajectory: ``n0 = max(1, round(traj_length / eps))`` steps on
    average, uniform on ``round(n0 (1 -+ jitter))`` inclusive (shared by all HMC samplers)."""
    n0 = max(1, int(round(traj_length / eps)))
    lo = max(1, int(round(n0 * (1.0 - jitter))))
    hi = max(lo, int(round(n0 * (1.0 + jitter))))
    return lo, hi


SAMPLERS: dict = {}


def register_sampler(cls):
    """Class decorator: make ``cls`` available to :func:`make_sampler` under ``cls.kind``."""
    if not (isinstance(cls, type) and issubclass(cls, Sampler) and cls.kind and cls.step_name):
        raise ValueError(f"{cls!r} must subclass Sampler and set kind and step_name")
    SAMPLERS[cls.kind] = cls
    return cls


def make_sampler(kind: str, action, **settings) -> "Sampler":
    """The one factory from config: ``make_sampler("hmc", action, eps=0.1, ...)``."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler kind must be one of {sorted(SAMPLERS)}, got {kind!r}")
    return SAMPLERS[kind](action, **settings)


@register_sampler
class HMC(Sampler):
    """Hybrid Monte Carlo for a :class:`~nnft.lattice.actions.Phi4Action`, vectorised over chains.

    Parameters
    ----------
    action : Phi4Action
        Target action; the chain samples exp(-S) in the action's convention.
    eps : float
        Integration step size (tuned by :func:`run_chain` when ``tune`` is on).
    traj_length : float
        Mean trajectory length in molecular-dynamics time; the mean number of steps is
        ``n0 = max(1, round(traj_length / eps))``.
    integrator : {"omelyan", "leapfrog"}
        Omelyan 2MN (two force evaluations per step, xi = 0.1931833) or leapfrog (one).
    n_steps_jitter : float in [0, 1)
        Half-width of the uniform distribution of the number of steps relative to ``n0``;
        0 gives fixed-length trajectories (not recommended, see module docstring).
    """

    kind = "hmc"
    step_name = "eps"
    target_accept = 0.8

    def __init__(self, action, *, eps=0.1, traj_length=1.0, integrator="omelyan",
                 n_steps_jitter=0.5):
        self.action = _check_action(action)
        self.eps = _pos_float(eps, "eps")
        self.traj_length = _pos_float(traj_length, "traj_length")
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
        self.integrator = integrator
        j = float(n_steps_jitter)
        if not 0.0 <= j < 1.0:
            raise ValueError(f"n_steps_jitter must be in [0, 1), got {n_steps_jitter!r}")
        self.n_steps_jitter = j

    # -- settings
    def n_steps_range(self):
        """(lo, hi): the number of steps is uniform on lo..hi inclusive."""
        return n_steps_range(self.traj_length, self.eps, self.n_steps_jitter)

    def settings(self):
        lo, hi = self.n_steps_range()
        return {"sampler": "hmc", "eps": self.eps, "traj_length": self.traj_length,
                "integrator": self.integrator, "n_steps_jitter": self.n_steps_jitter,
                "n_steps_range": [lo, hi],
                "omelyan_xi": OMELYAN_XI if self.integrator == "omelyan" else None}

    def force_evals_per_update(self):
        lo, hi = self.n_steps_range()
        n = 0.5 * (lo + hi)
        return 2 * n if self.integrator == "omelyan" else n + 1

    # -- dynamics
    def _integrate(self, phi, pi, n):
        eps, grad = self.eps, self.action.grad
        if self.integrator == "leapfrog":
            pi = pi - 0.5 * eps * grad(phi)
            for i in range(n):
                phi = phi + eps * pi
                pi = pi - (eps if i < n - 1 else 0.5 * eps) * grad(phi)
            return phi, pi
        xi = OMELYAN_XI
        pi = pi - xi * eps * grad(phi)
        for i in range(n):
            phi = phi + 0.5 * eps * pi
            pi = pi - (1.0 - 2.0 * xi) * eps * grad(phi)
            phi = phi + 0.5 * eps * pi
            pi = pi - (2.0 * xi * eps if i < n - 1 else xi * eps) * grad(phi)
        return phi, pi

    def update(self, phi, rng, host_rng):
        """One trajectory for every chain.

        Returns
        -------
        phi : array
            New configurations, shape ``(n_chains, *shape)``.
        accept_prob : array
            min(1, exp(-dH)) per chain (float64, on the host).
        exp_mdH : array
            exp(-dH) per chain (host), whose mean must be 1 in equilibrium.
        """
        xp = get_xp(module_name(phi))
        lo, hi = self.n_steps_range()
        n = int(host_rng.integers(lo, hi + 1))
        pi = rng.standard_normal(phi.shape, dtype=xp.float64)
        axes = tuple(range(1, phi.ndim))
        S0 = self.action.action(phi)
        H0 = 0.5 * (pi * pi).sum(axis=axes) + S0
        # an unstable integration (too large a step, e.g. while tuning) overflows: it is rejected
        with np.errstate(over="ignore", invalid="ignore"):
            phi1, pi1 = self._integrate(phi, pi, n)
            H1 = 0.5 * (pi1 * pi1).sum(axis=axes) + self.action.action(phi1)
            dH = H1 - H0
        u = rng.random(dH.shape, dtype=xp.float64)
        acc = xp.log(u) < -dH
        acc = acc & xp.isfinite(dH)
        phi = xp.where(acc.reshape((-1,) + (1,) * (phi.ndim - 1)), phi1, phi)
        dH = to_numpy(dH)
        with np.errstate(over="ignore"):
            emdh = np.exp(-dH)
        return phi, np.minimum(1.0, np.nan_to_num(emdh, nan=0.0)), emdh


@register_sampler
class Metropolis(Sampler):
    """Checkerboard single-site Metropolis, vectorised over chains and the parity sublattice.

    Parameters
    ----------
    action : Phi4Action
        Target action (every lattice extent must be even).
    delta : float
        Proposal half-width: phi_x -> phi_x + delta * U(-1, 1).
    n_hits : int
        Proposals per site per sweep (consecutive hits on one sublattice).
    """

    kind = "metropolis"
    step_name = "delta"
    target_accept = 0.5

    def __init__(self, action, *, delta=1.0, n_hits=1):
        self.action = _check_action(action)
        bad = [n for n in self.action.shape if n % 2]
        if bad:
            raise ValueError(f"checkerboard Metropolis needs every lattice extent even with periodic "
                             f"boundaries, got shape {self.action.shape}")
        self.delta = _pos_float(delta, "delta")
        self.n_hits = _pos_int(n_hits, "n_hits")
        shape = self.action.shape
        V = self.action.volume
        coords = np.indices(shape).reshape(len(shape), V)
        parity = coords.sum(axis=0) % 2
        idx = np.arange(V).reshape(shape)
        nbrs = []
        for ax in range(len(shape)):
            nbrs.append(np.roll(idx, -1, axis=ax).reshape(V))
            nbrs.append(np.roll(idx, 1, axis=ax).reshape(V))
        nbrs = np.stack(nbrs, axis=1)  # (V, 2d)
        self._sites = [np.flatnonzero(parity == p) for p in (0, 1)]
        self._nbrs = [nbrs[s] for s in self._sites]
        self._dev = {}

    def settings(self):
        return {"sampler": "metropolis", "delta": self.delta, "n_hits": self.n_hits,
                "update": "checkerboard"}

    def _indices(self, xp):
        key = backend_name(xp)
        if key not in self._dev:
            self._dev[key] = ([xp.asarray(s) for s in self._sites], [xp.asarray(n) for n in self._nbrs])
        return self._dev[key]

    def update(self, phi, rng, host_rng=None):
        """One sweep (both parities, ``n_hits`` each) of every chain.

        Returns ``(phi, accept_prob, None)`` with the mean acceptance rate per chain (host).
        """
        xp = get_xp(module_name(phi))
        R = phi.shape[0]
        flat = phi.reshape(R, -1).copy()
        sites, nbrs = self._indices(xp)
        beta, alpha, lam, _ = self.action.coefficients
        acc_sum = xp.zeros(R, dtype=xp.float64)
        for p in (0, 1):
            s, nb = sites[p], nbrs[p]
            nsum = flat[:, nb].sum(axis=-1)
            cur = flat[:, s]
            for _ in range(self.n_hits):
                u = rng.random((2, R, s.size), dtype=xp.float64)
                new = cur + self.delta * (2.0 * u[0] - 1.0)
                dS = self.action.local_delta(cur, new, nsum)
                acc = xp.log(u[1]) < -dS
                cur = xp.where(acc, new, cur)
                acc_sum += acc.sum(axis=1)
            flat[:, s] = cur
        rate = to_numpy(acc_sum) / (self.action.volume * self.n_hits)
        return flat.reshape(phi.shape), rate, None


# ============================================================================ driver
@dataclass
class ChainResult:
    """What :func:`run_chain` returns.

    Attributes
    ----------
    store : FieldStore or None
    phi : array
        Final configurations ``(n_chains, *shape)`` on the backend's device.
    settings : dict
        Sampler settings after tuning (also in ``store.extra["sampler"]``).
    accept_prob : ndarray, shape (n_updates, n_chains)
        min(1, exp(-dH)) (HMC) or the acceptance rate of the sweep (Metropolis), production only.
    exp_mdH : ndarray or None, shape (n_updates, n_chains)
        exp(-dH) per HMC trajectory (production), None for Metropolis.
    timings : dict
        Wall seconds: ``warmup`` and ``production`` (of this call; resumed chunks only).
    """

    store: object
    phi: object
    settings: dict
    accept_prob: np.ndarray
    exp_mdH: np.ndarray | None
    timings: dict = field(default_factory=dict)
    n_chains: int = 0
    every: int = 1

    @property
    def acceptance(self):
        """Mean acceptance (probability) over production updates and chains."""
        return float(np.mean(self.accept_prob)) if self.accept_prob.size else float("nan")

    def exp_mdH_mean(self):
        """(mean, standard error) of exp(-dH); the error from the spread of per-chain means
        (chains are independent), corrected for autocorrelation by binning along time."""
        if self.exp_mdH is None or self.exp_mdH.size == 0:
            return float("nan"), float("nan")
        x = np.asarray(self.exp_mdH, dtype=float)
        T, R = x.shape
        nb = max(2, min(T, 20))
        bs = T // nb
        if R * nb < 4 or bs < 1:
            return float(x.mean()), float("nan")
        blocks = x[: nb * bs].reshape(nb, bs, R).mean(axis=1).ravel()
        return float(x.mean()), float(blocks.std(ddof=1) / math.sqrt(blocks.size))


def _make_sampler(sampler):
    if not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a Sampler (one of {sorted(SAMPLERS)}), got {sampler!r}")
    return sampler


def _init_state(init, n_chains, shape, rng, xp):
    full = (n_chains,) + tuple(shape)
    if isinstance(init, str):
        if init == "cold":
            return xp.zeros(full, dtype=xp.float64)
        if init == "hot":
            return rng.standard_normal(full, dtype=xp.float64)
        raise ValueError(f"init must be 'cold', 'hot' or an array of shape {full}, got {init!r}")
    arr = xp.asarray(init, dtype=xp.float64)
    if arr.shape != full:
        raise ValueError(f"init array must have shape {full}, got {arr.shape}")
    return arr.copy()


def _state_dir(store):
    return Path(store.path) / STATE_DIR


def _atomic_savez(path, **arrays):
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _save_state(store, k, phi, accept, emdh, keep=2):
    d = _state_dir(store)
    d.mkdir(exist_ok=True)
    arrays = {"accept_prob": np.asarray(accept)}
    if emdh is not None:
        arrays["exp_mdH"] = np.asarray(emdh)
    if k >= 0:
        _atomic_savez(d / f"diag_{k:010d}.npz", **arrays)
    _atomic_savez(d / f"state_{k + 1:010d}.npz", phi=to_numpy(phi).astype(np.float64))
    # keep only the most recent states (each is n_chains * V * 8 bytes)
    states = sorted(p for p in d.glob("state_*.npz"))
    for p in states[:-keep]:
        try:
            p.unlink()
        except OSError:
            pass


def _load_state(store, k):
    """Chain state at the start of production chunk k (end of chunk k-1, or of the warm-up)."""
    p = _state_dir(store) / f"state_{k:010d}.npz"
    if p.exists():
        with np.load(p) as z:
            return z["phi"]
    # Fall back on the stored configurations of chunk k-1 when they are exact (float64).
    if k >= 1 and store.dtype == np.float64 and store.is_chunk_complete(k - 1):
        phi, _ = store.read_chunk(k - 1)
        R = store.n_replicas
        return np.asarray(phi[-R:], dtype=np.float64)
    raise ValueError(f"cannot resume {str(store.path)!r}: the chain state before chunk {k} was "
                     f"not saved (missing {p.name}); delete the store and rerun")


def load_chain_diagnostics(store):
    """Per-update diagnostics of the complete chunks of an MCMC store.

    Returns
    -------
    dict
        ``accept_prob`` (n_updates, n_chains) and, for HMC, ``exp_mdH`` (n_updates, n_chains),
        concatenated over the complete production chunks in order.
    """
    d = _state_dir(store)
    acc, em = [], []
    for k in store.complete_chunks():
        p = d / f"diag_{k:010d}.npz"
        if not p.exists():
            continue
        with np.load(p) as z:
            acc.append(z["accept_prob"])
            if "exp_mdH" in z:
                em.append(z["exp_mdH"])
    R = store.n_replicas
    out = {"accept_prob": np.concatenate(acc) if acc else np.zeros((0, R))}
    out["exp_mdH"] = np.concatenate(em) if em else None
    return out


def tune_step_size(sampler, phi, rng, host_rng, *, target, n_rounds=20, updates_per_round=10):
    """Adapt ``sampler.step_size`` towards a target acceptance (stochastic approximation).

    After each round of ``updates_per_round`` updates the step is multiplied by
    ``exp(gain * (acc - target))`` with a gain decreasing as 1/sqrt(round). Returns
    ``(phi, history)`` where history lists (step_size, acceptance) per round.
    """
    hist = []
    for i in range(n_rounds):
        accs = []
        for _ in range(updates_per_round):
            phi, a, _ = sampler.update(phi, rng, host_rng)
            accs.append(a.mean())
        acc = float(np.mean(accs))
        hist.append((sampler.step_size, acc))
        gain = 2.0 / math.sqrt(i + 1)
        sampler.step_size = sampler.step_size * math.exp(gain * (acc - target))
    return phi, hist


def run_chain(sampler, n_chains, n_times, store=None, *, chunk_times=None, every=1, n_therm=200,
              tune=True, target_accept=None, n_tune_rounds=20, init="hot", seed=None,
              backend=None, lattice=None, dtype="float64", callback=None, progress=False,
              overwrite=False):
    """Run ``n_chains`` independent chains and store (or stream) ``n_times`` samples of each.

    Parameters
    ----------
    sampler : Sampler
        HMC, Metropolis or any registered :class:`Sampler` (its action fixes the theory and
        the convention of the stored field).
    n_chains : int
        Number of independent chains (``n_replicas`` of the store).
    n_times : int
        Measurements per chain; the store holds ``n_times * n_chains`` samples, time-major.
    store : str, os.PathLike or None
        Store directory (``source="mcmc"``). An existing matching store is resumed at its first
        missing chunk, bit for bit; its tuned step size and settings are reused.
    chunk_times : int, optional
        Measurements per chain per chunk (default: ``min(n_times, max(1, 4096 // n_chains))``).
    every : int
        Updates (trajectories or sweeps) between stored measurements.
    n_therm : int
        Thermalisation updates after tuning, before the first measurement.
    tune : bool
        Tune the step size to ``target_accept`` (default 0.8 for HMC, 0.5 for Metropolis).
    init : {"hot", "cold"} or array
        Initial configurations: N(0, 1) per site, zeros, or an array ``(n_chains, *shape)``.
    seed : int or None
        Seed entropy (see module docstring for the streams).
    backend : {"numpy", "cupy", "auto"} or None
    lattice : Lattice, optional
        Geometry recorded in the store (default ``Lattice(action.shape)``).
    dtype : {"float64", "float32"}
        Storage precision (the chain itself always runs in float64).
    callback : callable(k, phi, log_weight), optional
        Receives each chunk (time-major ``(chunk_times * n_chains, *shape)``, on the device).

    Returns
    -------
    ChainResult
    """
    from .geometry import Lattice
    from .store import FieldStore, StoreError

    sampler = _make_sampler(sampler)
    action = sampler.action
    R = _pos_int(n_chains, "n_chains")
    n_times = _pos_int(n_times, "n_times")
    every = _pos_int(every, "every")
    n_therm = _pos_int(n_therm, "n_therm", minimum=0)
    if chunk_times is None:
        chunk_times = min(n_times, max(1, 4096 // R))
    chunk_times = _pos_int(chunk_times, "chunk_times")
    if target_accept is None:
        target_accept = sampler.target_accept
    target_accept = float(target_accept)
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if store is None and callback is None:
        raise ValueError("give a store to write to, a callback to stream to, or both")
    xp = get_xp(backend)
    if lattice is None:
        lattice = Lattice(action.shape)
    elif tuple(lattice.shape) != action.shape:
        raise ValueError(f"lattice.shape {lattice.shape} differs from the action's {action.shape}")
    spec = action.to_dict()
    requested = {"n_chains": R, "n_times": n_times, "chunk_times": chunk_times, "every": every,
                 "n_therm": n_therm, "tune": bool(tune), "target_accept": target_accept,
                 "n_tune_rounds": int(n_tune_rounds),
                 "init": init if isinstance(init, str) else "array",
                 "initial": sampler.settings()}
    n_samples, chunk = n_times * R, chunk_times * R
    t0 = time.perf_counter()
    fs = None
    resumed = False
    if store is not None:
        p = Path(store)
        if p.exists() and not overwrite:
            fs = FieldStore.open_or_create(p, lattice, n_samples, chunk, source="mcmc", spec=spec,
                                           seed=seed, dtype=dtype, n_replicas=R)
            old = dict(fs.extra.get("requested", {}))
            if _canon(old) != _canon(requested):
                raise StoreError(f"store {str(p)!r} was made with different chain settings: "
                                 f"store has {old}, asked for {requested}")
            sampler.step_size = fs.extra["sampler"][sampler.step_name]
            seed = fs.seed
            resumed = True
    seed = resolve_seed(seed)

    warm = {}
    if not resumed:
        rng = chunk_rng(seed, WARMUP_KEY, xp)
        hrng = _host_rng(seed, WARMUP_KEY)
        phi = _init_state(init, R, action.shape, rng, xp)
        hist = []
        if tune:
            phi, hist = tune_step_size(sampler, phi, rng, hrng, target=target_accept,
                                       n_rounds=n_tune_rounds)
        acc_th = []
        for _ in range(n_therm):
            phi, a, _ = sampler.update(phi, rng, hrng)
            acc_th.append(a.mean())
        warm = {"tune_history": [[float(s), float(a)] for s, a in hist],
                "therm_acceptance": float(np.mean(acc_th)) if acc_th else None}
    t_warm = time.perf_counter() - t0

    extra = {"sampler": sampler.settings(), "requested": requested, "warmup": warm,
             "action": action.to_dict(), "time_major": True,
             "updates_per_measurement": every,
             "streams": {"chunk": "chunk_rng(seed, k) device; SeedSequence(seed, spawn_key=(k, 1)) host",
                         "warmup_key": WARMUP_KEY}}
    if store is not None and not resumed:
        fs = FieldStore.create(Path(store), lattice, n_samples, chunk, source="mcmc", spec=spec,
                               seed=seed, backend=backend_name(xp),
                               bit_generator=bit_generator_name(xp), dtype=dtype, n_replicas=R,
                               extra=extra, overwrite=overwrite)
        _save_state(fs, -1, phi, None, None)

    n_chunks = -(-n_times // chunk_times)
    if fs is not None:
        missing = fs.missing_chunks()
        if missing and missing != list(range(missing[0], n_chunks)):
            raise StoreError(f"store {str(fs.path)!r}: missing chunks {missing} are not a suffix; "
                             "a Markov chain can only be continued from its end")
        todo = missing
        if todo:
            phi = xp.asarray(_load_state(fs, todo[0]))
        elif resumed:
            phi = xp.asarray(_load_state(fs, n_chunks)) if (_state_dir(fs) / f"state_{n_chunks:010d}.npz").exists() else None
    else:
        todo = list(range(n_chunks))

    acc_all, em_all = [], []
    t1 = time.perf_counter()
    for k in todo:
        rng = chunk_rng(seed, k, xp)
        hrng = _host_rng(seed, k)
        T = min(chunk_times, n_times - k * chunk_times)
        out = xp.empty((T, R) + action.shape, dtype=xp.float64)
        accs, ems = [], []
        for t in range(T):
            for _ in range(every):
                phi, a, e = sampler.update(phi, rng, hrng)
                accs.append(a)
                if e is not None:
                    ems.append(e)
            out[t] = phi
        chunk_phi = out.reshape((T * R,) + action.shape)
        accs = np.asarray(accs)
        ems = np.asarray(ems) if ems else None
        if fs is not None:
            fs.write_chunk(k, chunk_phi)
            _save_state(fs, k, phi, accs, ems)
        if callback is not None:
            callback(k, chunk_phi if dtype == "float64" else chunk_phi.astype(dtype), None)
        acc_all.append(accs)
        if ems is not None:
            em_all.append(ems)
        if progress:
            print(f"[mcmc] chunk {k + 1}/{n_chunks}: acceptance {accs.mean():.3f}", flush=True)
    t_prod = time.perf_counter() - t1

    if fs is not None:
        diag = load_chain_diagnostics(fs)
        accept_prob, emdh = diag["accept_prob"], diag["exp_mdH"]
    else:
        accept_prob = np.concatenate(acc_all) if acc_all else np.zeros((0, R))
        emdh = np.concatenate(em_all) if em_all else None
    return ChainResult(store=fs, phi=phi, settings=sampler.settings(), accept_prob=accept_prob,
                       exp_mdH=emdh, timings={"warmup": t_warm, "production": t_prod},
                       n_chains=R, every=every)


def _canon(d):
    return json.loads(json.dumps(d, sort_keys=True))
