"""Wilsonian running of a Gauss/Erf/ReLU net's local couplings on a point set: the one-loop
beta functions (diagram engine, the GP kernel as propagator, cutoff on the vertex ball)
integrated over the cutoff and compared with lambda(Lambda), kappa(Lambda) refitted at every
cutoff (see docs/rg.md, "Wilsonian running")."""
from __future__ import annotations

import math

import numpy as np

from ..lattice import UserError
from .base import Measurement, Option, register
from .eft import _heavy_tails

_CHECK = "running vs integrated beta function"


def default_cutoffs(points):
    """``[1, sqrt 2, 2, ..., 8] x max(1, max |x|)``: seven cutoffs, a factor sqrt(2) apart."""
    scale = max(1.0, float(np.abs(np.asarray(points, float)).max()))
    return [scale * 2.0 ** (k / 2) for k in range(7)]


def running(ctx) -> dict:
    """Measured running of lambda (kappa) against the integrated one-loop beta functions.

    1. ``G4c`` and ``G6c`` at random point tuples, jackknife replicas (``n_blocks``).
    2. At every cutoff ``Lambda`` (``running_cutoffs``; the radius of the ball over which the
       vertices are integrated, every line the neuron kernel ``K - sigma_b^2``): lambda fitted
       to G4c given kappa and kappa to G6c given lambda (the one-loop kappa diagram in G4c, the
       lambda^2 trees in G6c).
    3. The beta functions (``nnft.observables.running.beta_functions``) integrated from the
       couplings measured at ``running_reference`` (default the largest cutoff) and compared
       with the refitted ones: jackknife errors with the same blocks, the numerical error
       added; Holm over cutoffs and couplings. "inconclusive" when lambda at the reference
       is not resolved from zero (3 errors) or when the per-sample products are heavy-tailed
       (``heavy_tail``; e.g. the Gauss-net's log-normal outputs: error bars not trusted).
    4. ``runs``: whether the refitted lambda moves with the cutoff (Holm over cutoffs).
    """
    from ..observables.combinatorics import point_multisets
    from ..observables.running import running_comparison
    from ..observables.symmetry import correlator_replicas
    from .eft import neuron_kernel

    if getattr(ctx.lattice, "kind", "") == "lattice":
        raise UserError("running: implemented for point sets (Gauss/Erf/ReLU nets)")
    K = neuron_kernel(ctx.spec)
    pts = np.asarray(ctx.lattice.positions(), dtype=float)
    if pts.ndim == 1:
        pts = pts[:, None]
    d = pts.shape[1]
    if d > 3:
        raise UserError(f"running: vertices are integrated by quadrature, d_in <= 3, got {d}")
    n_blocks = int(ctx.opt("n_blocks", 32))
    cutoffs = ctx.opt("running_cutoffs")
    cutoffs = default_cutoffs(pts) if cutoffs is None else [float(c) for c in cutoffs]
    if len(set(cutoffs)) < 2:
        raise UserError("options.running_cutoffs: need at least two distinct cutoffs")
    ref = ctx.opt("running_reference")
    if ref is not None and not any(math.isclose(ref, c, rel_tol=1e-12) for c in cutoffs):
        raise UserError(f"options.running_reference: must be one of running_cutoffs "
                        f"{cutoffs}, got {ref}")
    nodes = ctx.opt("running_nodes")
    nodes = int(nodes) if nodes is not None else {1: 64, 2: 24, 3: 12}[d]
    with_kappa = bool(ctx.opt("running_kappa", True))
    V = pts.shape[0]
    t4 = point_multisets(V, 4, int(ctx.opt("running_tuples_4", 24)), seed=ctx.seed)
    r4 = correlator_replicas(ctx.store, t4, stat="connected", n_blocks=n_blocks)
    kw = {}
    if with_kappa:
        t6 = point_multisets(V, 6, int(ctx.opt("running_tuples_6", 24)), seed=ctx.seed)
        r6 = correlator_replicas(ctx.store, t6, stat="connected", n_blocks=n_blocks)
        kw = dict(tuples6=t6, delta6=np.real(r6.value), replicas6=np.real(r6.replicas))
    try:
        ds = running_comparison(K, pts, t4, np.real(r4.value), np.real(r4.replicas), cutoffs,
                                reference=ref, steps=int(ctx.opt("running_steps", 4)),
                                n_nodes=nodes, alpha=float(ctx.opt("alpha", 0.01)), **kw)
    except ValueError as e:
        raise UserError(f"running: {e}") from None
    heavy = any(_heavy_tails(ctx.store, [t4] + ([kw["tuples6"]] if with_kappa else [])))
    verdict = "inconclusive" if heavy else ds.attrs["verdict"]
    cut = np.asarray(ds["cutoff"], float)
    names = ["lam"] + (["kappa"] if with_kappa else [])
    out = {"quantity": "Wilsonian running: lambda(Lambda) (kappa(Lambda)) refitted vs the "
                       "integrated one-loop beta functions",
           "scheme": ds.attrs["scheme"], "cutoffs": cut.tolist(),
           "reference": ds.attrs["reference"], "quadrature_nodes": nodes,
           "verdict": verdict, "heavy_tail": heavy, "p_value": ds.attrs["p_value"],
           "max_abs_z": ds.attrs["max_abs_z"], "n_compared": ds.attrs["n_compared"],
           "runs": ds.attrs["runs"], "running_max_abs_z": ds.attrs["running_max_abs_z"],
           "running_p_value": ds.attrs["running_p_value"],
           "max_rel_discrepancy": ds.attrs["max_rel_discrepancy"],
           "self_similar": bool(ds.attrs["self_similar"]),
           f"{_CHECK}: verdict": verdict, f"{_CHECK}: p_value": ds.attrs["p_value"]}
    for n in names:
        for k in ("", "_error", "_beta", "_beta_error", "_discrepancy", "_discrepancy_error",
                  "_z", "_numerical_error"):
            out[f"{n}{k}"] = [float(v) for v in np.asarray(ds[f"{n}{k}"])]
    out["beta_lam_over_lam"] = [float(v) for v in np.asarray(ds["beta_lam_over_lam"])]
    out["lam_tree"] = [float(v) for v in np.asarray(ds["lam_tree"])]
    out["loop_share"] = [float(v) for v in np.asarray(ds["loop_share"])]
    out["max_loop_share"] = ds.attrs["max_loop_share"]
    if with_kappa:
        out["beta_kappa_over_kappa"] = [float(v) for v in np.asarray(ds["beta_kappa_over_kappa"])]
    i0, i1 = 0, len(cut) - 1
    summary = [("scheme", f"vertex ball |y| < Lambda, reference Lambda = "
                          f"{ds.attrs['reference']:.3g}", None)]
    for i in (i0, i1):
        summary.append((f"lambda(Lambda={cut[i]:.3g}) refitted", out["lam"][i],
                        out["lam_error"][i]))
        summary.append((f"lambda(Lambda={cut[i]:.3g}) from the integrated beta function",
                        out["lam_beta"][i], out["lam_beta_error"][i]))
        summary.append((f"beta_lambda / lambda at Lambda={cut[i]:.3g}",
                        out["beta_lam_over_lam"][i], None))
    summary.append(("largest share of the one-loop kappa diagram in lambda, "
                    "|lambda - lambda_tree| / |lambda_tree| (one loop holds where small)",
                    out["max_loop_share"], None))
    if heavy:
        summary.append(("G4c/G6c products heavy-tailed", "error bars not trusted", None))
    if out["self_similar"]:
        summary.append(("templates only rescale with Lambda (homogeneous kernel)",
                        "agreement by construction: not a test of the running", None))
    summary += [("lambda runs with the cutoff (Holm)",
                 f"{out['runs']} (max |z| {out['running_max_abs_z']:.3g})", None),
                ("largest |refitted - integrated| / |refitted|", out["max_rel_discrepancy"],
                 None),
                (f"{_CHECK} (p-value)", f"{out['p_value']:.3g} ({out['verdict']})", None)]
    out["summary"] = summary
    out["data"] = {n: {"cutoff": cut.tolist(), "measured": out[n], "error": out[f"{n}_error"],
                       "integrated": out[f"{n}_beta"], "integrated_error":
                       out[f"{n}_beta_error"]} for n in names}
    out["dataset"] = ds
    return out


register(Measurement(
    name="running",
    summary="Wilsonian running of a Gauss/Erf/ReLU net on a point set: one-loop beta functions "
            "of lambda, kappa from the diagram engine (GP kernel, cutoff on the vertex ball) "
            "integrated and compared with lambda(Lambda), kappa(Lambda) refitted at each cutoff",
    run=running, requires=("spec", "stored"),
    options=(Option("n_blocks", int, 32, "jackknife blocks", minimum=2),
             Option("running_cutoffs", list, None, "cutoffs Lambda (radius of the vertex "
                    "ball); default [1, 1.41, 2, ..., 8] x max(1, max |x|)", minimum=0),
             Option("running_reference", float, None, "cutoff where the integration starts "
                    "from the measured couplings (default the largest)", minimum=0),
             Option("running_steps", int, 4, "RK4 steps between neighbouring cutoffs (even)",
                    minimum=2),
             Option("running_nodes", int, None, "Gauss-Legendre nodes per axis of the vertex "
                    "quadrature (default 64, 24, 12 for d_in = 1, 2, 3)", minimum=4),
             Option("running_kappa", bool, True, "also fit kappa on G6c and run it"),
             Option("running_tuples_4", int, 24, "number of random 4-point tuples", minimum=2),
             Option("running_tuples_6", int, 24, "number of random 6-point tuples", minimum=2),
             Option("alpha", float, 0.01, "family-wise level of the comparison and of the "
                    "running test (Holm)", minimum=0))))
