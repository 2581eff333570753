"""Two-point function against the GP kernel / exact lattice propagator.

The smallest measurement, the one to copy when adding one: a function of a
:class:`~nnft.measurements.base.Context` returning a dict, and one ``register`` call that
declares its name, summary, options and what it needs from the shared pass.
"""
from __future__ import annotations

from ._common import _pairs, _z_summary
from .base import Measurement, Option, register


def _momentum_testable(ctx) -> bool:
    """A translation-invariant scalar ensemble on a periodic lattice with a known mass."""
    return (getattr(ctx.lattice, "periodic", False) and getattr(ctx.spec, "m2", None) is not None
            and getattr(ctx.spec, "components", None) is None)


def _accumulators(ctx) -> dict:
    from ..observables import FourierModeMoments

    if not _momentum_testable(ctx):
        return {}
    return {"two_point/fourier_modes": FourierModeMoments(len(ctx.lattice.shape))}


def two_point(ctx) -> dict:
    """Measured two-point function against the GP kernel / exact propagator.

    Descriptive: ``chi2_dof`` (mean z^2) and ``max_abs_z`` over the pairs (0, r) (correlated
    entries: not a test). The test, for translation-invariant ensembles with a mass on
    periodic lattices: the momentum-space chi^2 on independent modes
    (:func:`nnft.observables.momentum_space_test`), with its p-value and three-way verdict.
    """
    from ..observables import moments, momentum_space_test

    pairs = _pairs(ctx)
    ds = moments(ctx.store, pairs)
    out = {"quantity": "two-point function"}
    K = ctx.kernel
    if K is not None:
        expected = K[pairs[:, 0], pairs[:, 1]]
        out.update(_z_summary(ds["value"].values, ds["error"].values, expected))
        out["data"] = {"measured": ds["value"].values, "error": ds["error"].values,
                       "expected": expected, "pairs": pairs}
    meas = ctx.store
    if _momentum_testable(ctx) and "two_point/fourier_modes" in getattr(meas, "total", {}):
        mt = momentum_space_test(meas, m2=float(ctx.spec.m2),
                                 mass_tolerance=ctx.opt("mass_tolerance"))
        a = mt.attrs
        out["test"] = "momentum space, independent modes (+-p pairs), exact lattice propagator"
        for key in ("outcome", "p_value", "statistic", "dof", "detectable_effect",
                    "samples_needed", "message"):
            if a.get(key) is not None:
                out[f"test_{key}"] = a[key]
        out["verdict"] = a.get("outcome")
        out["summary"] = [("G(p) vs exact: chi^2 / dof", f"{a['statistic']:.1f} / {a['dof']}",
                           None),
                          ("G(p) vs exact: p-value (verdict of this test alone)",
                           f"{a['p_value']:.3g} ({a.get('outcome')})", None)]
        out["data_momentum"] = {"phat2": mt["phat2"].values, "value": mt["value"].values,
                                "error": mt["error"].values, "expected": mt["expected"].values}
    return out


propagator = two_point
_OPTIONS = (Option("mass_tolerance", float, None, "relative shift of m^2 that must be "
                   "detectable for a 'consistent' verdict (else 'inconclusive' with the samples "
                   "needed)", minimum=0),)

register(Measurement(
    name="propagator",
    summary="two-point function against the GP kernel / exact lattice propagator; on periodic "
            "lattices a calibrated momentum-space test on independent modes",
    run=two_point, tuples=_pairs, accumulators=_accumulators, options=_OPTIONS))
register(Measurement(
    name="two_point", summary="the same as 'propagator' (an alias kept for old configs)",
    run=two_point, tuples=_pairs, accumulators=lambda ctx: {}, options=_OPTIONS))
