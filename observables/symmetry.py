"""Symmetry checks from the output side, with multiple-comparison aware verdicts.

Physics: PHYSICS.md section 9 (symmetry via duality, arXiv:2106.00694). A symmetry of the
parameter distribution shows up as an invariance of every correlator; a check compares a
correlator at a set of point tuples with the same correlator at the transformed tuples (or of the
transformed field), in units of the standard error of the *difference*, which is estimated by a
paired jackknife over blocks of samples (both sides are measured on the same samples, so the
errors are strongly correlated and must not be added in quadrature).

This module also holds the small jackknife engine :func:`correlator_replicas` that the other
observables-II modules share (cluster, couplings, generating functional): it evaluates moments
of every subset of every requested tuple of *features* (the flattened field, a transformed copy
of it, or its Fourier transform -- complex features are allowed), in one streaming pass over a
:class:`nnft.lattice.FieldStore` or an in-memory sample array, with optional importance weights
(``log_weight``), and returns the statistic (raw moment, connected correlator = joint cumulant,
or moment minus its Wick/Gaussian part) for every jackknife replica.

Conventions
-----------
* Field samples have shape ``(n_samples, [D], *lattice.shape)``; a *flat index* addresses the
  trailing ``([D], *shape)`` axes in C order (component-major), as in ``nnft.observables``.
* Jackknife over ``n_blocks`` contiguous blocks of samples; errors
  ``sigma^2 = (B-1)/B sum_b (theta_b - theta_bar)^2``; significance uses Student-t with ``B-1``
  degrees of freedom.
* Verdicts control the family-wise error rate with Holm's step-down procedure (valid under
  arbitrary dependence between the compared entries); the table also reports the largest
  ``|z|`` and a diagonal ``chi^2`` (which ignores correlations and is informative only).
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

__all__ = [
    "correlator_replicas",
    "JackknifeResult",
    "assess_deviations",
    "holm_adjust",
    "hypercubic_ops",
    "translate_tuples",
    "transform_tuples",
    "random_rotations",
    "compare_correlators",
    "check_translation",
    "check_hypercubic",
    "check_internal_rotation",
    "plot_symmetry_table",
]

_STATS = ("moment", "connected", "wick_subtracted")


# --------------------------------------------------------------------------------------------
# combinatorics
# --------------------------------------------------------------------------------------------
def _set_partitions(elements):
    if not elements:
        yield []
        return
    first, rest = elements[0], elements[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        yield [[first]] + part


@lru_cache(maxsize=None)
def _cumulant_terms(n):
    """List of (coefficient, tuple of subset masks) for the joint cumulant of n variables."""
    out = []
    for part in _set_partitions(list(range(n))):
        k = len(part)
        coef = (-1) ** (k - 1) * math.factorial(k - 1)
        masks = tuple(sum(1 << i for i in block) for block in part)
        out.append((coef, masks))
    return tuple(out)


@lru_cache(maxsize=None)
def _pairings(n):
    """All perfect matchings of range(n) as tuples of 2-bit masks (n even)."""
    def rec(items):
        if not items:
            yield ()
            return
        a = items[0]
        for j in range(1, len(items)):
            b = items[j]
            rest = items[1:j] + items[j + 1:]
            for p in rec(rest):
                yield ((1 << a) | (1 << b),) + p
    return tuple(rec(tuple(range(n))))


# --------------------------------------------------------------------------------------------
# streaming over a source
# --------------------------------------------------------------------------------------------
def _is_store(source):
    return (hasattr(source, "n_samples") and hasattr(source, "chunk_range")
            and (hasattr(source, "iter_chunks") or hasattr(source, "read_chunk")))


def _source_info(source, log_weight):
    """Return (n_samples, n_replicas, iterator factory yielding (start, phi, log_weight)).

    Accepts a FieldStore, anything with its reading protocol (``n_samples``, ``chunk_range``,
    ``read_chunk``/``complete_chunks`` or ``iter_chunks``, e.g. ``nnft.observables.ArraySource``
    or :class:`nnft.observables.rg.CoarseGrainedSource`), or an array.
    """
    if _is_store(source):
        n = int(source.n_samples)
        n_rep = int(getattr(source, "n_replicas", 1) or 1)
        if hasattr(source, "missing_chunks"):
            missing = list(source.missing_chunks())
        else:
            nck = int(getattr(source, "n_chunks", 0))
            missing = sorted(set(range(nck)) - set(source.complete_chunks()))
        if missing:
            raise ValueError(f"source: store {getattr(source, 'path', '')} has {len(missing)} "
                             "incomplete chunks; fill it first")
        if log_weight is not None:
            raise ValueError("log_weight: a FieldStore carries its own log_weight; pass None")

        def chunks():
            if hasattr(source, "iter_chunks"):
                yield from source.iter_chunks()
            else:
                for k in sorted(source.complete_chunks()):
                    phi, lw = source.read_chunk(k)
                    yield k, phi, lw

        def it():
            for k, phi, lw in chunks():
                start = source.chunk_range(k)[0]
                yield start, np.asarray(_to_numpy(phi)), None if lw is None else np.asarray(_to_numpy(lw))
        return n, n_rep, it
    phi = np.asarray(_to_numpy(source))
    if phi.ndim < 2:
        raise ValueError("source: expected a FieldStore or an array (n_samples, [D], *shape) "
                         f"with at least 2 dimensions, got shape {phi.shape}")
    lw = None
    if log_weight is not None:
        lw = np.asarray(_to_numpy(log_weight), dtype=float)
        if lw.shape != (phi.shape[0],):
            raise ValueError(f"log_weight: shape {lw.shape} does not match n_samples={phi.shape[0]}")

    def it_array():
        yield 0, phi, lw
    return phi.shape[0], 1, it_array


def _to_numpy(a):
    if a is None:
        return None
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    return a


def _block_edges(n, n_blocks, n_rep):
    if n_blocks < 2:
        raise ValueError(f"n_blocks: need at least 2 jackknife blocks, got {n_blocks}")
    n_units = n // n_rep
    if n_units < n_blocks:
        raise ValueError(f"n_blocks: {n_blocks} blocks but only {n_units} samples "
                         f"(in units of n_replicas={n_rep})")
    edges = (np.linspace(0, n_units, n_blocks + 1).round().astype(np.int64)) * n_rep
    edges[-1] = n
    return edges


class JackknifeResult:
    """Values and delete-one-block jackknife replicas of a vector of statistics.

    Attributes
    ----------
    value : ndarray (n_out,)
        Estimate from all samples.
    replicas : ndarray (n_blocks, n_out)
        Estimate with block b left out.
    """

    def __init__(self, value, replicas, attrs=None):
        self.value = np.asarray(value)
        self.replicas = np.asarray(replicas)
        self.attrs = dict(attrs or {})

    @property
    def n_blocks(self):
        return self.replicas.shape[0]

    @property
    def error(self):
        return _jk_error(self.replicas)

    def covariance(self):
        r = self.replicas - self.replicas.mean(axis=0)
        b = self.n_blocks
        return (b - 1) / b * np.einsum("bi,bj->ij", r, np.conj(r)).real

    def __getitem__(self, idx):
        return JackknifeResult(self.value[idx], self.replicas[:, idx], self.attrs)

    def map(self, fn):
        """Apply a function to the value and to every replica (error propagation)."""
        return JackknifeResult(fn(self.value), np.stack([fn(r) for r in self.replicas]), self.attrs)

    def __sub__(self, other):
        return JackknifeResult(self.value - other.value, self.replicas - other.replicas, self.attrs)


def _jk_error(replicas):
    b = replicas.shape[0]
    r = replicas - replicas.mean(axis=0)
    return np.sqrt((b - 1) / b * np.sum(np.abs(r) ** 2, axis=0))


def correlator_replicas(source, tuples, *, stat="connected", features=None, log_weight=None,
                        n_blocks=32, groups=None, batch_elements=2_000_000,
                        ignore_weights=False):
    """Correlators at feature tuples with delete-one-block jackknife replicas, in one pass.

    Parameters
    ----------
    source : FieldStore or array_like (n_samples, [D], *shape)
        Field samples. A store's own ``log_weight`` is used when it is weighted.
    tuples : sequence of int arrays, or int array (n_tuples, n)
        Feature indices; a list of arrays allows several orders n (1..8) at once.
    stat : {"connected", "moment", "wick_subtracted"}
        ``moment``: E[prod_i f_i]; ``connected``: joint cumulant (sum over set partitions, PHYSICS.md
        section 7); ``wick_subtracted``: E[prod f] minus the sum over pairings of products of raw
        second moments (e.g. G6 - sum_15 G2 G2 G2, i.e. Delta G6 of a zero-mean theory).
    features : callable, optional
        ``features(phi_block) -> (n, F)`` array (real or complex). Default: flatten the trailing
        axes of the field (flat index convention of the module docstring).
    log_weight : array_like (n_samples,), optional
        Importance log-weights for an in-memory array source (ratio estimator sum w O / sum w).
    n_blocks : int
        Number of contiguous jackknife blocks.
    groups : int array (n_tuples_total,), optional
        Average the statistic over tuples sharing a group label (e.g. over translations);
        outputs are ordered by ``np.unique(groups)``.
    batch_elements : int
        Memory bound for the (samples x monomials) product buffer.
    ignore_weights : bool
        Treat a weighted source as unweighted (e.g. to measure the undeformed reference
        ensemble on the same samples and blocks).

    Returns
    -------
    JackknifeResult
        ``value`` and ``replicas`` of shape (n_out,) / (n_blocks, n_out), n_out = total number of
        tuples (concatenated in the order given) or of groups.
    """
    if stat not in _STATS:
        raise ValueError(f"stat: must be one of {_STATS}, got {stat!r}")
    tlist = _normalize_tuples(tuples)
    n_total = sum(t.shape[0] for t in tlist)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n_total,):
            raise ValueError(f"groups: expected shape ({n_total},), got {groups.shape}")
    n, n_rep, it = _source_info(source, log_weight)
    edges = _block_edges(n, n_blocks, n_rep)

    # --- monomial bookkeeping: every non-empty subset of every tuple, as a sorted index tuple
    mono_id = {}
    lookups = []  # per tuple-array: int array (n_t, 2^n) of monomial ids (-1 for empty set)
    for t in tlist:
        k = t.shape[1]
        ids = np.full((t.shape[0], 1 << k), -1, dtype=np.int64)
        for row, tup in enumerate(t.tolist()):
            for mask in range(1, 1 << k):
                key = tuple(sorted(tup[i] for i in range(k) if mask >> i & 1))
                j = mono_id.get(key)
                if j is None:
                    j = mono_id[key] = len(mono_id)
                ids[row, mask] = j
        lookups.append(ids)
    # group monomials by length; each one of length l > 1 is (its sorted prefix) * (last index)
    by_len = {}
    for key, j in mono_id.items():
        by_len.setdefault(len(key), []).append((j, key))
    len_groups = []  # (ids, prefix position in previous group (or -1), last feature index)
    pos_prev = None
    for ln in range(1, max(by_len) + 1):
        items = by_len.get(ln, [])
        ids = np.array([j for j, _ in items], dtype=np.int64)
        last = np.array([key[-1] for _, key in items], dtype=np.int64)
        if ln == 1:
            prefix = np.full(len(items), -1, dtype=np.int64)
        else:
            prefix = np.array([pos_prev[key[:-1]] for _, key in items], dtype=np.int64)
        pos_prev = {key: i for i, (_, key) in enumerate(items)}
        len_groups.append((ids, prefix, last))
    n_mono = len(mono_id)

    S = None  # (B, n_mono) weighted monomial sums
    W = np.zeros(n_blocks)
    shift = None
    lw_ref = None
    dtype = None
    for start, phi, lw in it():
        if ignore_weights:
            lw = None
        x = features(phi) if features is not None else phi.reshape(phi.shape[0], -1)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != phi.shape[0]:
            raise ValueError("features: must return an array (n_samples, n_features)")
        if shift is None:
            dtype = np.complex128 if np.iscomplexobj(x) else np.float64
            S = np.zeros((n_blocks, n_mono), dtype=dtype)
            if lw is not None:
                lw_ref = float(np.max(lw))
            w0 = np.ones(x.shape[0]) if lw is None else np.exp(lw - lw_ref)
            shift = (w0 @ x) / w0.sum()
            maxf = max(int(t.max()) for t in tlist)
            if maxf >= x.shape[1]:
                raise ValueError(f"tuples: feature index {maxf} out of range for "
                                 f"{x.shape[1]} features")
        if lw is not None:
            mx = float(np.max(lw))
            if mx > lw_ref + 300.0:  # rescale previous sums to avoid overflow
                fac = math.exp(lw_ref - mx)
                S *= fac
                W *= fac
                lw_ref = mx
            w_all = np.exp(lw - lw_ref)
        else:
            w_all = np.ones(x.shape[0])
        y = x.astype(dtype, copy=False) - shift
        stop = start + x.shape[0]
        # split this chunk over jackknife blocks
        b_lo = int(np.searchsorted(edges, start, side="right") - 1)
        b_hi = int(np.searchsorted(edges, stop - 1, side="right") - 1)
        for b in range(b_lo, b_hi + 1):
            lo = max(start, edges[b]) - start
            hi = min(stop, edges[b + 1]) - start
            if hi <= lo:
                continue
            yb, wb = y[lo:hi], w_all[lo:hi]
            W[b] += wb.sum()
            step = max(1, batch_elements // max(1, n_mono))
            for s0 in range(0, yb.shape[0], step):
                ys, ws = yb[s0:s0 + step], wb[s0:s0 + step]
                prev = None
                for ids, prefix, last in len_groups:
                    prod = ys[:, last] if prev is None else prev[:, prefix] * ys[:, last]
                    if len(ids):
                        S[b, ids] += ws @ prod
                    prev = prod
    if np.any(W <= 0):
        raise ValueError("source: a jackknife block has no samples or zero total weight")
    St, Wt = S.sum(axis=0), W.sum()
    mom_full = St / Wt
    mom_rep = (St[None, :] - S) / (Wt - W)[:, None]

    outs_v, outs_r = [], []
    for t, ids in zip(tlist, lookups):
        c = shift[t]  # (n_t, k)
        outs_v.append(_statistic(mom_full[None], ids, c, stat)[0])
        outs_r.append(_statistic(mom_rep, ids, c, stat))
    value = np.concatenate(outs_v)
    reps = np.concatenate(outs_r, axis=1)
    if groups is not None:
        u, inv = np.unique(groups, return_inverse=True)
        cnt = np.bincount(inv).astype(float)
        def avg(v):
            out = np.zeros(v.shape[:-1] + (len(u),), dtype=v.dtype)
            for g in range(len(u)):
                out[..., g] = v[..., inv == g].sum(axis=-1) / cnt[g]
            return out
        value, reps = avg(value), avg(reps)
    ess = Wt ** 2 / max(np.sum(W ** 2), 1e-300)  # only a rough block-level number
    return JackknifeResult(value, reps, {"stat": stat, "n_blocks": n_blocks, "n_samples": n,
                                        "weighted": int(lw_ref is not None),
                                        "block_weight_balance": float(ess)})


def _normalize_tuples(tuples):
    if isinstance(tuples, np.ndarray) and tuples.ndim == 2:
        tl = [tuples]
    elif isinstance(tuples, (list, tuple)) and len(tuples) and all(
            isinstance(t, np.ndarray) and t.ndim == 2 for t in tuples):
        tl = list(tuples)
    else:
        arr = np.asarray(tuples)
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
    return out


def _statistic(mom, ids, c, stat):
    """mom: (R, n_mono) shifted moments; ids: (n_t, 2^k); c: (n_t, k) shifts -> (R, n_t)."""
    n_t, full = ids.shape
    k = full.bit_length() - 1
    R = mom.shape[0]
    M = np.empty((R, n_t, full), dtype=mom.dtype)
    M[:, :, 0] = 1.0
    M[:, :, 1:] = mom[:, ids[:, 1:]]
    if stat == "connected":
        if k == 1:
            return M[:, :, 1] + c[None, :, 0]
        out = np.zeros((R, n_t), dtype=mom.dtype)
        for coef, masks in _cumulant_terms(k):
            term = M[:, :, masks[0]].copy()
            for m in masks[1:]:
                term = term * M[:, :, m]
            out += coef * term
        return out
    # raw moments of the unshifted features for every subset: E prod_{S}(y+c)
    raw = np.empty_like(M)
    for mask in range(full):
        acc = np.zeros((R, n_t), dtype=mom.dtype)
        sub = mask
        while True:  # iterate over subsets of mask
            rest = mask & ~sub
            cprod = np.ones(n_t, dtype=c.dtype)
            for i in range(k):
                if rest >> i & 1:
                    cprod = cprod * c[:, i]
            acc += M[:, :, sub] * cprod[None]
            if sub == 0:
                break
            sub = (sub - 1) & mask
        raw[:, :, mask] = acc
    if stat == "moment":
        return raw[:, :, full - 1]
    if k % 2:
        raise ValueError("stat: 'wick_subtracted' needs an even order")
    out = raw[:, :, full - 1].copy()
    for pairing in _pairings(k):
        term = raw[:, :, pairing[0]].copy()
        for m in pairing[1:]:
            term = term * raw[:, :, m]
        out -= term
    return out


# --------------------------------------------------------------------------------------------
# statistics of verdicts
# --------------------------------------------------------------------------------------------
def holm_adjust(p):
    """Holm step-down adjusted p-values (family-wise error control under any dependence)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def assess_deviations(diff, error, *, dof=None, alpha=0.01, method="holm"):
    """Multiple-comparison verdict on deviations that should vanish.

    Parameters
    ----------
    diff, error : array_like
        Deviations and their standard errors (same shape).
    dof : int, optional
        Degrees of freedom of the error estimate (jackknife: n_blocks - 1); None = normal.
    alpha : float
        Family-wise significance level.
    method : {"holm", "bonferroni"}

    Returns
    -------
    dict
        ``passed`` (bool), ``z`` (array), ``p`` and ``p_adjusted`` (arrays), ``max_abs_z``,
        ``argmax``, ``z_threshold`` (the Bonferroni |z| that the largest deviation must stay
        below), ``chi2`` and ``chi2_dof`` (diagonal, ignores correlations), ``n_compared``.
    """
    from scipy import stats

    if method not in ("holm", "bonferroni"):
        raise ValueError(f"method: must be 'holm' or 'bonferroni', got {method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    d = np.abs(np.asarray(diff)).ravel()
    e = np.asarray(error, dtype=float).ravel()
    if d.shape != e.shape:
        raise ValueError("error: shape must match diff")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(e > 0, d / e, np.where(d > 0, np.inf, 0.0))
    dist = stats.norm if dof is None else stats.t(dof)
    p = 2 * dist.sf(z)
    m = z.size
    padj = holm_adjust(p) if method == "holm" else np.minimum(1.0, p * m)
    z_thr = float(dist.isf(alpha / (2 * max(m, 1))))
    return {
        "passed": bool(np.all(padj >= alpha)) if m else True,
        "z": z, "p": p, "p_adjusted": padj,
        "max_abs_z": float(z.max()) if m else 0.0,
        "argmax": int(np.argmax(z)) if m else -1,
        "z_threshold": z_thr, "alpha": alpha, "method": method,
        "chi2": float(np.sum(z[np.isfinite(z)] ** 2)), "chi2_dof": int(m),
        "n_compared": int(m),
    }


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------
def _shape_of(lattice):
    return tuple(int(s) for s in lattice.shape)


def _split_flat(tuples, shape, components):
    """flat feature index -> (component, multi-index array)."""
    t = np.asarray(tuples)
    V = int(np.prod(shape))
    comp = t // V if components else np.zeros_like(t)
    site = t % V if components else t
    coords = np.stack(np.unravel_index(site, shape), axis=-1)
    return comp, coords


def _join_flat(comp, coords, shape, components):
    V = int(np.prod(shape))
    site = np.ravel_multi_index(tuple(np.moveaxis(coords, -1, 0)), shape)
    return comp * V + site if components else site


def translate_tuples(tuples, lattice, shift, *, components=None):
    """Translate flat-index tuples by an integer site shift.

    Periodic axes wrap; on open axes (or a PointSet, where a shift is a vector in input space
    matched to existing points within 1e-9) tuples leaving the set are dropped.

    Returns
    -------
    (new_tuples, keep) : the translated tuples for the rows ``keep`` (bool mask).
    """
    t = np.asarray(tuples, dtype=np.int64)
    if getattr(lattice, "kind", "lattice") == "points":
        pos = np.asarray(lattice.positions())
        V = pos.shape[0]
        comp = t // V if components else np.zeros_like(t)
        site = t % V if components else t
        target = pos[site] + np.asarray(shift, dtype=float)
        dist = np.linalg.norm(target[..., None, :] - pos[None, None], axis=-1)
        j = np.argmin(dist, axis=-1)
        ok = np.take_along_axis(dist, j[..., None], axis=-1)[..., 0] < 1e-9
        keep = ok.all(axis=1)
        new = (comp * V + j) if components else j
        return new[keep], keep
    shape = _shape_of(lattice)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), (len(shape),))
    comp, coords = _split_flat(t, shape, components)
    new = coords + shift
    L = np.asarray(shape)
    if lattice.boundary == "periodic":
        new = new % L
        keep = np.ones(t.shape[0], dtype=bool)
    else:
        keep = np.all((new >= 0) & (new < L), axis=(1, 2))
        new = np.clip(new, 0, L - 1)
    return _join_flat(comp, new, shape, components)[keep], keep


def hypercubic_ops(lattice):
    """All axis permutations (among axes of equal extent) times all axis reflections.

    Returns a list of (perm, flips) tuples, identity first. The site map is
    ``x'_mu = s_mu * x_{perm[mu]}`` with reflection ``x -> -x mod L`` on periodic axes and
    ``x -> L - 1 - x`` on open axes.
    """
    shape = _shape_of(lattice)
    d = len(shape)
    ops = []
    for perm in itertools.permutations(range(d)):
        if any(shape[perm[mu]] != shape[mu] for mu in range(d)):
            continue
        for flips in itertools.product((False, True), repeat=d):
            ops.append((tuple(perm), tuple(flips)))
    ops.sort(key=lambda o: (o[0] != tuple(range(d))) * 2 + any(o[1]))
    return ops


def transform_tuples(tuples, lattice, op, *, components=None):
    """Apply a hypercubic op ``(perm, flips)`` (see :func:`hypercubic_ops`) to flat tuples."""
    shape = _shape_of(lattice)
    perm, flips = (op.perm, op.flips) if hasattr(op, "perm") else op
    comp, coords = _split_flat(np.asarray(tuples, dtype=np.int64), shape, components)
    new = coords[..., list(perm)]
    L = np.asarray(shape)
    for mu, f in enumerate(flips):
        if f:
            new[..., mu] = (-new[..., mu]) % L[mu] if lattice.boundary == "periodic" \
                else L[mu] - 1 - new[..., mu]
    return _join_flat(comp, new, shape, components)


def random_rotations(D, n, seed=0):
    """n Haar-random SO(D) matrices (QR of Gaussian matrices, sign-fixed, det +1)."""
    if D < 2:
        raise ValueError(f"D: need at least 2 components, got {D}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q, r = np.linalg.qr(rng.standard_normal((D, D)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        out.append(q)
    return np.array(out)


def _near_tuples(rng, lattice, order, count, radius=2):
    """Random tuples of sites within ``radius`` (per axis) of a random anchor site, where
    correlators are large; PointSets get random tuples of points."""
    if getattr(lattice, "kind", "lattice") == "points":
        return _random_tuples(rng, int(lattice.volume), order, count)
    shape = np.asarray(_shape_of(lattice))
    d = len(shape)
    out = []
    for _ in range(count):
        anchor = rng.integers(0, shape)
        pts = anchor + rng.integers(-radius, radius + 1, size=(order, d))
        pts = pts % shape if lattice.boundary == "periodic" else np.clip(pts, 0, shape - 1)
        out.append(np.ravel_multi_index(tuple(pts.T), tuple(shape)))
    return np.array(out, dtype=np.int64)


def _random_tuples(rng, n_points, order, count, distinct=True):
    out = []
    for _ in range(count):
        out.append(rng.choice(n_points, size=order, replace=not distinct or order > n_points))
    return np.array(out, dtype=np.int64).reshape(count, order)


# --------------------------------------------------------------------------------------------
# generic comparison -> Dataset
# --------------------------------------------------------------------------------------------
def compare_correlators(source, tuples_a, tuples_b, *, labels=None, stat="connected",
                        features=None, log_weight=None, n_blocks=32, alpha=0.01,
                        method="holm", name="symmetry"):
    """Compare a statistic at tuples_a with the same statistic at tuples_b (paired jackknife).

    ``tuples_a`` and ``tuples_b`` are lists (one entry per correlator order) of int arrays of
    equal shapes, indexing the features (see :func:`correlator_replicas`).

    Returns
    -------
    xarray.Dataset
        Dimension ``comparison``; variables ``value_a``, ``value_b``, ``diff``, ``error``, ``z``,
        ``p_adjusted``, ``order``, ``label``; attrs ``verdict`` ("symmetric"/"broken"),
        ``passed`` (1/0), ``max_abs_z``, ``z_threshold``, ``alpha``, ``method``, ``chi2``,
        ``chi2_dof``, ``n_compared``, ``n_blocks``, ``stat``, ``check``.
    """
    import xarray as xr

    ta = _normalize_tuples(tuples_a)
    tb = _normalize_tuples(tuples_b)
    if [t.shape for t in ta] != [t.shape for t in tb]:
        raise ValueError("tuples_b: shapes must match tuples_a")
    res = correlator_replicas(source, ta + tb, stat=stat, features=features,
                              log_weight=log_weight, n_blocks=n_blocks)
    m = sum(t.shape[0] for t in ta)
    A, B = res[np.arange(m)], res[np.arange(m, 2 * m)]
    D = A - B
    err = D.error
    v = assess_deviations(D.value, err, dof=n_blocks - 1, alpha=alpha, method=method)
    order = np.concatenate([np.full(t.shape[0], t.shape[1]) for t in ta])
    if labels is None:
        labels = [""] * m
    desc = [f"{lab} {tuple(int(i) for i in a)}->{tuple(int(i) for i in b)}".strip()
            for lab, a, b in zip(labels, itertools.chain(*[t.tolist() for t in ta]),
                                 itertools.chain(*[t.tolist() for t in tb]))]
    real = lambda a: a.real if np.iscomplexobj(a) else a  # noqa: E731
    ds = xr.Dataset(
        {"value_a": ("comparison", real(A.value)), "value_b": ("comparison", real(B.value)),
         "diff": ("comparison", real(D.value)), "error": ("comparison", err),
         "z": ("comparison", v["z"]), "p_adjusted": ("comparison", v["p_adjusted"]),
         "order": ("comparison", order), "label": ("comparison", np.array(desc, dtype=str))},
        coords={"comparison": np.arange(m)},
    )
    ds.attrs.update({
        "check": name, "verdict": "symmetric" if v["passed"] else "broken",
        "passed": int(v["passed"]), "max_abs_z": v["max_abs_z"],
        "worst": desc[v["argmax"]] if m else "", "z_threshold": v["z_threshold"],
        "alpha": alpha, "method": method, "chi2_diag": v["chi2"], "chi2_dof": v["chi2_dof"],
        "n_compared": v["n_compared"], "n_blocks": n_blocks, "stat": stat,
        "errors": "paired delete-one-block jackknife of the difference; Student-t p-values",
    })
    return ds


def _site_count(source, lattice):
    return int(np.prod(_shape_of(lattice)))


def _components_of(source):
    if _is_store(source):
        return source.components
    return None


def check_translation(source, lattice, *, orders=(2, 4), shifts=None, n_tuples=8,
                      n_shifts=6, components=None, stat="connected", n_blocks=32,
                      alpha=0.01, seed=0, log_weight=None):
    """Translation invariance: G_n(T) against G_n(T + a) for random tuples T and shifts a.

    Parameters
    ----------
    source : FieldStore or array (n_samples, [D], *shape)
    lattice : Lattice or PointSet
        Geometry of the field (periodic axes wrap; open axes drop tuples that leave the lattice;
        for a PointSet ``shifts`` are vectors in input space).
    orders : tuple of int
        Correlator orders compared (connected correlators by default, ``stat``).
    shifts : array (n_shifts, dim), optional
        Translations; default ``n_shifts`` random non-zero integer shifts.
    n_tuples : int
        Random base tuples per order (sites within 2 lattice units of a random anchor, on
        component 0 when D > 1).
    components : int or None
        Number of output components D (None: scalar; read from a store when not given).

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`) with attrs ``verdict``, ``max_abs_z``.
    """
    rng = np.random.default_rng(seed)
    comps = components if components is not None else _components_of(source)
    V = _site_count(source, lattice)
    dim = int(lattice.dim)
    if shifts is None:
        if getattr(lattice, "kind", "lattice") == "points":
            raise ValueError("shifts: required for a PointSet (vectors in input space)")
        shape = np.asarray(_shape_of(lattice))
        lim = shape if lattice.boundary == "periodic" else np.maximum(shape // 2, 1)
        shifts = []
        while len(shifts) < n_shifts:
            s = rng.integers(-lim + 1, lim) if lattice.boundary != "periodic" else rng.integers(0, lim)
            if np.any(s != 0):
                shifts.append(s)
        shifts = np.array(shifts)
    shifts = np.atleast_2d(np.asarray(shifts))
    if shifts.shape[1] != dim:
        raise ValueError(f"shifts: need vectors of length dim={dim}, got {shifts.shape}")
    ta, tb, labels = [], [], []
    for n in orders:
        base = _near_tuples(rng, lattice, n, n_tuples)
        A, B = [], []
        for s in shifts:
            new, keep = translate_tuples(base, lattice, s, components=comps)
            A.append(base[keep])
            B.append(new)
            labels += [f"G{n} shift {tuple(np.round(s, 6).tolist())}"] * int(keep.sum())
        A, B = np.concatenate(A), np.concatenate(B)
        if A.shape[0] == 0:
            raise ValueError("shifts: no tuple stays on the lattice under these shifts")
        ta.append(A)
        tb.append(B)
    return compare_correlators(source, ta, tb, labels=labels, stat=stat, n_blocks=n_blocks,
                               alpha=alpha, name="translation", log_weight=log_weight)


def check_hypercubic(source, lattice, *, orders=(2, 4), n_tuples=8, components=None,
                     stat="connected", n_blocks=32, alpha=0.01, seed=0, ops=None,
                     log_weight=None):
    """Hypercubic invariance (axis permutations and reflections) of G_n.

    Compares G_n(T) with G_n(g T) for every non-identity op g of :func:`hypercubic_ops`
    (or ``ops``) on random tuples T. A translation-invariant isotropic ensemble passes; an
    anisotropic mass or kernel fails through the permutations.

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`).
    """
    if getattr(lattice, "kind", "lattice") == "points":
        raise ValueError("lattice: hypercubic checks need a Lattice, not a PointSet")
    rng = np.random.default_rng(seed)
    comps = components if components is not None else _components_of(source)
    V = _site_count(source, lattice)
    ops = hypercubic_ops(lattice)[1:] if ops is None else list(ops)
    if not ops:
        raise ValueError("lattice: no non-trivial hypercubic operation for this shape")
    ta, tb, labels = [], [], []
    for n in orders:
        base = _near_tuples(rng, lattice, n, n_tuples)
        A, B = [], []
        for op in ops:
            A.append(base)
            B.append(transform_tuples(base, lattice, op, components=comps))
            perm, flips = (op.perm, op.flips) if hasattr(op, "perm") else op
            labels += [f"G{n} perm={tuple(perm)} flip={tuple(int(f) for f in flips)}"] * len(base)
        ta.append(np.concatenate(A))
        tb.append(np.concatenate(B))
    return compare_correlators(source, ta, tb, labels=labels, stat=stat, n_blocks=n_blocks,
                               alpha=alpha, name="hypercubic", log_weight=log_weight)


def check_internal_rotation(source, *, orders=(2, 4), n_rotations=4, sites=None, n_sites=2,
                            n_component_tuples=24, stat="moment", n_blocks=32, alpha=0.01,
                            seed=0, log_weight=None):
    """Internal SO(D) symmetry of a D-component field (arXiv:2106.00694).

    For Haar-random rotations R, compares G_n of the rotated field R phi with G_n of phi at the
    same (component, site) tuples, for n in ``orders`` (full correlators by default, as in the
    paper). Zero-mean isotropic output weights pass at every width; a non-zero output-weight
    mean breaks the symmetry.

    Parameters
    ----------
    source : FieldStore or array (n_samples, D, *shape)
    sites : int array, optional
        Flat site indices to use (default: ``n_sites`` random sites).
    n_component_tuples : int
        Random component tuples per order (all of them if fewer exist).

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`).
    """
    rng = np.random.default_rng(seed)
    n_all, _, it = _source_info(source, log_weight)
    first = next(it())[1]
    if first.ndim < 3:
        raise ValueError("source: internal rotations need a vector field (n_samples, D, *shape)")
    D = first.shape[1]
    V = int(np.prod(first.shape[2:]))
    if D < 2:
        raise ValueError(f"source: need D >= 2 components, got {D}")
    if sites is None:
        sites = rng.choice(V, size=min(n_sites, V), replace=False)
    sites = np.asarray(sites, dtype=np.int64)
    Rs = random_rotations(D, n_rotations, seed=seed + 1)
    F = D * len(sites)

    def feats(phi):
        x = phi.reshape(phi.shape[0], D, V)[:, :, sites]  # (n, D, s)
        outs = [x.reshape(x.shape[0], -1)]
        for R in Rs:
            outs.append(np.einsum("ab,nbs->nas", R, x).reshape(x.shape[0], -1))
        return np.concatenate(outs, axis=1)

    ta, tb, labels = [], [], []
    for n in orders:
        combos = list(itertools.product(range(D), repeat=n))
        if len(combos) > n_component_tuples:
            pick = rng.choice(len(combos), size=n_component_tuples, replace=False)
            combos = [combos[i] for i in pick]
        site_t = rng.integers(0, len(sites), size=(len(combos), n))
        base = np.array(combos, dtype=np.int64) * len(sites) + site_t
        A, B = [], []
        for r in range(len(Rs)):
            A.append(base)
            B.append(base + (r + 1) * F)
            labels += [f"G{n} rotation {r}"] * len(base)
        ta.append(np.concatenate(A))
        tb.append(np.concatenate(B))
    return compare_correlators(source, ta, tb, labels=labels, stat=stat, features=feats,
                               n_blocks=n_blocks, alpha=alpha, name="internal SO(D)",
                               log_weight=log_weight)


# --------------------------------------------------------------------------------------------
# plotting
# --------------------------------------------------------------------------------------------
def plot_symmetry_table(results, path):
    """PNG summary of symmetry checks: |z| of every comparison per check, with thresholds.

    Parameters
    ----------
    results : dict name -> Dataset from a check, or a list of Datasets
    path : str or Path of the PNG to write
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(results, dict):
        results = {ds.attrs.get("check", str(i)): ds for i, ds in enumerate(results)}
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * len(results)))
    for row, (name, ds) in enumerate(results.items()):
        z = np.asarray(ds["z"])
        z = np.where(np.isfinite(z), z, 50)
        ax.scatter(z, np.full(z.shape, row) + 0.15 * (np.random.default_rng(row).random(z.size) - .5),
                   s=8, color="C0" if ds.attrs.get("passed") else "C3")
        ax.plot([ds.attrs["z_threshold"]] * 2, [row - .4, row + .4], "k--", lw=1)
    ax.set_yticks(range(len(results)))
    ax.set_yticklabels([f"{k}: {v.attrs.get('verdict')} (max |z| {v.attrs.get('max_abs_z'):.1f})"
                        for k, v in results.items()])
    ax.set_xscale("symlog", linthresh=5)
    ax.set_xlabel("|deviation| / standard error  (dashed: Bonferroni threshold)")
    fig.tight_layout()
    from pathlib import Path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
