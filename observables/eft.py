"""Effective-field-theory matching: couplings of a polynomial action fitted to connected
correlators, ranked truncations, 6-point predictions, and perturbation theory vs Monte Carlo.

Conventions
-----------
Couplings are those of ``Delta S = sum_k c_k int phi^k`` in the papers' "plain" convention
(``g phi^3 + lambda phi^4 + alpha phi^5 + kappa phi^6``, no factorials) unless
``convention="factorial"`` (``c_k = coupling / k!``, e.g. lattice phi^4 ``(g/4!) phi^4``); see
:mod:`nnft.lattice.diagrams`. At first order in the couplings the connected n-point function is
linear in them: ``Delta G_n^c = sum_c c * T_c``, where the template ``T_c`` is the sum of the
connected n-point diagrams with exactly one vertex of that valence (with its sign and
contraction count), e.g. ``T_lambda = -24 sum_y prod_i K(x_i, y)`` for G4c and
``T_kappa = -360 sum_y K(y, y) prod_i K(x_i, y)`` (the cross with a loop) for G4c,
``-720 sum_y prod_i K(x_i, y)`` for G6c. The measured ``Delta G4`` / ``Delta G6`` are the
connected correlators (for network ensembles, whose G2 is the GP kernel, these are G_n minus
their Gaussian values).

On a translation-invariant lattice (and for kernels with constant ``K(y, y)``) the kappa
template of G4c is ``15 K(0)`` times the lambda template: G4c alone cannot tell them apart,
ranking ties go to the lower valence, and the 6-point prediction (kappa gives a local 6-point
contact ``-720 kappa sum_y prod K``, lambda a second-order tree) is what discriminates.

Fits are weighted least squares (weights 1/error^2); coupling errors come from refitting every
jackknife replica of the data, so correlations between tuples are in the errors. The fit
quality chi^2 uses the jackknife covariance when there are at least twice as many blocks as
tuples, the diagonal otherwise (attr ``chi2_kind``). Truncations (subsets of couplings) are
ranked by AIC = chi^2 + 2k or BIC = chi^2 + k ln(n_tuples).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from nnft.lattice.diagrams import (COUPLING_NAMES, Interaction, PropagatorContext, diagrams,
                                   evaluate_diagram, perturbative_correlator)


def _public():
    # the public names of nnft.observables (imported lazily: this module is one of them)
    from nnft.observables import assess_deviations, correlator_replicas

    return assess_deviations, correlator_replicas

__all__ = [
    "coupling_templates",
    "fit_couplings",
    "nonlocal_quartic_template",
    "rank_truncations",
    "predict_connected",
    "measure_connected",
    "eft_match",
    "local_tuples",
    "perturbative_check",
    "power_law_fit",
]

_VALENCE = {v: k for k, v in COUPLING_NAMES.items()}
_VALENCE["lam"] = 4


def _valence(name):
    if name not in _VALENCE:
        raise ValueError(f"couplings: unknown coupling {name!r}; allowed {sorted(_VALENCE)}")
    return _VALENCE[name]


def coupling_templates(n, couplings, ctx, tuples, *, convention="plain"):
    """First-order templates ``T_c = d G_n^c / d c`` at each tuple.

    Parameters
    ----------
    n : int
        Order of the connected correlator (4 or 6 typically).
    couplings : sequence of str or (name, valence, profile)
        Names among ``delta, g, lambda, alpha, kappa`` (constant couplings), or x-dependent
        couplings ``c(y) = c profile(y)`` given as ``(name, valence, profile)`` with
        ``profile(y (Q, d)) -> (Q,)``, e.g. ``("lambda_r2", 4, lambda y: (y ** 2).sum(-1))``.
    ctx : PropagatorContext
        Free propagator (lattice or continuum with cutoff).
    tuples : int array (n_t, n)
    convention : {"plain", "factorial"}

    Returns
    -------
    (templates, errors) : dicts name -> array (n_t,) (errors non-zero for Monte Carlo
    integration only). A coupling without a first-order connected diagram (e.g. g for G4c)
    gets a zero template.
    """
    t = np.asarray(tuples, dtype=np.int64)
    out, err = {}, {}
    for item in couplings:
        if isinstance(item, str):
            name, k, prof = item, _valence(item), None
        else:
            try:
                name, k, prof = item
            except (TypeError, ValueError):
                raise ValueError("couplings: each entry is a name or (name, valence, profile)") \
                    from None
            k = int(k)
        inter = Interaction({k: 1.0}, convention)
        val = np.zeros(t.shape[0])
        var = np.zeros(t.shape[0])
        for d in diagrams(n, (k,), 1, connected=True, exact_order=True):
            v, e = evaluate_diagram(d, t, ctx, vertex_weight=prof)
            c = -d.contractions * inter.vertex_factor(k)
            val += c * v
            var += (c * e) ** 2
        out[name] = val
        err[name] = np.sqrt(var)
    return out, err


def nonlocal_quartic_template(ctx, tuples, potential):
    """First-order G4c template of ``Delta S = (mu/2) sum_{y,z} phi(y)^2 U(y, z) phi(z)^2``.

    ``T_mu = -4 sum_{3 pairings (ab)(cd)} sum_{y,z} K(x_a, y) K(x_b, y) U(y, z) K(x_c, z)
    K(x_d, z)`` (8 contractions per pairing times mu/2). With ``U(y, z) = delta_{yz}`` (lattice)
    this is ``-12 V4``: the local ``lambda phi^4`` with ``lambda = mu / 2``.

    Parameters
    ----------
    ctx : PropagatorContext (deterministic: lattice or quadrature)
    tuples : int array (n_t, 4)
    potential : callable(y (Q, d), z (Q, d)) -> (Q, Q)
        The non-local kernel U on the integration nodes (positions as in ``vertex_weight``).

    Returns
    -------
    array (n_t,)
    """
    if ctx.mc_batches or ctx._nodes is None:
        raise ValueError("ctx: the non-local template needs a lattice or quadrature context")
    t = np.asarray(tuples, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError("tuples: expected an int array (n_tuples, 4)")
    y = ctx._nodes(0)
    w = ctx._weights(0)
    U = np.asarray(potential(y, y), dtype=float)
    Kpy = ctx._ext_node(0)
    out = np.zeros(t.shape[0])
    for (a, b), (c, d) in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        A = w * Kpy[t[:, a]] * Kpy[t[:, b]]
        B = w * Kpy[t[:, c]] * Kpy[t[:, d]]
        out += np.einsum("ty,yz,tz->t", A, U, B)
    return -4.0 * out


def fit_couplings(delta, templates, *, error=None, replicas=None, names=None):
    """Weighted linear least squares ``delta = sum_c c T_c``.

    Parameters
    ----------
    delta : array (n_t,)
        Measured (or exact) connected correlator.
    templates : dict name -> array (n_t,)
    error : array (n_t,), optional
        Standard errors (default: from ``replicas``; one of the two is required).
    replicas : array (n_blocks, n_t), optional
        Delete-one-block jackknife replicas of ``delta``; the fit is repeated on each.
    names : sequence of str, optional
        Subset of the templates to fit (default all).

    Returns
    -------
    dict: ``couplings`` {name: value}, ``errors`` {name: error}, ``covariance`` (k, k),
    ``replicas`` (n_blocks, k) or None, ``chi2``, ``dof``, ``p_value``, ``aic``, ``bic``,
    ``chi2_kind``, ``significance`` {name: |c|/error}, ``fit`` (n_t,).
    """
    from scipy import stats

    names = list(templates) if names is None else list(names)
    y = np.real(np.asarray(delta, dtype=complex if np.iscomplexobj(delta) else float))
    R = None if replicas is None else np.real(np.asarray(replicas))
    if error is None:
        if R is None:
            raise ValueError("error: give the errors of delta or its jackknife replicas")
        b = R.shape[0]
        error = np.sqrt((b - 1) / b * ((R - R.mean(0)) ** 2).sum(0))
    s = np.asarray(error, dtype=float)
    ok = np.isfinite(y) & (s > 0)
    if ok.sum() <= len(names):
        raise ValueError(f"delta: need more tuples with a positive error than couplings "
                         f"({ok.sum()} <= {len(names)})")
    if not names:
        X = np.zeros((y.size, 0))
    else:
        X = np.stack([np.asarray(templates[n], dtype=float) for n in names], axis=1)
    w = np.where(ok, 1.0 / np.where(ok, s, 1.0) ** 2, 0.0)
    A = X.T @ (w[:, None] * X)
    if names and np.linalg.matrix_rank(A) < len(names):
        raise ValueError(f"templates: the templates of {names} are linearly dependent on these "
                         "tuples")
    Ainv = np.linalg.inv(A) if names else np.zeros((0, 0))

    def solve(v):
        return Ainv @ (X.T @ (w * np.where(ok, v, 0.0))) if names else np.zeros(0)

    c = solve(y)
    fit = X @ c
    r = np.where(ok, y - fit, 0.0)
    n_ok = int(ok.sum())
    chi2_kind = "diagonal"
    chi2 = float(np.sum(w * r * r))
    crep = None
    if R is not None:
        crep = np.array([solve(v) for v in R])
        b = R.shape[0]
        cov_c = (b - 1) / b * np.einsum("bi,bj->ij", crep - crep.mean(0), crep - crep.mean(0))
        if b >= 2 * n_ok:
            Cy = (b - 1) / b * np.einsum("bi,bj->ij", R - R.mean(0), R - R.mean(0))
            Cy = Cy[np.ix_(ok, ok)]
            try:
                chi2 = float(r[ok] @ np.linalg.solve(Cy, r[ok]))
                chi2_kind = "covariance"
            except np.linalg.LinAlgError:
                pass
    else:
        cov_c = Ainv
    dof = n_ok - len(names)
    errs = np.sqrt(np.clip(np.diag(cov_c), 0, None)) if names else np.zeros(0)
    return {"couplings": dict(zip(names, c.tolist())), "errors": dict(zip(names, errs.tolist())),
            "covariance": cov_c, "replicas": crep, "names": names,
            "chi2": chi2, "dof": dof, "p_value": float(stats.chi2.sf(chi2, dof)),
            "aic": chi2 + 2 * len(names), "bic": chi2 + len(names) * math.log(n_ok),
            "chi2_kind": chi2_kind, "fit": fit,
            "significance": {n: (abs(v) / e if e > 0 else math.inf)
                             for n, v, e in zip(names, c, errs)}}


def rank_truncations(delta, templates, *, error=None, replicas=None, criterion="aic",
                     include_empty=True):
    """Fit every subset of the couplings and rank the truncations.

    Returns
    -------
    xarray.Dataset over ``model`` (sorted best first): ``chi2``, ``dof``, ``p_value``, ``aic``,
    ``bic``, ``value`` / ``error`` (model, coupling; NaN where not in the model). Attrs:
    ``best`` (label of the minimal effective action by the criterion), ``criterion``.
    """
    import xarray as xr

    if criterion not in ("aic", "bic"):
        raise ValueError(f"criterion: must be 'aic' or 'bic', got {criterion!r}")
    names = list(templates)
    rows = []
    for k in range(0 if include_empty else 1, len(names) + 1):
        for sub in itertools.combinations(names, k):
            try:
                rows.append((sub, fit_couplings(delta, templates, error=error,
                                                replicas=replicas, names=sub)))
            except ValueError:
                continue
    # ties (collinear templates, e.g. lambda and kappa in G4c when K(y, y) is constant) go to
    # fewer couplings, then to lower valences (the more relevant operators)
    rows.sort(key=lambda r: (round(r[1][criterion], 8), len(r[0]),
                             sum(_VALENCE.get(n, 9) for n in r[0])))
    labels = ["+".join(sub) if sub else "free" for sub, _ in rows]
    val = np.full((len(rows), len(names)), np.nan)
    err = np.full((len(rows), len(names)), np.nan)
    for i, (sub, f) in enumerate(rows):
        for j, n in enumerate(names):
            if n in sub:
                val[i, j] = f["couplings"][n]
                err[i, j] = f["errors"][n]
    ds = xr.Dataset({q: ("model", np.array([f[q] for _, f in rows], dtype=float))
                     for q in ("chi2", "dof", "p_value", "aic", "bic")},
                    coords={"model": labels, "coupling": names})
    ds["value"] = (("model", "coupling"), val)
    ds["error"] = (("model", "coupling"), err)
    ds.attrs.update({"best": labels[0] if labels else "", "criterion": criterion,
                     "chi2_kind": rows[0][1]["chi2_kind"] if rows else ""})
    return ds


def predict_connected(n, couplings, ctx, tuples, *, order=2, convention="plain"):
    """Connected n-point function to ``order`` in the given couplings (engine diagrams).

    Parameters
    ----------
    couplings : dict name -> value
    Returns
    -------
    array (n_t,)
    """
    inter = Interaction({_valence(k): v for k, v in couplings.items()}, convention)
    return perturbative_correlator(n, inter, ctx, tuples, order=order, connected=True)["value"]


def _translation_rows(lattice, tuples, average):
    t = np.asarray(tuples, dtype=np.int64)
    if not (average and getattr(lattice, "kind", None) == "lattice" and lattice.periodic):
        return t, np.arange(len(t))
    shape = tuple(lattice.shape)
    V = int(np.prod(shape))
    coords = np.stack(np.unravel_index(t, shape), axis=-1)
    shifts = np.stack(np.unravel_index(np.arange(V), shape), axis=-1)
    allc = (coords[:, None] + shifts[None, :, None, :]) % np.asarray(shape)
    flat = np.ravel_multi_index(tuple(np.moveaxis(allc, -1, 0)), shape)
    return flat.reshape(-1, t.shape[1]), np.repeat(np.arange(len(t)), V)


def measure_connected(source, tuples, *, lattice=None, average=True, n_blocks=20):
    """Connected correlators at site tuples with jackknife replicas (translation-averaged on
    periodic lattices when ``average``). Returns ``(value, error, replicas)``."""
    lat = lattice if lattice is not None else getattr(source, "lattice", None)
    rows, groups = _translation_rows(lat, tuples, average)
    _, correlator_replicas = _public()
    res = correlator_replicas(source, rows, stat="connected", n_blocks=n_blocks, groups=groups)
    return np.real(res.value), np.asarray(res.error, dtype=float), np.real(res.replicas)


def local_tuples(lattice, n):
    """Default n-point tuples near the origin of a lattice: the origin repeated, then points
    moved one step along each axis (coincident and neighbouring sites carry the local signal)."""
    shape = tuple(lattice.shape)
    steps = [np.ravel_multi_index(tuple(1 if m == mu else 0 for m in range(len(shape))), shape)
             for mu in range(len(shape)) if shape[mu] > 1]
    rows = [[0] * n]
    for s in steps:
        for j in range(1, n):
            rows.append([0] * (n - j) + [s] * j)
    if len(steps) > 1:
        a, b = steps[0], steps[1]
        rows.append([0] * (n - 2) + [a, b])
        if n >= 5:
            rows.append([0] * (n - 4) + [a, a, b, b])
    uniq = sorted({tuple(sorted(r)) for r in rows})
    return np.array(uniq, dtype=np.int64)


def eft_match(source, ctx, tuples4=None, tuples6=None, *, couplings=("lambda", "kappa"),
              lattice=None, average=True, n_blocks=20, criterion="aic", order6=2,
              convention="plain", alpha=0.01, model=None):
    """Fit couplings on the connected 4-point function, predict the connected 6-point one.

    Parameters
    ----------
    source : FieldStore or array (n_samples, *shape)
    ctx : PropagatorContext or array
        The free propagator the diagrams use (the GP kernel or the lattice propagator); its
        points are the store's flat sites. An array (``(V, V)`` matrix, or a displacement
        function on a periodic lattice such as ``free_propagator``) is wrapped with
        :meth:`PropagatorContext.lattice` on the store's lattice.
    tuples4, tuples6 : int arrays (n_t, 4), (n_t6, 6), optional
        Default :func:`local_tuples` (lattices only).
    couplings : sequence of str
        Candidate couplings; every subset is fitted and ranked.
    criterion : {"aic", "bic"}
        Picks the minimal effective action (``model`` overrides it, e.g. ``"lambda"``).
    order6 : int
        Order of the 6-point prediction (2 includes the lambda^2 tree).
    alpha : float
        Family-wise level of the 6-point comparison (Holm over tuples).

    Returns
    -------
    xarray.Dataset
        ``delta_g4``, ``error4``, ``fit4`` over ``tuple4``; ``delta_g6``, ``error6``
        (measurement), ``predicted6``, ``prediction_error6`` (jackknife of the fitted couplings,
        same blocks), ``z6`` over ``tuple6``; ``ranking`` variables (``model_*``). Attrs:
        ``verdict`` of the 6-point prediction ("consistent" / "inconsistent" / "inconclusive"
        when neither the prediction nor the measurement is resolved from zero), ``p_value``
        (smallest Holm-adjusted), ``model``, couplings and errors, ``chi2``, ``dof``,
        ``fit_p_value`` of the 4-point fit.
    """
    import xarray as xr

    lat = lattice if lattice is not None else getattr(source, "lattice", None)
    if not isinstance(ctx, PropagatorContext):
        if lat is None or not hasattr(ctx, "shape"):
            raise ValueError("ctx: expected a PropagatorContext, or a propagator array together "
                             "with the lattice")
        ctx = PropagatorContext.lattice(lat, np.asarray(ctx, dtype=float))
    if tuples4 is None or tuples6 is None:
        if getattr(lat, "kind", None) != "lattice":
            raise ValueError("tuples4: default tuples need a Lattice; pass tuples for point sets")
    t4 = local_tuples(lat, 4) if tuples4 is None else np.asarray(tuples4, dtype=np.int64)
    t6 = local_tuples(lat, 6) if tuples6 is None else np.asarray(tuples6, dtype=np.int64)
    g4, e4, r4 = measure_connected(source, t4, lattice=lat, average=average, n_blocks=n_blocks)
    g6, e6, r6 = measure_connected(source, t6, lattice=lat, average=average, n_blocks=n_blocks)
    temps, _ = coupling_templates(4, couplings, ctx, t4, convention=convention)
    ranking = rank_truncations(g4, temps, replicas=r4, criterion=criterion,
                               include_empty=False)
    chosen = ranking.attrs["best"] if model is None else str(model)
    if chosen not in list(ranking.model.values):
        raise ValueError(f"model: {chosen!r} is not one of {list(ranking.model.values)}")
    names = chosen.split("+")
    fit = fit_couplings(g4, temps, replicas=r4, names=names)
    pred = predict_connected(6, fit["couplings"], ctx, t6, order=order6, convention=convention)
    pred_r = np.array([predict_connected(6, dict(zip(names, c)), ctx, t6, order=order6,
                                         convention=convention) for c in fit["replicas"]])
    diff_r = r6 - pred_r
    b = diff_r.shape[0]
    err = np.sqrt((b - 1) / b * ((diff_r - diff_r.mean(0)) ** 2).sum(0))
    perr = np.sqrt((b - 1) / b * ((pred_r - pred_r.mean(0)) ** 2).sum(0))
    assess_deviations, _ = _public()
    a = assess_deviations(g6 - pred, err, dof=b - 1, alpha=alpha)
    resolved = max(np.max(np.abs(g6) / np.where(e6 > 0, e6, np.inf)),
                   np.max(np.abs(pred) / np.where(err > 0, err, np.inf)))
    if not a["passed"]:
        verdict = "inconsistent"
    elif resolved < 3:
        verdict = "inconclusive"
    else:
        verdict = "consistent"
    ds = xr.Dataset({"delta_g4": ("tuple4", g4), "error4": ("tuple4", e4),
                     "fit4": ("tuple4", fit["fit"]),
                     "delta_g6": ("tuple6", g6), "error6": ("tuple6", e6),
                     "predicted6": ("tuple6", pred), "prediction_error6": ("tuple6", perr),
                     "z6": ("tuple6", (g6 - pred) / np.where(err > 0, err, np.inf))},
                    coords={"tuple4": np.arange(len(t4)), "tuple6": np.arange(len(t6))})
    for v in ("chi2", "dof", "p_value", "aic", "bic"):
        ds[f"model_{v}"] = ("model", ranking[v].values)
    ds = ds.assign_coords(model=ranking.model.values)
    ds.attrs.update({
        "measurement": "eft", "verdict": verdict,
        "p_value": float(np.min(a["p_adjusted"])) if len(t6) else float("nan"),
        "max_abs_z": a["max_abs_z"], "model": chosen, "criterion": criterion,
        "chi2": fit["chi2"], "dof": fit["dof"], "fit_p_value": fit["p_value"],
        "chi2_kind": fit["chi2_kind"], "order6": order6, "convention": convention,
        "resolution_z": float(resolved), "n_blocks": b})
    for n in names:
        ds.attrs[n] = fit["couplings"][n]
        ds.attrs[f"{n}_error"] = fit["errors"][n]
    return ds


def perturbative_check(source, lattice, interaction, *, order=2, tuples4=None, n_blocks=20,
                       alpha=0.01, propagator=None, m2=None):
    """Measured G2 and G4c of a lattice ensemble against the engine's perturbation series.

    Parameters
    ----------
    source : FieldStore or array (n_samples, *shape)
        E.g. an HMC ensemble of lattice phi^4 (convention C: ``Interaction({4: g},
        "factorial")`` with the free propagator at the same ``m2``).
    lattice : periodic Lattice
    interaction : Interaction
    order : int
        Highest order compared; every order 0..order is reported.
    tuples4 : int array (n_t, 4), optional
        Default: coincident, neighbouring and a few spread tuples around the origin.
    propagator : array, optional
        Free propagator as a function of displacement (default ``free_propagator(lattice,
        m2)``).

    Returns
    -------
    xarray.Dataset
        ``g2``, ``g2_error``, ``g2_pt`` (order, site) over all displacements; ``g2p``,
        ``g2p_error``, ``g2p_pt`` (order, mode): the same in momentum space, ``G2(p) = sum_x
        G2(x) exp(-i p x)`` on the flat FFT modes of the lattice (jackknife errors);
        ``g4c``, ``g4c_error``, ``g4c_pt`` (order, tuple4); ``max_abs_z`` (order, over G2(x)
        and G4c), ``max_abs_z_g2p``, ``max_abs_z_g4c`` (order). Attrs ``verdict`` (of the
        highest order: Holm over G2(x) and G4c at level alpha), ``p_value``.
    """
    import xarray as xr

    from nnft.lattice import free_propagator

    if getattr(lattice, "kind", None) != "lattice" or not lattice.periodic:
        raise ValueError("lattice: perturbative_check needs a periodic Lattice")
    if propagator is None:
        if m2 is None:
            raise ValueError("m2: give the bare mass squared (or the propagator)")
        propagator = free_propagator(lattice, m2)
    ctx = PropagatorContext.lattice(lattice, propagator)
    V = lattice.volume
    t2 = np.stack([np.zeros(V, dtype=np.int64), np.arange(V)], axis=1)
    if tuples4 is None:
        shape = lattice.shape
        e = [np.ravel_multi_index(tuple(1 if m == mu else 0 for m in range(len(shape))), shape)
             for mu in range(len(shape))]
        tuples4 = np.array([[0, 0, 0, 0], [0, 0, e[0], e[0]], [0, e[0], 0, e[0]],
                            [0, 0, 0, e[0]], [0, e[0], e[-1], e[0] + e[-1]]], dtype=np.int64)
    t4 = np.asarray(tuples4, dtype=np.int64)
    g2, s2, r2 = measure_connected(source, t2, lattice=lattice, n_blocks=n_blocks)
    g4, s4, _ = measure_connected(source, t4, lattice=lattice, n_blocks=n_blocks)
    p2 = perturbative_correlator(2, interaction, ctx, t2, order=order, connected=True)["by_order"]
    p4 = perturbative_correlator(4, interaction, ctx, t4, order=order, connected=True)["by_order"]
    c2, c4 = np.cumsum(p2, 0), np.cumsum(p4, 0)
    # momentum space: G2(p) = sum_x G2(x) exp(-i p x) (real: G2(x) = G2(-x)), jackknife errors
    shape = tuple(lattice.shape)

    def ft(a):
        a = np.asarray(a)
        return np.fft.fftn(a.reshape(a.shape[:-1] + shape),
                          axes=tuple(range(a.ndim - 1, a.ndim - 1 + len(shape)))).real \
            .reshape(a.shape)

    g2p, r2p, c2p = ft(g2), ft(r2), ft(c2)
    nb = r2p.shape[0]
    s2p = np.sqrt((nb - 1) / nb * ((r2p - r2p.mean(0)) ** 2).sum(0))
    assess_deviations, _ = _public()
    zmax, verdicts, pv, z2p, z4 = [], [], [], [], []
    for k in range(order + 1):
        a = assess_deviations(np.concatenate([g2 - c2[k], g4 - c4[k]]), np.concatenate([s2, s4]),
                              dof=n_blocks - 1, alpha=alpha)
        zmax.append(a["max_abs_z"])
        verdicts.append("consistent" if a["passed"] else "inconsistent")
        pv.append(float(np.min(a["p_adjusted"])))
        z2p.append(float(np.max(np.abs(g2p - c2p[k]) / s2p)))
        z4.append(float(np.max(np.abs(g4 - c4[k]) / s4)))
    ds = xr.Dataset({"g2": ("site", g2), "g2_error": ("site", s2),
                     "g2_pt": (("order", "site"), c2),
                     "g2p": ("mode", g2p), "g2p_error": ("mode", s2p),
                     "g2p_pt": (("order", "mode"), c2p), "g4c": ("tuple4", g4),
                     "g4c_error": ("tuple4", s4), "g4c_pt": (("order", "tuple4"), c4),
                     "max_abs_z": ("order", np.array(zmax)),
                     "max_abs_z_g2p": ("order", np.array(z2p)),
                     "max_abs_z_g4c": ("order", np.array(z4)),
                     "points4": (("tuple4", "leg"), t4)},
                    coords={"order": np.arange(order + 1), "site": np.arange(V),
                            "mode": np.arange(V), "tuple4": np.arange(len(t4))})
    ds.attrs.update({"measurement": "perturbative_check", "verdict": verdicts[-1],
                     "p_value": pv[-1], "order": order, "verdicts_by_order": verdicts,
                     "couplings": str(interaction.couplings),
                     "convention": interaction.convention})
    return ds


def power_law_fit(widths, values, errors, *, expected=-2.0, alternative=-1.0, alpha=0.01):
    """Weighted least-squares fit of ``value(N) = C N^s`` and a test of the exponent.

    The values may have either sign and need not be resolved from zero at every width (the
    fit is done on the values, not on their logarithms), so the noise floor of the widest
    ensembles does not bend the slope.

    Parameters
    ----------
    widths : array of N (> 0), one independent measurement per width
    values, errors : arrays
        The measured quantity at each width and its standard error (> 0).
    expected : float
        Exponent under test (e.g. -2 for a 1/N^2 law).
    alternative : float or None
        Exponent the data must reject for the verdict "consistent" (e.g. -1): the test has
        power only when the alternative law is rejected.
    alpha : float
        Level of both law tests.

    Returns
    -------
    dict: ``slope``, ``slope_error`` (from the curvature of chi^2), ``amplitude``,
    ``amplitude_error``, ``chi2``, ``dof``, ``fit_p_value`` (the free fit's quality);
    ``slope_z = (slope - expected) / slope_error``; ``p_value`` of the law ``C N^expected``
    (amplitude fitted, exponent fixed: chi^2 with n - 1 degrees of freedom);
    ``alternative_p_value`` of the alternative law; ``verdict``: "inconsistent" when the
    expected law is rejected at ``alpha``, "consistent" when it is not and the alternative is,
    "inconclusive" when neither is rejected (the widths or errors cannot tell them apart).
    """
    from scipy import optimize, stats

    N = np.asarray(widths, dtype=float)
    v = np.asarray(values, dtype=float)
    e = np.asarray(errors, dtype=float)
    if N.ndim != 1 or not (N.shape == v.shape == e.shape) or len(N) < 3:
        raise ValueError("widths: widths, values and errors must be 1-d arrays of equal length "
                         ">= 3")
    if np.any(N <= 0) or not np.all(np.isfinite(v)) or np.any(~(e > 0)):
        raise ValueError("errors: widths and errors must be positive, values finite")
    if len(np.unique(N)) < 2:
        raise ValueError("widths: need at least two distinct widths")
    x = np.log(N / np.exp(np.mean(np.log(N))))  # centred: amplitude and slope decorrelate

    def fixed(s):
        u = np.exp(s * x) / e
        c = float(np.sum(u * v / e) / np.sum(u * u))
        return c, float(np.sum((c * u - v / e) ** 2))

    grid = np.linspace(-6, 3, 181)
    s0 = grid[int(np.argmin([fixed(s)[1] for s in grid]))]
    c0 = fixed(s0)[0]
    res = optimize.least_squares(lambda p: (p[0] * np.exp(p[1] * x) - v) / e, [c0, s0],
                                 method="lm")
    c, s = res.x
    J = res.jac
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.inf)
    chi2 = float(np.sum(res.fun ** 2))
    dof = len(N) - 2
    n_ref = float(np.exp(np.mean(np.log(N))))
    out = {"slope": float(s), "slope_error": float(np.sqrt(max(cov[1, 1], 0.0))),
           "amplitude": float(c * n_ref ** (-s)), "reference_width": n_ref,
           "amplitude_at_reference": float(c),
           "amplitude_error_at_reference": float(np.sqrt(max(cov[0, 0], 0.0))),
           "chi2": chi2, "dof": dof,
           "fit_p_value": float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan"),
           "expected": float(expected)}
    out["slope_z"] = (out["slope"] - expected) / out["slope_error"] if out["slope_error"] > 0 \
        else float("nan")
    _, chi_e = fixed(float(expected))
    out["p_value"] = float(stats.chi2.sf(chi_e, len(N) - 1))
    verdict = "inconsistent" if out["p_value"] < alpha else "inconclusive"
    if alternative is not None:
        _, chi_a = fixed(float(alternative))
        out["alternative"] = float(alternative)
        out["alternative_p_value"] = float(stats.chi2.sf(chi_a, len(N) - 1))
        if verdict == "inconclusive" and out["alternative_p_value"] < alpha:
            verdict = "consistent"
    elif verdict == "inconclusive":
        verdict = "consistent"
    out["verdict"] = verdict
    return out
