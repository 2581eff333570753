"""Is the network a QFT? The checkable Osterwalder-Schrader properties, one verdict each."""
from __future__ import annotations

from .base import Measurement, Option, register


def qft(ctx) -> dict:
    """Euclidean invariance (translations, lattice rotations), reflection positivity about
    time planes (axis 0) and clustering, each with a consistent / inconsistent /
    inconclusive verdict (nnft.observables.qft_checks)."""
    from ..observables import qft_checks

    res = qft_checks(ctx.store, ctx.lattice, n_blocks=int(ctx.opt("n_blocks", 40)),
                     alpha=float(ctx.opt("alpha", 0.01)), seed=ctx.seed)
    out = {"quantity": "Osterwalder-Schrader checks (Euclidean invariance, reflection "
                       "positivity, clustering)"}
    summary = []
    for name in ("translation", "hypercubic", "reflection_positivity", "clustering"):
        ds = res.get(name)
        if ds is None:
            continue
        v, p = ds.attrs.get("qft_verdict"), ds.attrs.get("p_value")
        out[f"{name}: verdict"] = v
        out[f"{name}: p_value"] = None if p is None else float(p)
        summary.append((f"{name.replace('_', ' ')}: verdict",
                        v if p is None else f"{v} (p = {float(p):.3g})", None))
    overall = res["summary"].attrs.get("verdict") if "summary" in res else None
    out["verdict"] = overall
    summary.append(("is it a QFT (all checks consistent)?", overall, None))
    out["summary"] = summary
    out["datasets"] = {k: v for k, v in res.items()}
    return out


register(Measurement(
    name="qft",
    summary="Osterwalder-Schrader checks side by side: translations and lattice rotations, "
            "reflection positivity about time planes (axis 0), clustering; one verdict each",
    run=qft, requires=("periodic", "stored"),
    options=(Option("n_blocks", int, 40, "jackknife blocks (even)", minimum=2),
             Option("alpha", float, 0.01, "level of each check", minimum=0))))
