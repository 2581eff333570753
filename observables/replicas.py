"""Delete-one-block jackknife of functions of feature moments (the one jackknife engine).

The per-block sums come from :class:`nnft.observables.accumulators.FeatureMoments` filled by the
streaming driver :func:`nnft.observables.measure` (one accumulator per block of samples); this
module turns total and blocks into the value and the delete-one-block replicas of

* ``"moment"``: E[prod_i f_i];
* ``"connected"``: the joint cumulant (sum over set partitions);
* ``"wick_subtracted"``: E[prod f] minus the sum over pairings of products of raw second
  moments (e.g. G6 - sum_15 G2 G2 G2, the Delta G6 of a zero-mean theory);

for every tuple, optionally averaged over tuples sharing a group label, and any smooth function
of those (:meth:`JackknifeResult.map`, differences, ratios).

Conventions: ``B`` contiguous blocks; replica ``theta_b`` = estimate without block b; error
``sigma^2 = (B-1)/B sum_b |theta_b - mean theta|^2``; covariance likewise.
"""
from __future__ import annotations

import numpy as np

from .accumulators import FeatureMoments
from .combinatorics import cumulant_terms, pairing_masks
from .errors import jackknife_error

__all__ = ["JackknifeResult", "jackknife_error", "correlator_statistic", "feature_replicas",
           "group_average", "STATS"]

STATS = ("moment", "connected", "wick_subtracted")


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
        return jackknife_error(self.replicas)

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


def correlator_statistic(mom, ids, c, stat):
    """Statistic per tuple from shifted monomial means.

    Parameters
    ----------
    mom : array (R, n_monomials)
        Means about the shift ``E prod (f - a)`` (one row per replica).
    ids : int array (n_t, 2**k)
        Monomial index of every subset (bit mask) of every tuple (see ``FeatureMoments.lookups``).
    c : array (n_t, k)
        The shifts ``a`` of the tuple's features.
    stat : {"moment", "connected", "wick_subtracted"}

    Returns
    -------
    array (R, n_t)
    """
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
        for coef, masks in cumulant_terms(k):
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
    for pairing in pairing_masks(k):
        term = raw[:, :, pairing[0]].copy()
        for m in pairing[1:]:
            term = term * raw[:, :, m]
        out -= term
    return out


def group_average(v, groups):
    """Average the last axis of ``v`` over entries sharing a label; ordered by np.unique."""
    u, inv = np.unique(groups, return_inverse=True)
    cnt = np.bincount(inv).astype(float)
    out = np.zeros(v.shape[:-1] + (len(u),), dtype=v.dtype)
    for g in range(len(u)):
        out[..., g] = v[..., inv == g].sum(axis=-1) / cnt[g]
    return out


def feature_replicas(total: FeatureMoments, blocks, *, stat="connected", groups=None,
                     attrs=None) -> JackknifeResult:
    """Value and delete-one-block replicas of ``stat`` at every tuple of a FeatureMoments.

    Parameters
    ----------
    total : FeatureMoments
        Accumulator over all samples.
    blocks : sequence of FeatureMoments
        Per-block accumulators (disjoint, together ``total``), in sample order.
    stat : {"moment", "connected", "wick_subtracted"}
    groups : int array (n_tuples_total,), optional
        Average over tuples sharing a label (outputs ordered by ``np.unique(groups)``).

    Returns
    -------
    JackknifeResult (n_out,) / (n_blocks, n_out), tuples concatenated in the order given.
    """
    if stat not in STATS:
        raise ValueError(f"stat: must be one of {STATS}, got {stat!r}")
    if len(blocks) < 2:
        raise ValueError(f"n_blocks: need at least 2 jackknife blocks, got {len(blocks)}")
    if any(b.n_samples == 0 or b.sum_w <= 0 for b in blocks):
        raise ValueError("source: a jackknife block has no samples or zero total weight")
    n_total = sum(t.shape[0] for t in total.tuple_list)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n_total,):
            raise ValueError(f"groups: expected shape ({n_total},), got {groups.shape}")
    mom_full = total.shifted_moments()
    mom_rep = np.stack([total.shifted_moments_without(b) for b in blocks])
    outs_v, outs_r = [], []
    for i, ids in enumerate(total.lookups):
        c = total.tuple_shifts(i)
        outs_v.append(correlator_statistic(mom_full[None], ids, c, stat)[0])
        outs_r.append(correlator_statistic(mom_rep, ids, c, stat))
    value = np.concatenate(outs_v)
    reps = np.concatenate(outs_r, axis=1)
    if groups is not None:
        value, reps = group_average(value, groups), group_average(reps, groups)
    W = np.array([b.sum_w * np.exp(b.logref - total.logref) for b in blocks])
    balance = W.sum() ** 2 / max(np.sum(W ** 2), 1e-300)  # only a rough block-level number
    out_attrs = {"stat": stat, "n_blocks": len(blocks), "n_samples": int(total.n_samples),
                 "weighted": 0,
                 "block_weight_balance": float(balance)}
    out_attrs.update(attrs or {})
    return JackknifeResult(value, reps, out_attrs)
