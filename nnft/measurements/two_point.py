"""Two-point function against the GP kernel / exact lattice propagator (copy this file to
add a measurement: a function of a Context, then one ``register`` call)."""
from __future__ import annotations

import math

import numpy as np

from ._common import _arch, _is_lattice, _npoint_tuples, _pairs, _tuples, _z_summary  # noqa: F401
from .base import Measurement, Option, register

def two_point(ctx: Context) -> dict:
    """Measured two-point function against the GP kernel / exact propagator (chi^2/dof, max |z|)."""
    from ..observables import moments

    pairs = _pairs(ctx)
    ds = moments(ctx.store, pairs)
    out = {"quantity": "two-point function"}
    K = ctx.kernel
    if K is not None:
        expected = K[pairs[:, 0], pairs[:, 1]]
        out.update(_z_summary(ds["value"].values, ds["error"].values, expected))
        out["data"] = {"measured": ds["value"].values, "error": ds["error"].values,
                       "expected": expected, "pairs": pairs}
    return out


propagator = two_point



register(Measurement(
    name="propagator",
    summary="two-point function G(0, r) (all pairs on point sets) against the GP kernel / exact "
            "lattice propagator: chi^2/dof and max |z|",
    run=two_point, tuples=_pairs))
register(Measurement(
    name="two_point", summary="the same as 'propagator' (an alias kept for old configs)",
    run=two_point, tuples=_pairs))
