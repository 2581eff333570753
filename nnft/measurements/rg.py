"""Momentum-shell / Fisher-shell coarse-graining of cos-net ensembles (arXiv:2405.17538)."""
from __future__ import annotations

import math

import numpy as np

from ..lattice import UserError
from ._common import _arch, _is_lattice
from .base import Measurement, Option, register


def rg(ctx) -> dict:
    """Momentum-shell / Fisher-shell coarse-graining of a cos-net store (arXiv:2405.17538).

    The store's chunks are regenerated without the neurons outside the cutoff
    (``observables.rg.rg_flow``); the coarse-grained propagator is compared momentum by momentum
    with the exact flow ``Gt(p) theta(Lambda - |p|)``; the local quartic fitted at each cutoff is
    reported with the same fit applied to the exact finite-N formula.
    """
    from ..observables.rg import fisher_to_momentum, rg_flow

    arch = _arch(ctx)
    if arch not in ("LatticeCosNet", "ContinuumCosNet", "GaussianCosNet"):
        raise UserError(f"rg: needs a cos-net ensemble, got {arch}")
    if not (_is_lattice(ctx) and getattr(ctx.lattice, "periodic", False)):
        raise UserError("rg: needs a periodic lattice")
    mode = ctx.opt("rg_mode", "momentum")
    metric = ctx.opt("rg_metric", "pmag")
    n_blocks = int(ctx.opt("n_blocks", 32))
    m2 = float(getattr(ctx.spec, "m2", 0.0) or 0.0)
    cutoffs = ctx.opt("rg_cutoffs", None)
    if cutoffs is None:
        pmax = math.pi * math.sqrt(ctx.lattice.dim)
        cutoffs = [pmax / 4, pmax / 2, 3 * pmax / 4]
        if mode == "fisher":
            cutoffs = [1 / (c * c + m2) for c in cutoffs]
    quartic = arch == "LatticeCosNet" and ctx.spec.components is None
    ds = rg_flow(ctx.store, cutoffs, mode=mode, metric=metric, n_blocks=n_blocks,
                 quartic=quartic, seed=ctx.seed)
    cut = np.asarray(ds["cutoff"])
    out = {"quantity": f"{mode}-shell coarse-graining against Gt(p) theta(Lambda - |p|)",
           "mode": mode, "metric": metric, "cutoffs": cut.tolist(),
           "kept_fraction": np.asarray(ds["kept_fraction"]).tolist(),
           "verdict": ds.attrs.get("verdict")}
    if mode == "fisher":
        out["momentum_cutoffs"] = [fisher_to_momentum(c, m2) for c in cut]
    summary = []
    if "max_abs_z" in ds:
        out["max_abs_z"] = np.asarray(ds["max_abs_z"]).tolist()
        out["passed"] = [int(p) for p in np.asarray(ds["passed"])]
        out["overall_max_abs_z"] = float(np.max(ds["max_abs_z"]))
    for i, c in enumerate(cut):
        lab = f"I_c={c:.3g}" if mode == "fisher" else f"Lambda={c:.3g}"
        if "max_abs_z" in ds:
            summary.append((f"{lab}: Gt(p) vs exact shell flow, max |z|",
                            float(ds["max_abs_z"][i]), None))
        summary.append((f"{lab}: kept fraction of neurons", float(ds["kept_fraction"][i]), None))
        if "lam" in ds:
            summary.append((f"{lab}: lambda (fit)", float(ds["lam"][i]), float(ds["lam_error"][i])))
            summary.append((f"{lab}: lambda (exact finite-N G4c)", float(ds["lam_expected"][i]), None))
    if "lam" in ds:
        out["lam"] = np.asarray(ds["lam"]).tolist()
        out["lam_error"] = np.asarray(ds["lam_error"]).tolist()
        out["lam_expected"] = np.asarray(ds["lam_expected"]).tolist()
    if ds.attrs.get("verdict"):
        summary.append(("RG flow verdict", ds.attrs["verdict"], None))
    out["dataset"] = ds
    out["summary"] = summary
    return out



register(Measurement(
    name="rg",
    summary="momentum- or Fisher-shell coarse-graining of a cos-net: propagator flow against "
            "the exact shell flow, quartic coupling at each cutoff",
    run=rg, requires=("spec", "periodic", "stored"),
    options=(Option("n_blocks", int, 32, "jackknife blocks", minimum=2),
             Option("rg_cutoffs", list, None, "cutoffs (momentum |p|, or information I_c in "
                    "Fisher mode); default pi sqrt(d) x [1/4, 1/2, 3/4]", minimum=0),
             Option("rg_mode", str, "momentum", "which shell is removed",
                    choices=("momentum", "fisher")),
             Option("rg_metric", str, "pmag", "momentum magnitude |p| or lattice |p-hat|",
                    choices=("pmag", "phat")))))
