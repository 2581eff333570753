"""Errors for Markov chains: the Gamma method (Wolff) through pyerrors.

Works on any FieldStore; for Markov chains (``n_replicas`` = number of chains, samples stored
time-major ``s = t * n_replicas + r``) each chain is one replica ``"<name>|r<r>"`` of one
pyerrors ensemble, so autocorrelations are estimated along each chain and combined. For
independent ensembles (networks, exact sampler) the same code gives tau_int consistent with 1/2.

Conventions (docs/statistics.md, section 1): tau_int = 1/2 + sum_{t=1}^{W} rho(t) with Wolff's automatic
window (``S`` = 2 by default), so independent samples give tau_int = 1/2;
N_eff = N / (2 tau_int); the standard error of a mean is sqrt(var * 2 tau_int / N).

Standard observables (:func:`chain_observables`), per configuration phi (any dimension, scalar
field): ``M`` = (1/V) sum_x phi_x, ``abs_M`` = |M|, ``M2`` = M^2, ``phi2`` = (1/V) sum_x phi_x^2,
``link`` = (1/(dV)) sum_x sum_mu phi_x phi_{x+mu}; derived ones: ``chi`` = V (<M^2> - <M>^2),
``G0`` = <phi2> - <M>^2 (connected G(0)), ``E`` = <link> - <M>^2 (connected Ising energy
(1/d) sum_mu G_c(mu)), ``abs_M`` = <|M|>.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GammaResult",
    "make_obs",
    "gamma_error",
    "tau_int",
    "n_eff",
    "chain_series",
    "primary_series",
    "chain_observables",
    "gamma_effective_mass",
    "obs_to_result",
    "gamma_method_errors",
    "gamma_blocks",
]

DEFAULT_S = 2.0


@dataclass(frozen=True)
class GammaResult:
    """Value, standard error, tau_int with its error, and N_eff of one observable.

    For derived quantities ``tau_int`` is that of the linearised combination (pyerrors'
    convention); ``n_eff = n / (2 tau_int)`` with ``n`` the total number of samples.
    """

    value: float
    error: float
    tau_int: float
    dtau_int: float
    n_eff: float
    n: int

    def z(self, exact):
        """Deviation from ``exact`` in standard errors."""
        return (self.value - exact) / self.error if self.error > 0 else float("inf")


def _replicas(values, n_replicas):
    """Split a time-major per-sample series into per-chain series (list of 1-D arrays)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one-dimensional (one value per sample), got shape {v.shape}")
    R = int(n_replicas)
    if R < 1:
        raise ValueError(f"n_replicas must be >= 1, got {n_replicas!r}")
    if v.size % R:
        raise ValueError(f"the number of samples ({v.size}) must be a multiple of n_replicas ({R})")
    T = v.size // R
    if T < 2:
        raise ValueError(f"need at least 2 samples per chain for the Gamma method, got {T}")
    return [np.ascontiguousarray(v.reshape(T, R)[:, r]) for r in range(R)]


def make_obs(values, n_replicas=1, name="ens"):
    """A :class:`pyerrors.Obs` from a time-major per-sample series.

    Parameters
    ----------
    values : array_like, shape (n_samples,)
        One value per sample, sample ``s = t * n_replicas + r``.
    n_replicas : int
        Number of independent chains interleaved in ``values``.
    name : str
        pyerrors ensemble name (replicas are named ``"name|r0"``, ... when n_replicas > 1).
    """
    import pyerrors as pe

    if "|" in name:
        raise ValueError(f"name must not contain '|', got {name!r}")
    reps = _replicas(values, n_replicas)
    names = [name] if len(reps) == 1 else [f"{name}|r{r}" for r in range(len(reps))]
    return pe.Obs(reps, names)


def obs_to_result(obs, n=None, S=DEFAULT_S):
    """Run the Gamma method on a pyerrors Obs (if needed) and return a :class:`GammaResult`."""
    obs.gamma_method(S=S)
    names = list(obs.e_tauint.keys())
    if n is None:
        n = int(sum(len(obs.deltas[k]) for k in obs.deltas))
    if len(names) == 1:
        tau = float(obs.e_tauint[names[0]])
        dtau = float(obs.e_dtauint[names[0]])
    elif names:  # several ensembles: report the variance-weighted tau
        w = np.array([obs.e_dvalue[k] ** 2 for k in names])
        taus = np.array([obs.e_tauint[k] for k in names])
        dtaus = np.array([obs.e_dtauint[k] for k in names])
        ws = w.sum() or 1.0
        tau, dtau = float((w * taus).sum() / ws), float(np.sqrt(((w * dtaus) ** 2).sum()) / ws)
    else:  # a constant
        tau, dtau = 0.5, 0.0
    tau = max(tau, 1e-12)
    return GammaResult(float(obs.value), float(obs.dvalue), tau, dtau, n / (2.0 * tau), int(n))


def gamma_error(values, n_replicas=1, S=DEFAULT_S, name="ens"):
    """Gamma-method mean, error, tau_int and N_eff of a per-sample series (time-major)."""
    v = np.asarray(values, dtype=np.float64)
    return obs_to_result(make_obs(v, n_replicas, name), n=v.size, S=S)


def tau_int(values, n_replicas=1, S=DEFAULT_S):
    """(tau_int, dtau_int) of a per-sample series (pyerrors convention, independent = 1/2)."""
    r = gamma_error(values, n_replicas, S)
    return r.tau_int, r.dtau_int


def n_eff(values, n_replicas=1, S=DEFAULT_S):
    """Effective number of independent samples N / (2 tau_int)."""
    return gamma_error(values, n_replicas, S).n_eff


# --------------------------------------------------------------------------- stores
def _field_axes(store):
    lat_dim = len(store.lattice.shape)
    if store.components is not None:
        raise ValueError("the standard chain observables are for scalar fields (components=None)")
    return tuple(range(1, 1 + lat_dim))


def chain_series(store, func, chunks=None):
    """Evaluate ``func(phi_chunk) -> (n,) or (n, k)`` chunk by chunk over a store.

    Returns the concatenated per-sample values (time-major, complete chunks only). Chains must
    be complete from the start: a gap in the chunks of a Markov chain raises ValueError.
    """
    ks = store.complete_chunks() if chunks is None else list(chunks)
    if store.n_replicas > 1 and ks != list(range(len(ks))):
        raise ValueError(f"Markov-chain store {str(store.path)!r} has non-contiguous complete "
                         f"chunks {ks}; finish (resume) the run first")
    out = []
    for k in ks:
        phi, lw = store.read_chunk(k)
        if lw is not None:
            raise ValueError("weighted stores need reweighting: use nnft.observables.reweighting")
        out.append(np.asarray(func(phi)))
    if not out:
        raise ValueError(f"store {str(store.path)!r} has no complete chunks")
    return np.concatenate(out, axis=0)


def primary_series(phi, lattice_dim=None):
    """Per-sample M, |M|, M^2, phi^2 and link of configurations ``phi`` (n, *shape).

    Returns an array (n, 5) in that order (see module docstring).
    """
    phi = np.asarray(phi, dtype=np.float64)
    d = phi.ndim - 1 if lattice_dim is None else lattice_dim
    axes = tuple(range(phi.ndim - d, phi.ndim))
    M = phi.mean(axis=axes)
    phi2 = (phi * phi).mean(axis=axes)
    link = np.zeros_like(M)
    for ax in axes:
        link += (phi * np.roll(phi, -1, axis=ax)).mean(axis=axes)
    link /= d
    return np.stack([M, np.abs(M), M * M, phi2, link], axis=1)


PRIMARY = ("M", "abs_M", "M2", "phi2", "link")


def chain_observables(store_or_series, n_replicas=None, volume=None, S=DEFAULT_S, name="ens",
                      include_primary=True):
    """Gamma-method analysis of the standard observables of a store.

    Parameters
    ----------
    store_or_series : FieldStore or ndarray (n_samples, 5)
        A store (scalar field), or the output of :func:`primary_series` over all samples.
    n_replicas, volume : int
        Needed only with a series (from the store otherwise).

    Returns
    -------
    xarray.Dataset
        Variables ``value``, ``error``, ``tau_int``, ``dtau_int``, ``n_eff`` along dimension
        ``observable`` = chi, G0, E, abs_M (derived, connected) and, with ``include_primary``,
        the primary M, M2, phi2, link; attrs name the method.
    """
    import xarray as xr

    if hasattr(store_or_series, "read_chunk"):
        store = store_or_series
        _field_axes(store)
        series = chain_series(store, lambda phi: primary_series(phi, len(store.lattice.shape)))
        n_replicas, volume = store.n_replicas, store.lattice.volume
    else:
        series = np.asarray(store_or_series, dtype=np.float64)
        if n_replicas is None or volume is None:
            raise ValueError("with a series, give n_replicas and volume")
    obs = {k: make_obs(series[:, i], n_replicas, name) for i, k in enumerate(PRIMARY)}
    M, M2 = obs["M"], obs["M2"]
    derived = {
        "chi": volume * (M2 - M * M),
        "G0": obs["phi2"] - M * M,
        "E": obs["link"] - M * M,
        "abs_M": obs["abs_M"],
    }
    if include_primary:
        derived.update({k: obs[k] for k in ("M", "M2", "phi2", "link")})
    n = series.shape[0]
    res = {k: obs_to_result(o, n=n, S=S) for k, o in derived.items()}
    names = list(res)
    ds = xr.Dataset(
        {f: ("observable", np.array([getattr(res[k], f) for k in names]))
         for f in ("value", "error", "tau_int", "dtau_int", "n_eff")},
        coords={"observable": names},
        attrs={"method": "gamma", "description": f"Gamma method (pyerrors, Wolff window S={S}); "
               "chains as replicas; tau_int convention: independent samples give 1/2",
               "n_samples": int(n), "n_replicas": int(n_replicas), "volume": int(volume)})
    return ds


def gamma_effective_mass(store, axis=0, S=DEFAULT_S, name="ens"):
    """arccosh effective mass of the zero-momentum correlator along ``axis``, Gamma-method errors.

    C(t) = (1/L) sum_t0 <Sbar(t0) Sbar(t0 + t)> - <M>^2 with Sbar(t) the average of phi over the
    slice at ``axis`` = t; m_eff(t) = arccosh[(C(t-1) + C(t+1)) / (2 C(t))] for t = 1..L-2.

    Returns
    -------
    xarray.Dataset
        ``C`` value/error (dim ``t``) and ``m_eff`` value/error/tau_int (dim ``t_eff``).
    """
    import xarray as xr

    d = len(store.lattice.shape)
    _field_axes(store)
    L = store.lattice.shape[axis]

    def per_sample(phi):
        other = tuple(1 + a for a in range(d) if a != axis)
        sl = phi.mean(axis=other) if other else phi  # (n, L)
        f = np.fft.fft(sl, axis=1)
        c = np.fft.ifft(f * np.conj(f), axis=1).real / L  # (1/L) sum_t0 s(t0) s(t0+t)
        return np.concatenate([c, sl.mean(axis=1, keepdims=True)], axis=1)

    series = chain_series(store, per_sample)
    R = store.n_replicas
    Mo = make_obs(series[:, -1], R, name)
    C = [make_obs(series[:, t], R, name) - Mo * Mo for t in range(L)]
    cres = [obs_to_result(c, S=S) for c in C]
    meff, ts = [], []
    for t in range(1, L - 1):
        arg = (C[t - 1] + C[t + 1]) / (2 * C[t])
        if arg.value <= 1.0:
            continue
        m = np.arccosh(arg)
        meff.append(obs_to_result(m, S=S))
        ts.append(t)
    return xr.Dataset(
        {"C": ("t", [r.value for r in cres]), "C_error": ("t", [r.error for r in cres]),
         "m_eff": ("t_eff", [r.value for r in meff]),
         "m_eff_error": ("t_eff", [r.error for r in meff]),
         "m_eff_tau_int": ("t_eff", [r.tau_int for r in meff])},
        coords={"t": np.arange(L), "t_eff": np.array(ts, dtype=int)},
        attrs={"method": "gamma", "axis": axis})


def gamma_method_errors(values, n_replicas=1, **kwargs):
    """(mean, standard error) of a per-sample series (Gamma method)."""
    r = gamma_error(values, n_replicas, **kwargs)
    return r.value, r.error


def gamma_blocks(total, blocks, estimator, *, block_ranges=None, n_replicas=1, S=DEFAULT_S,
                 **_ignored):
    """Error method "gamma" of :mod:`nnft.observables.errors` (registry protocol).

    Works for any estimator of accumulators: the Gamma method runs on the delete-one-block
    pseudo-values ``p_b = theta + (N - n_b)/n_b (theta - theta_{-b})`` of the blocks in sample
    order (for a mean, ``p_b`` is exactly the block mean), so autocorrelations longer than a block
    are still caught; ``attrs["tau_int"]`` is in units of blocks. For per-sample autocorrelation
    times use :func:`gamma_error` / :func:`chain_observables` on the per-sample series.
    """
    import pyerrors as pe

    from .errors import ErrorEstimate, _n_samples, _tree_zip, tree_map

    value = np.asarray(estimator(total), dtype=float)
    blocks = [b for b in blocks if _n_samples(b) > 0]
    B = len(blocks)
    if B < 2:
        nan = np.full_like(value, np.nan)
        return ErrorEstimate(value, nan, "gamma", {"n_blocks": B, "note": "fewer than 2 blocks"})
    N = _n_samples(total)
    pseudo = []
    for b in blocks:
        nb = _n_samples(b)
        loo = tree_map(lambda a: a.copy(), total)
        _tree_zip(lambda x, y: x.subtract(y), loo, b)
        th = np.asarray(estimator(loo), dtype=float)
        pseudo.append(value + (N - nb) / nb * (value - th))
    pseudo = np.stack(pseudo).reshape(B, -1)
    err = np.empty(pseudo.shape[1])
    tau = np.empty_like(err)
    dtau = np.empty_like(err)
    for i in range(pseudo.shape[1]):
        col = pseudo[:, i]
        if np.ptp(col) == 0:
            err[i], tau[i], dtau[i] = 0.0, 0.5, 0.0
            continue
        o = pe.Obs([col], ["blocks"])
        o.gamma_method(S=S)
        err[i], tau[i], dtau[i] = o.dvalue, o.e_tauint["blocks"], o.e_dtauint["blocks"]
    shape = value.shape
    return ErrorEstimate(value, err.reshape(shape), "gamma",
                         {"n_blocks": B, "tau_int_blocks": tau.reshape(shape),
                          "dtau_int_blocks": dtau.reshape(shape), "S": S,
                          "n_replicas": int(n_replicas)})


def _register():
    """Register :func:`gamma_blocks` as error method "gamma" in nnft.observables.errors."""
    try:
        from .errors import register_error_method
    except Exception:  # the registry lives in another module; absent is fine
        return False
    register_error_method("gamma", gamma_blocks, overwrite=True)
    return True


_REGISTERED = _register()
