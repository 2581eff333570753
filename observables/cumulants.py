"""Moments and connected correlators (joint cumulants) at point tuples, with errors.

Conventions (docs/conventions.md)
----------------------------------
* Points are flat site indices into one configuration (C order over the trailing
  ``([D], *shape)`` axes; component-major when D > 1). ``tuples`` is an int array
  ``(n_tuples, n)`` or a list of int sequences.
* The joint cumulant of order n is the sum over set partitions pi of the n points:
  ``kappa = sum_pi (|pi| - 1)! (-1)^(|pi| - 1) prod_{B in pi} E[prod_{i in B} phi(x_i)]``.
  It is evaluated from *central* moments (so partitions with singleton blocks drop out), which
  the shifted accumulators give without cancellation even for fields with a large mean.
* Estimators are plug-in (ratios of weighted sums; weights from the store's ``log_weight``);
  errors come from the measurement's error method (jackknife over chunk blocks by default).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import xarray as xr

from .accumulators import PointMoments, normalize_tuples
from .cluster import cosnet_g4c
from .combinatorics import cumulant_from_central, joint_cumulant, pairings, set_partitions
from .errors import tree_merge_copy
from .measure import Measurement, block_assignment, measure
from .plan import MeasurementPlan

__all__ = ["set_partitions", "joint_cumulant", "cumulant_from_central", "sample_cumulant",
           "moments", "connected_correlator", "gp_npoint", "deviation_measure",
           "scaling_fit", "cosnet_connected_4pt", "single_neuron_connected",
           "tuples_coordinate", "MomentsPlan", "moments_plan", "connected_plan"]


def sample_cumulant(x, weights=None) -> float:
    """Plug-in joint cumulant of the columns of ``x`` (n_samples, n) (direct, two-pass).

    Reference implementation for tests: central moments from the two-pass mean.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError("x must be a 2-d array (n_samples, n)")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    c = x - w @ x
    n = x.shape[1]
    if n == 1:
        return float(w @ x[:, 0])
    return float(joint_cumulant(lambda b: float(w @ np.prod(c[:, list(b)], axis=1)) if len(b) > 1
                                else 0.0, n))


# ----------------------------------------------------------------------------------------------
def tuples_coordinate(keys):
    """(points (n_tuples, max_n) int padded with -1, order (n_tuples,)) for Dataset coords."""
    n = max(len(k) for k in keys)
    pts = np.full((len(keys), n), -1, dtype=np.int64)
    for i, k in enumerate(keys):
        pts[i, :len(k)] = k
    return pts, np.array([len(k) for k in keys])


def _find_point_moments(meas: Measurement, keys):
    def covers(a):
        return all(tuple(sorted(k)) in a.index for k in keys)

    return meas.find(PointMoments, covers)


def _get_measurement(source, keys, *, blocks, executor, measure_kw):
    if isinstance(source, Measurement):
        return source, _find_point_moments(source, keys)
    acc = PointMoments(keys, max_order=max(6, max(len(k) for k in keys)))
    meas = measure(source, {"moments": acc}, blocks=blocks, executor=executor, **measure_kw)
    return meas, "moments"


def _moments_fn(name, keys, kind):
    skeys = [tuple(sorted(k)) for k in keys]

    def f(accs):
        acc = accs[name]
        if kind == "cumulant":
            cen = acc.moment_table("mean")
            mean = dict(zip((int(s) for s in acc.sites), acc.mean()))
            return np.array([cumulant_from_central(k, cen, mean) for k in skeys])
        tab = acc.moment_table(kind)
        return np.array([tab[k] if len(k) > 1 or kind != "mean" else 0.0 for k in skeys])

    return f


def _dataset(est, keys, attrs):
    pts, order = tuples_coordinate(keys)
    value = np.asarray(est.value, dtype=float)
    error = np.broadcast_to(np.asarray(est.error, dtype=float), value.shape).copy()
    ds = xr.Dataset(
        {"value": ("tuple", value), "error": ("tuple", error)},
        coords={"points": (("tuple", "position"), pts), "order": ("tuple", order)})
    a = dict(attrs)
    a["error_method"] = est.method
    for k, v in est.attrs.items():
        if np.isscalar(v) and not isinstance(v, (bool, np.bool_)):
            a[f"error_{k}"] = v
    if "bias" in est.attrs:
        ds["jackknife_bias"] = ("tuple", np.asarray(est.attrs["bias"], dtype=float))
    ds.attrs = a
    return ds


def moments(source, tuples, *, central: bool = False, blocks=20, error: str = "jackknife",
            executor: str = "serial", **measure_kw) -> xr.Dataset:
    """Moments ``E[prod_i phi(x_i)]`` at point tuples, with errors.

    Parameters
    ----------
    source : FieldStore, path, array (n, *field_shape), or a Measurement holding a
        PointMoments accumulator whose closure covers ``tuples``.
    tuples : int array (n_tuples, n) or list of int sequences
        Flat site indices (order <= 6 by default).
    central : bool
        Central moments ``E[prod (phi_i - <phi_i>)]`` instead of raw ones.
    blocks : int
        Chunk blocks for the error estimate.
    error : str
        Error method name ("jackknife", or a registered one such as "gamma").
    executor, **measure_kw :
        Passed to :func:`measure` (``executor="dask"``, ``scheduler=...``, ``chunk=`` for arrays).

    Returns
    -------
    xarray.Dataset
        ``value``, ``error`` (dim ``tuple``), coords ``points`` (tuple, position; -1 padded),
        ``order``; attrs say how it was computed.
    """
    keys = normalize_tuples(tuples)
    meas, name = _get_measurement(source, keys, blocks=blocks, executor=executor,
                                  measure_kw=measure_kw)
    kind = "mean" if central else "raw"
    est = meas.estimate(_moments_fn(name, keys, kind), method=error)
    attrs = meas.attrs()
    attrs.update(quantity="central moment" if central else "moment",
                 estimator="plug-in weighted average of shifted float64 power sums",
                 definition="E[prod_i (phi(x_i) - <phi(x_i)>)]" if central
                 else "E[prod_i phi(x_i)]")
    return _dataset(est, keys, attrs)


def connected_correlator(source, tuples, *, order=None, blocks=20, error: str = "jackknife",
                         executor: str = "serial", **measure_kw) -> xr.Dataset:
    """Connected correlators (joint cumulants) at point tuples, with errors.

    Parameters
    ----------
    source, tuples, blocks, error, executor, **measure_kw
        As for :func:`moments`.
    order : int or None
        Expected tuple length; if given, every tuple must have this many points (checked).

    Returns
    -------
    xarray.Dataset
        ``value`` (the cumulant kappa_n), ``error``, ``jackknife_bias`` (when the jackknife
        is used); coords ``points``, ``order``.
    """
    keys = normalize_tuples(tuples)
    if order is not None:
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be a positive int, got {order!r}")
        bad = [k for k in keys if len(k) != order]
        if bad:
            raise ValueError(f"order={order} but tuples contains {bad[0]} of length {len(bad[0])}")
    meas, name = _get_measurement(source, keys, blocks=blocks, executor=executor,
                                  measure_kw=measure_kw)
    est = meas.estimate(_moments_fn(name, keys, "cumulant"), method=error)
    attrs = meas.attrs()
    attrs.update(quantity="connected correlator (joint cumulant)",
                 estimator="set-partition formula on plug-in central moments "
                           "(docs/conventions.md)")
    return _dataset(est, keys, attrs)


class MomentsPlan(MeasurementPlan):
    """Moments, central moments or connected correlators at point tuples (a measurement plan).

    The plan of :func:`moments` / :func:`connected_correlator`: one :class:`PointMoments`
    accumulator, errors by the named error method over the plan's blocks (by default the
    chunk blocks of :func:`measure` with ``blocks=20``, so the numbers equal those functions').

    Parameters
    ----------
    tuples : int array (n_tuples, n) or list of int sequences
    kind : {"moment", "central", "connected"}
    order : int, optional
        Expected tuple length (checked), as for :func:`connected_correlator`.
    error : str
        Error method name ("jackknife", or a registered one).
    n_blocks : int
    split : {"chunks", "samples"}
    """

    kind = "moments"
    split = "chunks"

    def __init__(self, tuples, *, kind="connected", order=None, error="jackknife", n_blocks=20,
                 split=None):
        super().__init__(n_blocks=n_blocks, split=split)
        if kind not in ("moment", "central", "connected"):
            raise ValueError(f"kind must be 'moment', 'central' or 'connected', got {kind!r}")
        self.keys = normalize_tuples(tuples)
        if order is not None:
            if not isinstance(order, (int, np.integer)) or order < 1:
                raise ValueError(f"order must be a positive int, got {order!r}")
            bad = [k for k in self.keys if len(k) != order]
            if bad:
                raise ValueError(f"order={order} but tuples contains {bad[0]} of length "
                                 f"{len(bad[0])}")
        self.moment_kind, self.error = kind, error

    def accumulators(self) -> dict:
        return {"moments": PointMoments(self.keys,
                                        max_order=max(6, max(len(k) for k in self.keys)))}

    def finalize(self, measurement) -> xr.Dataset:
        kind = {"moment": "raw", "central": "mean", "connected": "cumulant"}[self.moment_kind]
        est = measurement.estimate(_moments_fn("moments", self.keys, kind), method=self.error)
        attrs = measurement.attrs()
        if self.moment_kind == "connected":
            attrs.update(quantity="connected correlator (joint cumulant)",
                         estimator="set-partition formula on plug-in central moments "
                                   "(docs/conventions.md)")
        else:
            central = self.moment_kind == "central"
            attrs.update(quantity="central moment" if central else "moment",
                         estimator="plug-in weighted average of shifted float64 power sums",
                         definition="E[prod_i (phi(x_i) - <phi(x_i)>)]" if central
                         else "E[prod_i phi(x_i)]")
        return _dataset(est, self.keys, attrs)


def moments_plan(tuples, *, central=False, error="jackknife", n_blocks=20,
                 split=None) -> MomentsPlan:
    """The plan of :func:`moments` (raw or central moments at point tuples)."""
    return MomentsPlan(tuples, kind="central" if central else "moment", error=error,
                       n_blocks=n_blocks, split=split)


def connected_plan(tuples, *, order=None, error="jackknife", n_blocks=20,
                   split=None) -> MomentsPlan:
    """The plan of :func:`connected_correlator` (joint cumulants at point tuples)."""
    return MomentsPlan(tuples, kind="connected", order=order, error=error, n_blocks=n_blocks,
                       split=split)


# ----------------------------------------------------------------------------------------------
def gp_npoint(kernel, tuples) -> np.ndarray:
    """Full n-point function of a zero-mean Gaussian process: Wick sum over pairings.

    ``kernel`` is the (V, V) two-point matrix over flat sites; odd orders give 0.
    """
    K = np.asarray(kernel, dtype=float)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError("kernel must be a square (V, V) matrix")
    keys = normalize_tuples(tuples)
    out = np.zeros(len(keys))
    for i, k in enumerate(keys):
        tot = 0.0
        for p in pairings(len(k)):
            term = 1.0
            for a, b in p:
                term *= K[k[a], k[b]]
            tot += term
        out[i] = tot
    return out


def deviation_measure(source, tuples, gp, *, n_sub: int = 10, executor: str = "serial",
                      **measure_kw) -> xr.Dataset:
    """The founding papers' deviation measure ``m_n`` against the GP, with its background.

    For each of ``n_sub`` independent sub-ensembles k (contiguous chunk blocks):
    ``m_n^(k) = mean_t |G_n^(k)(t) - G_n^GP(t)| / |G_n^GP(t)|`` over the point tuples t
    (``G_n`` the full, not connected, n-point function). ``value`` is the mean over k and
    ``error`` its standard error. The *background* is the same measure with the GP
    replaced by the other sub-ensembles:
    ``b^(k) = sqrt((K-1)/K) mean_t |G_n^(k)(t) - mean_{j != k} G_n^(j)(t)| / |G_n^GP(t)|``,
    i.e. the m_n a pure-noise (exactly Gaussian) ensemble of the same size would give.

    Parameters
    ----------
    source : store, path, array or Measurement (its blocks are the sub-ensembles)
    tuples : point tuples of one order n
    gp : array (n_tuples,) of GP predictions, or a (V, V) kernel matrix (Wick sums are taken)
    n_sub : int
        Number of sub-ensembles (>= 2).
    """
    keys = normalize_tuples(tuples)
    if not isinstance(n_sub, (int, np.integer)) or n_sub < 2:
        raise ValueError(f"n_sub must be an int >= 2, got {n_sub!r}")
    gp = np.asarray(gp, dtype=float)
    if gp.ndim == 2 and gp.shape[0] == gp.shape[1] and gp.shape[0] != len(keys):
        gp = gp_npoint(gp, keys)
    if gp.shape != (len(keys),):
        raise ValueError(f"gp must have shape ({len(keys)},) or be a (V, V) kernel")
    if np.any(gp == 0):
        raise ValueError("gp: the GP prediction vanishes at some tuple; m_n is undefined there")
    meas, name = _get_measurement(source, keys, blocks=n_sub, executor=executor,
                                  measure_kw=measure_kw)
    f = _moments_fn(name, keys, "raw")
    subs = meas.blocks
    if len(subs) > n_sub:  # a Measurement with finer blocks: merge contiguous ones

        subs = [tree_merge_copy([subs[i] for i in g])
                for g in block_assignment(range(len(subs)), n_sub)]
    G = np.stack([f(b) for b in subs])  # (K, T)
    K = G.shape[0]
    if K < 2:
        raise ValueError("deviation_measure needs at least 2 sub-ensembles (more chunks)")
    m_sub = np.mean(np.abs(G - gp) / np.abs(gp), axis=1)
    others = (G.sum(axis=0) - G) / (K - 1)
    b_sub = math.sqrt((K - 1) / K) * np.mean(np.abs(G - others) / np.abs(gp), axis=1)
    m_all = float(np.mean(np.abs(f(meas.total) - gp) / np.abs(gp)))
    ds = xr.Dataset({
        "value": ((), float(m_sub.mean())),
        "error": ((), float(m_sub.std(ddof=1) / math.sqrt(K))),
        "background": ((), float(b_sub.mean())),
        "background_error": ((), float(b_sub.std(ddof=1) / math.sqrt(K))),
        "value_full_ensemble": ((), m_all),
        "m_sub": ("sub", m_sub), "background_sub": ("sub", b_sub),
    })
    a = meas.attrs()
    a.update(quantity=f"deviation measure m_n, n = {sorted({len(k) for k in keys})}",
             definition="mean over sub-ensembles of mean_t |G_n(t) - G_n^GP(t)| / |G_n^GP(t)|",
             background="same with G_n^GP replaced by the mean of the other sub-ensembles, "
                        "scaled by sqrt((K-1)/K)",
             n_sub=K, n_tuples=len(keys))
    ds.attrs = a
    return ds


def scaling_fit(widths, values, errors) -> xr.Dataset:
    """Weighted least-squares fit ``log m = c + s log N`` (the 1/N scaling test).

    Parameters
    ----------
    widths : array of N (> 0)
    values : array of m_n(N) (> 0)
    errors : array of standard errors of ``values`` (> 0); ``sigma_log = errors/values``.

    Returns
    -------
    xarray.Dataset with ``slope``, ``slope_error``, ``intercept``, ``intercept_error``,
    ``chi2``, ``dof``, ``slope_error_scaled`` (times sqrt(chi2/dof) when that exceeds 1).
    """
    N = np.asarray(widths, dtype=float)
    m = np.asarray(values, dtype=float)
    e = np.asarray(errors, dtype=float)
    if not (N.shape == m.shape == e.shape) or N.ndim != 1 or len(N) < 2:
        raise ValueError("widths, values and errors must be 1-d arrays of equal length >= 2")
    if np.any(N <= 0) or np.any(m <= 0) or np.any(e <= 0):
        raise ValueError("widths, values and errors must all be positive")
    x, y, s = np.log(N), np.log(m), e / m
    A = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
    b = y / s
    cov = np.linalg.inv(A.T @ A)
    coef = cov @ (A.T @ b)
    chi2 = float(np.sum((A @ coef - b) ** 2))
    dof = len(N) - 2
    scale = math.sqrt(max(1.0, chi2 / dof)) if dof > 0 else 1.0
    ds = xr.Dataset({
        "slope": ((), float(coef[1])), "slope_error": ((), float(math.sqrt(cov[1, 1]))),
        "intercept": ((), float(coef[0])),
        "intercept_error": ((), float(math.sqrt(cov[0, 0]))),
        "chi2": ((), chi2), "dof": ((), dof),
        "slope_error_scaled": ((), float(math.sqrt(cov[1, 1]) * scale)),
    })
    ds.attrs = {"model": "log m = intercept + slope * log N", "fit": "weighted least squares, "
                "sigma_log m = error / m"}
    return ds


# ----------------------------------------------------------------------------------------------
def cosnet_connected_4pt(G, tuples, width: int, kurtosis: float = 3.0) -> np.ndarray:
    """Closed-form finite-N connected 4-point function of the lattice cos-net (docs/conventions.md s. 6).

    ``G4c = (1/N) [ k G(0)/2 sum_3 G(x_i + x_j - x_k - x_l) - sum_3 G(x_i - x_j) G(x_k - x_l) ]``;
    the same formula as :func:`nnft.observables.cluster.cosnet_g4c` (which it calls).

    Parameters
    ----------
    G : array, lattice shape
        Lattice propagator as a function of the displacement index (``free_propagator``).
    tuples : (n_tuples, 4) flat site indices (C order over the lattice shape)
    width : int
        N.
    kurtosis : float
        k = E[a^4]/(E[a^2])^2 (3 for Gaussian amplitudes, 1 for constant ones).
    """

    keys = normalize_tuples(tuples)
    if any(len(k) != 4 for k in keys):
        raise ValueError("tuples must all have 4 points")
    return cosnet_g4c(np.asarray(G, dtype=float), np.asarray(keys), width, kurtosis=kurtosis)


def single_neuron_connected(E2, E4, tuples, width: int, sigma: float = 1.0,
                            E6=None) -> np.ndarray:
    """Finite-N connected 4- (or 6-) point function of a single-layer net (docs/conventions.md s. 7).

    ``G4c = (sigma^4/N) [3 E_4 - sum_3 E_2 E_2]``;
    ``G6c = (sigma^6/N^2) [15 E_6 - 3 sum_15 E_4 E_2 + 2 sum_15 E_2 E_2 E_2]``.

    Parameters
    ----------
    E2 : callable(i, j) -> E[h(x_i) h(x_j)] for one neuron
    E4 : callable(i, j, k, l) -> E[h h h h]
    E6 : callable of 6 indices (for 6-point tuples)
    tuples : (n_tuples, 4 or 6) site indices passed to E2/E4/E6
    width : int, sigma : float (output weights W1 ~ N(0, sigma^2/N))
    """
    keys = normalize_tuples(tuples)
    out = np.zeros(len(keys))
    for t, k in enumerate(keys):
        n = len(k)
        if n == 4:
            s = sum(E2(k[a], k[b]) * E2(k[c], k[d]) for (a, b), (c, d) in pairings(4))
            out[t] = sigma ** 4 / width * (3.0 * E4(*k) - s)
        elif n == 6:
            if E6 is None:
                raise ValueError("E6 is needed for 6-point tuples")
            s42 = 0.0
            for pair in itertools.combinations(range(6), 2):
                rest = [i for i in range(6) if i not in pair]
                s42 += E4(*(k[i] for i in rest)) * E2(k[pair[0]], k[pair[1]])
            s222 = sum(E2(k[a], k[b]) * E2(k[c], k[d]) * E2(k[e], k[f])
                       for (a, b), (c, d), (e, f) in pairings(6))
            out[t] = sigma ** 6 / width ** 2 * (15.0 * E6(*k) - 3.0 * s42 + 2.0 * s222)
        else:
            raise ValueError("tuples must have 4 or 6 points")
    return out
