"""Generating functional of connected correlators, W[J] = log E exp(sum_x J(x) phi(x)).

For a source J the scalar X = sum_x J(x) phi(x) carries the whole expansion: its cumulants are
kappa_n(X) = sum_{x1..xn} J(x1)..J(xn) G_c^(n)(x1..xn), so
W[J] = sum_n kappa_n(X)/n!   (cumulant expansion, docs/conventions.md).
For a Gaussian field (free theory, GP limit) W[J] = J.mu + 1/2 J.G.J exactly.

Estimators (one streaming pass, importance weights allowed):
W_hat = log( sum_s w_s exp(X_s) / sum_s w_s ) (log-sum-exp), kappa_n from the plug-in moments
of X. Errors: delete-one-block jackknife. The estimator of W is consistent but its variance grows
like exp(Var X) - 1: keep J.G.J of order one.
"""
from __future__ import annotations

import math

import numpy as np

import xarray as xr

from .accumulators import SourceExponentials
from .replicas import jackknife_error
from .plan import MeasurementPlan, open_plan_source, run_plans
from .symmetry import _field_shape_of, assess_deviations

__all__ = ["generating_functional", "generating_plan", "GeneratingPlan", "gaussian_W",
           "cumulants_from_moments"]


def cumulants_from_moments(m):
    """Cumulants kappa_1..kappa_n from raw moments m_1..m_n (last axis), by the recursion
    kappa_n = m_n - sum_{k=1}^{n-1} C(n-1, k-1) kappa_k m_{n-k}."""
    m = np.asarray(m)
    n = m.shape[-1]
    k = np.zeros_like(m)
    for j in range(1, n + 1):
        acc = m[..., j - 1].copy()
        for i in range(1, j):
            acc -= math.comb(j - 1, i - 1) * k[..., i - 1] * m[..., j - i - 1]
        k[..., j - 1] = acc
    return k


def gaussian_W(J, G, mean=None):
    """Exact W[J] = J.mean + 1/2 J.G.J of a Gaussian field.

    Parameters
    ----------
    J : array (n_sources, F) or (F,)
        Sources over the flattened field (flat index convention).
    G : array (F, F)
        Covariance (e.g. ``nnft.observables.couplings._kernel_matrix(free_propagator(...))`` or
        a GP kernel from ``gp_kernel``).
    mean : array (F,), optional
    """
    J = np.atleast_2d(np.asarray(J, dtype=float))
    G = np.asarray(G, dtype=float)
    if G.shape != (J.shape[1], J.shape[1]):
        raise ValueError(f"G: expected shape ({J.shape[1]}, {J.shape[1]}), got {G.shape}")
    W = 0.5 * np.einsum("si,ij,sj->s", J, G, J)
    if mean is not None:
        W = W + J @ np.asarray(mean, dtype=float)
    return W


class GeneratingPlan(MeasurementPlan):
    """W[J] with jackknife errors, and its cumulant expansion alongside (a measurement plan).

    Accumulates, per source, ``sum w exp(X)`` and the power sums of ``X = J.phi``
    (:class:`~nnft.observables.accumulators.SourceExponentials`).

    Parameters
    ----------
    J : array (n_sources, *field_shape) or field_shape
        Sources (same trailing shape as one field configuration).
    field_shape : tuple
        Shape of one configuration ``([D], *shape)``.
    n_max : int
        Highest cumulant of X = J.phi in the expansion.
    expected : array (n_sources,), optional
        Exact W to compare with (e.g. :func:`gaussian_W` for a free field).
    alpha : float
        Family-wise level of the comparison with ``expected``.
    n_blocks : int

    ``finalize`` gives the Dataset of :func:`generating_functional`.
    """

    kind = "generating_functional"

    def __init__(self, J, field_shape, *, n_max=4, expected=None, alpha=0.01, n_blocks=32):
        super().__init__(n_blocks=n_blocks)
        if not isinstance(n_max, (int, np.integer)) or n_max < 1:
            raise ValueError(f"n_max: must be a positive int, got {n_max!r}")
        J = np.asarray(J, dtype=float)
        first = tuple(int(s) for s in field_shape)
        if J.shape == first:
            J = J[None]
        if J.shape[1:] != first:
            raise ValueError(f"J: trailing shape {J.shape[1:]} must equal the field shape {first}")
        self.J = J.reshape(J.shape[0], -1)
        self.n_max = int(n_max)
        self.expected = None
        if expected is not None:
            self.expected = np.asarray(expected, dtype=float).reshape(self.J.shape[0])
        self.alpha = alpha

    def accumulators(self) -> dict:
        return {"exp": SourceExponentials(self.J, self.n_max)}

    def _finish(self, acc, sums, sw):
        W = np.log(sums["e"] / sw) + acc.exp_shift
        mom = np.stack([sums[f"p{k}"] / sw for k in range(1, self.n_max + 1)], axis=-1)
        kap = cumulants_from_moments(mom)
        kap[..., 0] += acc.shift  # first cumulant is the unshifted mean
        fact = np.array([math.factorial(k) for k in range(1, self.n_max + 1)], dtype=float)
        return W, kap, np.cumsum(kap / fact, axis=-1)

    def finalize(self, measurement) -> xr.Dataset:
        tot = measurement["exp"]
        blocks = [b["exp"] for b in measurement.blocks]
        if len(blocks) < 2 or any(b.n_samples == 0 or b.sum_w <= 0 for b in blocks):
            raise ValueError("source: a jackknife block has no samples or zero weight")
        W, kap, ser = self._finish(tot, tot._sums, tot.sum_w)
        reps = [self._finish(tot, *tot.sums_without(b)) for b in blocks]
        Wr, kapr, serr = (np.stack([r[i] for r in reps]) for i in range(3))
        n_blocks = len(blocks)
        ns = self.J.shape[0]
        data = {"W": ("source", W), "W_error": ("source", jackknife_error(Wr)),
                "kappa": (("source", "order"), kap),
                "kappa_error": (("source", "order"), jackknife_error(kapr)),
                "W_series": (("source", "order"), ser),
                "W_series_error": (("source", "order"), jackknife_error(serr))}
        attrs = {"n_blocks": n_blocks, "n_samples": int(measurement.n_samples),
                 "n_max": self.n_max,
                 "quantity": "W[J] = log E exp(J.phi); kappa_n(J.phi) = J^n . G_c^(n)",
                 "weighted": int(bool(getattr(measurement.source, "weighted", False)))}
        if self.expected is not None:
            e = self.expected
            err = jackknife_error(Wr)
            v = assess_deviations(W - e, err, dof=n_blocks - 1, alpha=self.alpha)
            data["W_expected"] = ("source", e)
            data["z"] = ("source", (W - e) / err)
            attrs.update({"verdict": "consistent" if v["passed"] else "inconsistent",
                          "passed": int(v["passed"]), "max_abs_z": v["max_abs_z"],
                          "z_threshold": v["z_threshold"]})
        return xr.Dataset(data, coords={"source": np.arange(ns),
                                        "order": np.arange(1, self.n_max + 1)}, attrs=attrs)


def generating_plan(J, field_shape, *, n_max=4, expected=None, alpha=0.01,
                    n_blocks=32) -> GeneratingPlan:
    """A :class:`GeneratingPlan` (see there for the parameters)."""
    return GeneratingPlan(J, field_shape, n_max=n_max, expected=expected, alpha=alpha,
                          n_blocks=n_blocks)


def generating_functional(source, J, *, n_max=4, n_blocks=32, log_weight=None, expected=None,
                          alpha=0.01):
    """W[J] with jackknife errors, and its cumulant expansion alongside.

    Parameters
    ----------
    source : FieldStore or array (n_samples, [D], *shape)
    J : array (n_sources, [D], *shape) or ([D], *shape)
        Sources (same trailing shape as one field configuration).
    n_max : int
        Highest cumulant of X = J.phi in the expansion.
    expected : array (n_sources,), optional
        Exact W to compare with (e.g. :func:`gaussian_W` for a free field): adds ``z`` and a
        multiple-comparison verdict.

    Returns
    -------
    xarray.Dataset
        ``W``, ``W_error`` (dim ``source``); ``kappa``, ``kappa_error`` (dims ``source``,
        ``order``: kappa_n(X) = sum J..J G_c^(n)); ``W_series``, ``W_series_error``
        (partial sums sum_{k<=n} kappa_k/k!, dims ``source``, ``order``); with ``expected``:
        ``W_expected``, ``z`` and attrs ``verdict``, ``max_abs_z``.
    """
    if not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"n_max: must be a positive int, got {n_max!r}")
    src = open_plan_source(source, log_weight=log_weight)
    plan = GeneratingPlan(J, _field_shape_of(src), n_max=n_max, expected=expected, alpha=alpha,
                          n_blocks=n_blocks)
    return run_plans(src, {"W": plan})["W"]
