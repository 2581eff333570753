"""Cluster decomposition of the connected 4-point function."""
from __future__ import annotations

import math

import numpy as np

from ._common import _arch, _is_lattice, _npoint_tuples, _pairs, _tuples, _z_summary  # noqa: F401
from .base import Measurement, Option, register

def cluster(ctx: Context) -> dict:
    """Cluster-decomposition profile of the connected 4-point function with its decay fit."""
    from ..observables.cluster import cluster_profile

    kw = {}
    from ..ensembles import LatticeCosNet

    if isinstance(ctx.spec, LatticeCosNet):
        from ..lattice import free_propagator
        from ..observables.cluster import cluster_tuples, cosnet_g4c

        tuples, groups, seps = cluster_tuples(ctx.lattice, order=4, average=False)
        G = free_propagator(ctx.lattice, ctx.spec.m2)
        k = 3.0 if ctx.spec.amplitude == "gaussian" else 1.0
        kw["expected"] = cosnet_g4c(G, tuples, ctx.spec.width, kurtosis=k)
    # averaging over all V translates cuts the error ~3x on a 32^2 lattice but costs ~20x time
    average = bool(ctx.options.get("cluster_average", False))
    ds = cluster_profile(ctx.store, ctx.lattice, order=4, average=average, **kw)
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
    run=cluster, requires=("lattice", "stored"),
    options=(Option("cluster_average", bool, False,
                    "average over all translates (about 3x smaller errors, 20x the time)"),)))
