"""`nnft run`: generate the ensembles of a config, measure them, write the report.

Output folder layout::

    OUT/config.toml        the resolved config (defaults filled in)
    OUT/stores/NAME-N<width>[-r<run>].zarr   the ensembles (when keep_stores)
    OUT/results.json       every number in the report
    OUT/report.md, report.html, plots/*.png
    OUT/status.json        {"state": "running" | "complete", ...}

``status.json`` says "complete" only after the report is written, so an interrupted run is
never mistaken for a finished one; re-running the same config resumes the stores.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .config import dump_toml, geometry_from_config, seed_for, spec_for

STATUS = "status.json"


class RunError(ValueError):
    """The output folder cannot be used."""


def _write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()
                if k not in ("data", "dataset", "datasets")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def prepare_output(out: Path) -> None:
    """Create ``out`` or check that it is an nnft run folder we may reuse."""
    if out.exists():
        if not out.is_dir():
            raise RunError(f"--out {str(out)!r} exists and is not a directory")
        if any(out.iterdir()) and not (out / STATUS).exists():
            raise RunError(f"--out {str(out)!r} exists, is not empty and is not an nnft run folder")
    else:
        if not out.parent.exists():
            raise RunError(f"--out {str(out)!r}: parent directory does not exist")
        out.mkdir()
    (out / "stores").mkdir(exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)


def run_config(cfg: dict, out, *, quiet: bool = False) -> dict:
    """Run a resolved config into folder ``out``; return the results dict (also in results.json)."""
    from . import measurements as M
    from .ensembles import generate
    from .lattice import get_xp
    from .observables import StreamingMeasurement
    from .report import write_report

    out = Path(out)
    xp = get_xp(cfg["backend"])  # fails early for cupy without a device
    prepare_output(out)
    _write_atomic(out / STATUS, json.dumps({"state": "running", "started": time.time()}))
    _write_atomic(out / "config.toml", dump_toml(cfg))
    t_start = time.perf_counter()
    results = {"title": cfg["title"], "paper": cfg.get("paper"), "claims": cfg.get("claims", []),
               "description": cfg.get("description"), "backend": xp.__name__,
               "ensembles": {}, "timings": {}}
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    for i, ens in enumerate(cfg.get("ensemble", [])):
        lattice = geometry_from_config(ens["lattice"])
        per_width = {}
        for j, width in enumerate(ens["widths"]):
            spec = spec_for(ens, width)
            seed = seed_for(cfg, i, j)
            path = out / "stores" / f"{ens['name']}-N{width}.zarr"
            ctx = M.Context(ens["name"], spec, lattice, None, width, ens["options"], seed=cfg["seed"])
            t0 = time.perf_counter()
            if cfg["keep_stores"]:
                log(f"[{ens['name']}] N={width}: generating {ens['samples']} networks -> {path}")
                ctx.store = generate(spec, lattice, ens["samples"], path, chunk=ens["chunk"],
                                     seed=seed, backend=cfg["backend"], dtype=cfg["dtype"],
                                     method=cfg["method"], progress=not quiet)
            else:  # measure on the fly: one pass, nothing stored
                log(f"[{ens['name']}] N={width}: generating and measuring {ens['samples']} networks")
                stream = StreamingMeasurement(M.streaming_accumulators(ctx, ens["measure"]),
                                              ens["samples"], ens["chunk"],
                                              blocks=max(20, int(ens["options"].get("n_sub", 10))),
                                              lattice=lattice, spec=spec.to_dict())
                generate(spec, lattice, ens["samples"], None, chunk=ens["chunk"], seed=seed,
                         backend=cfg["backend"], dtype=cfg["dtype"], method=cfg["method"],
                         progress=not quiet, callback=stream)
                ctx.store = stream.result()
            t_gen = time.perf_counter() - t0
            row = {"generate_s": t_gen, "stored": bool(cfg["keep_stores"])}
            for what in ens["measure"]:
                if what not in M.MEASURE:
                    continue  # cross-width or config-level measurement handled below
                t0 = time.perf_counter()
                log(f"[{ens['name']}] N={width}: measuring {what}")
                row[what] = M.MEASURE[what](ctx)
                row[f"{what}_s"] = time.perf_counter() - t0
            per_width[width] = row
        summary = M.width_scan_summary(ens["widths"], {w: per_width[w] for w in ens["widths"]})
        results["ensembles"][ens["name"]] = {
            "arch": ens["arch"], "params": ens["params"], "lattice": lattice.to_dict(),
            "samples": ens["samples"], "widths": ens["widths"], "per_width": per_width,
            "scaling": summary}
    if "mcmc" in cfg:
        from .compare import run_mcmc_comparison

        log("[mcmc] network ensembles against Markov chains")
        results["mcmc"] = run_mcmc_comparison(cfg["mcmc"], out, quiet=quiet)
    results["timings"]["total_s"] = time.perf_counter() - t_start
    write_report(results, out)
    _write_atomic(out / "results.json", json.dumps(_jsonable(results), indent=1))
    _write_atomic(out / STATUS, json.dumps({"state": "complete", "finished": time.time(),
                                             "wall_s": results["timings"]["total_s"]}))
    return results
