"""Observables II pieces of ``nnft measure --what symmetry,cluster,couplings,rg``.

Each ``run_*(store, out, **options)`` measures one family on a FieldStore, writes one Zarr
Dataset per result and PNG plots under the directory ``out``, and returns a dict:
``{"datasets": {name: Dataset}, "summary": [(name, verdict_or_value, number)], "plots": [paths]}``
for the CLI to print. Options have defaults suitable for a first look; every function raises a
ValueError naming the problem when the store cannot support the measurement.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["run_symmetry", "run_cluster", "run_couplings", "run_rg", "RUNNERS"]


def _clean_attrs(attrs):
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = int(v)
        elif isinstance(v, (np.integer,)):
            out[k] = int(v)
        elif isinstance(v, (np.floating, float)):
            out[k] = float(v) if math.isfinite(float(v)) else str(float(v))
        elif isinstance(v, (int, str)):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=str)
    return out


def _save(ds, out, name):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = ds.copy()
    d.attrs = _clean_attrs(ds.attrs)
    path = out / f"{name}.zarr"
    d.to_zarr(path, mode="w", consolidated=False)
    return path


def _spec(store):
    return dict(store.spec or {})


def _m2_of(store, m2):
    if m2 is not None:
        return float(m2)
    sp = _spec(store)
    return float(sp["m2"]) if "m2" in sp else None


def run_symmetry(store, out, *, n_blocks=32, alpha=0.01, plots=True, seed=0):
    """Translation, hypercubic (lattices) and internal SO(D) (vector fields) checks."""
    from nnft.observables.symmetry import (check_hypercubic, check_internal_rotation,
                                           check_translation, hypercubic_ops,
                                           plot_symmetry_table)

    Path(out).mkdir(parents=True, exist_ok=True)
    lat = store.lattice
    res = {}
    if getattr(lat, "kind", "lattice") == "lattice":
        res["translation"] = check_translation(store, lat, n_blocks=n_blocks, alpha=alpha,
                                               seed=seed)
        if len(hypercubic_ops(lat)) > 1:
            res["hypercubic"] = check_hypercubic(store, lat, n_blocks=n_blocks, alpha=alpha,
                                                 seed=seed)
    if store.components is not None and store.components >= 2:
        res["internal_SO(D)"] = check_internal_rotation(store, n_blocks=n_blocks, alpha=alpha,
                                                        seed=seed)
    if not res:
        raise ValueError("store: no symmetry check applies (a PointSet scalar field has no "
                         "lattice translations; give shifts to check_translation directly)")
    figs = []
    for name, ds in res.items():
        _save(ds, out, f"symmetry_{name.replace('(', '').replace(')', '')}")
    if plots:
        figs.append(plot_symmetry_table(res, Path(out) / "symmetry_table.png"))
    summary = [(f"symmetry {k}", v.attrs["verdict"], v.attrs["max_abs_z"]) for k, v in res.items()]
    return {"datasets": res, "summary": summary, "plots": figs}


def run_cluster(store, out, *, n_blocks=32, axis=0, m2=None, plots=True):
    """Connected 4-point cluster profile (with the cos-net plateau formula for LatticeCosNet
    stores) and, for exact free fields, the truncated profile with its decay rate vs 2 m_E."""
    from nnft.lattice import effective_mass_exact, free_propagator
    from nnft.observables.cluster import (amplitude_moments, cluster_profile, cluster_tuples,
                                          cosnet_g4c, plot_cluster_profile)

    lat = store.lattice
    if getattr(lat, "kind", "") != "lattice":
        raise ValueError("store: cluster profiles need a Lattice (along an axis)")
    if store.components is not None:
        raise ValueError("store: cluster profiles are implemented for scalar fields")
    sp = _spec(store)
    res, figs, summary = {}, [], []
    expected = None
    if sp.get("arch") == "LatticeCosNet":
        t, _, _ = cluster_tuples(lat, axis=axis, average=False)
        k4 = amplitude_moments(sp.get("amplitude", "gaussian"))[0]
        expected = cosnet_g4c(free_propagator(lat, sp["m2"]), t, int(sp["width"]), kurtosis=k4)
    res["connected4"] = cluster_profile(store, lat, axis=axis, n_blocks=n_blocks,
                                        expected=expected)
    mm = _m2_of(store, m2)
    if store.source == "exact_free" and mm:
        L = lat.shape[axis]
        res["truncated4"] = cluster_profile(
            store, lat, axis=axis, stat="truncated", n_blocks=n_blocks,
            separations=np.arange(1, max(L // 2, 3) + 1),
            expected_rate=2 * effective_mass_exact(mm))
    for name, ds in res.items():
        _save(ds, out, f"cluster_{name}")
        summary.append((f"cluster {name}", ds.attrs["verdict"], ds.attrs["plateau_z"]))
        if "rate_z" in ds.attrs:
            summary.append((f"cluster {name} rate", ds.attrs["rate"], ds.attrs["rate_error"]))
        if plots:
            figs.append(plot_cluster_profile(ds, Path(out) / f"cluster_{name}.png"))
    return {"datasets": res, "summary": summary, "plots": figs}


def run_couplings(store, out, *, n_blocks=32, m2=None, cutoffs=None, plots=True):
    """Tree-level quartic coupling (lattice sum; for PointSet Gauss-net stores the running
    lambda(Lambda) with the continuum vertex, K - sigma_b^2 at the vertex) and, on periodic
    scalar lattices, the amputated momentum-space vertex with local/non-local fits."""
    from nnft.lattice import free_propagator, free_propagator_momentum
    from nnft.observables.couplings import (amputated_vertex, gauss_kernel_fn,
                                            plot_coupling_flow, quartic_coupling,
                                            running_quartic, vertex_models)
    from nnft.observables.symmetry import correlator_replicas

    if store.components is not None:
        raise ValueError("store: coupling fits are implemented for scalar fields")
    lat = store.lattice
    sp = _spec(store)
    mm = _m2_of(store, m2)
    ref = "unweighted" if getattr(store, "weighted", False) else None
    res, figs, summary = {}, [], []
    if getattr(lat, "kind", "") == "points":
        if sp.get("arch") != "GaussNet":
            raise ValueError("store: continuum couplings need a GaussNet spec on a PointSet")
        pts = np.asarray(lat.positions())
        V = pts.shape[0]
        rng = np.random.default_rng(0)
        t4 = np.unique(np.sort(rng.integers(0, V, size=(24, 4)), axis=1), axis=0)
        r = correlator_replicas(store, t4, n_blocks=n_blocks)
        K = gauss_kernel_fn(sp.get("sigma_w", 1.0), sp.get("sigma_b", 1.0), sp.get("d_in", 1))
        if cutoffs is None:
            cutoffs = np.linspace(0.5, 3.0, 6) * max(1.0, float(np.abs(pts).max()))
        ds = running_quartic(r.value, r.error, pts, t4, K, cutoffs, replicas=r.replicas,
                             offset=sp.get("sigma_b", 1.0) ** 2)
        res["running_quartic"] = ds
        for c in np.asarray(ds["cutoff"]):
            summary.append((f"lambda(Lambda={c:.3g})", float(ds["lam"].sel(cutoff=c)),
                            float(ds["lam_error"].sel(cutoff=c))))
        if plots:
            figs.append(plot_coupling_flow(ds, Path(out) / "coupling_flow.png"))
    else:
        if sp.get("arch") in ("ExactFreeField", "LatticeCosNet") or mm is not None:
            if mm is None:
                raise ValueError("m2: needed for the free propagator of the vertex legs")
            kernel = free_propagator(lat, mm)
        else:
            from nnft.ensembles import gp_kernel, spec_from_dict
            kernel = np.asarray(gp_kernel(spec_from_dict(sp), lat))
        ds = quartic_coupling(store, lat, kernel, n_blocks=n_blocks, reference=ref)
        res["quartic"] = ds
        summary.append(("lambda", ds.attrs["lam"], ds.attrs["lam_error"]))
        if lat.boundary == "periodic" and mm is not None:
            av = amputated_vertex(store, lat, Gt=free_propagator_momentum(lat, mm),
                                  n_blocks=n_blocks, reference=ref)
            mod = vertex_models(av)
            av.attrs.update({f"local_{k}": v for k, v in mod["local"].items()})
            av.attrs["p_linear_needed"] = mod["p_linear_needed"]
            res["amputated_vertex"] = av
            summary.append(("lambda (p-space, local fit)", mod["local"]["lam"],
                            mod["local"]["lam_error"]))
    for name, ds in res.items():
        _save(ds, out, f"couplings_{name}")
    return {"datasets": res, "summary": summary, "plots": figs}


def run_rg(store, out, *, cutoffs=None, mode="momentum", n_blocks=32, plots=True):
    """Momentum-shell (or Fisher-shell) coarse-graining of a cos-net store; flow of Gt(p) and
    of the fitted quartic coupling, against the exact shell flow for LatticeCosNet."""
    from nnft.observables.couplings import plot_coupling_flow
    from nnft.observables.rg import plot_rg_flow, rg_flow

    sp = _spec(store)
    if sp.get("arch") not in ("LatticeCosNet", "ContinuumCosNet", "GaussianCosNet"):
        raise ValueError(f"store: RG coarse-graining needs a cos-net store, got {sp.get('arch')}")
    if cutoffs is None:
        pmax = math.pi * math.sqrt(store.lattice.dim)
        cutoffs = [pmax / 4, pmax / 2, 3 * pmax / 4]
        if mode == "fisher":
            cutoffs = [1 / (c * c + sp["m2"]) for c in cutoffs]
    quartic = sp.get("arch") == "LatticeCosNet" and store.components is None
    ds = rg_flow(store, cutoffs, mode=mode, n_blocks=n_blocks, quartic=quartic)
    _save(ds, out, "rg_flow")
    figs = []
    if plots:
        figs.append(plot_rg_flow(ds, Path(out) / "rg_propagator_flow.png"))
        if "lam" in ds:
            figs.append(plot_coupling_flow(ds, Path(out) / "rg_coupling_flow.png"))
    summary = [("rg flow", ds.attrs.get("verdict", "measured"),
                float(np.max(ds["max_abs_z"])) if "max_abs_z" in ds else float("nan"))]
    return {"datasets": {"rg_flow": ds}, "summary": summary, "plots": figs}


RUNNERS = {"symmetry": run_symmetry, "cluster": run_cluster, "couplings": run_couplings,
           "rg": run_rg}
