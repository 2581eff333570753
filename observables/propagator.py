"""Propagator tools: G(r), Gt(p), checks against a kernel, effective mass, chi, xi_2.

Conventions (docs/statistics.md, section 1): ``phit(p) = sum_x exp(-i p.x) phi(x)``,
``Gt(p) = <|phit(p)|^2>/V`` (connected: minus ``V <M>^2`` at p = 0), ``G(r) = ifftn(Gt)(r)``
= ``(1/V) sum_y <phi_y phi_{y+r}> - <M>^2`` with r the displacement index. The zero-momentum
time-slice correlator along axis mu is ``C(t) = sum_{x: x_mu = t} G(x)``; the arccosh
effective mass ``m_eff(t) = arccosh[(C(t-1) + C(t+1)) / (2 C(t))]`` (periodic wrap);
``chi = Gt(0) = sum_x G(x)``; ``xi_2 = sqrt(chi/F - 1) / (2 sin(pi/L))`` with
``F = Gt(2 pi/L e_mu)`` averaged over the axes mu of length L.

Every function takes a store (path, FieldStore, array with ``lattice=``) or a
:class:`~.measure.Measurement` that already holds the needed accumulator (so one pass can
serve many observables) and returns an ``xarray.Dataset`` with ``value`` and ``error``.
Errors: the measurement's error method (default jackknife over chunk blocks) applied to
the whole derived quantity.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .accumulators import FourierTwoPoint, ScalarObservables, TwoPointMatrix, share_spectrum
from .measure import Measurement, measure

__all__ = ["two_point", "momentum_propagator", "two_point_matrix", "propagator_check",
           "effective_mass", "susceptibility", "correlation_length", "scalar_observables",
           "standard_accumulators", "kernel_translation_average"]


def _lattice_of(meas):
    lat = meas.lattice
    if lat is None:
        raise ValueError("the ensemble has no lattice geometry (pass lattice= for arrays)")
    return lat


def _require_periodic(lat, what):
    if getattr(lat, "kind", "lattice") != "lattice" or getattr(lat, "boundary", "") != "periodic":
        raise ValueError(f"{what} needs a periodic Lattice, got {lat!r}")


def standard_accumulators(lattice, *, fourier: bool = True, shared: bool = True) -> dict:
    """The accumulators the propagator tools look for: ``fourier`` and ``scalars``.

    Parameters
    ----------
    lattice : Lattice
        The geometry; ``fourier`` (FourierTwoPoint) is only built on a periodic lattice.
    fourier : bool
        Build the FFT accumulator (False: the scalars alone, no FFT of every sample).
    shared : bool
        When both are built, link them with :func:`~.accumulators.share_spectrum` (``fourier``
        first in the dict): the scalars' per-sample values come from the FFT that ``fourier``
        does anyway, equal to their own computation to float64 rounding. False: two separate
        computations (the reference).
    """
    per = getattr(lattice, "boundary", "open") == "periodic"
    scalars = ScalarObservables(len(lattice.shape), periodic=per)
    if fourier and per and getattr(lattice, "kind", "lattice") == "lattice":
        ft = FourierTwoPoint(len(lattice.shape))
        if shared:
            share_spectrum(ft, scalars)
        return {"fourier": ft, "scalars": scalars}
    return {"scalars": scalars}


def _measurement(source, cls, *, blocks, executor, measure_kw, what):
    if isinstance(source, Measurement):
        return source, source.find(cls)
    lattice = measure_kw.pop("lattice", None)
    if lattice is None:
        lattice = getattr(source, "lattice", None)
    if lattice is None and not hasattr(source, "shape"):
        from .measure import open_source  # noqa: PLC0415

        source = open_source(source)
        lattice = source.lattice
    if lattice is None:
        raise ValueError(f"{what}: the geometry is unknown; pass lattice=")
    if cls is FourierTwoPoint:
        _require_periodic(lattice, what)
        acc = FourierTwoPoint(len(lattice.shape))
    elif cls is ScalarObservables:
        acc = ScalarObservables(len(lattice.shape),
                                periodic=getattr(lattice, "boundary", "open") == "periodic")
    else:
        acc = cls()
    meas = measure(source, {"acc": acc}, blocks=blocks, executor=executor, lattice=lattice,
                   **measure_kw)
    return meas, "acc"


def _dims(meas, name, prefix):
    acc = meas.total[name]
    lat = _lattice_of(meas)
    d = len(lat.shape)
    comp = len(acc.field_shape) - d
    return (("component",) if comp else ()) + tuple(f"{prefix}{i}" for i in range(d)), lat


def _finish(ds, meas, est, **attrs):
    a = meas.attrs()
    a["error_method"] = est.method
    for k, v in est.attrs.items():
        if np.isscalar(v) and not isinstance(v, (bool, np.bool_)):
            a[f"error_{k}"] = v
    a.update(attrs)
    ds.attrs = a
    return ds


def two_point(source, *, connected: bool = True, blocks=20, error: str = "jackknife",
              executor: str = "serial", replicates: bool = False, **measure_kw) -> xr.Dataset:
    """Translation-averaged two-point function G(r) on a periodic lattice.

    Returns a Dataset with ``value``, ``error`` over ``([component], x0, ..., x{d-1})``
    (displacement indices), attrs ``space="position"``. With ``replicates`` the jackknife
    replicates are kept as variable ``replicates`` (dim ``block`` first) for covariances.
    """
    meas, name = _measurement(source, FourierTwoPoint, blocks=blocks, executor=executor,
                              measure_kw=dict(measure_kw), what="two_point")
    key = "G" if connected else "G_full"
    est = meas.estimate(lambda a: a[name].result()[key], method=error)
    dims, lat = _dims(meas, name, "x")
    coords = {f"x{i}": np.arange(L) for i, L in enumerate(lat.shape)}
    ds = xr.Dataset({"value": (dims, est.value), "error": (dims, est.error)}, coords=coords)
    if replicates and "replicates" in est.attrs:
        ds["replicates"] = (("block",) + dims, est.attrs["replicates"])
    return _finish(ds, meas, est, space="position", connected=int(connected),
                   quantity="G(r) = (1/V) sum_y <phi_y phi_{y+r}>" +
                   (" - <M>^2" if connected else ""), method="FFT of |phit(p)|^2 / V")


def momentum_propagator(source, *, connected: bool = True, blocks=20,
                        error: str = "jackknife", executor: str = "serial",
                        replicates: bool = False, **measure_kw) -> xr.Dataset:
    """Momentum-space propagator ``Gt(p) = <|phit(p)|^2>/V`` (connected: minus V<M>^2 at p=0).

    Dataset ``value``, ``error`` over ``([component], p0, ..., p{d-1})`` (momentum indices
    k_mu, p_mu = 2 pi k_mu / (a L_mu)), with coordinate variable ``phat2``.
    """
    meas, name = _measurement(source, FourierTwoPoint, blocks=blocks, executor=executor,
                              measure_kw=dict(measure_kw), what="momentum_propagator")
    key = "Gt" if connected else "Gt_full"
    est = meas.estimate(lambda a: a[name].result()[key], method=error)
    dims, lat = _dims(meas, name, "p")
    coords = {f"p{i}": np.arange(L) for i, L in enumerate(lat.shape)}
    ds = xr.Dataset({"value": (dims, est.value), "error": (dims, est.error)}, coords=coords)
    ds = ds.assign_coords(phat2=(tuple(f"p{i}" for i in range(len(lat.shape))), lat.phat2()))
    if replicates and "replicates" in est.attrs:
        ds["replicates"] = (("block",) + dims, est.attrs["replicates"])
    return _finish(ds, meas, est, space="momentum", connected=int(connected),
                   quantity="Gt(p) = <|phit(p)|^2>/V" + (" - V<M>^2 delta_p0" if connected else ""))


def two_point_matrix(source, sites=None, *, connected: bool = True, blocks=20,
                     error: str = "jackknife", executor: str = "serial",
                     **measure_kw) -> xr.Dataset:
    """Full two-point matrix ``<phi_x phi_y>`` (connected by default) over flat sites.

    Works on any geometry (point sets, open boundaries). Dataset ``value``, ``error`` over
    ``(site_i, site_j)`` with coordinate ``sites``; ``mean`` and ``mean_error`` over ``site``.
    """
    if isinstance(source, Measurement):
        meas, name = source, source.find(TwoPointMatrix)
    else:
        meas = measure(source, {"acc": TwoPointMatrix(sites)}, blocks=blocks,
                       executor=executor, **measure_kw)
        name = "acc"
    key = "connected" if connected else "second"
    est = meas.estimate(lambda a: a[name].result()[key], method=error)
    mest = meas.estimate(lambda a: a[name].result()["mean"], method=error)
    s = meas.total[name].result()["sites"]
    ds = xr.Dataset({"value": (("site_i", "site_j"), est.value),
                     "error": (("site_i", "site_j"), est.error),
                     "mean": ("site", mest.value), "mean_error": ("site", mest.error)},
                    coords={"site_i": s, "site_j": s, "site": s})
    return _finish(ds, meas, est, space="matrix", connected=int(connected),
                   quantity="<phi_x phi_y>" + (" - <phi_x><phi_y>" if connected else ""))


# ----------------------------------------------------------------------------------------------
def kernel_translation_average(K, shape) -> np.ndarray:
    """``G(r) = (1/V) sum_y K(y, y + r)`` of a (V, V) kernel over a periodic lattice ``shape``."""
    K = np.asarray(K, dtype=float)
    shape = tuple(shape)
    V = int(np.prod(shape))
    if K.shape != (V, V):
        raise ValueError(f"kernel must have shape ({V}, {V}), got {K.shape}")
    idx = np.indices(shape).reshape(len(shape), V).T  # (V, d)
    out = np.zeros(V)
    flat_r = np.arange(V)
    r = np.array(np.unravel_index(flat_r, shape)).T
    for y in range(V):
        yr = np.ravel_multi_index(tuple(((idx[y] + r) % np.array(shape)).T), shape)
        out += K[y, yr]
    return (out / V).reshape(shape)


def _unique_mask(shape):
    """Representatives of the classes {k, -k mod L} of lattice indices (True = keep)."""
    idx = np.indices(shape).reshape(len(shape), -1)
    neg = (-idx) % np.array(shape)[:, None]
    f = np.ravel_multi_index(tuple(idx), shape)
    g = np.ravel_multi_index(tuple(neg), shape)
    return (f <= g).reshape(shape)


def propagator_check(measured, expected=None, *, m2=None, cov: str = "diag",
                     unique: bool = True, exclude_zero: bool = False, alpha: float = 0.05,
                     power: float = 0.8, tolerance=None, **measure_kw) -> xr.Dataset:
    """Goodness of fit of a measured propagator against an expected one, with a verdict.

    Two ways in:

    * ``measured`` is an ensemble (store, path, array with ``lattice=``, or a Measurement holding
      the accumulator): the proper tests of :mod:`nnft.observables.stats` are run on the
      per-sample data -- ``cov="diag"`` (default): :func:`~.stats.momentum_space_test`, one entry
      per ``{p, -p}`` pair with per-mode variances from the sample; ``cov="full"``:
      :func:`~.stats.position_space_test` (covariance of the per-sample G(r), shrunk).
      ``expected`` is then Gt(p) (diag) or G(r) (full) over the lattice shape.
    * ``measured`` is a Dataset from :func:`two_point` (``space="position"``),
      :func:`momentum_propagator` (``"momentum"``) or :func:`two_point_matrix` (``"matrix"``):
      ``cov="diag"``: ``chi2 = sum ((value - expected)/error)^2``, valid in momentum space
      (independent modes); in position space and for matrices the entries are correlated, so the
      p-value is not calibrated and the verdict is "inconclusive" with a warning.
      ``cov="full"``: the jackknife covariance of ``measured.replicates`` (measure with
      ``replicates=True``); with more blocks than points + 1 the p-value is Hotelling's T^2,
      otherwise the covariance is shrunk (:func:`~.stats.oas_shrinkage`) and chi^2 is used.

    Parameters
    ----------
    expected : array shaped like ``measured.value``, a (V, V) kernel (converted to G(r) or
        Gt(p) for the translation-averaged spaces), or None with ``m2`` given: the exact
        lattice free propagator.
    m2 : float
        Mass squared for the exact free propagator.
    cov : {"diag", "full"}
    unique : bool
        Keep one representative of each {k, -k} class (translation-averaged spaces) or the
        upper triangle (matrix), since the estimator is exactly symmetric.
    exclude_zero : bool
        Drop p = 0 (momentum) / r = 0 (position).
    alpha, power, tolerance :
        Level, power of the detectable-effect statement, relative deviation that must be
        detectable for "consistent" (see :class:`~.stats.Verdict`).

    Returns
    -------
    Dataset with ``chi2``, ``dof``, ``chi2_dof``, ``p_value``, ``pull`` and ``expected``
    (Dataset input) or the test's Dataset (ensemble input); attrs hold the Verdict fields
    (``outcome``, ``p_value``, ``statistic``, ``dof``, ``detectable_effect``,
    ``samples_needed``, ``warnings``, ``message``).
    """
    from scipy import stats  # noqa: PLC0415

    from .stats import (attach_verdict, momentum_space_test, oas_shrinkage,  # noqa: PLC0415
                        position_space_test, verdict_from_chi2)

    if cov not in ("diag", "full"):
        raise ValueError(f"cov must be 'diag' or 'full', got {cov!r}")
    if not isinstance(measured, xr.Dataset):
        if cov == "diag":
            return momentum_space_test(measured, expected, m2=m2, exclude_zero=exclude_zero,
                                       alpha=alpha, power=power, tolerance=tolerance,
                                       **measure_kw)
        return position_space_test(measured, expected, m2=m2, alpha=alpha, power=power,
                                   tolerance=tolerance, **measure_kw)
    if "value" not in measured:
        raise ValueError("measured must be a Dataset with 'value' and 'error'")
    space = measured.attrs.get("space")
    if space not in ("position", "momentum", "matrix"):
        raise ValueError(f"measured.attrs['space'] must be position/momentum/matrix, got {space!r}")
    val = measured["value"].values
    err = measured["error"].values
    lat_dims = [d for d in measured["value"].dims if d not in ("component",)]
    shape = tuple(measured.sizes[d] for d in lat_dims) if space != "matrix" else None
    if expected is None:
        if m2 is None:
            raise ValueError("give expected (array or kernel) or m2 (exact free propagator)")
        from nnft.lattice import Lattice, free_propagator, free_propagator_momentum  # noqa

        if space == "matrix":
            raise ValueError("m2 is only supported for position/momentum space")
        lat = Lattice(shape)
        expected = (free_propagator(lat, m2) if space == "position"
                    else free_propagator_momentum(lat, m2))
        source = f"exact lattice free propagator, m2={m2}"
    else:
        expected = np.asarray(expected, dtype=float)
        source = "given"
        if space != "matrix" and expected.ndim == 2 and expected.shape[0] == expected.shape[1] \
                and expected.shape != val.shape[-len(shape):] and expected.shape[0] == int(np.prod(shape)):
            G = kernel_translation_average(expected, shape)
            expected = G if space == "position" else np.fft.fftn(G).real
            source = "given kernel, translation-averaged"
    expected = np.broadcast_to(expected, val.shape)
    mask = np.isfinite(val) & np.isfinite(err) & (err > 0)
    if unique:
        if space == "matrix":
            mask &= np.triu(np.ones(val.shape, dtype=bool))
        else:
            mask &= np.broadcast_to(_unique_mask(shape), val.shape)
    if exclude_zero and space != "matrix":
        z = np.zeros(val.shape, dtype=bool)
        z[(Ellipsis,) + (0,) * len(shape)] = True
        mask &= ~z
    d = (val - expected)[mask]
    ex = np.asarray(expected)[mask]
    pull = np.full(val.shape, np.nan)
    pull[mask] = d / err[mask]
    n = int(mask.sum())
    ws = []
    if cov == "diag":
        chi2 = float(np.sum(pull[mask] ** 2))
        dof = n
        p = float(stats.chi2.sf(chi2, dof)) if dof else float("nan")
        how = "diagonal errors"
        scale = float(np.sqrt(np.sum((ex / err[mask]) ** 2)))
        if space != "momentum":
            ws.append(f"diagonal chi^2 over correlated {space}-space entries: the p-value is not "
                      "calibrated (use cov='full', or pass the ensemble for the "
                      "momentum-space test)")
    else:
        if "replicates" not in measured:
            raise ValueError("cov='full' needs measured.replicates (measure with replicates=True)")
        R = measured["replicates"].values.reshape(measured.sizes["block"], -1)[:, mask.ravel()]
        B = R.shape[0]
        if B < 3:
            raise ValueError(f"cov='full' needs at least 3 blocks, got {B}")
        Rc = R - R.mean(axis=0)
        C = (B - 1) / B * Rc.T @ Rc
        dof = n
        nu = B - 1
        if nu - n + 1 > 0:
            chi2 = float(d @ np.linalg.solve(C, d))
            fstat = chi2 * (nu - n + 1) / (n * nu)
            p = float(stats.f.sf(fstat, n, nu - n + 1))
            how = f"jackknife covariance from {B} blocks (Hotelling T^2 p-value)"
        else:
            C, rho = oas_shrinkage(C, B)
            chi2 = float(d @ np.linalg.solve(C, d))
            p = float(stats.chi2.sf(chi2, dof))
            how = (f"jackknife covariance from {B} blocks, OAS-shrunk (rho = {rho:.3g}), "
                   "chi^2 p-value")
        scale = float(np.sqrt(abs(ex @ np.linalg.solve(C, ex))))
    n_samples = int(measured.attrs.get("n_samples", 0))
    v = verdict_from_chi2(chi2, dof, n_samples, alpha=alpha, power=power, p_value=p,
                          effect_scale=scale, tolerance=tolerance, warnings_=ws,
                          what=f"propagator, {space} space")
    ds = xr.Dataset({"chi2": ((), chi2), "dof": ((), dof),
                     "chi2_dof": ((), chi2 / dof if dof else float("nan")),
                     "p_value": ((), p),
                     "pull": (measured["value"].dims, pull),
                     "expected": (measured["value"].dims, np.array(expected))},
                    coords=measured["value"].coords)
    ds.attrs = {"space": space, "expected": source, "covariance": how,
                "unique": int(unique)}
    attach_verdict(ds, v)
    return ds


# ----------------------------------------------------------------------------------------------
def _time_correlator(G, axis, d):
    """C(t) along lattice axis ``axis``: sum over the other lattice axes (and comps)."""
    lead = G.ndim - d
    ax = lead + axis
    other = tuple(i for i in range(G.ndim) if i != ax)
    return G.sum(axis=other)


def _meff(C):
    with np.errstate(invalid="ignore", divide="ignore"):
        arg = (np.roll(C, 1) + np.roll(C, -1)) / (2.0 * C)
        return np.where(arg >= 1.0, np.arccosh(np.maximum(arg, 1.0)), np.nan)


def effective_mass(source, *, axis: int = 0, blocks=20, error: str = "jackknife",
                   executor: str = "serial", **measure_kw) -> xr.Dataset:
    """Arccosh effective mass from the zero-momentum time-slice correlator.

    ``C(t) = sum_{x: x_axis = t} G_c(x)`` (connected G of :func:`two_point`);
    ``m_eff(t) = arccosh[(C(t-1) + C(t+1)) / (2 C(t))]`` with periodic wrap, t = 0..L-1
    (NaN where the argument is below 1). For the free field it equals
    ``2 asinh(m/2)`` at every t (free-field closed forms).

    Dataset: ``value``, ``error`` (dim ``t``), ``C``, ``C_error``.
    """
    meas, name = _measurement(source, FourierTwoPoint, blocks=blocks, executor=executor,
                              measure_kw=dict(measure_kw), what="effective_mass")
    lat = _lattice_of(meas)
    d = len(lat.shape)
    if not isinstance(axis, (int, np.integer)) or not 0 <= axis < d:
        raise ValueError(f"axis must be an int in 0..{d - 1}, got {axis!r}")
    est = meas.estimate(lambda a: _meff(_time_correlator(a[name].result()["G"], axis, d)),
                        method=error)
    cest = meas.estimate(lambda a: _time_correlator(a[name].result()["G"], axis, d),
                         method=error)
    t = np.arange(lat.shape[axis])
    ds = xr.Dataset({"value": ("t", est.value), "error": ("t", est.error),
                     "C": ("t", cest.value), "C_error": ("t", cest.error)}, coords={"t": t})
    return _finish(ds, meas, est, axis=int(axis), quantity="arccosh effective mass",
                   definition="arccosh[(C(t-1)+C(t+1))/(2C(t))], C(t) = sum over the other "
                              "axes of the connected G")


def _chi_from(res, d):
    Gt = res["Gt"]
    return float(np.sum(Gt[(Ellipsis,) + (0,) * d]))


def susceptibility(source, *, blocks=20, error: str = "jackknife", executor: str = "serial",
                   **measure_kw) -> xr.Dataset:
    """``chi = sum_x G_c(x) = Gt_c(0) = V (<M^2> - <M>^2)`` (summed over components).

    Works on periodic lattices (from the Fourier accumulator) and on any geometry (from
    per-sample M). Dataset: scalar ``value``, ``error``.
    """
    if isinstance(source, Measurement):
        try:
            name = source.find(FourierTwoPoint)
            meas, cls = source, FourierTwoPoint
        except KeyError:
            name, meas, cls = source.find(ScalarObservables), source, ScalarObservables
    else:
        lat = measure_kw.get("lattice") or getattr(source, "lattice", None)
        if lat is None and not hasattr(source, "shape"):
            from .measure import open_source  # noqa: PLC0415

            source = open_source(source)
            lat = source.lattice
        cls = (FourierTwoPoint if lat is not None and getattr(lat, "boundary", "") == "periodic"
               and getattr(lat, "kind", "lattice") == "lattice" else ScalarObservables)
        meas, name = _measurement(source, cls, blocks=blocks, executor=executor,
                                  measure_kw=dict(measure_kw), what="susceptibility")
    if cls is FourierTwoPoint:
        d = len(_lattice_of(meas).shape)
        est = meas.estimate(lambda a: _chi_from(a[name].result(), d), method=error)
    else:
        est = meas.estimate(lambda a: a[name].result()["chi_2"], method=error)
    ds = xr.Dataset({"value": ((), float(est.value)), "error": ((), float(est.error))})
    return _finish(ds, meas, est, quantity="chi = V(<M^2> - <M>^2) = Gt_c(0)")


def correlation_length(source, *, axis=None, blocks=20, error: str = "jackknife",
                       executor: str = "serial", **measure_kw) -> xr.Dataset:
    """Second-moment correlation length ``xi_2 = sqrt(chi/F - 1) / (2 sin(pi/L))``.

    ``F = Gt_c(2 pi/L e_mu)``, averaged over the axes mu with ``L_mu = L`` (``axis=None``:
    all axes as long as axis 0; an int: that axis only). For the free field xi_2 = 1/m
    in the continuum (lattice corrections at finite L).
    """
    meas, name = _measurement(source, FourierTwoPoint, blocks=blocks, executor=executor,
                              measure_kw=dict(measure_kw), what="correlation_length")
    lat = _lattice_of(meas)
    d = len(lat.shape)
    if axis is None:
        axes = [mu for mu in range(d) if lat.shape[mu] == lat.shape[0]]
    else:
        if not isinstance(axis, (int, np.integer)) or not 0 <= axis < d:
            raise ValueError(f"axis must be None or an int in 0..{d - 1}, got {axis!r}")
        axes = [int(axis)]
    L = lat.shape[axes[0]]

    def xi(a):
        Gt = a[name].result()["Gt"]
        Gt = Gt.reshape((-1,) + Gt.shape[-d:]).sum(axis=0)
        chi = Gt[(0,) * d]
        F = np.mean([Gt[tuple(1 if i == mu else 0 for i in range(d))] for mu in axes])
        with np.errstate(invalid="ignore"):
            return float(np.sqrt(chi / F - 1.0) / (2.0 * math.sin(math.pi / L)))

    est = meas.estimate(xi, method=error)
    ds = xr.Dataset({"value": ((), float(est.value)), "error": ((), float(est.error))})
    return _finish(ds, meas, est, axes=str(axes), quantity="second-moment correlation length",
                   definition="sqrt(chi/F - 1)/(2 sin(pi/L)), F = Gt(2 pi/L e_mu)")


_SCALARS = ("M", "abs_M", "M2", "M4", "chi_2", "chi_abs", "E", "U4", "phi2")


def scalar_observables(source, *, blocks=20, error: str = "jackknife", executor: str = "serial",
                       **measure_kw) -> xr.Dataset:
    """Standard per-sample observables (M, |M|, M^2, M^4, chi, E, U4, phi^2) with errors.

    Dim ``observable`` = M (first component), abs_M = <|M|>, M2, M4, chi_2, chi_abs, E (Ising
    energy, connected), U4 (Binder), phi2. See :class:`~.accumulators.ScalarObservables`.
    """
    meas, name = _measurement(source, ScalarObservables, blocks=blocks, executor=executor,
                              measure_kw=dict(measure_kw), what="scalar_observables")

    def f(a):
        r = a[name].result()
        return np.array([float(np.ravel(r[k])[0]) for k in _SCALARS])

    est = meas.estimate(f, method=error)
    ds = xr.Dataset({"value": ("observable", est.value), "error": ("observable", est.error)},
                    coords={"observable": list(_SCALARS)})
    return _finish(ds, meas, est, quantity="per-sample observables",
                   definition="M=(1/V)sum phi; chi_2=V(<M^2>-<M>^2); chi_abs=V(<M^2>-<|M|>^2); "
                              "E=<(1/dV) sum_x,mu phi_x phi_x+mu> - <M>^2; "
                              "U4=1-<M^4>/(3<M^2>^2)")
