"""Translation, hypercubic and internal SO(D) symmetry checks."""
from __future__ import annotations

import math

import numpy as np

from ._common import _arch, _is_lattice, _npoint_tuples, _pairs, _tuples, _z_summary  # noqa: F401
from .base import Measurement, Option, register

def symmetry(ctx: Context) -> dict:
    """Translation and hypercubic checks (and internal SO(D) for vector outputs)."""
    from ..observables import symmetry as sym

    out = {"quantity": "symmetry checks"}
    results = {}
    if getattr(ctx.lattice, "kind", "") == "lattice":
        results["translation"] = sym.check_translation(ctx.store, ctx.lattice, seed=ctx.seed)
        if len(ctx.lattice.symmetry_ops()) > 1:
            results["hypercubic"] = sym.check_hypercubic(ctx.store, ctx.lattice, seed=ctx.seed)
    if getattr(ctx.spec, "components", None):
        results["internal SO(D)"] = sym.check_internal_rotation(ctx.store, seed=ctx.seed)
    for name, ds in results.items():
        out[f"{name}: verdict"] = ds.attrs.get("verdict")
        out[f"{name}: max |z|"] = ds.attrs.get("max_abs_z")
    out["datasets"] = results
    return out



register(Measurement(
    name="symmetry",
    summary="translations and lattice rotations/reflections (and internal SO(D) for vector "
            "outputs), Holm-corrected",
    run=symmetry, requires=("stored",)))
