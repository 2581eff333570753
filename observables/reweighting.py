"""Reweight a free ensemble (network or exact sampler) into phi^4 (docs/conventions.md).

Deforming the parameter density P(theta) -> P(theta) exp(-Delta S[phi_theta]) turns a free
ensemble of mass^2 ``m2_base`` into the theory with action S_target = S_free(m2_base) + Delta S.
On a lattice this is importance reweighting with per-sample log weights

    log w = -Delta S = -(S_target[phi] - S_free[phi; m2_base])
          = -sum_x [ (m^2 - m2_base)/2 phi_x^2 + (g/4!) phi_x^4 ]        (convention C)

and <O> = sum w O / sum w. The base ensemble's fields are in convention C (as every nnft free
ensemble); a target action in another convention is converted to C first, and the returned
quadratic observables are in convention C (chi_A = chi_C / 2, see docs/conventions.md).

The Kish effective sample size ESS = (sum w)^2 / sum w^2 is reported with every result;
when ESS / N falls below ``warn_fraction`` (or ESS below ``warn_min``) a
:class:`ReweightingWarning` says that the reweighting has collapsed (Var log w grows with the
volume; near the critical point a Markov chain is needed).

Base mass: ``match="bare"`` uses the target's bare m^2 (only possible when m^2 > 0);
``match="hartree"`` the self-consistent Hartree mass m_H^2 = m^2 + (g/2) G0(m_H^2) with
G0(m^2) = (1/V) sum_p 1/(phat^2 + m^2) (:func:`hartree_mass`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.optimize import brentq

from nnft.lattice import to_numpy
from nnft.lattice.actions import Phi4Action

from .gamma import primary_series

__all__ = [
    "ReweightingWarning",
    "Reweighting",
    "kish_ess",
    "hartree_mass",
    "base_mass",
    "log_weights",
    "reweight",
    "reweighted_mean",
    "reweighted_observables",
]


class ReweightingWarning(UserWarning):
    """The effective sample size of a reweighted ensemble has collapsed."""


def kish_ess(log_w):
    """Kish effective sample size (sum w)^2 / sum w^2 from log weights (overflow-safe)."""
    lw = np.asarray(log_w, dtype=np.float64).ravel()
    if lw.size == 0:
        raise ValueError("log_w is empty")
    if not np.all(np.isfinite(lw)):
        raise ValueError("log_w contains non-finite values")
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (w * w).sum())


def _shape(lattice):
    return tuple(lattice.shape) if hasattr(lattice, "shape") else tuple(lattice)


def _G0(shape, m2):
    grids = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in shape], indexing="ij")
    phat2 = sum(4.0 * np.sin(p / 2) ** 2 for p in grids)
    return float(np.mean(1.0 / (phat2 + m2)))


def hartree_mass(m2, g, lattice):
    """Self-consistent Hartree mass^2 (convention C): m_H^2 = m^2 + (g/2) G0(m_H^2) > 0.

    Parameters
    ----------
    m2, g : float
        Bare mass^2 (may be negative) and coupling g of (g/4!) phi^4, convention C.
    lattice : Lattice or tuple
        Periodic lattice (its shape).
    """
    m2, g = float(m2), float(g)
    if g < 0:
        raise ValueError(f"g must be >= 0, got {g}")
    shape = _shape(lattice)
    if g == 0:
        if m2 <= 0:
            raise ValueError(f"free theory needs m2 > 0, got {m2}")
        return m2

    def f(x):
        return x - m2 - 0.5 * g * _G0(shape, x)

    lo = 1e-12
    hi = max(abs(m2), 1.0)
    while f(hi) < 0:
        hi *= 2.0
    return float(brentq(f, lo, hi, xtol=1e-14, rtol=1e-13))


def _target_C(target):
    if not isinstance(target, Phi4Action):
        raise ValueError(f"target must be a Phi4Action, got {target!r}")
    return target if target.convention == "C" else target.to("C")


def base_mass(target, match="hartree"):
    """Mass^2 of the free base ensemble matched to ``target``: ``"bare"`` or ``"hartree"``."""
    t = _target_C(target)
    if match == "bare":
        if not t.m2 > 0:
            raise ValueError(f"match='bare' needs a positive bare m^2, target has m2={t.m2}; "
                             "use match='hartree'")
        return t.m2
    if match == "hartree":
        return hartree_mass(t.m2, t.g, t.shape)
    raise ValueError(f"match must be 'bare' or 'hartree', got {match!r}")


def log_weights(phi, target, base_m2):
    """log w = -(S_target - S_free(base_m2)) per configuration (convention C fields).

    ``phi`` has shape (n, *shape) (NumPy or CuPy); returns a float64 array (n,) on the same device.
    """
    t = _target_C(target)
    base_m2 = float(base_m2)
    if tuple(phi.shape[1:]) != t.shape:
        raise ValueError(f"phi must have shape (n, {t.shape}), got {tuple(phi.shape)}")
    axes = tuple(range(1, phi.ndim))
    phi2 = phi * phi
    dens = (0.5 * (t.m2 - base_m2)) * phi2
    if t.g:
        dens = dens + (t.g / 24.0) * phi2 * phi2
    return -dens.sum(axis=axes)


@dataclass
class Reweighting:
    """Log weights of a reweighted ensemble with its Kish ESS."""

    log_w: np.ndarray
    base_m2: float
    target: Phi4Action
    ess: float
    n: int

    @property
    def ess_fraction(self):
        return self.ess / self.n

    @property
    def var_log_w(self):
        return float(np.var(self.log_w))


def _warn(ess, n, warn_fraction, warn_min):
    if ess < warn_fraction * n or ess < warn_min:
        warnings.warn(ReweightingWarning(
            f"reweighting collapsed: Kish ESS = {ess:.1f} of N = {n} samples "
            f"({100 * ess / n:.2g}%); results are unreliable. Use a smaller volume or coupling, "
            "a better-matched base mass (match='hartree'), or a Markov chain."), stacklevel=3)


def reweight(source, target, base_m2=None, *, match="hartree", warn_fraction=0.01, warn_min=50):
    """Log weights that turn a free ensemble into ``target``.

    Parameters
    ----------
    source : FieldStore or ndarray (n, *shape)
        Free-field ensemble in convention C (network or exact sampler, unweighted).
    target : Phi4Action
        Target theory (any convention; converted to C).
    base_m2 : float, optional
        Mass^2 of the source ensemble; default: ``source.spec["m2"]`` for a store, else
        :func:`base_mass` (``match``).
    warn_fraction, warn_min : float
        A :class:`ReweightingWarning` is issued when ESS < warn_fraction * N or ESS < warn_min.

    Returns
    -------
    Reweighting
    """
    if base_m2 is None:
        spec = getattr(source, "spec", None) or {}
        base_m2 = spec.get("m2") if isinstance(spec, dict) else None
        if base_m2 is None:
            base_m2 = base_mass(target, match)
    if hasattr(source, "read_chunk"):
        if source.weighted:
            raise ValueError("source must be an unweighted free ensemble")
        lw = np.concatenate([np.asarray(log_weights(phi, target, base_m2))
                             for _, phi, _ in source.iter_chunks()])
    else:
        lw = to_numpy(log_weights(source, target, base_m2))
    ess = kish_ess(lw)
    _warn(ess, lw.size, warn_fraction, warn_min)
    return Reweighting(lw, float(base_m2), target, ess, int(lw.size))


def reweighted_mean(values, log_w):
    """Self-normalised importance-sampling mean and its standard error (independent samples).

    mean = sum w O / sum w;  error^2 = sum w^2 (O - mean)^2 / (sum w)^2 (delta method).
    ``values`` may be (n,) or (n, k).
    """
    v = np.asarray(values, dtype=np.float64)
    lw = np.asarray(log_w, dtype=np.float64)
    if v.shape[0] != lw.shape[0]:
        raise ValueError(f"values ({v.shape[0]}) and log_w ({lw.shape[0]}) differ in length")
    w = np.exp(lw - lw.max())
    w = w / w.sum()
    wb = w.reshape((-1,) + (1,) * (v.ndim - 1))
    mean = (wb * v).sum(axis=0)
    err = np.sqrt((wb * wb * (v - mean) ** 2).sum(axis=0))
    return mean, err


def _derived(series, w, volume):
    """chi, G0, E, abs_M from primary sums with normalised weights w."""
    m = (w[:, None] * series).sum(axis=0)  # M, absM, M2, phi2, link
    M, absM, M2, phi2, link = m
    return np.array([volume * (M2 - M * M), phi2 - M * M, link - M * M, absM])


def reweighted_observables(source, target, base_m2=None, *, match="hartree", n_blocks=50,
                           warn_fraction=0.01, warn_min=50):
    """chi, G0, E, abs_M of ``target`` from a free ensemble, with block-jackknife errors.

    Observables as in :func:`nnft.observables.gamma.chain_observables` (connected, convention C).

    Returns
    -------
    xarray.Dataset
        ``value`` and ``error`` along ``observable``; attrs ``ess``, ``ess_fraction``,
        ``n_samples``, ``base_m2``, ``var_log_w``, ``target`` (dict), ``method``.
    """
    rw = reweight(source, target, base_m2, match=match, warn_fraction=warn_fraction,
                  warn_min=warn_min)
    if hasattr(source, "read_chunk"):
        d = len(source.lattice.shape)
        series = np.concatenate([primary_series(phi, d) for _, phi, _ in source.iter_chunks()])
    else:
        src = to_numpy(source)
        series = primary_series(src, src.ndim - 1)
    V = int(np.prod(rw.target.shape))
    lw = rw.log_w
    w = np.exp(lw - lw.max())
    full = _derived(series, w / w.sum(), V)
    n = lw.size
    nb = int(min(n_blocks, n))
    if nb < 2:
        raise ValueError(f"need at least 2 samples for errors, got {n}")
    edges = np.linspace(0, n, nb + 1).astype(int)
    # jackknife: leave out one block
    Sw = w.sum()
    Swx = (w[:, None] * series).sum(axis=0)
    jk = []
    for b in range(nb):
        sl = slice(edges[b], edges[b + 1])
        wb = w[sl]
        sw = Sw - wb.sum()
        m = (Swx - (wb[:, None] * series[sl]).sum(axis=0)) / sw
        M, absM, M2, phi2, link = m
        jk.append([V * (M2 - M * M), phi2 - M * M, link - M * M, absM])
    jk = np.array(jk)
    err = np.sqrt((nb - 1) / nb * ((jk - jk.mean(axis=0)) ** 2).sum(axis=0))
    names = ["chi", "G0", "E", "abs_M"]
    return xr.Dataset(
        {"value": ("observable", full), "error": ("observable", err)},
        coords={"observable": names},
        attrs={"method": f"reweighting exp(-Delta S), block jackknife ({nb} blocks)",
               "ess": rw.ess, "ess_fraction": rw.ess_fraction, "n_samples": int(n),
               "base_m2": rw.base_m2, "var_log_w": rw.var_log_w,
               "target": _target_C(target).to_dict(), "convention": "C"})
