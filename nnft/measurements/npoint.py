"""Connected 4- and 6-point functions, the deviation m_n from the GP and its background."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._common import _npoint_tuples, _z_summary
from .base import Measurement, Option, register


def _connected_expected(ctx, tuples):
    """Closed-form finite-width connected correlator at ``tuples`` (cos-net 4-point, single
    layer nets through single-neuron moments), or None."""
    from ..ensembles import ErfNet, GaussNet, LatticeCosNet, ReLUNet, TanhNet
    from ..ensembles.kernels import neuron_moment
    from ..lattice import free_propagator
    from ..observables import cumulants

    spec = ctx.spec
    order = tuples.shape[1]
    if isinstance(spec, LatticeCosNet) and order == 4 and spec.components is None:
        G = free_propagator(ctx.lattice, spec.m2)
        k = 3.0 if spec.amplitude == "gaussian" else 1.0
        return cumulants.cosnet_connected_4pt(G, tuples, spec.width, kurtosis=k)
    single = (GaussNet, ErfNet, ReLUNet, TanhNet)
    if isinstance(spec, single) and spec.components is None and not spec.has_means:
        P = ctx.lattice.positions()
        cache = {}

        def E(*idx):
            key = tuple(sorted(idx))
            if key not in cache:
                cache[key] = neuron_moment(spec, P[list(key)])
            return cache[key]

        return cumulants.single_neuron_connected(E, E, tuples, spec.width, sigma=spec.sigma_w,
                                                 E6=E if order == 6 else None)
    return None


def _exact_expected(ctx, tuples):
    """(values, method) of the exact parameter-space theory (nnft.ensembles.exact_connected),
    else the closed forms above, else (None, None)."""
    from ..ensembles import exact_connected

    if ctx.spec is not None:
        try:
            vals, method = exact_connected(ctx.spec, ctx.lattice, tuples)
        except (ValueError, TypeError):
            vals, method = None, None
        if vals is not None:
            return np.asarray(vals, dtype=float), f"exact parameter-space theory ({method})"
    vals = _connected_expected(ctx, tuples)
    return (vals, "closed form") if vals is not None else (None, None)


def _accumulators(order):
    def accs(ctx):
        from ..observables import tail_sample

        return {f"{order}_point/tail": tail_sample(_npoint_tuples(ctx, order))}

    return accs


def npoint(ctx, order: int) -> dict:
    """Connected n-point function, deviation m_n from the GP and its background.

    Descriptive: ``formula_*`` (mean z^2 and max |z| against the closed form, uncorrelated).
    The test: a correlated chi^2 of the connected correlators at all tuples against the exact
    value (jackknife covariance; :func:`nnft.observables.correlator_test`), with heavy-tail and
    error cross-checks, p-value and three-way verdict; the method of the expected value is
    named (``expected_method``).
    """
    from ..observables import (HeavyTailWarning, connected_correlator, correlator_test,
                               deviation_measure, gp_npoint)

    tuples = _npoint_tuples(ctx, order)
    ds = connected_correlator(ctx.store, tuples, order=order)
    val, err = ds["value"].values, ds["error"].values
    out = {"quantity": f"connected {order}-point function",
           "mean_abs_connected": float(np.mean(np.abs(val))),
           "mean_abs_connected_error": float(math.sqrt(np.sum(err**2)) / len(err))}
    expected = _connected_expected(ctx, tuples)
    if expected is not None:
        out.update({f"formula_{k}": v for k, v in _z_summary(val, err, expected).items()})
    exact, method = _exact_expected(ctx, tuples)
    key = f"{order}_point/tail"
    if exact is not None and key in getattr(ctx.store, "total", {}):
        with warnings.catch_warnings():  # reported in the results and the report instead
            warnings.simplefilter("ignore", HeavyTailWarning)
            ct = correlator_test(ctx.store, tuples, exact, tail_key=key)
        a = ct.attrs
        out["expected_method"] = method
        for k in ("outcome", "p_value", "statistic", "dof", "detectable_effect",
                  "samples_needed", "heavy_tail", "message"):
            if a.get(k) is not None:
                out[f"test_{k}"] = a[k]
        out["verdict"] = a.get("outcome")
        out["summary"] = [(f"G{order}c vs {method}: p-value (verdict of this test alone)",
                           f"{float(a.get('p_value', float('nan'))):.3g} ({a.get('outcome')})",
                           None)]
        if a.get("heavy_tail"):
            out["summary"].append((f"G{order}c: heavy tails (details in results.json)",
                                   "error bars not trusted", None))
        expected = exact
    K = ctx.kernel
    if K is not None:
        n_sub = int(ctx.options.get("n_sub", 10))
        dm = deviation_measure(ctx.store, tuples, K, n_sub=n_sub)
        out["m_n"] = float(dm["value"].values)
        out["m_n_error"] = float(dm["error"].values)
        if "background" in dm:
            out["background"] = float(dm["background"].values)
            out["background_error"] = float(dm["background_error"].values) if "background_error" in dm else float("nan")
        # m_n is a ratio |G_n - G_n^GP| / |G_n^GP|: where the GP value is not resolved from
        # zero by the data the ratio explodes (m_6 of 1e14 was seen), so say so
        gp = gp_npoint(np.asarray(K), tuples)
        tiny = np.abs(gp) < 3 * np.asarray(err)
        if np.any(tiny):
            out["m_n_warning"] = (f"{int(tiny.sum())} of {len(gp)} tuples have |G{order}^GP| "
                                  f"below 3 standard errors of the estimate: m_{order} (a ratio) "
                                  f"is dominated by them and unreliable; compare the connected "
                                  f"correlators (absolute) instead")
            out.setdefault("summary", []).append((f"m_{order}: near-zero GP denominators",
                                                  out["m_n_warning"], None))
    out["data"] = {"tuples": tuples, "value": val, "error": err,
                   "expected": expected if expected is not None else np.full_like(val, np.nan)}
    return out


def four_point(ctx):
    return npoint(ctx, 4)


def six_point(ctx):
    return npoint(ctx, 6)


_BOX = Option("box", int, 3, "lattice tuples are drawn from the sites of a box of this side at "
              "the origin", minimum=1)
_NSUB = Option("n_sub", int, 10, "independent sub-ensembles for m_n and its background",
               minimum=2)
register(Measurement(
    name="four_point",
    summary="connected 4-point function at random tuples against the finite-width formula; "
            "m_4 and its noise background",
    run=four_point, tuples=lambda ctx: _npoint_tuples(ctx, 4), accumulators=_accumulators(4),
    options=(_BOX, Option("n_tuples_4", int, 12, "number of random 4-point tuples", minimum=1),
             _NSUB)))
register(Measurement(
    name="six_point",
    summary="connected 6-point function at random tuples; m_6 and its noise background",
    run=six_point, tuples=lambda ctx: _npoint_tuples(ctx, 6), accumulators=_accumulators(6),
    options=(_BOX, Option("n_tuples_6", int, 12, "number of random 6-point tuples", minimum=1),
             _NSUB)))
