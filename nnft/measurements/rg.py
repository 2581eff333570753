"""Momentum-shell / Fisher-shell coarse-graining of cos-net ensembles (arXiv:2405.17538)."""
from __future__ import annotations

import math

import numpy as np

from ..lattice import UserError
from ._common import _arch, _is_lattice
from .base import Measurement, Option, register


def rg(ctx) -> dict:
    """Momentum-shell / Fisher-shell coarse-graining of a cos-net store (arXiv:2405.17538).

    ``rg_mode="information"``: Bayesian RG of any architecture with the Fisher metric computed
    from the networks (``observables.rg.information_flow``), see :func:`_information`.

    The store's chunks are regenerated without the neurons outside the cutoff
    (``observables.rg.rg_flow``); the coarse-grained propagator is compared momentum by momentum
    with the exact flow ``Gt(p) theta(Lambda - |p|)``; the local quartic fitted at each cutoff is
    reported with the same fit applied to the exact finite-N formula.
    """
    from ..observables.rg import fisher_to_momentum, rg_flow

    arch = _arch(ctx)
    if ctx.opt("rg_mode", "momentum") == "information":
        return _information(ctx)
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



def _information(ctx) -> dict:
    """Information-shell coarse-graining with the computed Fisher metric (any architecture)."""
    from ..ensembles import ContinuumCosNet
    from ..observables.rg import InformationShellSource, information_flow

    shell = ctx.opt("rg_shell", "remove")
    direction = ctx.opt("rg_direction", "uv_to_ir")
    noise = float(ctx.opt("rg_noise", 1.0))
    n_blocks = int(ctx.opt("n_blocks", 32))
    n_blocks = min(n_blocks, int(ctx.store.n_samples))
    cutoffs = ctx.opt("rg_cutoffs", None)
    try:
        if cutoffs is None:  # quartiles of the information of chunk 0's neurons
            info = InformationShellSource(ctx.store, 0.0, noise=noise).chunk_parameters(0)[2]
            cutoffs = [float(q) for q in np.quantile(info, [0.25, 0.5, 0.75])]
        ds = information_flow(ctx.store, cutoffs, shell=shell, direction=direction,
                              noise=noise, n_blocks=n_blocks)
    except ValueError as e:
        raise UserError(f"rg: {e}") from None
    cut = np.asarray(ds["cutoff"])
    out = {"quantity": "information-shell coarse-graining (Fisher metric computed from the "
                       "networks, observation noise rg_noise per site)",
           "mode": "information", "shell": shell, "direction": direction, "noise": noise,
           "cutoffs": cut.tolist(), "kept_fraction": np.asarray(ds["kept_fraction"]).tolist(),
           "separations": np.asarray(ds["r"]).tolist(),
           "G2": np.asarray(ds["G2"]).tolist(), "G2_error": np.asarray(ds["G2_error"]).tolist(),
           "G4c": np.asarray(ds["G4c"]).tolist(),
           "G4c_error": np.asarray(ds["G4c_error"]).tolist(),
           "verdict": ds.attrs.get("verdict")}
    summary = []
    for i, c in enumerate(cut):
        summary.append((f"I_c={c:.3g}: kept fraction of neurons", float(ds["kept_fraction"][i]),
                        None))
        summary.append((f"I_c={c:.3g}: G2(0, 0)", float(ds["G2"][i, 0]),
                        float(ds["G2_error"][i, 0])))
        summary.append((f"I_c={c:.3g}: G4c(0, 0, 0, 0)", float(ds["G4c"][i, 0]),
                        float(ds["G4c_error"][i, 0])))
    out["G2_momentum_shell"] = np.asarray(ds["G2_momentum_shell"]).tolist()
    out["G2_momentum_shell_error"] = np.asarray(ds["G2_momentum_shell_error"]).tolist()
    out["G4c_momentum_shell"] = np.asarray(ds["G4c_momentum_shell"]).tolist()
    out["G4c_momentum_shell_error"] = np.asarray(ds["G4c_momentum_shell_error"]).tolist()
    out["momentum_shell_cutoffs"] = np.asarray(ds["momentum_shell_cutoff"]).tolist()
    out["momentum_shell_max_abs_z"] = ds.attrs["momentum_shell_max_abs_z"]
    out["lam"] = np.asarray(ds["lam"]).tolist()
    out["lam_error"] = np.asarray(ds["lam_error"]).tolist()
    for i, c in enumerate(cut):
        summary.append((f"I_c={c:.3g}: G2(0, 0) of the momentum-shell flow (|p| <= "
                        f"{float(ds['momentum_shell_cutoff'][i]):.3g}, same kept fraction)",
                        float(ds["G2_momentum_shell"][i, 0]),
                        float(ds["G2_momentum_shell_error"][i, 0])))
        summary.append((f"I_c={c:.3g}: quartic coupling lambda (lattice vertex, flow's own G2)",
                        float(ds["lam"][i]), float(ds["lam_error"][i])))
    summary.append(("information shell vs momentum shell (same kept fraction): max |z| of G2 "
                    "(descriptive)", ds.attrs["momentum_shell_max_abs_z"], None))
    if "G2_expected" in ds:
        out["momentum_cutoffs"] = np.asarray(ds["momentum_cutoff"]).tolist()
        out["G2_expected"] = np.asarray(ds["G2_expected"]).tolist()
        out["max_abs_z"] = ds.attrs["max_abs_z"]
        out["passed"] = ds.attrs["passed"]
        summary.append(("G2 vs momentum-shell flow, max |z|", ds.attrs["max_abs_z"], None))
    if "restores_original" in ds.attrs:
        out["restores_original"] = ds.attrs["restores_original"]
        summary.append(("all shells added back = original ensemble (bit for bit)",
                        bool(ds.attrs["restores_original"]), None))
    if ds.attrs.get("verdict"):
        summary.append(("RG flow verdict", ds.attrs["verdict"], None))
    if isinstance(ctx.spec, ContinuumCosNet) and ctx.spec.form != "amplitude":
        out["note"] = "density form: the information is flat in |w| (no momentum ordering)"
    out["dataset"] = ds
    out["summary"] = summary
    return out


register(Measurement(
    name="rg",
    summary="momentum- or Fisher-shell coarse-graining of a cos-net (propagator flow against "
            "the exact shell flow, quartic coupling at each cutoff); information-shell "
            "(Bayesian RG) flow of any network from its computed Fisher metric",
    run=rg, requires=("spec", "periodic", "stored"),
    options=(Option("n_blocks", int, 32, "jackknife blocks", minimum=2),
             Option("rg_cutoffs", list, None, "cutoffs (momentum |p|, or information I_c in "
                    "fisher/information mode); default pi sqrt(d) x [1/4, 1/2, 3/4] (information "
                    "mode: quartiles of the computed neuron information)", minimum=0),
             Option("rg_mode", str, "momentum", "which shell is removed (information: "
                    "Fisher metric computed from the networks, any architecture)",
                    choices=("momentum", "fisher", "information")),
             Option("rg_shell", str, "remove", "information mode: remove the low-information "
                    "neurons or re-draw them from the prior", choices=("remove", "redraw")),
             Option("rg_direction", str, "uv_to_ir", "information mode: coarse-grain, or add "
                    "the shells back in order of information", choices=("uv_to_ir", "ir_to_uv")),
             Option("rg_noise", float, 1.0, "information mode: observation noise (standard "
                    "deviation per site) of the Fisher metric", minimum=0),
             Option("rg_metric", str, "pmag", "momentum magnitude |p| or lattice |p-hat|",
                    choices=("pmag", "phat")))))
