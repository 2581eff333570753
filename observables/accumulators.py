"""Mergeable, shifted float64 accumulators for one-pass measurements.

Every accumulator has the same life cycle::

    acc = SiteMoments(max_order=4)
    for phi, log_weight in chunks:          # any order, any grouping
        acc.update(phi, log_weight=log_weight)
    other.update(...); acc.merge(other)     # exact combination of disjoint sample sets
    acc.result()                            # dict of float64 NumPy arrays

Conventions
-----------
* ``phi`` has shape ``(n, *field_shape)``: a leading sample axis, then the field axes
  ``([D], x0, ..., x{d-1})``. Flat site indices (``PointMoments``, ``TwoPointMatrix``) index
  the C-order flattening of ``field_shape`` (component-major when ``D`` is present).
* Power sums are kept about a fixed *shift* ``a`` (a per-site or per-component reference
  value, by default the weighted mean of the first chunk seen): the stored quantities are
  ``sum_s w_s prod_i (phi_s(x_i) - a_i)``. With the shift near the mean, 4th and 6th order
  moments do not suffer the cancellation of naive power sums. Accumulators with equal shifts
  merge by plain addition (exact up to summation order); unequal shifts are reconciled by
  the binomial re-centering of Chan et al., which is exact algebra.
* Weights: ``update(phi, weights=w)`` or ``update(phi, log_weight=lw)`` (the store's
  ``log_weight``; ``w = exp(lw)``). Weighted sums are held relative to a running reference
  ``exp(logref)`` (the largest log weight seen), so ``exp`` never overflows and merges of
  differently normalised chunks are exact. Estimates are ratios ``sum w O / sum w``.
  Unweighted samples have ``log_weight = 0``.
* Memory is independent of the number of samples; arrays may be NumPy or CuPy (per-chunk
  work runs on the array's device, the stored sums are NumPy float64).
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import threading
from typing import Callable, Sequence

import numpy as np

from nnft.lattice.backend import array_module as _xp_of
from nnft.lattice.backend import to_numpy as _to_numpy

from .combinatorics import cumulant_from_central

__all__ = [
    "Accumulator", "SiteMoments", "SiteMean", "TwoPointMatrix", "FourierTwoPoint",
    "PointMoments", "SampleFunction", "ScalarObservables", "Series",
    "FeatureMoments", "SourceExponentials", "normalize_tuples", "multiset_closure",
    "share_spectrum",
]


# ----------------------------------------------------------------------------------------------
# helpers
def _log_weights(n, weights, log_weight):
    """Return (logref, w) with w = exp(lw - logref) (NumPy float64) or (0.0, None)."""
    if weights is not None and log_weight is not None:
        raise ValueError("give either weights or log_weight, not both")
    if weights is not None:
        w = _to_numpy(weights).astype(np.float64).reshape(-1)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and non-negative")
        with np.errstate(divide="ignore"):
            lw = np.log(w)
    elif log_weight is not None:
        lw = _to_numpy(log_weight).astype(np.float64).reshape(-1)
        if lw.shape != (n,):
            raise ValueError(f"log_weight must have shape ({n},), got {lw.shape}")
        if np.any(np.isnan(lw)) or np.any(lw == np.inf):
            raise ValueError("log_weight must not be NaN or +inf")
    else:
        return 0.0, None
    ref = float(np.max(lw)) if n else 0.0
    if not np.isfinite(ref):
        raise ValueError("all weights of a chunk are zero")
    return ref, np.exp(lw - ref)


def _wsum(w, a, xp):
    """sum_s w_s a[s, ...] (w None: plain sum) as float64 NumPy."""
    if w is None:
        return _to_numpy(a.sum(axis=0))
    wx = xp.asarray(w) if xp is not np else w
    if a.dtype.kind == "c":  # same-dtype product: mixed real x complex skips BLAS
        wx = wx.astype(a.dtype)
    return _to_numpy(xp.tensordot(wx, a, axes=(0, 0)))


# working-set size of one sub-block of the per-chunk product tables on the CPU (L2-sized)
_CACHE_BYTES = 512 * 2 ** 10
# samples per FFT sub-block on the CPU: about this many bytes of field
_FFT_BLOCK_BYTES = 2 ** 20
# threads of one sub-block's FFT on the CPU (scipy.fft workers): one, because a sub-block is
# small (threads cost more than they save: 4.1 against 5.8 us per 32x32 sample on a 2-core
# EPYC) and the pass reads the next chunk in a second thread meanwhile
_FFT_WORKERS = 1


def _rfftn_into(d, axes, out):
    """``scipy.fft.rfftn(d, axes=axes, workers=_FFT_WORKERS)`` written into ``out`` (complex128,
    C-contiguous, the output shape) when SciPy's FFT module takes an output array, so that the
    sub-blocks of a pass reuse one buffer: a fresh block-sized array per sub-block costs a page
    fault per 4 KiB page on Linux when malloc hands the memory back between blocks (measured:
    more than the FFT itself). Otherwise a new array. Same values either way (the same
    transform; tests/observables/test_shared_spectrum.py)."""
    import scipy.fft  # noqa: PLC0415

    global _R2C
    if _R2C is None:
        try:
            from scipy.fft._duccfft.pyduccfft import r2c  # noqa: PLC0415
        except ImportError:
            r2c = False
        _R2C = r2c
    if _R2C and out is not None:
        try:
            workers = _FFT_WORKERS if _FFT_WORKERS > 0 else (os.cpu_count() or 1)
            return _R2C(d, axes=list(axes), forward=True, inorm=0, out=out, nthreads=workers)
        except (TypeError, ValueError):
            pass
    return scipy.fft.rfftn(d, axes=axes, workers=_FFT_WORKERS)


_R2C = None
_SCRATCH = threading.local()


def _scratch(name, shape, dtype=np.float64):
    """A per-thread NumPy work buffer of ``shape`` kept between calls (a few MiB at most:
    the CPU sub-blocks), so that the sub-blocks of a whole pass reuse the same memory instead
    of faulting in fresh pages for every chunk. Contents are undefined."""
    size = math.prod(shape)
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype)
        setattr(_SCRATCH, name, buf)
    return buf[:size].reshape(shape)


def _take_columns(X, sites, xp):
    """``X[:, sites]``; ``X`` itself (no copy) when ``sites`` is every column in order."""
    if len(sites) == X.shape[1] and sites[0] == 0 and sites[-1] == len(sites) - 1:
        return X  # sites are sorted and distinct, so they are 0..F-1
    return xp.take(X, xp.asarray(sites), axis=1)


def normalize_tuples(tuples) -> list[tuple[int, ...]]:
    """Point tuples as a list of tuples of non-negative ints.

    ``tuples`` is an int array ``(n_tuples, n)`` or a sequence of int sequences (lengths may
    differ). Raises ValueError naming ``tuples`` on bad input.
    """
    if isinstance(tuples, np.ndarray):
        if tuples.ndim == 1:
            tuples = tuples[:, None]
        if tuples.ndim != 2:
            raise ValueError(f"tuples must be a 2-d int array (n_tuples, n), got ndim {tuples.ndim}")
        if tuples.size and not np.issubdtype(tuples.dtype, np.integer):
            raise ValueError(f"tuples must hold integers, got dtype {tuples.dtype}")
        out = [tuple(int(i) for i in row) for row in tuples]
    else:
        try:
            out = [tuple(int(i) for i in (row if np.ndim(row) else [row])) for row in tuples]
        except (TypeError, ValueError):
            raise ValueError("tuples must be an int array (n_tuples, n) or a list of int "
                             "sequences") from None
    if not out:
        raise ValueError("tuples must not be empty")
    for t in out:
        if len(t) == 0:
            raise ValueError("tuples: every tuple needs at least one point")
        if min(t) < 0:
            raise ValueError(f"tuples: flat site indices must be >= 0, got {t}")
    return out


def multiset_closure(tuples: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """All distinct non-empty sorted sub-multisets of the given tuples.

    Ordered by length, then lexicographically. Every prefix of a member is a member.
    """
    seen = set()
    for t in tuples:
        t = tuple(sorted(t))
        k = len(t)
        for r in range(1, k + 1):
            for pos in itertools.combinations(range(k), r):
                seen.add(tuple(t[i] for i in pos))
    return sorted(seen, key=lambda s: (len(s), s))


# ----------------------------------------------------------------------------------------------
class Accumulator:
    """Base class: weighted, shifted float64 power sums that merge exactly.

    Subclasses implement ``_init_shift``, ``_chunk_sums``, ``_reshift`` and ``result``; the
    base class handles weights, their running normalisation, merging, subtraction (for
    jackknife leave-one-out) and bookkeeping.

    Attributes
    ----------
    n_samples : int
        Number of samples seen (unweighted count).
    sum_w, sum_w2 : float
        Sum of weights and of squared weights, in units of ``exp(logref)`` and
        ``exp(2 logref)``.
    logref : float or None
        Log of the weight reference (None while empty).
    shift : array or None
        The reference value the power sums are taken about.
    field_shape : tuple or None
        Shape of one configuration (fixed by the first update).
    """

    def __init__(self, field_shape=None, shift=None):
        self.field_shape = None if field_shape is None else tuple(int(s) for s in field_shape)
        self.shift = None if shift is None else np.asarray(shift, dtype=np.float64)
        self.n_samples = 0
        self.sum_w = 0.0
        self.sum_w2 = 0.0
        self.logref = None
        self._sums: dict[str, np.ndarray] = {}

    # -- interface for subclasses --------------------------------------------------------------
    def _config(self):
        return (type(self).__name__, self.field_shape)

    def _init_shift(self, phi, w, xp):
        raise NotImplementedError

    def _chunk_sums(self, phi, w, xp) -> dict:
        raise NotImplementedError

    def _restrict(self, phi, xp):
        """The part of a chunk this accumulator reads (before the float64 cast); default all."""
        return phi

    def _reshift(self, sums: dict, sum_w: float, old, new) -> dict:
        raise NotImplementedError

    def _cast(self, phi, xp):
        """The working dtype of a (restricted) chunk: float64."""
        return phi if phi.dtype == xp.float64 else phi.astype(xp.float64)

    def result(self) -> dict:
        """Estimates from the data seen so far (dict of float64 NumPy arrays)."""
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    @property
    def empty_(self) -> bool:
        return self.n_samples == 0

    @property
    def ess(self) -> float:
        """Kish effective sample size (sum w)^2 / sum w^2."""
        return self.sum_w ** 2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def prepare(self, phi, weights=None, *, log_weight=None):
        """Fix the shift (and field shape) from a chunk without accumulating it."""
        xp = _xp_of(phi)
        self._check_shape(phi)
        if self.shift is None:
            _, w = _log_weights(phi.shape[0], weights, log_weight)
            self._init_shift(self._restrict(phi, xp), w, xp)
        return self

    def update(self, phi, weights=None, *, log_weight=None):
        """Accumulate a chunk ``phi`` of shape ``(n, *field_shape)``; returns self."""
        xp = _xp_of(phi)
        if not hasattr(phi, "shape"):
            phi = np.asarray(phi)
        self._check_shape(phi)
        n = int(phi.shape[0])
        if n == 0:
            return self
        ref, w = _log_weights(n, weights, log_weight)
        phi = self._restrict(phi, xp)  # e.g. only the columns of the chosen sites
        if self.shift is None:
            self._init_shift(phi, w, xp)
        phi = self._cast(phi, xp)
        sums = self._chunk_sums(phi, w, xp)
        sw = float(n) if w is None else float(w.sum())
        sw2 = float(n) if w is None else float((w * w).sum())
        self._add(sums, sw, sw2, n, ref, sign=1.0)
        return self

    def merge(self, other: "Accumulator"):
        """Add the samples of ``other`` (a disjoint set) to this accumulator; returns self."""
        self._check_compatible(other)
        if other.n_samples == 0:
            return self
        if self.shift is None:
            self.shift = other.shift
        sums = other._sums
        if not _same_shift(self.shift, other.shift):
            sums = other._reshift(other._sums, other.sum_w, other.shift, self.shift)
        self._add(sums, other.sum_w, other.sum_w2, other.n_samples, other.logref, sign=1.0)
        return self

    def subtract(self, other: "Accumulator"):
        """Remove the samples of ``other`` (a subset previously merged in); returns self.

        Used for jackknife leave-one-out estimates (``total.copy().subtract(block)``).
        """
        self._check_compatible(other)
        if other.n_samples == 0:
            return self
        if other.n_samples > self.n_samples:
            raise ValueError("subtract: other holds more samples than self")
        sums = other._sums
        if not _same_shift(self.shift, other.shift):
            sums = other._reshift(other._sums, other.sum_w, other.shift, self.shift)
        self._add(sums, other.sum_w, other.sum_w2, other.n_samples, other.logref, sign=-1.0)
        return self

    def sums_without(self, other: "Accumulator"):
        """``(sums, sum_w)`` of this accumulator's samples minus those of ``other`` (a subset
        merged in before), in this accumulator's weight units: a delete-one-block jackknife
        replica without copying the accumulator."""
        self._check_compatible(other)
        if other.n_samples == 0:
            return dict(self._sums), self.sum_w
        sums = other._sums
        if not _same_shift(self.shift, other.shift):
            sums = other._reshift(other._sums, other.sum_w, other.shift, self.shift)
        f = math.exp(other.logref - self.logref)
        return ({k: v - f * np.asarray(sums[k]) for k, v in self._sums.items()},
                self.sum_w - f * other.sum_w)

    def empty(self) -> "Accumulator":
        """A new accumulator with the same configuration and shift and no data."""
        new = copy.copy(self)
        new._sums = {}
        new.n_samples = 0
        new.sum_w = 0.0
        new.sum_w2 = 0.0
        new.logref = None
        new._extra_reset()
        return new

    def copy(self) -> "Accumulator":
        return copy.deepcopy(self)

    def __add__(self, other):
        return self.copy().merge(other)

    def mean_of(self, name: str) -> np.ndarray:
        """Weighted mean ``sum w q / sum w`` of stored (shifted) quantity ``name``."""
        if self.n_samples == 0:
            raise ValueError(f"{type(self).__name__} has seen no samples")
        return self._sums[name] / self.sum_w

    # -- internals -----------------------------------------------------------------------------
    def _extra_reset(self):
        pass

    def _check_shape(self, phi):
        if phi.ndim < 1:
            raise ValueError("phi must have a leading sample axis")
        fs = tuple(int(s) for s in phi.shape[1:])
        if self.field_shape is None:
            self.field_shape = fs
        elif fs != self.field_shape:
            raise ValueError(f"phi: expected configurations of shape {self.field_shape}, got {fs}")

    def _check_compatible(self, other):
        if type(other) is not type(self):
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other.n_samples and self.n_samples and other._config() != self._config():
            raise ValueError(f"cannot merge {type(self).__name__}s of different configuration")
        if self.field_shape is None:
            self.field_shape = other.field_shape

    def _add(self, sums, sw, sw2, n, ref, sign):
        if self.logref is None:
            self.logref = ref
            self._sums = {k: sign * np.array(v, dtype=np.float64 if not np.iscomplexobj(v)
                                              else np.complex128) for k, v in sums.items()}
            self.sum_w, self.sum_w2, self.n_samples = sign * sw, sign * sw2, int(sign) * int(n)
            return
        new = max(self.logref, ref)
        fs = math.exp(self.logref - new)
        fo = math.exp(ref - new) * sign
        if fs != 1.0:
            for k in self._sums:
                self._sums[k] *= fs
        for k, v in sums.items():
            if k in self._sums:
                self._sums[k] += fo * v
            else:
                self._sums[k] = fo * np.asarray(v)
        self.sum_w = self.sum_w * fs + fo * sw
        self.sum_w2 = self.sum_w2 * fs * fs + fo * math.exp(ref - new) * sw2
        self.n_samples += int(sign) * n
        self.logref = new
        if self.n_samples == 0:
            self.logref = None
            self._sums = {}
            self.sum_w = self.sum_w2 = 0.0


def _power_sums(d, w, xp, max_order):
    """Weighted power sums ``{"p1": sum w d, ..., "pK": sum w d^K}`` of shifted values ``d``."""
    out = {}
    p = d
    for k in range(1, max_order + 1):
        if k > 1:
            p = p * d
        out[f"p{k}"] = _wsum(w, p, xp)
    return out


def _same_shift(a, b):
    if a is b:
        return True
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


def _binom_reshift_power(sums, sum_w, c, max_order, key="p"):
    """Re-centre per-element power sums S_k = sum w (x-a)^k to shift b (c = a - b)."""
    out = {}
    S = {0: sum_w}
    for k in range(1, max_order + 1):
        S[k] = sums[f"{key}{k}"]
    for k in range(1, max_order + 1):
        acc = np.zeros_like(S[k])
        for j in range(k + 1):
            acc = acc + math.comb(k, j) * S[j] * c ** (k - j)
        out[f"{key}{k}"] = acc
    for name, v in sums.items():
        out.setdefault(name, v)
    return out


def _central_from_shifted(mu, max_order):
    """Central moments from shifted raw moments mu[k] = E (x-a)^k (mu[0] = 1)."""
    m1 = mu[1]
    out = {}
    for k in range(2, max_order + 1):
        acc = 0.0
        for j in range(k + 1):
            acc = acc + math.comb(k, j) * mu[j] * (-m1) ** (k - j)
        out[k] = acc
    return out


# ----------------------------------------------------------------------------------------------
class SiteMoments(Accumulator):
    """Per-site shifted power sums up to ``max_order`` (mean, variance, central moments).

    Parameters
    ----------
    max_order : int
        Highest power kept (1..8; default 2).

    ``result()`` keys: ``mean`` (field_shape), ``variance`` and ``central<k>`` for
    k = 2..max_order (population/plug-in estimates, weighted when weights are given),
    ``n_samples``, ``ess``.
    """

    def __init__(self, max_order: int = 2, *, field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not isinstance(max_order, (int, np.integer)) or not 1 <= max_order <= 8:
            raise ValueError(f"max_order must be an int in 1..8, got {max_order!r}")
        self.max_order = int(max_order)

    def _config(self):
        return super()._config() + (self.max_order,)

    def _init_shift(self, phi, w, xp):
        m = phi.mean(axis=0) if w is None else _wsum(w, phi, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        return _power_sums(phi - xp.asarray(self.shift), w, xp, self.max_order)

    def _reshift(self, sums, sum_w, old, new):
        return _binom_reshift_power(sums, sum_w, old - new, self.max_order)

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("SiteMoments has seen no samples")
        mu = {0: 1.0}
        for k in range(1, self.max_order + 1):
            mu[k] = self._sums[f"p{k}"] / self.sum_w
        out = {"mean": self.shift + mu[1], "n_samples": self.n_samples, "ess": self.ess}
        cen = _central_from_shifted(mu, self.max_order)
        for k, v in cen.items():
            out[f"central{k}"] = v
        if 2 in cen:
            out["variance"] = cen[2]
        return out


SiteMean = SiteMoments


# ----------------------------------------------------------------------------------------------
class TwoPointMatrix(Accumulator):
    """Full two-point matrix ``<phi(x) phi(y)>`` over (a subset of) flat sites, via matmul.

    Parameters
    ----------
    sites : int array or None
        Flat site indices (C order over ``field_shape``); None = all sites.

    ``result()`` keys: ``mean`` (n_sites,), ``second`` = <phi_x phi_y> (n_sites, n_sites),
    ``connected`` = <phi_x phi_y> - <phi_x><phi_y>, ``sites``.
    Memory O(n_sites^2); the per-chunk cost is one (n, V)^T (n, V) product.
    """

    def __init__(self, sites=None, *, field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if sites is not None:
            sites = np.asarray(sites)
            if sites.ndim != 1 or not np.issubdtype(sites.dtype, np.integer) or sites.size == 0:
                raise ValueError("sites must be a non-empty 1-d int array of flat site indices")
            if sites.min() < 0:
                raise ValueError("sites must be >= 0")
        self.sites = sites

    def _config(self):
        return super()._config() + (None if self.sites is None else tuple(self.sites.tolist()),)

    def _flat(self, phi, xp):
        X = phi.reshape(phi.shape[0], -1)
        if self.sites is not None:
            if self.sites.max() >= X.shape[1]:
                raise ValueError(f"sites: index {self.sites.max()} out of range for "
                                 f"{X.shape[1]} sites")
            X = xp.take(X, xp.asarray(self.sites), axis=1)
        return X

    def _init_shift(self, phi, w, xp):
        X = self._flat(phi, xp)
        m = X.mean(axis=0) if w is None else _wsum(w, X, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        X = self._flat(phi, xp) - xp.asarray(self.shift)
        if w is None:
            s1 = X.sum(axis=0)
            s2 = X.T @ X
        else:
            wx = xp.asarray(w)
            s1 = wx @ X
            s2 = (X * wx[:, None]).T @ X
        return {"s1": _to_numpy(s1), "s2": _to_numpy(s2)}

    def _reshift(self, sums, sum_w, old, new):
        c = old - new
        s1, s2 = sums["s1"], sums["s2"]
        return {"s1": s1 + sum_w * c,
                "s2": s2 + np.outer(s1, c) + np.outer(c, s1) + sum_w * np.outer(c, c)}

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("TwoPointMatrix has seen no samples")
        m1 = self._sums["s1"] / self.sum_w
        m2 = self._sums["s2"] / self.sum_w
        conn = m2 - np.outer(m1, m1)
        mean = self.shift + m1
        sites = (np.arange(int(np.prod(self.field_shape))) if self.sites is None
                 else self.sites.copy())
        return {"mean": mean, "connected": conn, "second": conn + np.outer(mean, mean),
                "sites": sites, "n_samples": self.n_samples, "ess": self.ess}


# ----------------------------------------------------------------------------------------------
class FourierTwoPoint(Accumulator):
    """Translation-averaged two-point function via FFT on a periodic lattice.

    Accumulates ``|phit(p)|^2 / V`` (real FFT over the ``ndim`` trailing lattice axes, one
    spectrum per component) and the site-averaged field ``M``. Conventions of docs/conventions.md
    section 2: ``phit(p) = sum_x exp(-i p.x) phi(x)``, ``G(r) = ifftn(Gt)(r)``.

    Parameters
    ----------
    ndim : int
        Number of trailing lattice axes (the lattice dimension d).

    ``result()`` keys (``[D]`` = component axis when present):

    * ``Gt_full`` ([D], *shape): <|phit(p)|^2>/V;
    * ``Gt`` ([D], *shape): connected, ``Gt_full - V <M>^2 delta_{p,0}``;
    * ``G`` ([D], *shape): connected translation-averaged
      ``G_c(r) = (1/V) sum_y <phi_y phi_{y+r}> - <M>^2`` (docs/conventions.md);
    * ``G_full``: without the subtraction; ``M``: <M> per component.
    """

    def __init__(self, ndim: int, *, field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not isinstance(ndim, (int, np.integer)) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        self.ndim = int(ndim)
        # set by share_spectrum(): per-sample sums handed to a ScalarObservables
        self._share = None

    def _config(self):
        return super()._config() + (self.ndim,)

    def _link_weights(self, lat, xp, interleaved):
        """Half-spectrum weights ``(K, 1 + d)``: column 0 ``c_p``, column ``1 + mu``
        ``c_p cos(p_mu)``, with ``c_p`` the multiplicity of a real-FFT mode (2 for the modes
        standing for ``p`` and ``-p``, 1 for ``k_last = 0`` and ``k_last = L/2``). Then
        ``sum_x d_x^2 = (1/V) sum_half c_p |dt(p)|^2`` and
        ``sum_x d_x d_{x+mu} = (1/V) sum_half c_p cos(p_mu) |dt(p)|^2``. ``interleaved``:
        each row twice (the real and imaginary parts of the complex spectrum viewed as
        float64), divided by V."""
        key = (tuple(lat), bool(interleaved), xp.__name__)
        cache = getattr(self, "_weights_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        d = len(lat)
        half = tuple(lat[:-1]) + (lat[-1] // 2 + 1,)
        ks = np.meshgrid(*[np.arange(h) for h in half], indexing="ij")
        k_last = ks[-1]
        mult = np.where((k_last == 0) | (2 * k_last == lat[-1]), 1.0, 2.0)
        W = np.empty(half + (1 + d,))
        W[..., 0] = mult
        for mu in range(d):
            W[..., 1 + mu] = mult * np.cos(2.0 * np.pi * ks[mu] / lat[mu])
        W = W.reshape(-1, 1 + d)
        if interleaved:
            W = np.repeat(W, 2, axis=0) / math.prod(lat)
        W = xp.asarray(np.ascontiguousarray(W))
        self._weights_cache = (key, W)
        return W

    def _axes(self, phi):
        if phi.ndim - 1 < self.ndim:
            raise ValueError(f"phi has {phi.ndim - 1} field axes, fewer than ndim={self.ndim}")
        return tuple(range(phi.ndim - self.ndim, phi.ndim))

    def _init_shift(self, phi, w, xp):
        axes = self._axes(phi)
        m = phi.mean(axis=axes)  # (n, [D])
        m = m.mean(axis=0) if w is None else _wsum(w, m, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        axes = self._axes(phi)
        V = int(np.prod(phi.shape[axes[0]:]))
        lat = phi.shape[axes[0]:]
        a = xp.asarray(self.shift).reshape(self.shift.shape + (1,) * self.ndim)
        n = phi.shape[0]
        share = self._share
        f0s, rs = [], []  # per-sample p = 0 modes and link sums for a linked ScalarObservables
        # cache-sized sub-blocks of samples on the CPU (one block on a GPU); equal to the
        # one-block reference to float64 rounding
        per = max(1, int(np.prod(phi.shape[1:])) * phi.itemsize)
        step = n if xp is not np else max(1, _FFT_BLOCK_BYTES // per)
        pk = msum = None
        use_buf = xp is np and phi.dtype == np.float64
        sbuf = None
        if use_buf:
            # buffers reused by every sub-block of the pass (see _rfftn_into, _scratch)
            m = min(step, n)
            fbuf = _scratch("fft_f", (m,) + phi.shape[1:-1] + (phi.shape[-1] // 2 + 1,),
                            np.complex128)
            if share is not None:
                sbuf = _scratch("fft_s", (m,) + fbuf.shape[1:-1] + (2 * fbuf.shape[-1],))
        for s0 in range(0, n, step):
            wb = None if w is None else w[s0:s0 + step]
            if use_buf:
                # the transform of phi - a is that of phi with a V taken off the p = 0 mode:
                # one pass over the block less (rounding of the p != 0 modes grows like
                # |a| / spread, measured 5e-14 relative at a mean 1000 times the spread)
                nb = min(step, n - s0)
                F = _rfftn_into(phi[s0:s0 + nb], axes, fbuf[:nb])
                F[(Ellipsis,) + (0,) * self.ndim] -= self.shift * V
            else:
                d = phi[s0:s0 + step] - a
                F = _rfftn_into(d, axes, None) if xp is np else xp.fft.rfftn(d, axes=axes)
            if xp is np and F.dtype == np.complex128 and F.flags.c_contiguous:
                # sum over samples of |F|^2 straight from the (re, im) pairs: no block-sized
                # temporaries; M from the p = 0 mode (sum_x d = F(0)); equal to the lines
                # below to float64 rounding
                Fv = F.view(np.float64)
                F0 = F[(Ellipsis,) + (0,) * self.ndim].real.copy()  # F lives in a reused buffer
                if share is not None:
                    # one squared block serves both: the sample sum (spectrum) and, by
                    # one small matrix product, the per-sample sums of d^2 and links
                    S = np.multiply(Fv, Fv, out=None if sbuf is None else sbuf[:nb])
                    sq = (S.sum(axis=0) if wb is None else
                          np.tensordot(np.asarray(wb, np.float64), S, axes=(0, 0)))
                    W2 = self._link_weights(lat, np, interleaved=True)
                    rs.append((S.reshape(-1, W2.shape[0]) @ W2).reshape(
                        (S.shape[0], -1, W2.shape[1])))
                    f0s.append(F0.reshape(S.shape[0], -1))
                else:
                    sq = (np.einsum("i...,i...->...", Fv, Fv) if wb is None else
                          np.einsum("i,i...,i...->...", np.asarray(wb, np.float64), Fv, Fv))
                t1 = (sq[..., 0::2] + sq[..., 1::2]) / V
                t2 = _wsum(wb, F0 / V, xp)
                pk = t1 if pk is None else pk + t1
                msum = t2 if msum is None else msum + t2
                continue
            P = F.real ** 2
            P += F.imag ** 2
            P /= V
            if share is not None:
                Wp = self._link_weights(lat, xp, interleaved=False)
                rs.append((P.reshape(-1, Wp.shape[0]) @ Wp).reshape((P.shape[0], -1, Wp.shape[1])))
                f0s.append(F[(Ellipsis,) + (0,) * self.ndim].real.reshape(P.shape[0], -1))
            t1, t2 = _wsum(wb, P, xp), _wsum(wb, d.mean(axis=axes), xp)
            pk = t1 if pk is None else pk + t1
            msum = t2 if msum is None else msum + t2
        if share is not None:
            cat = (lambda parts: parts[0]) if len(rs) == 1 else xp.concatenate
            # one assignment: a reader sees the whole entry or the previous one
            share.entry = (phi, self.shift.copy(), lat, cat(f0s), cat(rs))
        return {"pk": pk, "m": msum}

    def _reshift(self, sums, sum_w, old, new):
        c = np.asarray(old - new)
        V = int(np.prod(self.field_shape[-self.ndim:]))
        pk = sums["pk"].copy()
        idx = (Ellipsis,) + (0,) * self.ndim
        # F0 = V m  ->  |F0 + cV|^2 / V = |F0|^2/V + 2 c V m + c^2 V
        pk[idx] = pk[idx] + 2.0 * c * V * sums["m"] + c * c * V * sum_w
        return {"pk": pk, "m": sums["m"] + c * sum_w}

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("FourierTwoPoint has seen no samples")
        shape = self.field_shape[-self.ndim:]
        axes = tuple(range(len(self.field_shape) - self.ndim, len(self.field_shape)))
        V = int(np.prod(shape))
        half = self._sums["pk"] / self.sum_w
        mshift = self._sums["m"] / self.sum_w  # <M - a>
        M = self.shift + mshift
        idx = (Ellipsis,) + (0,) * self.ndim
        # full (unshifted) spectrum: add back the shift at p = 0
        half_full = half.copy()
        half_full[idx] = half_full[idx] + 2.0 * self.shift * V * mshift + self.shift ** 2 * V
        half_conn = half.copy()
        half_conn[idx] = half_conn[idx] - V * mshift ** 2
        G = np.fft.irfftn(half_conn, s=shape, axes=axes)
        G_full = np.fft.irfftn(half_full, s=shape, axes=axes)
        Gt = np.fft.fftn(G, axes=axes).real
        Gt_full = np.fft.fftn(G_full, axes=axes).real
        return {"G": G, "G_full": G_full, "Gt": Gt, "Gt_full": Gt_full, "M": M,
                "n_samples": self.n_samples, "ess": self.ess}


# ----------------------------------------------------------------------------------------------
class PointMoments(Accumulator):
    """Joint moments up to order 6 (or ``max_order``) at chosen point tuples.

    Every distinct sorted index multiset of the closure of ``tuples`` under taking
    sub-multisets is accumulated once (the closure is what cumulants and re-centering need).
    Per chunk, the product for a multiset is its prefix's product times one column, so the
    cost is one multiply-add per multiset and sample.

    Parameters
    ----------
    tuples : int array (n_tuples, n) or list of int sequences
        Flat site indices (C order over ``field_shape``; component-major when D > 1).
    max_order : int
        Largest allowed tuple length (default 6, at most 8).
    block_bytes : int
        Working-memory cap for the per-chunk product table.

    ``result()`` keys: ``moments`` (raw E[prod phi], per requested tuple), ``central``
    (central moments), ``cumulants`` (joint cumulants), ``order`` (tuple lengths).
    """

    def __init__(self, tuples, max_order: int = 6, *, block_bytes: int = 32 * 2 ** 20,
                 field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not isinstance(max_order, (int, np.integer)) or not 1 <= max_order <= 8:
            raise ValueError(f"max_order must be an int in 1..8, got {max_order!r}")
        self.tuples = normalize_tuples(tuples)
        longest = max(len(t) for t in self.tuples)
        if longest > max_order:
            raise ValueError(f"tuples: order {longest} exceeds max_order={max_order}")
        self.max_order = int(max_order)
        self.block_bytes = int(block_bytes)
        self._build_tables()

    def _build_tables(self):
        closure = multiset_closure(self.tuples)
        self.sites = np.array(sorted({t[0] for t in closure if len(t) == 1}), dtype=np.int64)
        col = {int(s): i for i, s in enumerate(self.sites)}
        self.by_order: dict[int, list[tuple]] = {}
        for t in closure:
            self.by_order.setdefault(len(t), []).append(t)
        self.index = {}
        for k, lst in self.by_order.items():
            for i, t in enumerate(lst):
                self.index[t] = (k, i)
        self.kmax = max(self.by_order)
        self._prefix = {}
        self._last = {}
        for k in range(2, self.kmax + 1):
            lst = self.by_order[k]
            self._prefix[k] = np.array([self.index[t[:-1]][1] for t in lst], dtype=np.int64)
            self._last[k] = np.array([col[t[-1]] for t in lst], dtype=np.int64)
        self._reshift_tables = None

    def _config(self):
        return super()._config() + (tuple(self.by_order.get(1, ())), len(self.index))

    def _restrict(self, phi, xp):
        """Only the columns of the sites in the tuples: (n, n_sites)."""
        X = phi.reshape(phi.shape[0], -1)
        if self.sites.max() >= X.shape[1]:
            raise ValueError(f"tuples: site index {int(self.sites.max())} out of range for "
                             f"{X.shape[1]} field entries")
        return _take_columns(X, self.sites, xp)

    def _init_shift(self, X, w, xp):
        m = X.mean(axis=0) if w is None else _wsum(w, X, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, X, w, xp):
        # Rows go through in sub-blocks whose product table fits in cache (``_CACHE_BYTES``;
        # on a GPU the ``block_bytes`` cap alone): the shift is subtracted per sub-block (no
        # full-chunk copy) and the column gathers use ``take``. Sums agree with the one-block
        # NumPy reference to float64 rounding (the summation order changes).
        n = X.shape[0]
        widest = max(len(v) for v in self.by_order.values())
        step = max(1, self.block_bytes // (16 * widest))
        if xp is np:
            step = min(step, max(8, _CACHE_BYTES // (8 * widest)))
        dt = np.complex128 if X.dtype.kind == "c" else np.float64
        out = {f"o{k}": np.zeros(len(self.by_order[k]), dtype=dt) for k in self.by_order}
        prefix = {k: xp.asarray(v) for k, v in self._prefix.items()}
        last = {k: xp.asarray(v) for k, v in self._last.items()}
        shift = xp.asarray(self.shift)
        for s0 in range(0, n, step):
            Xb = X[s0:s0 + step] - shift
            wb = None if w is None else w[s0:s0 + step]
            P = Xb
            out["o1"] += _wsum(wb, P, xp)
            for k in range(2, self.kmax + 1):
                P = xp.take(P, prefix[k], axis=1) * xp.take(Xb, last[k], axis=1)
                out[f"o{k}"] += _wsum(wb, P, xp)
        return out

    def _get_reshift_tables(self):
        if self._reshift_tables is None:
            col = {int(s): i for i, s in enumerate(self.sites)}
            tabs = {}
            for k in range(1, self.kmax + 1):
                lst = self.by_order[k]
                entries = []
                for r in range(0, k):
                    for pos in itertools.combinations(range(k), r):
                        comp = [i for i in range(k) if i not in pos]
                        sub = (np.array([self.index[tuple(t[i] for i in pos)][1] for t in lst])
                               if r else None)
                        cc = np.array([[col[t[i]] for i in comp] for t in lst], dtype=np.int64)
                        entries.append((r, sub, cc))
                tabs[k] = entries
            self._reshift_tables = tabs
        return self._reshift_tables

    def _shifted_table(self, sums, sum_w, c):
        """Power sums about shift b from sums about a (c = a - b), by subset expansion."""
        tabs = self._get_reshift_tables()
        out = {}
        for k in range(1, self.kmax + 1):
            acc = np.array(sums[f"o{k}"], dtype=np.result_type(sums[f"o{k}"], c, np.float64))
            for r, sub, cc in tabs[k]:
                S = sum_w if r == 0 else sums[f"o{r}"][sub]
                acc = acc + S * np.prod(c[cc], axis=1)
            out[f"o{k}"] = acc
        return out

    def _reshift(self, sums, sum_w, old, new):
        return self._shifted_table(sums, sum_w, np.asarray(old) - np.asarray(new))

    def copy(self) -> "PointMoments":
        """A copy sharing the (read-only) monomial tables, with its own sums."""
        new = copy.copy(self)
        new._sums = {k: np.array(v, copy=True) for k, v in self._sums.items()}
        return new

    def moment_table(self, center: str = "mean") -> dict:
        """E[prod (phi_i - b_i)] for every multiset of the closure, as {sorted tuple: value}.

        ``center``: "mean" (central moments, b = weighted mean), "raw" (b = 0) or
        "shift" (b = the stored shift).
        """
        if self.n_samples == 0:
            raise ValueError("PointMoments has seen no samples")
        if center == "shift":
            sums = self._sums
        else:
            mean = self.shift + self._sums["o1"] / self.sum_w
            target = mean if center == "mean" else np.zeros_like(self.shift)
            if center not in ("mean", "raw"):
                raise ValueError(f"center must be 'mean', 'raw' or 'shift', got {center!r}")
            sums = self._shifted_table(self._sums, self.sum_w, self.shift - target)
        table = {}
        for k, lst in self.by_order.items():
            vals = sums[f"o{k}"] / self.sum_w
            for t, v in zip(lst, vals):
                table[t] = float(v)
        return table

    def mean(self) -> np.ndarray:
        """Site means at ``self.sites``."""
        return self.shift + self._sums["o1"] / self.sum_w

    def result(self) -> dict:
        raw = self.moment_table("raw")
        cen = self.moment_table("mean")
        mean = dict(zip((int(s) for s in self.sites), self.mean()))
        keys = [tuple(sorted(t)) for t in self.tuples]
        return {
            "moments": np.array([raw[k] for k in keys]),
            "central": np.array([cen[k] if len(k) > 1 else 0.0 for k in keys]),
            "cumulants": np.array([cumulant_from_central(k, cen, mean) for k in keys]),
            "order": np.array([len(k) for k in keys]),
            "n_samples": self.n_samples, "ess": self.ess,
        }


# ----------------------------------------------------------------------------------------------
def tuple_arrays(tuples) -> list:
    """Feature tuples as a list of int64 arrays ``(n_t, k)`` (one per correlator order k, 1..8).

    Accepts one int array ``(n_tuples, k)``, a list of such arrays (several orders at once),
    or a sequence of equal-length int sequences. Raises ValueError naming ``tuples``.
    """
    if isinstance(tuples, np.ndarray) and tuples.ndim == 2:
        tl = [tuples]
    elif isinstance(tuples, (list, tuple)) and len(tuples) and all(
            isinstance(t, np.ndarray) and t.ndim == 2 for t in tuples):
        tl = list(tuples)
    else:
        try:
            arr = np.asarray(tuples)
        except ValueError:
            raise ValueError("tuples: expected an int array (n_tuples, n) or a list of such "
                             "arrays") from None
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise ValueError("tuples: expected an int array (n_tuples, n) or a list of such arrays")
        tl = [arr]
    out = []
    for t in tl:
        t = np.asarray(t)
        if t.size and not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"tuples: must be integer feature indices, got dtype {t.dtype}")
        if t.shape[1] < 1 or t.shape[1] > 8:
            raise ValueError(f"tuples: order must be 1..8, got {t.shape[1]}")
        if t.size and t.min() < 0:
            raise ValueError("tuples: negative feature index")
        out.append(t.astype(np.int64))
    if not any(t.shape[0] for t in out):
        raise ValueError("tuples must not be empty")
    return out


def _flat_features(phi):
    return phi.reshape(phi.shape[0], -1)


# the features of the last chunk seen: accumulators sharing a features callable (e.g. a plan's
# weighted and unweighted moments) evaluate it once per chunk; holds at most one chunk
_LAST_FEATURES = [None]


def clear_feature_cache():
    """Drop the features of the last chunk (the driver calls it after a pass)."""
    _LAST_FEATURES[0] = None


def _features_of(features, phi):
    last = _LAST_FEATURES[0]
    if last is not None and last[0] is phi and last[1] is features:
        return last[2]
    X = features(phi)
    _LAST_FEATURES[0] = (phi, features, X)
    return X


class FeatureMoments(PointMoments):
    """Joint moments of per-configuration *features* at feature tuples (the jackknife engine).

    A feature is any function of one configuration: the field at a site (default: the flat
    field, flat index convention of the module docstring), a transformed copy of the field
    (rotated components, translated sites), its Fourier transform (complex features are
    allowed), a source exponential... Every distinct sorted sub-multiset of every tuple is
    accumulated once as a shifted, weighted power sum (like :class:`PointMoments`), so that a
    *block* of samples is summarised by one vector of sums; the driver
    (:func:`nnft.observables.measure`) keeps one such accumulator per block, and
    :func:`nnft.observables.replicas.feature_replicas` turns total and blocks into
    delete-one-block jackknife replicas of any smooth function of the moments (connected
    correlators, Wick-subtracted moments, differences under a symmetry, ratios).

    Parameters
    ----------
    tuples : int array (n_t, k) or list of such arrays (orders 1..8)
        Feature indices.
    features : callable, optional
        ``features(phi) -> (n, F)`` array (real or complex) for a chunk ``phi`` of shape
        ``(n, *field_shape)``; it receives the chunk's own array type (NumPy for stores).
        Default: the flattened field.
    ignore_weights : bool
        Treat weighted chunks as unweighted (e.g. to measure the undeformed reference ensemble
        on the same samples and blocks as the reweighted one).
    block_bytes : int
        Working-memory cap for the per-chunk product table.

    Attributes
    ----------
    tuple_list : list of int arrays, the tuples as given (one array per order)
    lookups : list of int arrays (n_t, 2**k)
        Index, into :meth:`shifted_moments`, of the monomial of every subset (bit mask) of
        every tuple (-1 for the empty set).
    """

    def __init__(self, tuples, features: Callable | None = None, *, ignore_weights=False,
                 block_bytes: int = 32 * 2 ** 20, field_shape=None, shift=None):
        if features is not None and not callable(features):
            raise ValueError("features must be callable features(phi) -> (n, F)")
        self.tuple_list = tuple_arrays(tuples)
        rows = [tuple(r) for t in self.tuple_list for r in t.tolist()]
        self.features = features
        self.ignore_weights = bool(ignore_weights)
        super().__init__(rows, max_order=8, block_bytes=block_bytes, field_shape=field_shape,
                         shift=shift)
        offset, off = {}, 0
        for k in range(1, self.kmax + 1):
            offset[k] = off
            off += len(self.by_order.get(k, ()))
        self.n_monomials = off
        self.lookups = []
        for t in self.tuple_list:
            k = t.shape[1]
            ids = np.full((t.shape[0], 1 << k), -1, dtype=np.int64)
            for row, tup in enumerate(t.tolist()):
                for mask in range(1, 1 << k):
                    key = tuple(sorted(tup[i] for i in range(k) if mask >> i & 1))
                    order, i = self.index[key]
                    ids[row, mask] = offset[order] + i
            self.lookups.append(ids)
        self._col = {int(s): i for i, s in enumerate(self.sites)}

    def _config(self):
        f = self.features
        name = None if f is None else getattr(f, "__qualname__", type(f).__qualname__)
        return super()._config() + (self.ignore_weights, name)

    def _restrict(self, phi, xp):
        X = _flat_features(phi) if self.features is None else _features_of(self.features, phi)
        if not hasattr(X, "ndim") or X.ndim != 2 or X.shape[0] != phi.shape[0]:
            raise ValueError("features: must return an array (n_samples, n_features)")
        if self.sites.max() >= X.shape[1]:
            raise ValueError(f"tuples: feature index {int(self.sites.max())} out of range for "
                             f"{X.shape[1]} features")
        return _take_columns(X, self.sites, _xp_of(X))

    def _cast(self, X, xp):
        dt = xp.complex128 if X.dtype.kind == "c" else xp.float64
        return xp.ascontiguousarray(X if X.dtype == dt else X.astype(dt))

    def _init_shift(self, X, w, xp):
        X = self._cast(X, xp)
        m = X.mean(axis=0) if w is None else _wsum(w, X, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m))

    def prepare(self, phi, weights=None, *, log_weight=None):
        if self.ignore_weights:
            weights = log_weight = None
        return super().prepare(phi, weights, log_weight=log_weight)

    def update(self, phi, weights=None, *, log_weight=None):
        if self.ignore_weights:
            weights = log_weight = None
        return super().update(phi, weights, log_weight=log_weight)

    def shifted_moments(self) -> np.ndarray:
        """Means of all monomials about the shift, ``E prod_i (f_i - a_i)`` (n_monomials,)."""
        if self.n_samples == 0:
            raise ValueError("FeatureMoments has seen no samples")
        return self._flat_sums(self) / self.sum_w

    def shifted_moments_without(self, block: "FeatureMoments") -> np.ndarray:
        """Shifted monomial means of this accumulator's samples minus those of ``block``
        (a subset merged in before): the delete-one-block jackknife replica."""
        sums, sum_w = self.sums_without(block)
        return self._flat_sums(sums) / sum_w

    def _flat_sums(self, acc_or_sums):
        sums = acc_or_sums._sums if isinstance(acc_or_sums, Accumulator) else acc_or_sums
        return np.concatenate([np.asarray(sums[f"o{k}"]) for k in range(1, self.kmax + 1)])

    def tuple_shifts(self, i: int) -> np.ndarray:
        """The shifts ``a`` of the features of tuple array ``i`` (n_t, k)."""
        t = self.tuple_list[i]
        cols = np.vectorize(self._col.__getitem__, otypes=[np.int64])(t) if t.size else t
        return self.shift[cols]


class SourceExponentials(Accumulator):
    """Per-source exponentials and power sums of ``X_s = sum_x J_s(x) phi(x)`` (for W[J]).

    Keeps ``sum w exp(X - c)`` (``c`` = the largest X of the first chunk, per source) and the
    shifted power sums ``sum w (X - a)^k``, k = 1..n_max (``a`` = mean of the first chunk).

    Parameters
    ----------
    J : array (n_sources, F)
        Sources over the flattened configuration (flat index convention).
    n_max : int
        Highest power kept.

    ``result()``: ``W`` = log E exp(X) (n_sources,), ``moments`` = E X^k (n_sources, n_max).
    """

    def __init__(self, J, n_max: int = 4, *, field_shape=None, shift=None, exp_shift=None):
        super().__init__(field_shape, shift)
        J = np.asarray(J, dtype=np.float64)
        if J.ndim != 2:
            raise ValueError(f"J must be an array (n_sources, n_features), got shape {J.shape}")
        if not isinstance(n_max, (int, np.integer)) or n_max < 1:
            raise ValueError(f"n_max: must be a positive int, got {n_max!r}")
        self.J = J
        self._JT = None
        self.n_max = int(n_max)
        self.exp_shift = None if exp_shift is None else np.asarray(exp_shift, dtype=np.float64)

    def _config(self):
        return super()._config() + (self.J.shape, self.n_max)

    def _restrict(self, phi, xp):
        X = phi.reshape(phi.shape[0], -1)
        if X.shape[1] != self.J.shape[1]:
            raise ValueError(f"J: {self.J.shape[1]} entries per source but configurations have "
                             f"{X.shape[1]}")
        if self._JT is None:
            self._JT = np.ascontiguousarray(self.J.T)  # (F, n_sources); C order is BLAS-fast
        return X.astype(xp.float64) @ xp.asarray(self._JT)  # (n, n_sources)

    def _init_shift(self, X, w, xp):
        m = X.mean(axis=0)
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)
        if self.exp_shift is None:
            self.exp_shift = np.asarray(_to_numpy(X.max(axis=0)), dtype=np.float64)

    def _chunk_sums(self, X, w, xp):
        c = xp.asarray(self.exp_shift)
        if float(_to_numpy((X - c).max())) > 600.0:
            raise ValueError("J: exp(J.phi) overflows (J.phi exceeds the first chunk's maximum "
                             "by more than 600); use a smaller source")
        out = _power_sums(X - xp.asarray(self.shift), w, xp, self.n_max)
        out["e"] = _wsum(w, xp.exp(X - c), xp)
        return out

    def _reshift(self, sums, sum_w, old, new):
        return _binom_reshift_power(sums, sum_w, old - new, self.n_max)

    def stats_from(self, sums, sum_w):
        """(W, raw moments E (X - a)^k) from sums (possibly leave-one-out)."""
        W = np.log(sums["e"] / sum_w) + self.exp_shift
        mom = np.stack([sums[f"p{k}"] / sum_w for k in range(1, self.n_max + 1)], axis=-1)
        return W, mom

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("SourceExponentials has seen no samples")
        W, mom = self.stats_from(self._sums, self.sum_w)
        return {"W": W, "shifted_moments": mom, "n_samples": self.n_samples, "ess": self.ess}


# ----------------------------------------------------------------------------------------------
class SampleFunction(Accumulator):
    """Means (and shifted power sums up to ``max_order``) of per-sample quantities.

    Parameters
    ----------
    fn : callable
        ``fn(phi, xp) -> array (n, K)`` of K per-sample values (any array module).
    names : sequence of str
        Names of the K quantities.
    max_order : int
        Power sums kept per quantity (default 2: mean and variance).

    ``result()``: ``{name: mean}`` plus ``variance`` (K,) and ``mean`` (K,) arrays.
    """

    def __init__(self, fn: Callable, names: Sequence[str], max_order: int = 2, *,
                 field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not callable(fn):
            raise ValueError("fn must be callable fn(phi, xp) -> (n, K)")
        self.fn = fn
        self.names = tuple(str(n) for n in names)
        if not self.names:
            raise ValueError("names must not be empty")
        if not isinstance(max_order, (int, np.integer)) or not 1 <= max_order <= 8:
            raise ValueError(f"max_order must be an int in 1..8, got {max_order!r}")
        self.max_order = int(max_order)

    def _config(self):
        return super()._config() + (self.names, self.max_order)

    def _values(self, phi, xp):
        q = self.fn(phi, xp)
        q = q.reshape(phi.shape[0], -1)
        if q.shape[1] != len(self.names):
            raise ValueError(f"fn returned {q.shape[1]} quantities per sample, expected "
                             f"{len(self.names)} ({self.names})")
        return q.astype(xp.float64)

    def _init_shift(self, phi, w, xp):
        q = self._values(phi, xp)
        m = q.mean(axis=0) if w is None else _wsum(w, q, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        return _power_sums(self._values(phi, xp) - xp.asarray(self.shift), w, xp, self.max_order)

    def _reshift(self, sums, sum_w, old, new):
        return _binom_reshift_power(sums, sum_w, old - new, self.max_order)

    def means(self) -> np.ndarray:
        return self.shift + self._sums["p1"] / self.sum_w

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError(f"{type(self).__name__} has seen no samples")
        mu = {0: 1.0}
        for k in range(1, self.max_order + 1):
            mu[k] = self._sums[f"p{k}"] / self.sum_w
        mean = self.shift + mu[1]
        out = {n: float(v) for n, v in zip(self.names, mean)}
        out["mean"] = mean
        if self.max_order >= 2:
            out["variance"] = _central_from_shifted(mu, 2)[2]
        out["n_samples"] = self.n_samples
        out["ess"] = self.ess
        return out


# Sub-block of ScalarObservables: its few passes (M, phi^2, links along each axis) stay in
# cache, while the per-call overhead stays small (measured in the whole pass on a 2-core EPYC:
# 1-4 MiB cost 10-25% less CPU than 512 KiB).
_SCALAR_BLOCK_BYTES = 2 * 2 ** 20


def _row_dot(a, b, xp, out=None):
    """``(a * b).sum(axis=1)`` of two 2-D arrays without the product temporary."""
    if xp is np and a.dtype.kind == "f" and hasattr(np, "vecdot"):
        return np.vecdot(a, b, axis=1, out=out)
    r = xp.einsum("ij,ij->i", a, b)
    if out is None:
        return r
    out[...] = r
    return out


def _periodic_link_product(phi, ax, xp):
    """``phi * roll(phi, -1, axis=ax)`` element for element, by slicing (no rolled copy)."""
    L = phi.shape[ax]
    out = xp.empty_like(phi)
    sl = [slice(None)] * phi.ndim

    def part(a, b):
        t = list(sl)
        t[ax] = slice(a, b)
        return tuple(t)

    xp.multiply(phi[part(0, L - 1)], phi[part(1, L)], out=out[part(0, L - 1)])
    xp.multiply(phi[part(L - 1, L)], phi[part(0, 1)], out=out[part(L - 1, L)])
    return out


class ScalarObservables(SampleFunction):
    """Standard per-sample observables of docs/conventions.md, and what derives from them.

    Per sample: ``M = (1/V) sum_x phi_x`` (per component), ``|M|``, ``M^2 = |M|^2``, ``M^4``,
    ``phi2 = (1/V) sum_x |phi_x|^2`` and the link average
    ``e = (1/(d V)) sum_mu sum_x phi_x . phi_{x+mu}`` (periodic links; on open axes only the
    interior links, normalised by their number).

    Parameters
    ----------
    ndim : int
        Number of trailing lattice axes d.
    periodic : bool or sequence of bool
        Boundary per axis.

    ``result()`` adds the derived quantities (V = number of sites):
    ``chi_2 = V (<M^2> - |<M>|^2)``, ``chi_abs = V (<M^2> - <|M|>^2)``,
    ``E = <e> - |<M>|^2`` (Ising energy, (1/d) sum_mu G_c(mu)),
    ``U4 = 1 - <M^4> / (3 <M^2>^2)`` (Binder cumulant), ``abs_M = <|M|>``.
    """

    def __init__(self, ndim: int, periodic=True, *, field_shape=None, shift=None):
        if not isinstance(ndim, (int, np.integer)) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        self.ndim = int(ndim)
        per = [bool(periodic)] * self.ndim if np.ndim(periodic) == 0 else [bool(p) for p in periodic]
        if len(per) != self.ndim:
            raise ValueError(f"periodic must be a bool or {self.ndim} bools")
        self.periodic = tuple(per)
        self._ncomp = None
        self._share = None  # set by share_spectrum(): per-sample sums from a FourierTwoPoint
        super().__init__(self._compute, self._names(), max_order=2, field_shape=field_shape,
                         shift=shift)

    def _names(self):
        return ("abs_M", "M2", "M4", "phi2", "e")

    def _compute(self, phi, xp):
        # Per-sample row dot products on reshaped views: no temporaries the size of the block,
        # one pass over the (cache-sized) block per quantity, few array calls per sub-block.
        # Equal to _compute_reference up to the order of the float additions.
        n = phi.shape[0]
        d = self.ndim
        lat = phi.shape[phi.ndim - d:]
        V = math.prod(lat)
        ncomp = math.prod(phi.shape[1:phi.ndim - d])
        phi = xp.ascontiguousarray(phi)
        q = xp.empty((n, 5 + ncomp), dtype=phi.dtype)
        M = q[:, 5:]
        xp.matmul(phi.reshape(n, ncomp, V), xp.full(V, 1.0 / V, dtype=phi.dtype), out=M)
        M2 = q[:, 1]
        _row_dot(M, M, xp, out=M2)
        xp.sqrt(M2, out=q[:, 0])
        xp.multiply(M2, M2, out=q[:, 2])
        flat = phi.reshape(n, ncomp * V)
        xp.multiply(_row_dot(flat, flat, xp), 1.0 / V, out=q[:, 3])
        e = 0.0
        for mu in range(d):
            L = lat[mu]
            B = math.prod(lat[mu + 1:])  # flat stride of one step along axis mu
            if B == 1 and L >= 2:
                # last axis: one dot of the sample with itself shifted by one entry, then
                # the pairs that straddle two rows (x_{r, L-1} x_{r+1, 0}) swapped for the
                # periodic ones (x_{r, L-1} x_{r, 0}) or dropped (open): short rows of L
                # entries would cost a call overhead each
                Y = phi.reshape(n, -1, L)
                first = Y[:, :, 0]
                fix = -first[:, 1:] if not self.periodic[mu] else first[:, :-1] - first[:, 1:]
                links = _row_dot(flat[:, :-1], flat[:, 1:], xp) + \
                    _row_dot(Y[:, :-1, L - 1], fix, xp)
                if self.periodic[mu]:
                    links += Y[:, -1, L - 1] * first[:, -1]
                e = e + links / ((V if self.periodic[mu] else V * (L - 1) / L) * d)
                continue
            Y = phi.reshape(-1, L * B)  # rows: (sample, component, axes before mu)
            links = _row_dot(Y[:, :(L - 1) * B], Y[:, B:], xp)
            if self.periodic[mu]:
                links += _row_dot(Y[:, (L - 1) * B:], Y[:, :B], xp)
                norm = V
            elif L >= 2:
                norm = V * (L - 1) / L
            else:
                continue
            if links.shape[0] != n:
                links = links.reshape(n, -1).sum(axis=1)
            e = e + links / (norm * d)
        q[:, 4] = e
        return q

    def _compute_reference(self, phi, xp):
        """Plain-NumPy reference of :meth:`_compute` (kept for tests)."""
        n = phi.shape[0]
        lat_axes = tuple(range(phi.ndim - self.ndim, phi.ndim))
        M = phi.mean(axis=lat_axes).reshape(n, -1)
        M2 = (M * M).sum(axis=1)
        absM = xp.sqrt(M2)
        V = int(np.prod(phi.shape[-self.ndim:]))
        phi2 = (phi * phi).reshape(n, -1).sum(axis=1) / V
        e = xp.zeros(n)
        for mu, ax in enumerate(lat_axes):
            L = phi.shape[ax]
            if self.periodic[mu]:
                prod = _periodic_link_product(phi, ax, xp)  # = phi * roll(phi, -1, ax)
                e = e + prod.reshape(n, -1).sum(axis=1) / V
            elif L >= 2:
                a = xp.take(phi, xp.arange(L - 1), axis=ax)
                b = xp.take(phi, xp.arange(1, L), axis=ax)
                e = e + (a * b).reshape(n, -1).sum(axis=1) / (V * (L - 1) / L)
        e = e / self.ndim
        return xp.concatenate([absM[:, None], M2[:, None], (M2 * M2)[:, None], phi2[:, None],
                               e[:, None], M], axis=1)

    def _from_spectrum(self, entry, xp):
        """Per-sample values from the sums a linked FourierTwoPoint made of the same chunk.

        ``entry = (phi, a, lat, F0, R)``: ``a`` the Fourier shift per component, ``F0`` (n, D)
        ``sum_x (phi_x - a)``, ``R`` (n, D, 1 + d) ``sum_x (phi_x - a)^2`` and
        ``sum_x (phi_x - a)(phi_{x+mu} - a)`` (periodic). With ``d = phi - a``:
        ``sum_x phi_x phi_{x+mu} = sum_x d_x d_{x+mu} + 2 a F0 + V a^2`` (the same for
        ``mu = 0`` shift, i.e. ``sum phi^2``), and ``M = a + F0 / V``.
        """
        _, a, lat, F0, R = entry
        n = F0.shape[0]
        V = math.prod(lat)
        d = len(lat)
        aa = xp.asarray(np.asarray(a, dtype=np.float64).reshape(-1))
        base = 2.0 * aa * F0 + V * (aa * aa)  # (n, D)
        q = xp.empty((n, 5 + F0.shape[1]), dtype=xp.float64)
        M = q[:, 5:]
        xp.add(aa, F0 / V, out=M)
        M2 = q[:, 1]
        xp.sum(M * M, axis=1, out=M2)
        xp.sqrt(M2, out=q[:, 0])
        xp.multiply(M2, M2, out=q[:, 2])
        q[:, 3] = (R[:, :, 0] + base).sum(axis=1) / V
        q[:, 4] = (R[:, :, 1:] + base[:, :, None]).sum(axis=(1, 2)) / (V * d)
        return q

    def _shared_entry(self, phi):
        """The linked FourierTwoPoint's entry for this very chunk object, or None."""
        share = self._share
        entry = None if share is None else share.entry  # read once (threads may replace it)
        if entry is None or entry[0] is not phi:
            return None
        share.entry = None  # consumed: do not keep the chunk alive
        lat = tuple(entry[2])
        if (len(lat) != self.ndim or not all(self.periodic)
                or tuple(phi.shape[phi.ndim - self.ndim:]) != lat):
            return None
        return entry

    def _values(self, phi, xp):
        n = phi.shape[0]
        per = max(1, int(np.prod(phi.shape[1:])) * phi.itemsize)
        step = n if xp is not np else max(1, _SCALAR_BLOCK_BYTES // per)
        entry = self._shared_entry(phi)
        if entry is not None:
            q = self._from_spectrum(entry, xp)
        elif step >= n:
            q = self._compute(phi, xp).astype(xp.float64)
        else:  # cache-sized sub-blocks; per-sample values are the same bit for bit
            q = xp.concatenate([self._compute(phi[s:s + step], xp).astype(xp.float64)
                                for s in range(0, n, step)])
        ncomp = q.shape[1] - 5
        if self._ncomp is None:
            self._ncomp = ncomp
            self.names = self._names() + tuple(f"M_{i}" for i in range(ncomp))
        return q

    def _config(self):
        return (type(self).__name__, self.field_shape, self.ndim, self.periodic)

    def result(self) -> dict:
        out = super().result()
        V = int(np.prod(self.field_shape[-self.ndim:]))
        Mvec = np.array([out[n] for n in self.names if n.startswith("M_")])
        Msq = float(np.sum(Mvec ** 2))
        out["M"] = float(Mvec[0]) if Mvec.size == 1 else Mvec
        out["chi_2"] = V * (out["M2"] - Msq)
        out["chi_abs"] = V * (out["M2"] - out["abs_M"] ** 2)
        out["E"] = out["e"] - Msq
        out["U4"] = 1.0 - out["M4"] / (3.0 * out["M2"] ** 2)
        return out


class _SharedSpectrum:
    """Hand-over slot between a FourierTwoPoint and a ScalarObservables (see share_spectrum)."""

    def __init__(self):
        self.entry = None

    def __reduce__(self):
        return (_SharedSpectrum, ())  # a copy (deepcopy, pickle for dask) starts empty


def share_spectrum(fourier: "FourierTwoPoint", scalars: "ScalarObservables"):
    """Let ``scalars`` take its per-sample values from the FFT ``fourier`` already does.

    When both accumulators are updated with the same chunk object, ``fourier`` first (as
    :func:`measure` does for a dict with ``fourier`` before ``scalars``), ``fourier`` also
    hands over per sample ``sum_x (phi_x - a)`` (the p = 0 mode) and the half-spectrum sums
    ``(1/V) sum_p c_p |phit(p)|^2`` and ``(1/V) sum_p c_p cos(p_mu) |phit(p)|^2``, which are
    ``sum_x d_x^2`` and ``sum_x d_x d_{x+mu}`` of the shifted field ``d = phi - a``
    (periodic lattice). ``scalars`` then skips its own pass over the fields: the combined
    pass costs one FFT per sample and a small matrix product. The values equal the direct
    computation to float64 rounding; on any other chunk (another order, another object, a
    non-periodic axis) ``scalars`` computes them itself, so results never depend on it.

    Both are modified in place and returned. The link survives :meth:`Accumulator.empty`
    (the per-block copies of :func:`measure`); a deep copy or pickle of both together links
    the two copies through a new, empty slot.
    """
    if not isinstance(fourier, FourierTwoPoint) or not isinstance(scalars, ScalarObservables):
        raise ValueError("share_spectrum(fourier, scalars) takes a FourierTwoPoint and a "
                         "ScalarObservables")
    if fourier.ndim != scalars.ndim:
        raise ValueError(f"share_spectrum: ndim differs ({fourier.ndim} and {scalars.ndim})")
    if not all(scalars.periodic):
        raise ValueError("share_spectrum: the scalars must be periodic on every axis")
    slot = _SharedSpectrum()
    fourier._share = slot
    scalars._share = slot
    return fourier, scalars


# ----------------------------------------------------------------------------------------------
class Series:
    """Per-sample time series of scalar quantities (memory O(M K); for the Gamma method).

    Not a power-sum accumulator: it keeps every value with its sample index so that an
    autocorrelation analysis (observables.errors, method "gamma") can use the chain order.

    Parameters
    ----------
    fn : callable ``fn(phi, xp) -> (n, K)``
    names : sequence of str

    ``update(phi, weights=None, *, log_weight=None, start=None)``: ``start`` is the global
    index of the chunk's first sample (defaults to the number of samples seen).
    ``result()``: ``{"index": (M,), "values": (M, K), "log_weight": (M,) or None}`` sorted by index.
    """

    def __init__(self, fn: Callable, names: Sequence[str]):
        if not callable(fn):
            raise ValueError("fn must be callable fn(phi, xp) -> (n, K)")
        self.fn = fn
        self.names = tuple(names)
        self._parts = []
        self.n_samples = 0
        self.shift = None
        self.field_shape = None

    def prepare(self, phi, weights=None, *, log_weight=None):
        return self

    def update(self, phi, weights=None, *, log_weight=None, start=None):
        xp = _xp_of(phi)
        n = phi.shape[0]
        q = _to_numpy(self.fn(phi, xp)).reshape(n, -1).astype(np.float64)
        if q.shape[1] != len(self.names):
            raise ValueError(f"fn returned {q.shape[1]} quantities, expected {len(self.names)}")
        ref, w = _log_weights(n, weights, log_weight)
        lw = None if w is None else np.log(w) + ref
        s = self.n_samples if start is None else int(start)
        self._parts.append((np.arange(s, s + n), q, lw))
        self.n_samples += n
        return self

    def merge(self, other):
        if not isinstance(other, Series):
            raise ValueError("can only merge a Series into a Series")
        self._parts.extend(other._parts)
        self.n_samples += other.n_samples
        return self

    def subtract(self, other):
        ids = {id(p[0]) for p in other._parts}
        self._parts = [p for p in self._parts if id(p[0]) not in ids]
        self.n_samples -= other.n_samples
        return self

    def empty(self):
        new = copy.copy(self)
        new._parts = []
        new.n_samples = 0
        return new

    def copy(self):
        new = copy.copy(self)
        new._parts = list(self._parts)
        return new

    def result(self) -> dict:
        if not self._parts:
            raise ValueError("Series has seen no samples")
        idx = np.concatenate([p[0] for p in self._parts])
        order = np.argsort(idx, kind="stable")
        vals = np.concatenate([p[1] for p in self._parts])[order]
        lws = [p[2] for p in self._parts]
        lw = None
        if any(x is not None for x in lws):
            lw = np.concatenate([np.zeros(len(p[0])) if p[2] is None else p[2]
                                 for p in self._parts])[order]
        return {"index": idx[order], "values": vals, "log_weight": lw, "names": self.names}
