"""Translation, hypercubic and internal SO(D) symmetry checks."""
from __future__ import annotations

from .base import Measurement, register


def _field_shape(ctx):
    D = getattr(ctx.spec, "components", None)
    shape = (tuple(ctx.lattice.shape) if getattr(ctx.lattice, "kind", "") == "lattice"
             else (ctx.lattice.volume,))
    return ((D,) if D else ()) + shape


def _plans(ctx) -> dict:
    """The checks that apply: translations and lattice rotations on lattices, internal SO(D)
    for vector outputs (the plans of check_translation, check_hypercubic,
    check_internal_rotation)."""
    from ..observables import hypercubic_plan, internal_rotation_plan, translation_plan

    plans = {}
    D = getattr(ctx.spec, "components", None)
    if getattr(ctx.lattice, "kind", "") == "lattice":
        plans["translation"] = translation_plan(ctx.lattice, components=D, seed=ctx.seed)
        if len(ctx.lattice.symmetry_ops()) > 1:
            plans["hypercubic"] = hypercubic_plan(ctx.lattice, components=D, seed=ctx.seed)
    if D:
        plans["internal SO(D)"] = internal_rotation_plan(_field_shape(ctx), seed=ctx.seed)
    return plans


def symmetry(ctx) -> dict:
    """Translation and hypercubic checks (and internal SO(D) for vector outputs), from the
    shared pass when run by `nnft run` (reads ``ctx.store`` when called directly)."""
    from ..observables import symmetry as sym

    out = {"quantity": "symmetry checks"}
    results = dict(ctx.plan_results)
    if not results:
        if getattr(ctx.lattice, "kind", "") == "lattice":
            results["translation"] = sym.check_translation(ctx.store, ctx.lattice, seed=ctx.seed)
            if len(ctx.lattice.symmetry_ops()) > 1:
                results["hypercubic"] = sym.check_hypercubic(ctx.store, ctx.lattice,
                                                             seed=ctx.seed)
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
    run=symmetry, plans=_plans))
