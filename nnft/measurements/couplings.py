"""Tree-level quartic coupling from Delta G4 (lattice vertex or continuum vertex with its running)."""
from __future__ import annotations

import numpy as np

from ..lattice import UserError
from ._common import _arch, _is_lattice
from .base import Measurement, Option, register


def continuum_kernel_fn(spec):
    """GP kernel K(x, y) of a single-layer Gauss/Erf/ReLU net at arbitrary inputs.

    Returns a callable ``K(x, y)`` for ``x`` of shape (V, 1, d) and ``y`` (1, Q, d) (the broadcast
    convention of :func:`nnft.observables.couplings.vertex_integral`) giving (V, Q).
    """
    from ..ensembles import ErfNet, GaussNet, ReLUNet
    from ..ensembles.kernels import (erf_expectation, gauss_kernel, k0_matrix,
                                    relu_expectation)

    if getattr(spec, "has_means", False) or getattr(spec, "components", None) is not None:
        raise UserError("spec: continuum couplings need a scalar net with zero parameter means")
    sw, sb = spec.sigma_w, spec.sigma_b
    if isinstance(spec, GaussNet):
        def K(x, y):
            return gauss_kernel(np.asarray(x)[:, 0, :], np.asarray(y)[0], sw, sb)
        return K
    if isinstance(spec, (ErfNet, ReLUNet)):
        expect = erf_expectation if isinstance(spec, ErfNet) else relu_expectation

        def K(x, y):
            X, Y = np.asarray(x)[:, 0, :], np.asarray(y)[0]
            kxy = k0_matrix(X, Y, sw, sb)
            kxx = sb ** 2 + sw ** 2 * (X * X).sum(-1) / X.shape[1]
            kyy = sb ** 2 + sw ** 2 * (Y * Y).sum(-1) / Y.shape[1]
            return sb ** 2 + sw ** 2 * expect(kxy, kxx[:, None], kyy[None, :])
        return K
    raise UserError(f"spec: continuum couplings are implemented for GaussNet, ErfNet and "
                     f"ReLUNet on point sets, got {type(spec).__name__}")


def _point_tuples(V, n, count, seed):
    from ..observables.combinatorics import point_multisets

    return point_multisets(V, n, count, seed=seed)


def _couplings_points(ctx, n_blocks):
    from ..observables.couplings import (fit_quartic, predict_delta_g6, running_quartic,
                                        vertex_integral)
    from ..observables.symmetry import JackknifeResult, assess_deviations, correlator_replicas

    spec = ctx.spec
    K = continuum_kernel_fn(spec)
    pts = np.asarray(ctx.lattice.positions(), dtype=float)
    V = pts.shape[0]
    offset = float(spec.sigma_b) ** 2
    t4 = _point_tuples(V, 4, int(ctx.opt("coupling_tuples", 24)), ctx.seed)
    do6 = bool(ctx.opt("six_point", True))
    t6 = _point_tuples(V, 6, int(ctx.opt("six_point_tuples", 24)), ctx.seed) if do6 else None
    # connected 4-point here; Delta G6 = G6 - sum_15 G2 G2 G2 below, on the same blocks
    r4 = correlator_replicas(ctx.store, t4, stat="connected", n_blocks=n_blocks)
    scale = max(1.0, float(np.abs(pts).max()))
    cutoffs = np.asarray(ctx.opt("coupling_cutoffs", [0.5 * scale, scale, 2 * scale,
                                                         4 * scale, 8 * scale]), dtype=float)
    if cutoffs.ndim != 1 or cutoffs.size < 1 or not np.all(cutoffs > 0):
        raise UserError(f"options.coupling_cutoffs: must be a list of positive numbers, "
                         f"got {cutoffs.tolist()}")
    ds = running_quartic(r4.value, r4.error, pts, t4, K, cutoffs, replicas=r4.replicas,
                         offset=offset)
    lam = np.asarray(ds["lam"])
    lam_e = np.asarray(ds["lam_error"])
    out = {"quantity": "tree-level quartic lambda(Lambda), continuum vertex (K - sigma_b^2)",
           "cutoffs": cutoffs.tolist(), "lam": lam.tolist(), "lam_error": lam_e.tolist(),
           "chi2": np.asarray(ds["chi2"]).tolist(), "dof": np.asarray(ds["dof"]).tolist(),
           "vertex_offset": offset}
    summary = [(f"lambda(Lambda={c:.3g})", float(v), float(e)) for c, v, e in zip(cutoffs, lam, lam_e)]
    if cutoffs.size >= 2:
        # running between the two largest cutoffs, with jackknife error of the ratio
        Vs = [vertex_integral(K, pts, t4, c, offset=offset) for c in cutoffs[-2:]]
        fits = [fit_quartic(r4.value, r4.error, v4, replicas=r4.replicas) for v4 in Vs]
        ratio = fits[1]["lam"] / fits[0]["lam"]
        rr = fits[1]["lam_replicas"] / fits[0]["lam_replicas"]
        b = len(rr)
        rerr = float(np.sqrt((b - 1) / b * np.sum((rr - rr.mean()) ** 2)))
        out["running_ratio"] = float(ratio)
        out["running_ratio_error"] = rerr
        summary.append((f"lambda({cutoffs[-1]:.3g}) / lambda({cutoffs[-2]:.3g})", float(ratio), rerr))
    if do6:
        cut = float(cutoffs[-1])
        Kpp = K(pts[:, None, :], pts[None, :, :])
        V4 = vertex_integral(K, pts, t4, cut, offset=offset)
        fit = fit_quartic(r4.value, r4.error, V4, replicas=r4.replicas)

        def vf(tt):
            return vertex_integral(K, pts, tt, cut, offset=offset)

        pred = predict_delta_g6(fit["lam"], Kpp, t6, vertex_fn=vf)
        pred_r = predict_delta_g6(fit["lam_replicas"], Kpp, t6, vertex_fn=vf)
        r6 = correlator_replicas(ctx.store, t6, stat="wick_subtracted", n_blocks=n_blocks)
        diff = JackknifeResult(np.real(r6.value) - pred, np.real(r6.replicas) - pred_r)
        err = diff.error
        v = assess_deviations(diff.value, err, dof=n_blocks - 1, alpha=0.01)
        rel = float(np.sum(np.abs(diff.value)) / max(np.sum(np.abs(np.real(r6.value))), 1e-300))
        out.update({"six_point_cutoff": cut,
                    "six_point_verdict": "consistent" if v["passed"] else "inconsistent",
                    "six_point_max_abs_z": float(v["max_abs_z"]),
                    "six_point_chi2_dof": float(v["chi2_dof"]),
                    "six_point_rel_residual": rel})
        out["data"] = {"t6": t6, "measured": np.real(r6.value), "measured_error": r6.error,
                       "predicted": pred, "error": err}
        summary.append(("Delta G6 vs tree prediction: max |z|", float(v["max_abs_z"]), None))
        summary.append(("Delta G6: sum|meas - pred| / sum|meas|", rel, None))
    out["dataset"] = ds
    out["summary"] = summary
    return out


def _couplings_lattice(ctx, n_blocks):
    from ..ensembles import LatticeCosNet
    from ..observables.couplings import fit_quartic, local_tuples, quartic_coupling, vertex_sum

    lat = ctx.lattice
    cos = isinstance(ctx.spec, LatticeCosNet)
    if cos:
        from ..lattice import free_propagator

        kernel = np.asarray(free_propagator(lat, ctx.spec.m2))
    else:
        kernel = ctx.kernel
        if kernel is None:
            raise UserError(f"spec: no GP kernel known for {_arch(ctx)}; couplings need one")
        kernel = np.asarray(kernel)
    t4 = local_tuples(lat, 4, int(ctx.opt("coupling_tuples", 24)), seed=ctx.seed)
    ds = quartic_coupling(ctx.store, lat, kernel, tuples=t4, n_blocks=n_blocks)
    a = ds.attrs
    out = {"quantity": "tree-level quartic lambda (lattice vertex sum_y prod K(x_i, y))",
           "lam": a["lam"], "lam_error": a["lam_error"], "chi2": a["chi2"], "dof": a["dof"],
           "p_value": a["p_value"]}
    summary = [("lambda (lattice)", a["lam"], a["lam_error"]),
               ("local fit chi2/dof", a["chi2"] / max(a["dof"], 1), None)]
    if cos and ctx.spec.components is None:
        from ..observables.cluster import amplitude_moments, cosnet_g4c

        k4 = amplitude_moments(ctx.spec.amplitude)[0]
        g4 = cosnet_g4c(kernel, t4, ctx.spec.width, kurtosis=k4)
        lam_exp = fit_quartic(g4, np.asarray(ds["error"]), vertex_sum(kernel, t4, lattice=lat))["lam"]
        out["lam_expected"] = float(lam_exp)
        out["lam_z"] = float((a["lam"] - lam_exp) / a["lam_error"])
        summary.append(("lambda from the exact finite-N G4c (same fit)", float(lam_exp), None))
    out["data"] = {"delta_g4": np.asarray(ds["delta_g4"]), "error": np.asarray(ds["error"]),
                   "fit": np.asarray(ds["fit"])}
    out["dataset"] = ds
    out["summary"] = summary
    return out


def couplings(ctx) -> dict:
    """Tree-level quartic coupling from Delta G4 (docs/conventions.md section 8).

    Lattices: lambda from the lattice vertex ``sum_y prod_i K(x_i, y)`` on tuples of neighbouring
    sites, translation-averaged (LatticeCosNet: also the same fit applied to the exact finite-N
    G4c). Point sets (Gauss/Erf/ReLU nets): the continuum vertex ``int_{|y|<Lambda} prod_i
    [K(x_i, y) - sigma_b^2]``, lambda(Lambda) over the cutoffs (the running; the ratio of the
    two largest cutoffs is reported), and the first-order 6-point prediction
    ``Delta G6 = -24 lambda sum_15 K V4`` against the measured ``G6 - sum_15 G2 G2 G2``.
    """
    if getattr(ctx.spec, "components", None) is not None:
        raise UserError("couplings: implemented for scalar fields (components = None)")
    n_blocks = int(ctx.opt("n_blocks", 32))
    if _is_lattice(ctx):
        return _couplings_lattice(ctx, n_blocks)
    return _couplings_points(ctx, n_blocks)



register(Measurement(
    name="couplings",
    summary="tree-level quartic lambda from Delta G4 (lattice vertex sum, or continuum vertex "
            "lambda(Lambda) over cutoffs with the 6-point prediction on point sets)",
    run=couplings, requires=("spec", "stored"),
    options=(Option("n_blocks", int, 32, "jackknife blocks", minimum=2),
             Option("coupling_tuples", int, 24, "number of 4-point tuples in the fit", minimum=1),
             Option("coupling_cutoffs", list, None, "continuum cutoffs Lambda (point sets; "
                    "default [0.5, 1, 2, 4, 8] x max(1, max |x|))", minimum=0),
             Option("six_point", bool, True, "point sets: also test the 6-point prediction"),
             Option("six_point_tuples", int, 24, "number of 6-point tuples", minimum=1))))
