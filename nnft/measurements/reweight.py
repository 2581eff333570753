"""phi^4 (convention C) by reweighting a free lattice ensemble with exp(-Delta S)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..lattice import UserError
from ._common import _arch, _is_lattice
from .base import Measurement, Option, register


def reweight(ctx) -> dict:
    """phi^4 (convention C) by reweighting a free lattice ensemble with exp(-Delta S).

    The ensemble must be a free scalar on a periodic lattice whose spec has ``m2``
    (LatticeCosNet: exact propagator at every N; at finite N the base is non-Gaussian and the
    reweighted result carries O(1/N) corrections, which the width scan shows). Reports the Kish
    ESS and the reweighted chi, E, G0, <|M|> with block-jackknife errors, the free values and,
    with ``hmc_trajectories > 0``, an HMC reference on the same target with z-scores.
    ``theory`` names what was sampled (the deformed width-N network theory); the ``nongaussian_*``
    keys estimate, on the first at most 4000 samples, how far the base's finite-N
    non-Gaussianity moves the reweighted chi and <|M|> from the lattice theory (see
    :func:`_nongaussianity`), with a ``nongaussian_warning`` when it exceeds their errors.
    """
    from ..lattice import free_field_exact
    from ..lattice.actions import Phi4Action
    from ..observables.reweighting import ReweightingWarning, _G0, reweighted_observables

    if not (_is_lattice(ctx) and getattr(ctx.lattice, "periodic", False)):
        raise UserError("reweight: needs a periodic lattice")
    if getattr(ctx.spec, "components", None) is not None or not hasattr(ctx.spec, "m2"):
        raise UserError(f"reweight: needs a scalar free-field ensemble with m2, got {_arch(ctx)}")
    if "g" not in (ctx.options or {}):
        raise UserError("options.g: reweight needs the quartic coupling g (convention C)")
    g = float(ctx.options["g"])
    if not g >= 0:
        raise UserError(f"options.g: must be >= 0, got {g}")
    match = ctx.opt("match", "hartree")
    base = float(ctx.spec.m2)
    shape = tuple(ctx.lattice.shape)
    if "m2_target" in ctx.options:
        m2t = float(ctx.options["m2_target"])
    elif match == "hartree":
        m2t = base - 0.5 * g * _G0(shape, base)  # its Hartree mass is the base mass
    elif match == "bare":
        m2t = base
    else:
        raise UserError(f"options.match: must be 'hartree' or 'bare', got {match!r}")
    target = Phi4Action(shape, "C", m2=m2t, g=g)
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always", ReweightingWarning)
        ds = reweighted_observables(ctx.store, target, base,
                                    n_blocks=int(ctx.opt("n_blocks", 50)))
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
    nt = min(int(ctx.opt("hmc_trajectories", 0)), max(50, ctx.store.n_samples // 4))
    if nt > 0:
        ref = _hmc_reference(target, nt, ctx.seed)
        out["hmc"] = ref
        for o in ("chi", "E", "G0", "abs_M"):
            h = ref[o]
            z = (out[o] - h["value"]) / math.hypot(out[f"{o}_error"], h["error"])
            out[f"{o}_z_vs_hmc"] = z
            summary.append((f"{o} HMC (tau_int {h['tau_int']:.2g}); z(reweighted - HMC) = {z:+.2f}",
                            h["value"], h["error"]))
    out.update(_nongaussianity(ctx, target, base, out, summary))
    out["dataset"] = ds
    out["summary"] = summary
    return out


NONGAUSS_MAX_SAMPLES = 4000
NONGAUSS_Z = 2.807  # norm.isf(0.01 / 2 / 2): two-sided level 0.01 over two observables


def _nongaussianity(ctx, target, base, out, summary) -> dict:
    """Finite-N non-Gaussianity of the base ensemble and its effect on the reweighted chi and
    <|M|>, from a bounded subsample (the first chunks, at most ``NONGAUSS_MAX_SAMPLES``
    samples; ``reweighting_nongaussianity`` needs them in memory).

    The subsample and an exact Gaussian ensemble with the same propagator (the N -> infinity
    base) are reweighted by the same Delta S; the difference (``shift``) is the effect of the
    base's non-Gaussianity. Verdict per observable: "inconsistent" (the reweighted value is not
    the lattice theory's: |shift| > the full run's statistical error and |z| > NONGAUSS_Z, the
    two-sided level 0.01 Bonferroni-corrected over the two observables; a warning),
    "consistent" (|shift| + 2 shift_error < the statistical error: the effect is resolved to be
    below it) or "inconclusive" (the subsample cannot tell).
    """
    from ..ensembles import LatticePotential, reweighting_nongaussianity

    store = ctx.store
    parts, n = [], 0
    for k in range(store.n_chunks):
        if n >= NONGAUSS_MAX_SAMPLES:
            break
        phi, _ = store.read_chunk(k)
        phi = np.asarray(phi, dtype=np.float64)[: NONGAUSS_MAX_SAMPLES - n]
        parts.append(phi)
        n += phi.shape[0]
    phi = np.concatenate(parts)
    d = len(target.shape)
    axes = tuple(range(1, 1 + d))
    V = int(np.prod(target.shape))
    pot = LatticePotential({2: 0.5 * (target.m2 - base), 4: target.g / 24.0})
    estimators = {"chi": lambda f: V * f.mean(axis=axes) ** 2,  # <M> = 0: Delta S is even
                  "abs_M": lambda f: np.abs(f.mean(axis=axes))}
    res = {"theory": (f"deformed width-{ctx.width} network theory (the free ensemble reweighted "
                      f"by exp(-Delta S)); lattice phi^4 (convention C) m2={target.m2:.6g}, "
                      f"g={target.g:g} only as N -> infinity"),
           "nongaussian_subsample": int(n)}
    verdicts, warns = [], []
    for o, f in estimators.items():
        r = reweighting_nongaussianity(phi, pot, f, m2=base, seed=int(ctx.seed) + 4)
        stat = float(out[f"{o}_error"])
        shift, se = r["shift"], r["shift_error"]
        z = shift / se if se > 0 else float("inf")
        if abs(shift) > stat and abs(z) > NONGAUSS_Z:
            v = "inconsistent"
            warns.append(f"{o} by {shift:.3g} +- {se:.2g} ({z:+.1f} sigma, above its "
                         f"statistical error {stat:.2g})")
        elif abs(shift) + 2 * se < stat:
            v = "consistent"
        else:
            v = "inconclusive"
        res["nongaussian_u4"], res["nongaussian_u4_error"] = r["u4"], r["u4_error"]
        res[f"nongaussian_{o}_shift"] = shift
        res[f"nongaussian_{o}_shift_error"] = se
        res[f"nongaussian_{o}_z"] = z
        res[f"nongaussian_{o}_verdict"] = v
        verdicts.append(f"{o} {v} (shift {shift:+.3g} +- {se:.2g})")
    res["nongaussian_warning"] = None
    if warns:
        res["nongaussian_warning"] = (
            f"the reweighted values belong to the deformed width-{ctx.width} network theory, not "
            f"lattice phi^4: the base's non-Gaussianity (u4 = {res['nongaussian_u4']:.3g} +- "
            f"{res['nongaussian_u4_error']:.2g}) moves " + "; ".join(warns)
            + "; use a wider network or the exact Gaussian base")
    summary.append((f"finite-N non-Gaussianity (first {n} samples, against an exact Gaussian "
                    f"base with the same propagator, reweighted alike)",
                    "; ".join(verdicts) + (" -- WARNING: " + res["nongaussian_warning"]
                                           if warns else ""), None))
    return res


_HMC_CACHE: dict = {}


def _hmc_reference(target, n_traj, seed, n_chains=16):
    """HMC reference values on ``target`` (cached per target, length and seed: the widths of a
    scan share it)."""
    key = (repr(target.to_dict()), int(n_traj), int(seed), int(n_chains))
    if key not in _HMC_CACHE:
        _HMC_CACHE[key] = _hmc_run(target, n_traj, seed, n_chains)
    return dict(_HMC_CACHE[key])


def _hmc_run(target, n_traj, seed, n_chains):
    from ..lattice.mcmc import HMC, run_chain
    from ..observables.gamma import chain_observables, primary_series

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



register(Measurement(
    name="reweight",
    summary="phi^4 (convention C) by reweighting the free ensemble with exp(-Delta S): Kish "
            "ESS, reweighted chi, E, G0, |M|, optionally against HMC",
    run=reweight, requires=("spec", "periodic", "stored"),
    options=(Option("n_blocks", int, 50, "jackknife blocks", minimum=2),
             Option("g", float, None, "the g/4! phi^4 coupling (convention C)", minimum=0,
                    required=True),
             Option("match", str, "hartree", "target bare mass: 'hartree' (its Hartree mass is "
                    "the ensemble's m2) or 'bare' (the ensemble's m2)", choices=("hartree", "bare")),
             Option("m2_target", float, None, "explicit bare mass of the target (overrides match)"),
             Option("hmc_trajectories", int, 0, "HMC reference: trajectories per chain (16 "
                    "chains; 0 = none; capped at samples / 4)", minimum=0))))
