"""Cluster decomposition (locality) of network field theories.

Physics: docs/conventions.md. Split the points of a correlator into two clusters A and
B and move B away from A by R (along a lattice axis, or along a direction in the continuum).
In a local theory

* the *connected* correlator (joint cumulant over all points of A and B) tends to zero, and
* the *truncated* correlator of the composite operators O_A = prod_{x in A} phi(x),
  C(R) = <O_A O_B> - <O_A><O_B>, tends to zero too; for a massive free field it decays
  exponentially, e.g. for two 2-point clusters C(R) ~ G(R)^2 ~ exp(-2 m_E R).

Independent-neuron cos-nets at finite N do not cluster: the same neuron reaches every point and
their connected 4-point function tends to a non-zero plateau, given exactly by
:func:`cosnet_g4c` (docs/conventions.md; :func:`cosnet_g6c` is the corresponding 6-point
result, derived the same way).

On a torus the cos-net correlators involve G at sums of positions (G(2R) wraps around), so the
default separations stop at L/4 along the chosen axis.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats
from scipy.optimize import curve_fit

from .accumulators import FeatureMoments
from .combinatorics import pairings
from .replicas import JackknifeResult, feature_replicas, group_average, jackknife_error
from .plan import MeasurementPlan, measure_plans, run_plans

__all__ = [
    "cluster_tuples",
    "cluster_profile",
    "cluster_plan",
    "ClusterPlan",
    "ProfilePlan",
    "profile_from_tuples",
    "fit_decay",
    "cosnet_g4c",
    "cosnet_g6c",
    "amplitude_moments",
    "plot_cluster_profile",
]


def _default_cluster(order, dim):
    k = order // 2
    off = np.zeros((k, dim), dtype=np.int64)
    off[:, min(1, dim - 1) if dim > 1 else 0] = np.arange(k)
    return off


def cluster_tuples(lattice, cluster_a=None, cluster_b=None, separations=None, *, axis=0,
                   order=4, anchor=None, average=True):
    """Flat site tuples for two clusters separated by R along a lattice axis.

    Parameters
    ----------
    lattice : Lattice
    cluster_a, cluster_b : int arrays (k, dim), (l, dim), optional
        Site offsets of each cluster relative to its anchor. Default: ``order/2`` sites in a
        row along the axis after ``axis`` (the same axis in d = 1), B the same shape as A.
    separations : int sequence, optional
        Values of R. Default ``0..L_axis//4`` on periodic lattices (the cos-net aliasing limit),
        ``0..`` up to the lattice edge on open ones.
    axis : int
        Direction of the separation.
    anchor : int sequence, optional
        Site of A's anchor (default the origin).
    average : bool
        On periodic lattices, also return all V translates of each configuration (to be
        averaged: translation invariance is assumed, not checked).

    Returns
    -------
    tuples : int array (n_R * n_translates, k + l)
    groups : int array (n_R * n_translates,) index of R for each row
    separations : int array (n_R,)
    """
    shape = tuple(int(s) for s in lattice.shape)
    dim = len(shape)
    if not 0 <= axis < dim:
        raise ValueError(f"axis: must be in 0..{dim - 1}, got {axis}")
    A = _default_cluster(order, dim) if cluster_a is None else np.atleast_2d(np.asarray(cluster_a, dtype=np.int64))
    B = A if cluster_b is None else np.atleast_2d(np.asarray(cluster_b, dtype=np.int64))
    if A.shape[1] != dim or B.shape[1] != dim:
        raise ValueError(f"cluster_a/cluster_b: offsets need {dim} components")
    periodic = lattice.boundary == "periodic"
    L = np.asarray(shape)
    if separations is None:
        if periodic:
            separations = np.arange(0, shape[axis] // 4 + 1)
        else:
            ext = max(A[:, axis].max(), B[:, axis].max())
            separations = np.arange(0, shape[axis] - ext)
    separations = np.asarray(separations, dtype=np.int64)
    anchor = np.zeros(dim, dtype=np.int64) if anchor is None else np.asarray(anchor, dtype=np.int64)
    e = np.zeros(dim, dtype=np.int64)
    e[axis] = 1
    if average and periodic:
        anchors = np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=-1)
    else:
        anchors = anchor[None]
    rows, groups = [], []
    for g, R in enumerate(separations):
        pts = np.concatenate([A, B + R * e])  # (k+l, dim)
        allp = anchors[:, None, :] + pts[None]
        if periodic:
            allp = allp % L
        elif np.any(allp < 0) or np.any(allp >= L):
            raise ValueError(f"separations: R={R} puts a point outside the open lattice")
        flat = np.ravel_multi_index(tuple(np.moveaxis(allp, -1, 0)), shape)
        rows.append(flat)
        groups.append(np.full(flat.shape[0], g))
    return np.concatenate(rows), np.concatenate(groups), separations


class ProfilePlan(MeasurementPlan):
    """Cluster profile from explicit tuples (lattice or continuum point sets), as a plan.

    Parameters
    ----------
    tuples : int array (n_rows, n)
        Feature indices; the first ``n_a`` points form cluster A, the rest cluster B.
    groups : int array (n_rows,)
        Separation index of each row; rows with the same index are averaged.
    n_a : int
    stat : {"connected", "truncated"}
        Joint cumulant of all n points, or <O_A O_B> - <O_A><O_B>.
    features : callable ``features(phi) -> (n, F)``, optional
    n_blocks : int

    :meth:`replicas` gives the JackknifeResult over the sorted unique groups; ``finalize`` a
    Dataset with ``value``, ``error`` (dim ``group``).
    """

    kind = "cluster_profile"

    def __init__(self, tuples, groups, n_a, *, stat="connected", features=None, n_blocks=32):
        super().__init__(n_blocks=n_blocks)
        t = np.asarray(tuples, dtype=np.int64)
        if t.ndim != 2:
            raise ValueError(f"tuples: expected an int array (n_rows, n), got shape {t.shape}")
        if not 1 <= n_a < t.shape[1]:
            raise ValueError(f"n_a: cluster A needs between 1 and {t.shape[1] - 1} points, "
                             f"got {n_a}")
        if stat not in ("connected", "truncated"):
            raise ValueError(f"stat: must be 'connected' or 'truncated', got {stat!r}")
        self.tuples, self.groups, self.n_a = t, np.asarray(groups), int(n_a)
        self.stat, self.features = stat, features

    def accumulators(self) -> dict:
        t = self.tuples
        tl = [t] if self.stat == "connected" else [t, t[:, :self.n_a], t[:, self.n_a:]]
        return {"moments": FeatureMoments(tl, self.features)}

    def replicas(self, measurement) -> JackknifeResult:
        tot = measurement["moments"]
        blocks = [b["moments"] for b in measurement.blocks]
        if self.stat == "connected":
            return feature_replicas(tot, blocks, stat="connected", groups=self.groups)
        res = feature_replicas(tot, blocks, stat="moment")
        m = self.tuples.shape[0]
        full, a, b = res[np.arange(m)], res[np.arange(m, 2 * m)], res[np.arange(2 * m, 3 * m)]
        val = full.value - a.value * b.value
        reps = full.replicas - a.replicas * b.replicas
        return JackknifeResult(group_average(val, self.groups), group_average(reps, self.groups),
                               {"stat": "truncated", "n_blocks": len(blocks)})

    def finalize(self, measurement) -> xr.Dataset:
        res = self.replicas(measurement)
        return xr.Dataset({"value": ("group", np.real(res.value)), "error": ("group", res.error)},
                          coords={"group": np.unique(self.groups)},
                          attrs={"stat": self.stat, "n_blocks": res.n_blocks})


def profile_from_tuples(source, tuples, groups, n_a, *, stat="connected", n_blocks=32,
                        log_weight=None, features=None):
    """Cluster profile from explicit tuples (lattice or continuum point sets).

    Runs a :class:`ProfilePlan` (see there for the parameters) over ``source``.

    Returns
    -------
    JackknifeResult over the sorted unique groups.
    """
    plan = ProfilePlan(tuples, groups, n_a, stat=stat, features=features, n_blocks=n_blocks)
    meas, _ = measure_plans(source, {"p": plan}, log_weight=log_weight)
    return plan.replicas(meas.namespace("p"))


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------
def _fit_once(model, R, y, s, p0, L):
    if model == "plateau":
        w = 1 / s ** 2
        c = np.sum(w * y) / np.sum(w)
        return np.array([c])
    f = _model_fn(model, L)
    popt, _ = curve_fit(f, R, y, p0=p0, sigma=s, absolute_sigma=True, maxfev=20000)
    return popt


def _model_fn(model, L=None):
    if model == "exp":
        return lambda R, A, k: A * np.exp(-k * R)
    if model == "exp_periodic":
        return lambda R, A, k: A * (np.exp(-k * R) + np.exp(-k * (L - R)))
    if model == "power":
        return lambda R, A, p: A * np.power(R, -p)
    if model == "plateau":
        return lambda R, c: np.full_like(np.asarray(R, dtype=float), c)
    raise ValueError(f"model: must be 'exp', 'exp_periodic', 'power' or 'plateau', got {model!r}")


def fit_decay(R, value, error, *, replicas=None, model="exp", L=None):
    """Fit a cluster profile: exponential, periodic exponential, power law or plateau.

    Parameters
    ----------
    R, value, error : 1-D arrays
        Separations, profile values and their standard errors (points with error 0 or
        non-finite are dropped).
    replicas : array (n_blocks, n_R), optional
        Jackknife replicas of the profile: the fit is repeated on each, giving parameter errors
        that include the correlations between separations. Without them the errors come from the
        diagonal covariance of the central fit.
    model : {"exp", "exp_periodic", "power", "plateau"}
        ``A exp(-k R)``; ``A (exp(-k R) + exp(-k (L - R)))`` (needs ``L``); ``A R^-p``;
        constant ``c``.

    Returns
    -------
    dict with ``params`` (names -> value), ``errors`` (names -> error), ``chi2`` (diagonal),
    ``dof``, ``p_value``, ``model``, ``R`` (fitted separations).
    """
    R = np.asarray(R, dtype=float)
    y = np.real(np.asarray(value))
    s = np.asarray(error, dtype=float)
    ok = np.isfinite(y) & np.isfinite(s) & (s > 0)
    if model == "power":
        ok &= R > 0
    if model == "exp_periodic" and L is None:
        raise ValueError("L: required for model='exp_periodic'")
    names = {"exp": ("A", "rate"), "exp_periodic": ("A", "rate"), "power": ("A", "power"),
             "plateau": ("c",)}[model] if model in ("exp", "exp_periodic", "power", "plateau") \
        else _model_fn(model)
    if ok.sum() < len(names):
        raise ValueError(f"value: not enough usable points ({ok.sum()}) for model {model!r}")
    Rf, yf, sf = R[ok], y[ok], s[ok]
    p0 = None
    if model in ("exp", "exp_periodic", "power"):
        pos = yf > 0
        sign = 1.0
        if pos.sum() < 2:
            pos = yf < 0
            sign = -1.0
        xx = Rf[pos] if model != "power" else np.log(Rf[pos])
        if pos.sum() >= 2:
            slope, icpt = np.polyfit(xx, np.log(sign * yf[pos]), 1)
            p0 = [sign * math.exp(icpt), max(-slope, 1e-3)]
        else:
            p0 = [yf[0] if yf[0] != 0 else 1.0, 0.5]
    popt = _fit_once(model, Rf, yf, sf, p0, L)
    f = _model_fn(model, L)
    resid = (yf - f(Rf, *popt)) / sf
    chi2 = float(np.sum(resid ** 2))
    dof = int(len(yf) - len(popt))
    if replicas is not None:
        reps = np.real(np.asarray(replicas))[:, ok]
        fits = []
        for r in reps:
            try:
                fits.append(_fit_once(model, Rf, r, sf, popt, L))
            except RuntimeError:
                fits.append(np.full_like(popt, np.nan))
        perr = jackknife_error(np.array(fits))
    elif model == "plateau":
        perr = np.array([1 / math.sqrt(np.sum(1 / sf ** 2))])
    else:
        _, pcov = curve_fit(f, Rf, yf, p0=popt, sigma=sf, absolute_sigma=True, maxfev=20000)
        perr = np.sqrt(np.diag(pcov))
    return {"model": model, "params": dict(zip(names, map(float, popt))),
            "errors": dict(zip(names, map(float, perr))), "chi2": chi2, "dof": dof,
            "p_value": float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan"),
            "R": Rf}


# --------------------------------------------------------------------------------------------
# profile + verdict
# --------------------------------------------------------------------------------------------
class ClusterPlan(ProfilePlan):
    """Profile of a connected (or truncated) correlator of two separated clusters, with fits.

    The plan of :func:`cluster_profile` (see there for the parameters, without ``source`` and
    ``log_weight``); ``finalize`` gives its Dataset.
    """

    kind = "cluster_profile"

    def __init__(self, lattice, *, order=4, cluster_a=None, cluster_b=None, separations=None,
                 axis=0, stat="connected", average=True, n_blocks=32, tail=None, fit_range=None,
                 expected_rate=None, expected=None, alpha=1e-3, signal_z=3.0):
        tuples, groups, seps = cluster_tuples(lattice, cluster_a, cluster_b, separations,
                                              axis=axis, order=order, average=average)
        n_a = (order // 2) if cluster_a is None else np.atleast_2d(cluster_a).shape[0]
        super().__init__(tuples, groups, n_a, stat=stat, n_blocks=n_blocks)
        self.seps, self.axis = seps, axis
        self.tail, self.fit_range, self.signal_z, self.alpha = tail, fit_range, signal_z, alpha
        self.expected_rate, self.expected = expected_rate, expected

    def finalize(self, measurement) -> xr.Dataset:
        res = self.replicas(measurement)
        return _profile_dataset(res, self.tuples, self.seps, stat=self.stat, axis=self.axis,
                                tail=self.tail, fit_range=self.fit_range,
                                expected_rate=self.expected_rate, expected=self.expected,
                                alpha=self.alpha, signal_z=self.signal_z)


def cluster_plan(lattice, **options) -> ClusterPlan:
    """A :class:`ClusterPlan` (options as for :func:`cluster_profile`)."""
    return ClusterPlan(lattice, **options)


def cluster_profile(source, lattice, *, order=4, cluster_a=None, cluster_b=None,
                    separations=None, axis=0, stat="connected", average=True, n_blocks=32,
                    log_weight=None, tail=None, fit_range=None, expected_rate=None,
                    expected=None, alpha=1e-3, signal_z=3.0):
    """Profile of a connected (or truncated) correlator of two separated clusters, with fits.

    Parameters
    ----------
    source : FieldStore or array (n_samples, *shape)
    lattice : Lattice
    order : int
        Total number of points (4 or 6 typically) when the clusters are default-shaped.
    cluster_a, cluster_b, separations, axis, average : see :func:`cluster_tuples`.
    stat : {"connected", "truncated"}
    tail : int, optional
        Number of largest separations used for the plateau fit (default: last third, >= 2).
    fit_range : (R_min, R_max), optional
        Separations for the exponential / power fits; default: all points with
        |value| > ``signal_z`` * error.
    expected_rate : float, optional
        Decay rate to compare with (e.g. 2 m_E for two 2-point clusters of a free field).
    expected : array (n_R,), optional
        Closed-form profile to compare with (e.g. :func:`cosnet_g4c`): adds ``expected`` and
        its z to the Dataset and the plateau comparison to the attrs.
    alpha : float
        Significance level of the plateau test (two-sided, Student-t with n_blocks - 1 dof).

    Returns
    -------
    xarray.Dataset
        Variables ``value``, ``error`` (dim ``R``) [``expected``, ``z_expected``]; attrs:
        ``verdict`` ("clusters" / "does not cluster"), ``clusters`` (1/0), ``plateau``,
        ``plateau_error``, ``plateau_z``, exponential fit ``rate``, ``rate_error``,
        ``rate_chi2``, ``rate_dof`` (NaN when not enough significant points), power fit
        ``power``, ``power_error``, and the rate / plateau comparisons when expectations are
        given (``rate_z``, ``plateau_expected``, ``plateau_expected_z``).
    """
    plan = ClusterPlan(lattice, order=order, cluster_a=cluster_a, cluster_b=cluster_b,
                       separations=separations, axis=axis, stat=stat, average=average,
                       n_blocks=n_blocks, tail=tail, fit_range=fit_range,
                       expected_rate=expected_rate, expected=expected, alpha=alpha,
                       signal_z=signal_z)
    return run_plans(source, {"cluster": plan}, log_weight=log_weight)["cluster"]


def _profile_dataset(res, tuples, seps, *, stat, axis, tail, fit_range, expected_rate, expected,
                     alpha, signal_z):
    n_blocks = res.n_blocks
    val, err = np.real(res.value), res.error
    reps = np.real(res.replicas)
    nR = len(seps)
    ntail = tail if tail is not None else max(2, nR // 3)
    if ntail > nR:
        raise ValueError(f"tail: {ntail} exceeds the number of separations {nR}")
    tsl = slice(nR - ntail, nR)
    pf = fit_decay(seps[tsl], val[tsl], err[tsl], replicas=reps[:, tsl], model="plateau")
    c, dc = pf["params"]["c"], pf["errors"]["c"]
    tdist = stats.t(n_blocks - 1)
    zc = c / dc if dc > 0 else (0.0 if c == 0 else np.inf)
    z_thr = float(tdist.isf(alpha / 2))
    clusters = abs(zc) < z_thr
    attrs = {"stat": stat, "order": int(tuples.shape[1]), "axis": axis, "n_blocks": n_blocks,
             "plateau": c, "plateau_error": dc, "plateau_z": float(zc), "z_threshold": z_thr,
             "tail_R": str(seps[tsl].tolist()), "clusters": int(clusters),
             "verdict": "clusters" if clusters else "does not cluster"}
    # decay fits on significant points
    if fit_range is not None:
        sel = (seps >= fit_range[0]) & (seps <= fit_range[1])
    else:
        sel = np.abs(val) > signal_z * err
    for model, key in (("exp", "rate"), ("power", "power")):
        attrs.update({key: np.nan, f"{key}_error": np.nan, f"{key}_chi2": np.nan,
                      f"{key}_dof": -1})
        if sel.sum() >= 3:
            try:
                fr = fit_decay(seps[sel], val[sel], err[sel], replicas=reps[:, sel], model=model)
                attrs.update({key: fr["params"][key], f"{key}_error": fr["errors"][key],
                              f"{key}_chi2": fr["chi2"], f"{key}_dof": fr["dof"]})
                if model == "exp":
                    attrs["amplitude"] = fr["params"]["A"]
            except (RuntimeError, ValueError):
                pass
    if expected_rate is not None:
        attrs["rate_expected"] = float(expected_rate)
        attrs["rate_z"] = float((attrs["rate"] - expected_rate) / attrs["rate_error"]) \
            if np.isfinite(attrs["rate"]) else np.nan
    data = {"value": ("R", val), "error": ("R", err)}
    if expected is not None:
        expected = np.asarray(expected, dtype=float)
        if expected.shape != (nR,):
            raise ValueError(f"expected: need shape ({nR},), got {expected.shape}")
        data["expected"] = ("R", expected)
        data["z_expected"] = ("R", (val - expected) / err)
        w = 1 / err[tsl] ** 2
        ce = float(np.sum(w * expected[tsl]) / np.sum(w))
        attrs["plateau_expected"] = ce
        attrs["plateau_expected_z"] = float((c - ce) / dc)
        attrs["max_abs_z_expected"] = float(np.max(np.abs((val - expected) / err)))
    ds = xr.Dataset(data, coords={"R": seps})
    ds.attrs.update(attrs)
    return ds


# --------------------------------------------------------------------------------------------
# closed forms for the lattice cos-net (docs/conventions.md)
# --------------------------------------------------------------------------------------------
def amplitude_moments(amplitude):
    """(k4, k6) = (E a^4/(E a^2)^2, E a^6/(E a^2)^3) for "gaussian" (3, 15) or "constant" (1, 1)."""
    if amplitude == "gaussian":
        return 3.0, 15.0
    if amplitude == "constant":
        return 1.0, 1.0
    raise ValueError(f"amplitude: must be 'gaussian' or 'constant', got {amplitude!r}")


def _G_at(G, disp):
    """G indexed by integer displacements (..., dim), wrapped on the torus."""
    shape = np.asarray(G.shape)
    d = np.asarray(disp) % shape
    return G[tuple(np.moveaxis(d, -1, 0))]


def _coords_of(tuples, shape):
    t = np.asarray(tuples, dtype=np.int64)
    return np.stack(np.unravel_index(t, shape), axis=-1)  # (n_t, n, dim)


def cosnet_g4c(G, tuples, width, *, kurtosis=3.0, G0=None):
    """Exact connected 4-point function of the lattice cos-net at width N.

    G4c = (1/N) [ k G0/2 sum_3 G(x_i + x_j - x_k - x_l) - sum_3 G(x_i - x_j) G(x_k - x_l) ]
    (docs/conventions.md), k = E a^4/(E a^2)^2.

    Parameters
    ----------
    G : array, shape lattice.shape
        Two-point function as a function of displacement index (``free_propagator``), or the
        coarse-grained propagator of the kept neurons.
    tuples : int array (n_t, 4) of flat site indices.
    width : int
        N.
    kurtosis : float
        k (3 Gaussian amplitudes, 1 constant).
    G0 : float, optional
        s^2/2 (the single-neuron variance scale); default ``G[0]``. After dropping neurons
        (RG) it stays the G(0) of the uncut ensemble while G becomes the cut propagator.
    """
    G = np.asarray(G)
    x = _coords_of(tuples, G.shape)
    if x.shape[1] != 4:
        raise ValueError("tuples: need 4 points per tuple")
    g0 = float(G.flat[0]) if G0 is None else float(G0)
    out = np.zeros(x.shape[0])
    for (i, j), (k, l) in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        out += kurtosis * g0 / 2 * _G_at(G, x[:, i] + x[:, j] - x[:, k] - x[:, l])
        out -= _G_at(G, x[:, i] - x[:, j]) * _G_at(G, x[:, k] - x[:, l])
    return out / width


def cosnet_g6c(G, tuples, width, *, k4=3.0, k6=15.0, G0=None):
    """Exact connected 6-point function of the lattice cos-net at width N (derived here).

    With one neuron's moments m2 = G/N, m4 = k4 G0/(2N^2) sum_3 G(+ + - -),
    m6 = k6 G0^2/(4 N^3) sum_10 G(sum_A x - sum_B x) (10 splits into two triples), odd
    moments zero, G6c = N [m6 - sum_15 m4 m2 + 2 sum_15 m2 m2 m2]:

    G6c = (1/N^2) [ k6 G0^2/4 sum_10 G(..) - k4 G0/2 sum_15 G(x_a - x_b) sum_3 G(rest)
                    + 2 sum_15 G G G ].
    """
    G = np.asarray(G)
    x = _coords_of(tuples, G.shape)
    if x.shape[1] != 6:
        raise ValueError("tuples: need 6 points per tuple")
    g0 = float(G.flat[0]) if G0 is None else float(G0)
    n_t = x.shape[0]
    idx = range(6)
    t6 = np.zeros(n_t)
    for A in itertools.combinations(idx, 3):
        if 0 not in A:
            continue
        B = [i for i in idx if i not in A]
        t6 += _G_at(G, x[:, list(A)].sum(1) - x[:, B].sum(1))
    t42 = np.zeros(n_t)
    t222 = np.zeros(n_t)
    for a, b in itertools.combinations(idx, 2):
        rest = [i for i in idx if i not in (a, b)]
        g2 = _G_at(G, x[:, a] - x[:, b])
        s3 = np.zeros(n_t)
        p, q, r, s = rest
        for (i, j), (k, l) in (((p, q), (r, s)), ((p, r), (q, s)), ((p, s), (q, r))):
            s3 += _G_at(G, x[:, i] + x[:, j] - x[:, k] - x[:, l])
        t42 += g2 * s3
    for pairing in pairings(6):
        term = np.ones(n_t)
        for a, b in pairing:
            term *= _G_at(G, x[:, a] - x[:, b])
        t222 += term
    return (k6 * g0 ** 2 / 4 * t6 - k4 * g0 / 2 * t42 + 2 * t222) / width ** 2


# --------------------------------------------------------------------------------------------
# plotting
# --------------------------------------------------------------------------------------------
def plot_cluster_profile(ds, path, *, title=None):
    """PNG of a cluster profile with errors, its plateau and exponential fit (and expectation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = np.asarray(ds["R"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(R, ds["value"], ds["error"], fmt="o", ms=4, capsize=2, label="measured")
    if "expected" in ds:
        ax.plot(R, ds["expected"], "k-", lw=1, label="closed form")
    a = ds.attrs
    ax.axhline(a.get("plateau", 0.0), color="C1", ls="--",
               label=f"plateau {a.get('plateau', 0):.3g} ± {a.get('plateau_error', 0):.2g}")
    if np.isfinite(a.get("rate", np.nan)) and "amplitude" in a:
        rr = np.linspace(R.min(), R.max(), 200)
        ax.plot(rr, a["amplitude"] * np.exp(-a["rate"] * rr), "C2:",
                label=f"exp fit rate {a['rate']:.3g} ± {a['rate_error']:.2g}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("separation R")
    ax.set_ylabel(f"{a.get('stat', '')} {a.get('order', '')}-point")
    ax.set_title(title or f"cluster decomposition: {a.get('verdict', '')}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
