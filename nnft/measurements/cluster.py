"""Cluster decomposition of the connected 4-point function."""
from __future__ import annotations

from .base import Measurement, Option, register


def _options(ctx) -> dict:
    """cluster_profile / cluster_plan options: the cos-net's exact plateau where known."""
    from ..ensembles import LatticeCosNet

    kw = {"order": 4, "average": bool(ctx.opt("cluster_average", False))}
    if isinstance(ctx.spec, LatticeCosNet):
        from ..lattice import free_propagator
        from ..observables.cluster import cluster_tuples, cosnet_g4c

        tuples, groups, seps = cluster_tuples(ctx.lattice, order=4, average=False)
        G = free_propagator(ctx.lattice, ctx.spec.m2)
        k = 3.0 if ctx.spec.amplitude == "gaussian" else 1.0
        kw["expected"] = cosnet_g4c(G, tuples, ctx.spec.width, kurtosis=k)
    return kw


def _plans(ctx) -> dict:
    from ..observables import cluster_plan

    return {"profile": cluster_plan(ctx.lattice, **_options(ctx))}


def cluster(ctx) -> dict:
    """Cluster-decomposition profile of the connected 4-point function with its decay fit
    (from the shared pass when run by `nnft run`; reads ``ctx.store`` when called directly)."""
    from ..observables.cluster import cluster_profile

    ds = ctx.plan_results.get("profile")
    if ds is None:
        ds = cluster_profile(ctx.store, ctx.lattice, **_options(ctx))
    a = ds.attrs
    out = {"quantity": "cluster decomposition (connected 4-point, two 2-point clusters)",
           "verdict": a.get("verdict"), "plateau": a.get("plateau"),
           "plateau_error": a.get("plateau_error"), "plateau_z": a.get("plateau_z"),
           "rate": a.get("rate"), "rate_error": a.get("rate_error")}
    if "plateau_expected" in a:
        out["plateau_expected"] = a["plateau_expected"]
        out["plateau_expected_z"] = a.get("plateau_expected_z")
    out["data"] = {"R": ds["R"].values, "value": ds["value"].values, "error": ds["error"].values}
    if "expected" in ds:
        out["data"]["expected"] = ds["expected"].values
    out["dataset"] = ds
    return out


register(Measurement(
    name="cluster",
    summary="cluster-decomposition profile of the connected 4-point function (two 2-point "
            "clusters pulled apart) with its plateau and decay fit",
    run=cluster, requires=("lattice",), plans=_plans,
    options=(Option("cluster_average", bool, False,
                    "average over all translates (about 3x smaller errors, 20x the time)"),)))
