"""Symmetry checks from the output side, with multiple-comparison aware verdicts.

Physics: docs/conventions.md (symmetry via duality, arXiv:2106.00694). A symmetry of the
parameter distribution shows up as an invariance of every correlator; a check compares a
correlator at a set of point tuples with the same correlator at the transformed tuples (or of the
transformed field), in units of the standard error of the *difference*, which is estimated by a
paired jackknife over blocks of samples (both sides are measured on the same samples, so the
errors are strongly correlated and must not be added in quadrature).

Every check is a :class:`~nnft.observables.plan.MeasurementPlan` (:func:`translation_plan`,
:func:`hypercubic_plan`, :func:`internal_rotation_plan`, or the generic
:class:`ComparisonPlan`): the correlators of both sides are moments of per-configuration
features accumulated per block of samples (:class:`~nnft.observables.accumulators.FeatureMoments`),
so the checks stream, run under dask and share one pass with other measurements
(:func:`~nnft.observables.plan.run_plans`). The store-level functions (:func:`check_translation`
...) are thin wrappers running one plan. :func:`correlator_replicas` (kept here for its users)
runs a :class:`~nnft.observables.plan.CorrelatorPlan`.

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
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from nnft.lattice.backend import xp_of

from .accumulators import FeatureMoments, tuple_arrays
from .combinatorics import near_tuples
from .replicas import STATS as _STATS
from .replicas import JackknifeResult, feature_replicas, jackknife_error
from .plan import CorrelatorPlan, MeasurementPlan, measure_plans, open_plan_source, run_plans

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
    "ComparisonPlan",
    "comparison_plan",
    "translation_plan",
    "hypercubic_plan",
    "internal_rotation_plan",
    "plot_symmetry_table",
]

_jk_error = jackknife_error  # old private name, kept for callers outside this package
_normalize_tuples = tuple_arrays


def correlator_replicas(source, tuples, *, stat="connected", features=None, log_weight=None,
                        n_blocks=32, groups=None, batch_elements=2_000_000,
                        ignore_weights=False):
    """Correlators at feature tuples with delete-one-block jackknife replicas, in one pass.

    Runs a :class:`~nnft.observables.plan.CorrelatorPlan` over ``source`` (blocks: ``n_blocks``
    contiguous blocks of equal sample counts).

    Parameters
    ----------
    source : FieldStore or array_like (n_samples, [D], *shape)
        Field samples. A store's own ``log_weight`` is used when it is weighted.
    tuples : sequence of int arrays, or int array (n_tuples, n)
        Feature indices; a list of arrays allows several orders n (1..8) at once.
    stat : {"connected", "moment", "wick_subtracted"}
        ``moment``: E[prod_i f_i]; ``connected``: joint cumulant (sum over set partitions);
        ``wick_subtracted``: E[prod f] minus the sum over pairings of products of raw
        second moments (e.g. G6 - sum_15 G2 G2 G2, i.e. Delta G6 of a zero-mean theory).
    features : callable, optional
        ``features(phi_chunk) -> (n, F)`` array (real or complex). Default: flatten the
        trailing axes of the field (flat index convention of the module docstring).
    log_weight : array_like (n_samples,), optional
        Importance log-weights for an in-memory array source (ratio estimator sum w O / sum w).
    n_blocks : int
        Number of contiguous jackknife blocks.
    groups : int array (n_tuples_total,), optional
        Average the statistic over tuples sharing a group label (e.g. over translations);
        outputs are ordered by ``np.unique(groups)``.
    batch_elements : int
        Memory bound for the (samples x monomials) product buffer (8 bytes per element).
    ignore_weights : bool
        Treat a weighted source as unweighted (e.g. to measure the undeformed reference
        ensemble on the same samples and blocks).

    Returns
    -------
    JackknifeResult
        ``value`` and ``replicas`` of shape (n_out,) / (n_blocks, n_out), n_out = total number of
        tuples (concatenated in the order given) or of groups.
    """
    plan = CorrelatorPlan(tuples, stat=stat, features=features, groups=groups,
                          ignore_weights=ignore_weights, n_blocks=n_blocks)
    meas, _ = measure_plans(source, {"c": plan}, log_weight=log_weight)
    return plan.replicas(meas.namespace("c"))


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


# --------------------------------------------------------------------------------------------
# generic comparison plan -> Dataset
# --------------------------------------------------------------------------------------------
class ComparisonPlan(MeasurementPlan):
    """Compare a statistic at ``tuples_a`` with the same statistic at ``tuples_b``.

    Both sides are moments of the same features on the same samples, accumulated in one
    :class:`~nnft.observables.accumulators.FeatureMoments`; the error of the *difference* is
    the paired delete-one-block jackknife (both sides are strongly correlated, so their errors
    must not be added in quadrature). Verdict: Holm step-down at family-wise level ``alpha``
    on Student-t p-values with ``n_blocks - 1`` degrees of freedom.

    Parameters
    ----------
    tuples_a, tuples_b : lists (one entry per correlator order) of int arrays of equal shapes
    labels : list of str, optional (one per compared row)
    stat : {"connected", "moment", "wick_subtracted"}
    features : callable ``features(phi) -> (n, F)``, optional
    alpha : float
    method : {"holm", "bonferroni"}
    name : str, the check's name (attrs ``check``)
    n_blocks : int

    ``finalize`` gives the Dataset of :func:`compare_correlators`.
    """

    kind = "symmetry"

    def __init__(self, tuples_a, tuples_b, *, labels=None, stat="connected", features=None,
                 alpha=0.01, method="holm", name="symmetry", n_blocks=32):
        super().__init__(n_blocks=n_blocks)
        self.ta = tuple_arrays(tuples_a)
        self.tb = tuple_arrays(tuples_b)
        if [t.shape for t in self.ta] != [t.shape for t in self.tb]:
            raise ValueError("tuples_b: shapes must match tuples_a")
        if stat not in _STATS:
            raise ValueError(f"stat: must be one of {_STATS}, got {stat!r}")
        if method not in ("holm", "bonferroni"):
            raise ValueError(f"method: must be 'holm' or 'bonferroni', got {method!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
        self.m = sum(t.shape[0] for t in self.ta)
        self.labels = [""] * self.m if labels is None else list(labels)
        if len(self.labels) != self.m:
            raise ValueError(f"labels: need {self.m} labels, got {len(self.labels)}")
        self.stat, self.features = stat, features
        self.alpha, self.method, self.name = alpha, method, name

    def accumulators(self) -> dict:
        return {"moments": FeatureMoments(self.ta + self.tb, self.features)}

    def finalize(self, measurement) -> xr.Dataset:
        res = feature_replicas(measurement["moments"],
                               [b["moments"] for b in measurement.blocks], stat=self.stat)
        return _comparison_dataset(res, self.ta, self.tb, self.labels, self.stat, self.alpha,
                                   self.method, self.name)


def comparison_plan(tuples_a, tuples_b, **options) -> ComparisonPlan:
    """A :class:`ComparisonPlan` (see there for the options)."""
    return ComparisonPlan(tuples_a, tuples_b, **options)


def _comparison_dataset(res, ta, tb, labels, stat, alpha, method, name):
    m = sum(t.shape[0] for t in ta)
    n_blocks = res.n_blocks
    A, B = res[np.arange(m)], res[np.arange(m, 2 * m)]
    D = A - B
    err = D.error
    v = assess_deviations(D.value, err, dof=n_blocks - 1, alpha=alpha, method=method)
    order = np.concatenate([np.full(t.shape[0], t.shape[1]) for t in ta])
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


def compare_correlators(source, tuples_a, tuples_b, *, labels=None, stat="connected",
                        features=None, log_weight=None, n_blocks=32, alpha=0.01,
                        method="holm", name="symmetry"):
    """Compare a statistic at tuples_a with the same statistic at tuples_b (paired jackknife).

    ``tuples_a`` and ``tuples_b`` are lists (one entry per correlator order) of int arrays of
    equal shapes, indexing the features (see :func:`correlator_replicas`). Runs a
    :class:`ComparisonPlan` over ``source``.

    Returns
    -------
    xarray.Dataset
        Dimension ``comparison``; variables ``value_a``, ``value_b``, ``diff``, ``error``, ``z``,
        ``p_adjusted``, ``order``, ``label``; attrs ``verdict`` ("symmetric"/"broken"),
        ``passed`` (1/0), ``max_abs_z``, ``z_threshold``, ``alpha``, ``method``, ``chi2``,
        ``chi2_dof``, ``n_compared``, ``n_blocks``, ``stat``, ``check``.
    """
    plan = ComparisonPlan(tuples_a, tuples_b, labels=labels, stat=stat, features=features,
                          alpha=alpha, method=method, name=name, n_blocks=n_blocks)
    return run_plans(source, {"c": plan}, log_weight=log_weight)["c"]


def _components_of(source):
    return getattr(source, "components", None) if hasattr(source, "read_chunk") else None


# --------------------------------------------------------------------------------------------
# translation
# --------------------------------------------------------------------------------------------
def translation_plan(lattice, *, orders=(2, 4), shifts=None, n_tuples=8, n_shifts=6,
                     components=None, stat="connected", n_blocks=32, alpha=0.01,
                     seed=0) -> ComparisonPlan:
    """Translation invariance: G_n(T) against G_n(T + a) for random tuples T and shifts a.

    Parameters
    ----------
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
        Number of output components D of the field (None: scalar).

    Returns
    -------
    ComparisonPlan (name "translation")
    """
    rng = np.random.default_rng(seed)
    comps = components
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
        base = near_tuples(rng, lattice, n, n_tuples)
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
    return ComparisonPlan(ta, tb, labels=labels, stat=stat, n_blocks=n_blocks, alpha=alpha,
                          name="translation")


def check_translation(source, lattice, *, orders=(2, 4), shifts=None, n_tuples=8,
                      n_shifts=6, components=None, stat="connected", n_blocks=32,
                      alpha=0.01, seed=0, log_weight=None):
    """Translation invariance of ``source`` (FieldStore or array (n_samples, [D], *shape)).

    Runs :func:`translation_plan` (see there for the parameters; ``components`` is read from
    a store when not given).

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`) with attrs ``verdict``, ``max_abs_z``.
    """
    comps = components if components is not None else _components_of(source)
    plan = translation_plan(lattice, orders=orders, shifts=shifts, n_tuples=n_tuples,
                            n_shifts=n_shifts, components=comps, stat=stat, n_blocks=n_blocks,
                            alpha=alpha, seed=seed)
    return run_plans(source, {"translation": plan}, log_weight=log_weight)["translation"]


# --------------------------------------------------------------------------------------------
# hypercubic
# --------------------------------------------------------------------------------------------
def hypercubic_plan(lattice, *, orders=(2, 4), n_tuples=8, components=None, stat="connected",
                    n_blocks=32, alpha=0.01, seed=0, ops=None) -> ComparisonPlan:
    """Hypercubic invariance (axis permutations and reflections) of G_n.

    Compares G_n(T) with G_n(g T) for every non-identity op g of :func:`hypercubic_ops`
    (or ``ops``) on random tuples T. A translation-invariant isotropic ensemble passes; an
    anisotropic mass or kernel fails through the permutations.

    Returns
    -------
    ComparisonPlan (name "hypercubic")
    """
    if getattr(lattice, "kind", "lattice") == "points":
        raise ValueError("lattice: hypercubic checks need a Lattice, not a PointSet")
    rng = np.random.default_rng(seed)
    ops = hypercubic_ops(lattice)[1:] if ops is None else list(ops)
    if not ops:
        raise ValueError("lattice: no non-trivial hypercubic operation for this shape")
    ta, tb, labels = [], [], []
    for n in orders:
        base = near_tuples(rng, lattice, n, n_tuples)
        A, B = [], []
        for op in ops:
            A.append(base)
            B.append(transform_tuples(base, lattice, op, components=components))
            perm, flips = (op.perm, op.flips) if hasattr(op, "perm") else op
            labels += [f"G{n} perm={tuple(perm)} flip={tuple(int(f) for f in flips)}"] * len(base)
        ta.append(np.concatenate(A))
        tb.append(np.concatenate(B))
    return ComparisonPlan(ta, tb, labels=labels, stat=stat, n_blocks=n_blocks, alpha=alpha,
                          name="hypercubic")


def check_hypercubic(source, lattice, *, orders=(2, 4), n_tuples=8, components=None,
                     stat="connected", n_blocks=32, alpha=0.01, seed=0, ops=None,
                     log_weight=None):
    """Hypercubic invariance of ``source``: runs :func:`hypercubic_plan`.

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`).
    """
    comps = components if components is not None else _components_of(source)
    plan = hypercubic_plan(lattice, orders=orders, n_tuples=n_tuples, components=comps,
                           stat=stat, n_blocks=n_blocks, alpha=alpha, seed=seed, ops=ops)
    return run_plans(source, {"hypercubic": plan}, log_weight=log_weight)["hypercubic"]


# --------------------------------------------------------------------------------------------
# internal SO(D)
# --------------------------------------------------------------------------------------------
class _RotatedComponents:
    """Features: the field's components at chosen sites, then their rotations R phi."""

    def __init__(self, D, V, sites, rotations):
        self.D, self.V = int(D), int(V)
        self.sites = np.asarray(sites, dtype=np.int64)
        self.rotations = np.asarray(rotations, dtype=float)

    def __call__(self, phi):
        xp = xp_of(phi)
        x = phi.reshape(phi.shape[0], self.D, self.V)[:, :, xp.asarray(self.sites)]  # (n, D, s)
        outs = [x.reshape(x.shape[0], -1)]
        for R in self.rotations:
            outs.append(xp.einsum("ab,nbs->nas", xp.asarray(R), x).reshape(x.shape[0], -1))
        return xp.concatenate(outs, axis=1)


def internal_rotation_plan(field_shape, *, orders=(2, 4), n_rotations=4, sites=None, n_sites=2,
                           n_component_tuples=24, stat="moment", n_blocks=32, alpha=0.01,
                           seed=0) -> ComparisonPlan:
    """Internal SO(D) symmetry of a D-component field (arXiv:2106.00694).

    For Haar-random rotations R, compares G_n of the rotated field R phi with G_n of phi at the
    same (component, site) tuples, for n in ``orders`` (full correlators by default, as in the
    paper). Zero-mean isotropic output weights pass at every width; a non-zero output-weight
    mean breaks the symmetry.

    Parameters
    ----------
    field_shape : tuple (D, *shape)
        Shape of one configuration (D >= 2 components first).
    sites : int array, optional
        Flat site indices to use (default: ``n_sites`` random sites).
    n_component_tuples : int
        Random component tuples per order (all of them if fewer exist).

    Returns
    -------
    ComparisonPlan (name "internal SO(D)")
    """
    field_shape = tuple(int(s) for s in field_shape)
    rng = np.random.default_rng(seed)
    if len(field_shape) < 2:
        raise ValueError("source: internal rotations need a vector field (n_samples, D, *shape)")
    D = field_shape[0]
    V = int(np.prod(field_shape[1:]))
    if D < 2:
        raise ValueError(f"source: need D >= 2 components, got {D}")
    if sites is None:
        sites = rng.choice(V, size=min(n_sites, V), replace=False)
    sites = np.asarray(sites, dtype=np.int64)
    Rs = random_rotations(D, n_rotations, seed=seed + 1)
    F = D * len(sites)
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
    plan = ComparisonPlan(ta, tb, labels=labels, stat=stat,
                          features=_RotatedComponents(D, V, sites, Rs), n_blocks=n_blocks,
                          alpha=alpha, name="internal SO(D)")
    plan.field_shape = field_shape
    return plan


def check_internal_rotation(source, *, orders=(2, 4), n_rotations=4, sites=None, n_sites=2,
                            n_component_tuples=24, stat="moment", n_blocks=32, alpha=0.01,
                            seed=0, log_weight=None):
    """Internal SO(D) symmetry of ``source`` (FieldStore or array (n_samples, D, *shape)):
    runs :func:`internal_rotation_plan` with the source's field shape.

    Returns
    -------
    xarray.Dataset (see :func:`compare_correlators`).
    """
    src = open_plan_source(source, log_weight=log_weight)
    field_shape = _field_shape_of(src)
    plan = internal_rotation_plan(field_shape, orders=orders, n_rotations=n_rotations,
                                  sites=sites, n_sites=n_sites,
                                  n_component_tuples=n_component_tuples, stat=stat,
                                  n_blocks=n_blocks, alpha=alpha, seed=seed)
    return run_plans(src, {"internal": plan})["internal"]


def _field_shape_of(src):
    """Shape of one configuration of a store-like source (from its metadata or chunk 0)."""
    if hasattr(src, "phi"):  # ArraySource
        return tuple(src.phi.shape[1:])
    fs = getattr(src, "field_shape", None)
    if fs is not None:
        return tuple(fs)
    phi, _ = src.read_chunk(src.complete_chunks()[0])
    return tuple(phi.shape[1:])


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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
