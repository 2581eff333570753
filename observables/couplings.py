"""Effective couplings of network field theories: tree-level quartic, its running, 6-point
predictions and the amputated 4-point vertex (docs/conventions.md).

Conventions
-----------
* Action deformation ``Delta S = lambda sum_y phi_y^4`` (convention C: lambda = g/4!). At tree
  level the connected 4-point function is
  ``G4c(x1..x4) = -24 lambda V4(x1..x4)``, ``V4 = sum_y prod_i K(x_i, y)`` (lattice) or
  ``int_{|y| < Lambda} d^d y prod_i [K(x_i, y) - sigma_b^2]`` (continuum inputs, as in
  arXiv:2008.08601). The measured ``Delta G4`` is the connected 4-point function (for network
  ensembles whose G2 equals the GP kernel this is G4 - G4_GP).
* 6-point at first order: ``Delta G6 = G6 - sum_15 G2 G2 G2 = sum_15 G2(x_a, x_b) Delta G4(rest)``
  ``= -24 lambda sum_15 K(x_a, x_b) V4(rest)`` (one quartic vertex, the two remaining points joined
  by a free propagator); the connected 6-point starts at second order,
  ``G6c = (24 lambda)^2 sum_10 sum_{y,z} prod_{A} K(x, y) K(y, z) prod_{B} K(x, z)``.
* Momentum space (periodic lattices): ``phit(p) = sum_x exp(-i p.x) phi(x)``; for a local
  quartic ``<phit(p1)..phit(p4)>_c = -24 lambda V delta_{sum p, 0} prod_i Gt(p_i)``, so the
  amputated vertex ``lambda(p1, p2, p3) = -<phit1 phit2 phit3 phit4>_c / (24 V prod_i Gt(p_i))``
  with ``p4 = -(p1 + p2 + p3)`` is constant for a local coupling.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from .combinatorics import local_tuples, pairs_and_rest, random_tuples
from nnft.lattice.backend import xp_of

from .accumulators import FeatureMoments
from .replicas import JackknifeResult, feature_replicas
from .replicas import jackknife_error as _jk_error
from .plan import MeasurementPlan, measure_plans
from .symmetry import assess_deviations

__all__ = [
    "vertex_sum",
    "vertex_integral",
    "ball_quadrature",
    "gauss_kernel_fn",
    "fit_quartic",
    "local_tuples",
    "quartic_coupling",
    "running_quartic",
    "predict_delta_g6",
    "tree_g6c",
    "six_point_check",
    "amputated_vertex",
    "QuarticPlan", "quartic_plan", "SixPointPlan", "six_point_plan", "AmputatedVertexPlan",
    "amputated_vertex_plan", "FourierFeatures",
    "vertex_models",
    "plot_coupling_flow",
]


# --------------------------------------------------------------------------------------------
# vertex templates
# --------------------------------------------------------------------------------------------
def _kernel_matrix(kernel, lattice=None):
    """(V, V) matrix from a (V, V) matrix or a displacement function on ``lattice.shape``.

    Without a lattice a square 2-D array is taken as the matrix.
    """
    if isinstance(kernel, np.ndarray) and kernel.ndim == 2 and lattice is None \
            and kernel.shape[0] == kernel.shape[1]:
        return np.asarray(kernel, dtype=float)
    K = np.asarray(kernel, dtype=float)
    if lattice is not None:
        V = int(np.prod(lattice.shape))
        if K.shape == (V, V) and tuple(lattice.shape) != (V, V):
            return K
        if tuple(K.shape) != tuple(lattice.shape):
            raise ValueError(f"kernel: shape {K.shape} is neither ({V}, {V}) nor the lattice "
                             f"shape {tuple(lattice.shape)}")
    elif K.ndim == 2 and K.shape[0] == K.shape[1]:
        return K
    shape = K.shape
    Vk = int(np.prod(shape))
    idx = np.stack(np.unravel_index(np.arange(Vk), shape), axis=-1)
    disp = (idx[None, :, :] - idx[:, None, :]) % np.asarray(shape)
    return K[tuple(np.moveaxis(disp, -1, 0))]


def vertex_sum(kernel, tuples, *, offset=0.0, lattice=None):
    """Lattice vertex ``V_n(x_1..x_n) = sum_y prod_i [K(x_i, y) - offset]``.

    Parameters
    ----------
    kernel : array
        Either the (V, V) two-point matrix over flat sites (any geometry) or, for a
        translation-invariant periodic lattice, G as a function of displacement (lattice shape,
        e.g. ``free_propagator``).
    tuples : int array (n_t, n)
        Flat site indices.
    offset : float
        Subtracted from K inside the vertex (sigma_b^2 for the papers' continuum convention).
    lattice : Lattice, optional
        Disambiguates a displacement function from a matrix (without it a square 2-D array is
        the (V, V) matrix).
    """
    t = np.asarray(tuples, dtype=np.int64)
    if t.ndim != 2:
        raise ValueError("tuples: expected an int array (n_tuples, n)")
    K = _kernel_matrix(kernel, lattice) - offset
    if t.size and t.max() >= K.shape[0]:
        raise ValueError(f"tuples: site index out of range for {K.shape[0]} sites")
    prod = np.ones((t.shape[0], K.shape[0]))
    for i in range(t.shape[1]):
        prod *= K[t[:, i]]
    return prod.sum(axis=1)


def ball_quadrature(d, cutoff, *, n_radial=48, n_angular=48, center=None):
    """Nodes (Q, d) and weights (Q,) integrating over the ball |y - center| < cutoff.

    d = 1: Gauss-Legendre; d = 2: Gauss-Legendre radius x trapezoid angle; d = 3: Gauss-Legendre
    in r and cos(theta) x trapezoid in phi. Exact for smooth integrands as the node counts grow.
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff: must be positive, got {cutoff}")
    c = np.zeros(d) if center is None else np.asarray(center, dtype=float)
    xr, wr = np.polynomial.legendre.leggauss(n_radial)
    if d == 1:
        return (cutoff * xr)[:, None] + c, cutoff * wr
    r = cutoff * (xr + 1) / 2
    w_r = cutoff / 2 * wr
    if d == 2:
        th = 2 * np.pi * np.arange(n_angular) / n_angular
        R, T = np.meshgrid(r, th, indexing="ij")
        W = (w_r * r)[:, None] * np.full(n_angular, 2 * np.pi / n_angular)[None]
        pts = np.stack([R * np.cos(T), R * np.sin(T)], -1).reshape(-1, 2)
        return pts + c, W.ravel()
    if d == 3:
        ct, wct = np.polynomial.legendre.leggauss(n_angular)
        ph = 2 * np.pi * np.arange(n_angular) / n_angular
        R, C, P = np.meshgrid(r, ct, ph, indexing="ij")
        S = np.sqrt(1 - C ** 2)
        W = (w_r * r ** 2)[:, None, None] * wct[None, :, None] * (2 * np.pi / n_angular)
        pts = np.stack([R * S * np.cos(P), R * S * np.sin(P), R * C], -1).reshape(-1, 3)
        return pts + c, np.broadcast_to(W, R.shape).ravel()
    raise ValueError(f"d: ball quadrature is implemented for d = 1, 2, 3, got {d}")


def gauss_kernel_fn(sigma_w=1.0, sigma_b=1.0, d_in=1):
    """Gauss-net GP kernel K(x, y) = sigma_b^2 + sigma_w^2 exp(-sigma_w^2 |x-y|^2/(2 d_in)).

    Returns a callable on arrays (..., d) broadcasting against each other.
    """
    def K(x, y):
        r2 = np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=-1)
        return sigma_b ** 2 + sigma_w ** 2 * np.exp(-sigma_w ** 2 * r2 / (2 * d_in))
    return K


def vertex_integral(kernel_fn, points, tuples, cutoff, *, offset=0.0, n_radial=48,
                    n_angular=48, center=None):
    """Continuum vertex ``int_{|y| < cutoff} d^d y prod_i [K(x_i, y) - offset]``.

    Parameters
    ----------
    kernel_fn : callable(x (..., d), y (..., d)) -> K
        GP kernel at arbitrary inputs (e.g. :func:`gauss_kernel_fn`).
    points : array (V, d)
        Input points of the field (``lattice.positions()``).
    tuples : int array (n_t, n) of indices into ``points``.
    cutoff : float
        Lambda (radius of the integration ball around ``center``, default the origin).
    offset : float
        sigma_b^2 in the papers' convention.
    """
    P = np.asarray(points, dtype=float)
    if P.ndim == 1:
        P = P[:, None]
    t = np.asarray(tuples, dtype=np.int64)
    y, w = ball_quadrature(P.shape[1], cutoff, n_radial=n_radial, n_angular=n_angular,
                           center=center)
    Kpy = kernel_fn(P[:, None, :], y[None, :, :]) - offset  # (V, Q)
    prod = np.ones((t.shape[0], y.shape[0]))
    for i in range(t.shape[1]):
        prod *= Kpy[t[:, i]]
    return prod @ w


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------
def fit_quartic(delta_g4, error, vertex, *, replicas=None):
    """Least-squares lambda in ``Delta G4 = -24 lambda V4`` (weights 1/error^2).

    Parameters
    ----------
    delta_g4, error, vertex : arrays (n_t,)
    replicas : array (n_blocks, n_t), optional
        Jackknife replicas of ``delta_g4``: the fit is repeated on each (error includes the
        correlations between tuples).

    Returns
    -------
    dict: ``lam``, ``lam_error``, ``chi2`` (diagonal), ``dof``, ``p_value``, ``lam_replicas``.
    """
    y = np.real(np.asarray(delta_g4, dtype=complex if np.iscomplexobj(delta_g4) else float))
    s = np.asarray(error, dtype=float)
    v = -24.0 * np.asarray(vertex, dtype=float)
    ok = (s > 0) & np.isfinite(y)
    if ok.sum() < 1:
        raise ValueError("error: no tuple with a positive error")
    w = np.where(ok, 1 / np.where(ok, s, 1) ** 2, 0.0)
    den = np.sum(w * v * v)
    if den <= 0:
        raise ValueError("vertex: the vertex template vanishes on every tuple")
    lam = float(np.sum(w * v * y) / den)
    chi2 = float(np.sum(w * (y - lam * v) ** 2))
    dof = int(ok.sum() - 1)
    out = {"lam": lam, "chi2": chi2, "dof": dof,
           "p_value": float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan")}
    if replicas is not None:
        r = np.real(np.asarray(replicas))
        lr = (r * (w * v)[None]).sum(axis=1) / den
        out["lam_replicas"] = lr
        out["lam_error"] = float(_jk_error(lr[:, None])[0])
    else:
        out["lam_error"] = float(1 / math.sqrt(den))
    return out


def _replicas(meas, key, stat, groups=None):
    return feature_replicas(meas[key], [b[key] for b in meas.blocks], stat=stat, groups=groups)


def _check_reference(reference):
    if reference not in (None, "unweighted"):
        raise ValueError(f"reference: must be None or 'unweighted', got {reference!r}")


class QuarticPlan(MeasurementPlan):
    """Tree-level quartic coupling from the connected 4-point function (a measurement plan).

    Parameters as for :func:`quartic_coupling` (without ``source``, ``log_weight``,
    ``return_result``). With ``reference="unweighted"`` the unweighted reference is a second
    accumulator of the same pass. ``finalize`` gives the Dataset of :func:`quartic_coupling`;
    :meth:`result` also the JackknifeResult of Delta G4 and the fit.
    """

    kind = "quartic_coupling"

    def __init__(self, lattice, kernel, *, tuples=None, n_tuples=24, average=True, n_blocks=32,
                 offset=0.0, seed=0, reference=None):
        super().__init__(n_blocks=n_blocks)
        _check_reference(reference)
        if tuples is None:
            tuples = local_tuples(lattice, 4, n_tuples, seed=seed)
        self.tuples = np.asarray(tuples, dtype=np.int64)
        self.rows, self.groups = _translates(lattice, self.tuples, average)
        self.lattice, self.kernel, self.offset = lattice, kernel, offset
        self.average, self.reference = average, reference

    def accumulators(self) -> dict:
        out = {"g4": FeatureMoments(self.rows)}
        if self.reference == "unweighted":
            out["ref"] = FeatureMoments(self.rows, ignore_weights=True)
        return out

    def result(self, measurement):
        """(Dataset, JackknifeResult of Delta G4, fit dict)."""
        res = _replicas(measurement, "g4", "connected", self.groups)
        if self.reference == "unweighted":
            ref = _replicas(measurement, "ref", "connected", self.groups)
            res = JackknifeResult(res.value - ref.value, res.replicas - ref.replicas, res.attrs)
        tuples, lattice = self.tuples, self.lattice
        V4 = vertex_sum(self.kernel, tuples, offset=self.offset, lattice=lattice)
        fit = fit_quartic(res.value, res.error, V4, replicas=res.replicas)
        ds = xr.Dataset({"delta_g4": ("tuple", np.real(res.value)), "error": ("tuple", res.error),
                         "vertex": ("tuple", V4), "fit": ("tuple", -24 * fit["lam"] * V4),
                         "points": (("tuple", "leg"), tuples)},
                        coords={"tuple": np.arange(len(tuples))})
        ds.attrs.update({k: fit[k] for k in ("lam", "lam_error", "chi2", "dof", "p_value")})
        ds.attrs.update({"n_blocks": res.n_blocks, "reference": str(self.reference),
                         "convention": "Delta S = lambda sum phi^4; "
                         "G4c = -24 lambda sum_y prod K(x_i, y)", "translation_averaged": int(
                             self.average and getattr(lattice, "boundary", "open") == "periodic")})
        return ds, res, fit

    def finalize(self, measurement) -> xr.Dataset:
        return self.result(measurement)[0]


def quartic_plan(lattice, kernel, **options) -> QuarticPlan:
    """A :class:`QuarticPlan` (options as for :func:`quartic_coupling`)."""
    return QuarticPlan(lattice, kernel, **options)


def quartic_coupling(source, lattice, kernel, *, tuples=None, n_tuples=24, average=True,
                     n_blocks=32, log_weight=None, offset=0.0, seed=0, reference=None,
                     return_result=False):
    """Tree-level quartic coupling lambda of a lattice ensemble from its connected 4-point function.

    Parameters
    ----------
    source : FieldStore or array (n_samples, *shape)
    lattice : Lattice (periodic for translation averaging) or PointSet
    kernel : array
        Free propagator of the vertex legs: (V, V) matrix, or G(displacement) on a periodic
        lattice (``free_propagator``); for network ensembles the GP kernel.
    tuples : int array (n_t, 4), optional
        Flat site tuples; default :func:`local_tuples` (coincident and neighbouring sites).
    average : bool
        On a periodic lattice, average the measured G4c over all translations of each tuple
        (the template is translation invariant).
    offset : float
        sigma_b^2 subtracted from K in the vertex.
    reference : {None, "unweighted"}
        None: Delta G4 = measured G4c (the GP value of G4c is zero). "unweighted" (reweighted
        ensembles): Delta G4 = G4c(weighted) - G4c(unweighted) on the same samples and blocks,
        i.e. the Gaussian reference is measured rather than assumed zero. This is a control
        variate: its noise is proportional to lambda, so lambda can be taken small enough that
        the O(lambda^2) corrections vanish while the relative error stays fixed -- the fit
        then recovers the first-order (tree-level) coupling exactly.

    Returns
    -------
    xarray.Dataset
        ``delta_g4``, ``error``, ``vertex``, ``fit`` (= -24 lambda V4) over ``tuple``; attrs
        ``lam``, ``lam_error``, ``chi2``, ``dof``, ``p_value`` (diagonal chi^2 of the local fit).
        With ``return_result=True`` also the JackknifeResult of delta_g4 (tuple-averaged).
    """
    plan = QuarticPlan(lattice, kernel, tuples=tuples, n_tuples=n_tuples, average=average,
                       n_blocks=n_blocks, offset=offset, seed=seed, reference=reference)
    meas, _ = measure_plans(source, {"q": plan}, log_weight=log_weight)
    ds, res, fit = plan.result(meas.namespace("q"))
    if return_result:
        return ds, res, fit
    return ds


def _translates(lattice, tuples, average):
    if not (average and getattr(lattice, "kind", "lattice") == "lattice"
            and lattice.boundary == "periodic"):
        return tuples, np.arange(len(tuples))
    shape = tuple(lattice.shape)
    L = np.asarray(shape)
    V = int(np.prod(shape))
    coords = np.stack(np.unravel_index(tuples, shape), axis=-1)  # (n_t, n, dim)
    shifts = np.stack(np.unravel_index(np.arange(V), shape), axis=-1)  # (V, dim)
    allc = (coords[:, None] + shifts[None, :, None, :]) % L  # (n_t, V, n, dim)
    flat = np.ravel_multi_index(tuple(np.moveaxis(allc, -1, 0)), shape)
    return flat.reshape(-1, tuples.shape[1]), np.repeat(np.arange(len(tuples)), V)


def running_quartic(delta_g4, error, points, tuples, kernel_fn, cutoffs, *, replicas=None,
                    offset=0.0, n_radial=48, n_angular=48):
    """lambda(Lambda): refit the same measured Delta G4 with the continuum vertex at each cutoff.

    Parameters
    ----------
    delta_g4, error : arrays (n_t,) measured connected 4-point function at ``tuples``.
    points : array (V, d) input points; tuples : int array (n_t, 4) indices into them.
    kernel_fn : callable K(x, y) (e.g. :func:`gauss_kernel_fn`).
    cutoffs : sequence of float.
    offset : float, sigma_b^2 subtracted at the vertex (the papers' convention).

    Returns
    -------
    xarray.Dataset over ``cutoff``: ``lam``, ``lam_error``, ``chi2``, ``dof``.
    """
    cutoffs = np.asarray(cutoffs, dtype=float)
    rows = []
    for lam_c in cutoffs:
        V4 = vertex_integral(kernel_fn, points, tuples, lam_c, offset=offset,
                             n_radial=n_radial, n_angular=n_angular)
        rows.append(fit_quartic(delta_g4, error, V4, replicas=replicas))
    return xr.Dataset({k: ("cutoff", np.array([r[k] for r in rows]))
                       for k in ("lam", "lam_error", "chi2", "dof")},
                      coords={"cutoff": cutoffs},
                      attrs={"quantity": "tree-level quartic lambda(Lambda)", "offset": offset})


# --------------------------------------------------------------------------------------------
# 6-point
# --------------------------------------------------------------------------------------------
def predict_delta_g6(lam, kernel, tuples6, *, offset=0.0, vertex_fn=None, lattice=None):
    """First-order prediction ``Delta G6 = -24 lambda sum_15 K(x_a, x_b) V4(rest)``.

    Parameters
    ----------
    lam : float or array (n_rep,)
        Coupling (an array gives one prediction per value, e.g. per jackknife replica).
    kernel : array, (V, V) matrix or displacement function (see :func:`vertex_sum`).
    tuples6 : int array (n_t, 6).
    vertex_fn : callable(tuples4) -> V4, optional
        Vertex (default :func:`vertex_sum` with ``kernel`` and ``offset``; pass a continuum
        :func:`vertex_integral` closure for point sets).

    Returns
    -------
    array (n_t,) or (n_rep, n_t)
    """
    t = np.asarray(tuples6, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 6:
        raise ValueError("tuples6: expected an int array (n_tuples, 6)")
    K = _kernel_matrix(kernel, lattice)
    vf = vertex_fn or (lambda tt: vertex_sum(K, tt, offset=offset))
    tot = np.zeros(t.shape[0])
    for (a, b), rest in pairs_and_rest(6):
        tot += K[t[:, a], t[:, b]] * vf(t[:, list(rest)])
    lam = np.asarray(lam, dtype=float)
    return -24.0 * (lam[..., None] if lam.ndim else lam) * tot


def tree_g6c(lam, kernel, tuples6, *, lattice=None):
    """Second-order tree connected 6-point: (24 lambda)^2 sum_10 sum_{y,z} K_A(y) K(y,z) K_B(z)."""
    t = np.asarray(tuples6, dtype=np.int64)
    K = _kernel_matrix(kernel, lattice)
    out = np.zeros(t.shape[0])
    for A in itertools.combinations(range(6), 3):
        if 0 not in A:
            continue
        B = [i for i in range(6) if i not in A]
        uA = K[t[:, A[0]]] * K[t[:, A[1]]] * K[t[:, A[2]]]
        uB = K[t[:, B[0]]] * K[t[:, B[1]]] * K[t[:, B[2]]]
        out += np.einsum("ty,yz,tz->t", uA, K, uB)
    return (24.0 * lam) ** 2 * out


class SixPointPlan(MeasurementPlan):
    """Fit lambda from G4c and compare the predicted Delta G6 with the measured (a plan).

    Parameters as for :func:`six_point_check` (without ``source``, ``log_weight``); both
    4- and 6-point functions are accumulated in the same pass (same blocks).
    """

    kind = "six_point"

    def __init__(self, lattice, kernel, *, tuples4=None, tuples6=None, n_tuples=24, average=True,
                 n_blocks=32, offset=0.0, alpha=0.01, seed=0, lam=None):
        super().__init__(n_blocks=n_blocks)
        rng = np.random.default_rng(seed)
        V = int(np.prod(lattice.shape))
        self.t4 = random_tuples(rng, V, 4, n_tuples) if tuples4 is None else np.asarray(tuples4)
        self.t6 = random_tuples(rng, V, 6, n_tuples) if tuples6 is None else np.asarray(tuples6)
        self.r4, self.g4 = _translates(lattice, self.t4, average)
        self.r6, self.g6 = _translates(lattice, self.t6, average)
        self.lattice, self.kernel, self.offset = lattice, kernel, offset
        self.alpha, self.lam = alpha, lam

    def accumulators(self) -> dict:
        return {"g4": FeatureMoments(self.r4), "g6": FeatureMoments(self.r6)}

    def finalize(self, measurement) -> xr.Dataset:
        res4 = _replicas(measurement, "g4", "connected", self.g4)
        res6 = _replicas(measurement, "g6", "wick_subtracted", self.g6)
        n_blocks = res4.n_blocks
        lattice, kernel, offset, lam, alpha = (self.lattice, self.kernel, self.offset, self.lam,
                                               self.alpha)
        t4, t6 = self.t4, self.t6
        V4 = vertex_sum(kernel, t4, offset=offset, lattice=lattice)
        fit = fit_quartic(res4.value, res4.error, V4, replicas=res4.replicas)
        lam_v = fit["lam"] if lam is None else float(lam)
        lam_r = fit["lam_replicas"] if lam is None else np.full(n_blocks, float(lam))
        pred = predict_delta_g6(lam_v, kernel, t6, offset=offset, lattice=lattice)
        pred_r = predict_delta_g6(lam_r, kernel, t6, offset=offset, lattice=lattice)
        diff = JackknifeResult(np.real(res6.value) - pred, np.real(res6.replicas) - pred_r)
        err = diff.error
        v = assess_deviations(diff.value, err, dof=n_blocks - 1, alpha=alpha)
        ds = xr.Dataset({"measured": ("tuple", np.real(res6.value)), "predicted": ("tuple", pred),
                         "error": ("tuple", err), "measured_error": ("tuple", res6.error),
                         "z": ("tuple", (diff.value) / err)},
                        coords={"tuple": np.arange(len(t6))})
        ds.attrs.update({"lam": lam_v, "lam_error": fit["lam_error"], "lam_fitted": fit["lam"],
                         "verdict": "consistent" if v["passed"] else "inconsistent",
                         "passed": int(v["passed"]), "max_abs_z": v["max_abs_z"],
                         "z_threshold": v["z_threshold"], "chi2_diag": v["chi2"],
                         "chi2_dof": v["chi2_dof"], "n_blocks": n_blocks,
                         "quantity": "Delta G6 = G6 - sum_15 G2 G2 G2 vs -24 lambda sum_15 K V4"})
        return ds


def six_point_plan(lattice, kernel, **options) -> SixPointPlan:
    """A :class:`SixPointPlan` (options as for :func:`six_point_check`)."""
    return SixPointPlan(lattice, kernel, **options)


def six_point_check(source, lattice, kernel, *, tuples4=None, tuples6=None, n_tuples=24,
                    average=True, n_blocks=32, log_weight=None, offset=0.0, alpha=0.01,
                    seed=0, lam=None):
    """Fit lambda from G4c, predict Delta G6 = G6 - sum_15 G2 G2 G2 and compare with the measured.

    Both are measured from the same jackknife blocks, so the error of (measured - predicted)
    includes the error of the fitted lambda. ``lam`` overrides the fit (e.g. to test a wrong
    coupling).

    Returns
    -------
    xarray.Dataset over ``tuple``: ``measured``, ``predicted``, ``error``, ``z``; attrs
    ``lam``, ``lam_error``, ``verdict`` ("consistent"/"inconsistent"), ``max_abs_z``, ...
    """
    plan = SixPointPlan(lattice, kernel, tuples4=tuples4, tuples6=tuples6, n_tuples=n_tuples,
                        average=average, n_blocks=n_blocks, offset=offset, alpha=alpha, seed=seed,
                        lam=lam)
    meas, _ = measure_plans(source, {"six": plan}, log_weight=log_weight)
    return plan.finalize(meas.namespace("six"))


# --------------------------------------------------------------------------------------------
# momentum space
# --------------------------------------------------------------------------------------------
class FourierFeatures:
    """Features: the lattice Fourier transform ``phit(p) = sum_x exp(-i p.x) phi(x)`` of a scalar
    field, flattened over the momentum indices (C order); complex."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def __call__(self, phi):
        dim = len(self.shape)
        if phi.ndim != dim + 1:
            raise ValueError("source: the momentum-space vertex needs a scalar field")
        xp = xp_of(phi)
        V = int(np.prod(self.shape))
        return xp.fft.fftn(phi, axes=tuple(range(1, dim + 1))).reshape(phi.shape[0], V)


class AmputatedVertexPlan(MeasurementPlan):
    """Amputated connected 4-point vertex in momentum space (a measurement plan).

    Parameters as for :func:`amputated_vertex` (without ``source``, ``log_weight``); the
    4-point function, the measured leg propagators and the unweighted reference (if asked)
    share one pass.
    """

    kind = "amputated_vertex"

    def __init__(self, lattice, momenta=None, *, Gt=None, n_momenta=16, n_blocks=32, seed=0,
                 include_zero=True, reference=None):
        super().__init__(n_blocks=n_blocks)
        if getattr(lattice, "boundary", "open") != "periodic":
            raise ValueError("lattice: the momentum-space vertex needs a periodic Lattice")
        _check_reference(reference)
        shape = tuple(lattice.shape)
        L = np.asarray(shape)
        dim = len(shape)
        rng = np.random.default_rng(seed)
        if momenta is None:
            ks = [np.zeros((3, dim), dtype=np.int64)] if include_zero else []
            while len(ks) < n_momenta:
                ks.append(rng.integers(0, L, size=(3, dim)))
            momenta = np.array(ks)
        k = np.asarray(momenta, dtype=np.int64) % L
        if k.ndim != 3 or k.shape[1:] != (3, dim):
            raise ValueError(f"momenta: expected an int array (n_q, 3, {dim})")
        k4 = (-k.sum(axis=1)) % L
        self.kk = np.concatenate([k, k4[:, None]], axis=1)  # (n_q, 4, dim)
        self.flat = np.ravel_multi_index(tuple(np.moveaxis(self.kk, -1, 0)), shape)
        self.uniq = np.unique(self.flat)
        neg = np.ravel_multi_index(tuple(np.moveaxis(
            (-np.stack(np.unravel_index(self.uniq, shape), -1)) % L, -1, 0)), shape)
        self.two = np.stack([self.uniq, neg], axis=1)
        self.features = FourierFeatures(shape)
        self.lattice, self.Gt, self.reference = lattice, Gt, reference

    def accumulators(self) -> dict:
        out = {"g": FeatureMoments([self.flat, self.two], self.features)}
        if self.reference == "unweighted":
            out["ref"] = FeatureMoments(self.flat, self.features, ignore_weights=True)
        return out

    def finalize(self, measurement) -> xr.Dataset:
        lattice, Gt, flat, uniq, kk = self.lattice, self.Gt, self.flat, self.uniq, self.kk
        V = int(np.prod(lattice.shape))
        res = _replicas(measurement, "g", "connected")
        n_blocks = res.n_blocks
        nq = flat.shape[0]
        G4 = res[np.arange(nq)]
        if self.reference == "unweighted":
            ref = _replicas(measurement, "ref", "connected")
            G4 = JackknifeResult(G4.value - ref.value, G4.replicas - ref.replicas)
        G2 = res[np.arange(nq, nq + len(uniq))]
        pos = {int(u): i for i, u in enumerate(uniq)}
        cols = np.vectorize(pos.get)(flat)
        if Gt is None:
            def gt(v):
                return np.real(v)[..., cols] / V
            den_v = np.prod(gt(G2.value), axis=-1)
            den_r = np.prod(gt(G2.replicas), axis=-1)
        else:
            g = np.asarray(Gt, dtype=float).ravel()[flat]
            den_v = np.prod(g, axis=-1)
            den_r = np.broadcast_to(den_v, (n_blocks, nq))
        val = -np.real(G4.value) / (24 * V * den_v)
        reps = -np.real(G4.replicas) / (24 * V * den_r)
        ph2 = np.asarray(lattice.phat2()).ravel()[flat].sum(axis=1)
        ds = xr.Dataset({"lam_eff": ("q", val), "error": ("q", _jk_error(reps)),
                         "psum2": ("q", ph2), "k": (("q", "leg", "mu"), kk)},
                        coords={"q": np.arange(nq)})
        ds.attrs.update({"n_blocks": n_blocks, "Gt": "measured" if Gt is None else "given",
                         "convention": "lam_eff = -<phit1..phit4>_c/(24 V prod Gt(p_i)), "
                                       "phit(p) = sum_x exp(-i p.x) phi(x)"})
        ds["replicas"] = (("block", "q"), reps)
        return ds


def amputated_vertex_plan(lattice, momenta=None, **options) -> AmputatedVertexPlan:
    """An :class:`AmputatedVertexPlan` (options as for :func:`amputated_vertex`)."""
    return AmputatedVertexPlan(lattice, momenta, **options)


def amputated_vertex(source, lattice, momenta=None, *, Gt=None, n_momenta=16, n_blocks=32,
                     log_weight=None, seed=0, include_zero=True, reference=None):
    """Amputated connected 4-point vertex in momentum space on a periodic lattice.

    ``lam_eff(p1, p2, p3) = -<phit(p1) phit(p2) phit(p3) phit(p4)>_c / (24 V prod_i Gt(p_i))``,
    ``p4 = -(p1+p2+p3)``: equal to lambda for a local quartic at tree level.

    Parameters
    ----------
    momenta : int array (n_q, 3, dim), optional
        Integer momentum indices k (p = 2 pi k / (a L)) of legs 1-3; default: zero momentum
        (if ``include_zero``) plus random triples.
    Gt : array (lattice.shape), optional
        Leg propagator; default the measured ``<|phit(p)|^2>/V`` (from the same blocks).
    reference : {None, "unweighted"}
        As in :func:`quartic_coupling`: subtract the unweighted connected 4-point function
        measured on the same samples (control variate for reweighted ensembles).

    Returns
    -------
    xarray.Dataset over ``q``: ``lam_eff``, ``error``, ``psum2`` (sum_i phat^2(p_i)),
    ``k`` (the four momentum indices); attrs describe conventions.
    """
    plan = AmputatedVertexPlan(lattice, momenta, Gt=Gt, n_momenta=n_momenta, n_blocks=n_blocks,
                               seed=seed, include_zero=include_zero, reference=reference)
    meas, _ = measure_plans(source, {"v": plan}, log_weight=log_weight)
    return plan.finalize(meas.namespace("v"))


def vertex_models(ds, *, x="psum2"):
    """Fit a constant (local) and a linear-in-``x`` (momentum-dependent) coupling to a vertex table.

    Parameters
    ----------
    ds : Dataset from :func:`amputated_vertex` (``lam_eff``, ``error``, ``replicas``, ``psum2``).

    Returns
    -------
    dict with ``local`` (lam, lam_error, chi2, dof, p_value) and ``linear`` (lam0, lam1 and their
    errors, chi2, dof, p_value), and ``delta_chi2`` / ``p_linear_needed`` (likelihood-ratio test
    of the extra parameter: small p means the coupling is not local).
    """
    y = np.asarray(ds["lam_eff"])
    s = np.asarray(ds["error"])
    X = np.asarray(ds[x])
    reps = np.asarray(ds["replicas"]) if "replicas" in ds else None
    ok = (s > 0) & np.isfinite(y)
    w = 1 / s[ok] ** 2

    def wls(A, yy):
        Aw = A * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(Aw, yy * np.sqrt(w), rcond=None)
        return coef

    out = {}
    for name, A in (("local", np.ones((ok.sum(), 1))),
                    ("linear", np.stack([np.ones(ok.sum()), X[ok]], 1))):
        coef = wls(A, y[ok])
        chi2 = float(np.sum(w * (y[ok] - A @ coef) ** 2))
        dof = int(ok.sum() - A.shape[1])
        if reps is not None:
            cr = np.array([wls(A, r[ok]) for r in reps])
            err = _jk_error(cr)
        else:
            err = np.sqrt(np.diag(np.linalg.inv((A * w[:, None]).T @ A)))
        d = {"chi2": chi2, "dof": dof,
             "p_value": float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan")}
        if name == "local":
            d.update(lam=float(coef[0]), lam_error=float(err[0]))
        else:
            d.update(lam0=float(coef[0]), lam0_error=float(err[0]), lam1=float(coef[1]),
                     lam1_error=float(err[1]))
        out[name] = d
    out["delta_chi2"] = out["local"]["chi2"] - out["linear"]["chi2"]
    out["p_linear_needed"] = float(stats.chi2.sf(out["delta_chi2"], 1))
    return out


def plot_coupling_flow(ds, path, *, expected=None, title=None):
    """PNG of lambda against the cutoff (``running_quartic`` or an RG flow Dataset)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(ds["cutoff"], ds["lam"], ds["lam_error"], fmt="o-", ms=4, capsize=2,
                label="fitted lambda")
    if expected is not None:
        ax.axhline(expected, color="k", ls="--", lw=1, label="expected")
    ax.set_xlabel("cutoff Lambda")
    ax.set_ylabel("lambda")
    ax.set_title(title or "quartic coupling flow")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
