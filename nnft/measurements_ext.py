"""More measurements for `nnft run`: couplings, RG flow, phi^4 by reweighting, W[J].

Each function has the signature of those in :mod:`nnft.measurements`: it takes a
:class:`nnft.measurements.Context` (one ensemble at one width) and returns a dict of scalars
(JSON-dumped into results.json), optional ``"data"`` / ``"dataset"`` / ``"datasets"`` entries
(arrays and xarray Datasets for plots; not dumped) and ``"summary"``: a list of
``(label, value, error_or_None)`` rows for the report.

Options are read from the ensemble's ``options`` table (all optional):

couplings (PHYSICS.md section 8)
    ``n_blocks`` (32), ``coupling_tuples`` (24 four-point tuples), ``coupling_cutoffs``
    (continuum cutoffs Lambda for point sets; default [0.5, 1, 2, 4, 8] x max(1, max |x|)),
    ``six_point`` (true: point sets also check the 6-point prediction), ``six_point_tuples`` (24).
rg (arXiv:2405.17538)
    ``rg_cutoffs`` (default pi sqrt(d) x [1/4, 1/2, 3/4]; information cutoffs I_c in Fisher mode,
    default the images of the momentum cutoffs), ``rg_mode`` ("momentum" | "fisher"),
    ``rg_metric`` ("pmag" | "phat"), ``n_blocks``.
reweight (PHYSICS.md section 10; convention C)
    ``g`` (required, the g/4! phi^4 coupling), ``match`` ("hartree": the target's bare mass is
    chosen so that its Hartree mass is the ensemble's m2; "bare": target m2 = ensemble m2),
    ``m2_target`` (explicit bare mass, overrides match), ``hmc_trajectories`` (0 = no Markov-chain
    reference; otherwise HMC with 16 chains of this many trajectories on the target, capped at
    samples / 4 so that ``--samples`` smoke runs stay short),
    ``n_blocks`` (50).
generating (observables/generating.py)
    ``n_sources`` (4), ``source_norm`` (J.K.J of every source, default 1), ``n_max`` (4),
    ``n_blocks``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["couplings", "rg", "reweight", "generating", "MEASURE_EXT", "continuum_kernel_fn"]


def _opt(ctx, key, default):
    return ctx.options.get(key, default) if ctx.options else default


def _num(v):
    """float, None for non-finite (summary rows stay JSON-clean)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _arch(ctx):
    return type(ctx.spec).__name__


def _is_lattice(ctx):
    return getattr(ctx.lattice, "kind", "") == "lattice"


# ------------------------------------------------------------------------------------ couplings
def continuum_kernel_fn(spec):
    """GP kernel K(x, y) of a single-layer Gauss/Erf/ReLU net at arbitrary inputs.

    Returns a callable ``K(x, y)`` for ``x`` of shape (V, 1, d) and ``y`` (1, Q, d) (the broadcast
    convention of :func:`nnft.observables.couplings.vertex_integral`) giving (V, Q).
    """
    from .ensembles import ErfNet, GaussNet, ReLUNet
    from .ensembles.kernels import (erf_expectation, gauss_kernel, k0_matrix,
                                    relu_expectation)

    if getattr(spec, "has_means", False) or getattr(spec, "components", None) is not None:
        raise ValueError("spec: continuum couplings need a scalar net with zero parameter means")
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
    raise ValueError(f"spec: continuum couplings are implemented for GaussNet, ErfNet and "
                     f"ReLUNet on point sets, got {type(spec).__name__}")


def _point_tuples(V, n, count, seed):
    rng = np.random.default_rng([seed, n, 11])
    count = min(count, math.comb(V + n - 1, n))
    seen = set()
    while len(seen) < count:
        seen.add(tuple(sorted(rng.integers(0, V, size=n).tolist())))
    return np.array(sorted(seen), dtype=np.int64)


def _couplings_points(ctx, n_blocks):
    from .observables.couplings import (fit_quartic, predict_delta_g6, running_quartic,
                                        vertex_integral)
    from .observables.symmetry import JackknifeResult, assess_deviations, correlator_replicas

    spec = ctx.spec
    K = continuum_kernel_fn(spec)
    pts = np.asarray(ctx.lattice.positions(), dtype=float)
    V = pts.shape[0]
    offset = float(spec.sigma_b) ** 2
    t4 = _point_tuples(V, 4, int(_opt(ctx, "coupling_tuples", 24)), ctx.seed)
    do6 = bool(_opt(ctx, "six_point", True))
    t6 = _point_tuples(V, 6, int(_opt(ctx, "six_point_tuples", 24)), ctx.seed) if do6 else None
    # connected 4-point here; Delta G6 = G6 - sum_15 G2 G2 G2 below, on the same blocks
    r4 = correlator_replicas(ctx.store, t4, stat="connected", n_blocks=n_blocks)
    scale = max(1.0, float(np.abs(pts).max()))
    cutoffs = np.asarray(_opt(ctx, "coupling_cutoffs", [0.5 * scale, scale, 2 * scale,
                                                         4 * scale, 8 * scale]), dtype=float)
    if cutoffs.ndim != 1 or cutoffs.size < 1 or not np.all(cutoffs > 0):
        raise ValueError(f"options.coupling_cutoffs: must be a list of positive numbers, "
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
    from .ensembles import LatticeCosNet
    from .observables.couplings import fit_quartic, local_tuples, quartic_coupling, vertex_sum

    lat = ctx.lattice
    cos = isinstance(ctx.spec, LatticeCosNet)
    if cos:
        from .lattice import free_propagator

        kernel = np.asarray(free_propagator(lat, ctx.spec.m2))
    else:
        kernel = ctx.kernel
        if kernel is None:
            raise ValueError(f"spec: no GP kernel known for {_arch(ctx)}; couplings need one")
        kernel = np.asarray(kernel)
    t4 = local_tuples(lat, 4, int(_opt(ctx, "coupling_tuples", 24)), seed=ctx.seed)
    ds = quartic_coupling(ctx.store, lat, kernel, tuples=t4, n_blocks=n_blocks)
    a = ds.attrs
    out = {"quantity": "tree-level quartic lambda (lattice vertex sum_y prod K(x_i, y))",
           "lam": a["lam"], "lam_error": a["lam_error"], "chi2": a["chi2"], "dof": a["dof"],
           "p_value": a["p_value"]}
    summary = [("lambda (lattice)", a["lam"], a["lam_error"]),
               ("local fit chi2/dof", a["chi2"] / max(a["dof"], 1), None)]
    if cos and ctx.spec.components is None:
        from .observables.cluster import amplitude_moments, cosnet_g4c

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
    """Tree-level quartic coupling from Delta G4 (PHYSICS.md section 8).

    Lattices: lambda from the lattice vertex ``sum_y prod_i K(x_i, y)`` on tuples of neighbouring
    sites, translation-averaged (LatticeCosNet: also the same fit applied to the exact finite-N
    G4c). Point sets (Gauss/Erf/ReLU nets): the continuum vertex ``int_{|y|<Lambda} prod_i
    [K(x_i, y) - sigma_b^2]``, lambda(Lambda) over the cutoffs (the running; the ratio of the
    two largest cutoffs is reported), and the first-order 6-point prediction
    ``Delta G6 = -24 lambda sum_15 K V4`` against the measured ``G6 - sum_15 G2 G2 G2``.
    """
    if getattr(ctx.spec, "components", None) is not None:
        raise ValueError("couplings: implemented for scalar fields (components = None)")
    n_blocks = int(_opt(ctx, "n_blocks", 32))
    if _is_lattice(ctx):
        return _couplings_lattice(ctx, n_blocks)
    return _couplings_points(ctx, n_blocks)


# ------------------------------------------------------------------------------------------- rg
def rg(ctx) -> dict:
    """Momentum-shell / Fisher-shell coarse-graining of a cos-net store (arXiv:2405.17538).

    The store's chunks are regenerated without the neurons outside the cutoff
    (``observables.rg.rg_flow``); the coarse-grained propagator is compared momentum by momentum
    with the exact flow ``Gt(p) theta(Lambda - |p|)``; the local quartic fitted at each cutoff is
    reported with the same fit applied to the exact finite-N formula.
    """
    from .observables.rg import fisher_to_momentum, rg_flow

    arch = _arch(ctx)
    if arch not in ("LatticeCosNet", "ContinuumCosNet", "GaussianCosNet"):
        raise ValueError(f"rg: needs a cos-net ensemble, got {arch}")
    if not (_is_lattice(ctx) and getattr(ctx.lattice, "periodic", False)):
        raise ValueError("rg: needs a periodic lattice")
    mode = _opt(ctx, "rg_mode", "momentum")
    metric = _opt(ctx, "rg_metric", "pmag")
    n_blocks = int(_opt(ctx, "n_blocks", 32))
    m2 = float(getattr(ctx.spec, "m2", 0.0) or 0.0)
    cutoffs = _opt(ctx, "rg_cutoffs", None)
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


# ------------------------------------------------------------------------------------- reweight
def reweight(ctx) -> dict:
    """phi^4 (convention C) by reweighting a free lattice ensemble with exp(-Delta S).

    The ensemble must be a free scalar on a periodic lattice whose spec has ``m2``
    (LatticeCosNet: exact propagator at every N; at finite N the base is non-Gaussian and the
    reweighted result carries O(1/N) corrections, which the width scan shows). Reports the Kish
    ESS and the reweighted chi, E, G0, <|M|> with block-jackknife errors, the free values and,
    with ``hmc_trajectories > 0``, an HMC reference on the same target with z-scores.
    """
    from .lattice import free_field_exact
    from .lattice.actions import Phi4Action
    from .observables.reweighting import ReweightingWarning, _G0, reweighted_observables

    if not (_is_lattice(ctx) and getattr(ctx.lattice, "periodic", False)):
        raise ValueError("reweight: needs a periodic lattice")
    if getattr(ctx.spec, "components", None) is not None or not hasattr(ctx.spec, "m2"):
        raise ValueError(f"reweight: needs a scalar free-field ensemble with m2, got {_arch(ctx)}")
    if "g" not in (ctx.options or {}):
        raise ValueError("options.g: reweight needs the quartic coupling g (convention C)")
    g = float(ctx.options["g"])
    if not g >= 0:
        raise ValueError(f"options.g: must be >= 0, got {g}")
    match = _opt(ctx, "match", "hartree")
    base = float(ctx.spec.m2)
    shape = tuple(ctx.lattice.shape)
    if "m2_target" in ctx.options:
        m2t = float(ctx.options["m2_target"])
    elif match == "hartree":
        m2t = base - 0.5 * g * _G0(shape, base)  # its Hartree mass is the base mass
    elif match == "bare":
        m2t = base
    else:
        raise ValueError(f"options.match: must be 'hartree' or 'bare', got {match!r}")
    target = Phi4Action(shape, "C", m2=m2t, g=g)
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always", ReweightingWarning)
        ds = reweighted_observables(ctx.store, target, base,
                                    n_blocks=int(_opt(ctx, "n_blocks", 50)))
    collapsed = any(issubclass(w.category, ReweightingWarning) for w in wl)
    free = free_field_exact(ctx.lattice, base)
    a = ds.attrs
    out = {"quantity": "phi^4 (convention C) by reweighting the free ensemble",
           "g": g, "m2_target": m2t, "base_m2": base, "match": match, "ess": a["ess"],
           "ess_fraction": a["ess_fraction"], "var_log_w": a["var_log_w"],
           "n_samples": a["n_samples"], "collapsed": bool(collapsed)}
    summary = [("target (g, bare m2)", f"g={g:g}, m2={m2t:.6g}", None),
               ("Kish ESS / N", a["ess"] / a["n_samples"], None)]
    for o in ("chi", "E", "G0", "abs_M"):
        v, e = float(ds["value"].sel(observable=o)), float(ds["error"].sel(observable=o))
        out[o] = v
        out[f"{o}_error"] = e
        out[f"{o}_free"] = float(free[o])
        summary.append((f"{o} reweighted (free: {free[o]:.5g})", v, e))
    nt = min(int(_opt(ctx, "hmc_trajectories", 0)), max(50, ctx.store.n_samples // 4))
    if nt > 0:
        ref = _hmc_reference(target, nt, ctx.seed)
        out["hmc"] = ref
        for o in ("chi", "E", "G0", "abs_M"):
            h = ref[o]
            z = (out[o] - h["value"]) / math.hypot(out[f"{o}_error"], h["error"])
            out[f"{o}_z_vs_hmc"] = z
            summary.append((f"{o} HMC (tau_int {h['tau_int']:.2g}); z(reweighted - HMC) = {z:+.2f}",
                            h["value"], h["error"]))
    out["dataset"] = ds
    out["summary"] = summary
    return out


_HMC_CACHE: dict = {}


def _hmc_reference(target, n_traj, seed, n_chains=16):
    """HMC reference values on ``target`` (cached per target, length and seed: the widths of a
    scan share it)."""
    key = (repr(target.to_dict()), int(n_traj), int(seed), int(n_chains))
    if key not in _HMC_CACHE:
        _HMC_CACHE[key] = _hmc_run(target, n_traj, seed, n_chains)
    return dict(_HMC_CACHE[key])


def _hmc_run(target, n_traj, seed, n_chains):
    from .lattice.mcmc import HMC, run_chain
    from .observables.gamma import chain_observables, primary_series

    parts = []
    res = run_chain(HMC(target, traj_length=1.0, eps=0.2), n_chains, n_traj, seed=seed + 17,
                    n_therm=100, callback=lambda k, phi, lw: parts.append(
                        primary_series(np.asarray(phi), len(target.shape))))
    ds = chain_observables(np.concatenate(parts), n_replicas=n_chains, volume=target.volume,
                           include_primary=False)
    out = {o: {"value": float(ds["value"].sel(observable=o)),
               "error": float(ds["error"].sel(observable=o)),
               "tau_int": float(ds["tau_int"].sel(observable=o))}
           for o in ("chi", "E", "G0", "abs_M")}
    out["acceptance"] = float(res.acceptance)
    out["n_chains"] = n_chains
    out["trajectories"] = n_traj
    return out


# ----------------------------------------------------------------------------------- generating
def _sources(ctx, K, n_sources, norm):
    """Sources J (n_sources, F): a point source, a smooth bump, a constant, then random ones,
    each scaled to J.K.J = norm."""
    V = ctx.lattice.volume
    D = getattr(ctx.spec, "components", None)
    F = V * (D or 1)
    rng = np.random.default_rng([ctx.seed, 23])
    P = np.asarray(ctx.lattice.positions(), dtype=float)
    c = P.mean(axis=0)
    span = max(float(np.ptp(P, axis=0).max()), 1e-12)
    cand = []
    e = np.zeros(V)
    e[0] = 1.0
    cand.append(e)
    cand.append(np.exp(-np.sum((P - c) ** 2, axis=1) / (2 * (0.2 * span) ** 2)))
    cand.append(np.ones(V))
    Js = []
    for j in range(n_sources):
        J = cand[j] if j < len(cand) else rng.standard_normal(V)
        J = np.tile(J, D or 1) if D else J
        Js.append(J[:F])
    Js = np.array(Js)
    if D:
        Kf = np.kron(np.eye(D), K)
    else:
        Kf = K
    q = np.einsum("si,ij,sj->s", Js, Kf, Js)
    Js = Js * np.sqrt(norm / q)[:, None]
    return Js, Kf


def generating(ctx) -> dict:
    """W[J] = log E exp(J.phi) for a few sources against its cumulant expansion.

    Sources (point, smooth bump, constant, random; each normalised to J.K.J = ``source_norm``):
    the measured W[J] is compared with the Gaussian (GP) value J.K.J/2 and with the cumulant
    series sum_{n <= n_max} kappa_n(J.phi)/n! from the same samples; kappa_2 is compared with
    J.K.J (exact at every width). The gap W - W_GP is the interaction (O(1/N) at finite width).
    """
    from .observables.generating import gaussian_W, generating_functional

    K = ctx.kernel
    if K is None:
        raise ValueError(f"generating: no GP kernel known for {_arch(ctx)}")
    K = np.asarray(K)
    n_sources = int(_opt(ctx, "n_sources", 4))
    norm = float(_opt(ctx, "source_norm", 1.0))
    n_max = int(_opt(ctx, "n_max", 4))
    n_blocks = int(_opt(ctx, "n_blocks", 32))
    if n_sources < 1 or not norm > 0 or n_max < 2:
        raise ValueError("options: need n_sources >= 1, source_norm > 0 and n_max >= 2")
    Js, Kf = _sources(ctx, K, n_sources, norm)
    D = getattr(ctx.spec, "components", None)
    trail = ((D,) if D else ()) + tuple(ctx.lattice.shape)
    WG = gaussian_W(Js, Kf)
    ds = generating_functional(ctx.store, Js.reshape((n_sources,) + trail), n_max=n_max,
                               n_blocks=n_blocks, expected=WG)
    W, We = np.asarray(ds["W"]), np.asarray(ds["W_error"])
    ser, sere = np.asarray(ds["W_series"]), np.asarray(ds["W_series_error"])
    kap, kape = np.asarray(ds["kappa"]), np.asarray(ds["kappa_error"])
    z_gp = (W - WG) / We
    # remainder of the truncated expansion: W - series (errors combined conservatively)
    resid = W - ser[:, -1]
    resid_e = np.hypot(We, sere[:, -1])
    z_k2 = (kap[:, 1] - 2 * WG) / kape[:, 1]
    names = ["point", "bump", "constant"] + [f"random{j}" for j in range(max(0, n_sources - 3))]
    out = {"quantity": "W[J] = log E exp(J.phi) vs J.K.J/2 and the cumulant series",
           "sources": names[:n_sources], "W": W.tolist(), "W_error": We.tolist(),
           "W_gp": WG.tolist(), "W_series": ser[:, -1].tolist(),
           "W_series_error": sere[:, -1].tolist(), "kappa2_z": z_k2.tolist(),
           "max_abs_z_gp": float(np.max(np.abs(z_gp))),
           "max_abs_z_kappa2": float(np.max(np.abs(z_k2))),
           "max_abs_z_series": float(np.max(np.abs(resid / resid_e))),
           "verdict_gp": ds.attrs.get("verdict")}
    summary = []
    for j, nm in enumerate(names[:n_sources]):
        summary.append((f"W[J_{nm}] (GP {WG[j]:.4g}; series to n={n_max}: {ser[j, -1]:.4g})",
                        float(W[j]), float(We[j])))
    summary += [("max |z| of W - J.K.J/2", out["max_abs_z_gp"], None),
                ("max |z| of kappa_2 - J.K.J", out["max_abs_z_kappa2"], None),
                (f"max |z| of W - cumulant series (n <= {n_max})", out["max_abs_z_series"], None)]
    out["dataset"] = ds
    out["summary"] = summary
    return out


MEASURE_EXT = {"couplings": couplings, "rg": rg, "reweight": reweight, "generating": generating}
