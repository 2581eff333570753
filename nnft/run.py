"""`nnft run`: generate the ensembles of a config, measure them, write the report.

Output folder layout::

    OUT/config.toml        the resolved config (defaults filled in)
    OUT/stores/NAME-N<width>.zarr   the ensembles (when keep_stores)
    OUT/results.json       every number in the report
    OUT/report.md, report.html, plots/*.png
    OUT/status.json        {"state": "running" | "complete" | "failed" | "interrupted", ...}
    OUT/.nnft.lock         held while a run works in the folder

The folder's state machine: a run takes the lock (a second run on the same folder is refused
in one line), checks that the folder is empty or an nnft run folder made by a config with the
same ensembles (otherwise it refuses before writing anything), then writes ``config.toml`` and
``status.json`` = "running". It ends in "complete" (only after the report is written), "failed"
(with the error) or "interrupted" (SIGINT / SIGTERM). Every file is written under a temporary
name and renamed; re-running the same config resumes the stores.
"""
from __future__ import annotations

import json
import os
import signal
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

from . import measurements as registry
from .config import dump_toml, geometry_from_config, seed_for, spec_for
from .errors import RunError
from .studies import STUDIES

STATUS = "status.json"
LOCK = ".nnft.lock"
# config keys that decide what the stores hold: a re-run must agree on them
_GENERATION_KEYS = ("seed", "backend", "dtype", "method", "keep_stores")
_ENSEMBLE_GENERATION_KEYS = ("arch", "lattice", "samples", "chunk", "params")

__all__ = ["run_config", "prepare_output", "run_folder", "RunError", "STATUS"]


def _write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


_jsonable = registry.jsonable


def _status(out: Path, state: str, **extra):
    _write_atomic(out / STATUS, json.dumps({"state": state, "time": time.time(),
                                            "pid": os.getpid(), **extra}))


def _generation_fingerprint(cfg: dict) -> dict:
    fp = {k: cfg.get(k) for k in _GENERATION_KEYS}
    fp["generator"] = cfg.get("generator", "reference")  # absent in configs written before
    fp["ensemble"] = {e["name"]: {k: e.get(k) for k in _ENSEMBLE_GENERATION_KEYS}
                      for e in cfg.get("ensemble", [])}
    for table in STUDIES:
        fp[table] = cfg.get(table)
    return fp


def _check_same_ensembles(out: Path, cfg: dict):
    """Refuse a folder whose config.toml made different ensembles (nothing written yet)."""
    old_path = out / "config.toml"
    if not old_path.exists():
        return
    try:
        old = tomllib.loads(old_path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"--out {str(out)!r}: its config.toml cannot be read ({e}); "
                       f"use another --out") from None
    a, b = _generation_fingerprint(old), _generation_fingerprint(cfg)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if a.get("ensemble") != b.get("ensemble"):
            names = sorted(n for n in set(a["ensemble"]) | set(b["ensemble"])
                           if a["ensemble"].get(n) != b["ensemble"].get(n))
            diff = [d for d in diff if d != "ensemble"] + [f"ensemble {n!r}" for n in names]
        raise RunError(f"--out {str(out)!r} holds a run of a different config (differs in "
                       f"{', '.join(diff)}); use another --out or the same config")


def prepare_output(out: Path) -> None:
    """Create ``out`` or check that it is an nnft run folder we may reuse (never touches
    anything else)."""
    if out.exists():
        if not out.is_dir():
            raise RunError(f"--out {str(out)!r} exists and is not a directory")
        if any(out.iterdir()) and not (out / STATUS).exists():
            raise RunError(f"--out {str(out)!r} exists, is not empty and is not an nnft run "
                           f"folder; nnft does not write into foreign folders")
    else:
        if not out.parent.exists():
            raise RunError(f"--out {str(out)!r}: parent directory does not exist")
        out.mkdir()


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while a run works (so the folder says "interrupted")."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def run_folder(out: Path, cfg: dict):
    """Hold the run folder ``out`` for a run of ``cfg``: lock, checks, state machine.

    Raises :class:`RunError` before writing anything when the folder is foreign, locked by
    another run, or made by a config with different ensembles.
    """
    from filelock import FileLock, Timeout

    prepare_output(out)
    lock = FileLock(str(out / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"--out {str(out)!r} is in use by another nnft run (lock {LOCK}); wait "
                       f"for it to finish or use another --out") from None
    except OSError as e:
        raise RunError(f"--out {str(out)!r}: cannot take the run lock ({e.strerror})") from None
    try:
        _check_same_ensembles(out, cfg)
        (out / "stores").mkdir(exist_ok=True)
        (out / "plots").mkdir(exist_ok=True)
        _write_atomic(out / "config.toml", dump_toml(cfg))
        _status(out, "running", started=time.time())
        try:
            with _terminate_as_interrupt():
                yield
        except KeyboardInterrupt:
            _safe_status(out, "interrupted",
                         note="completed chunks are kept; re-run the same config to resume")
            raise
        except BaseException as e:
            _safe_status(out, "failed", error=f"{type(e).__name__}: {e}")
            raise
    finally:
        lock.release()


def _safe_status(out, state, **extra):
    try:
        _status(out, state, **extra)
    except OSError:  # disk full / read-only: the error that got us here is reported anyway
        pass


def run_config(cfg: dict, out, *, quiet: bool = False) -> dict:
    """Run a resolved config into folder ``out``; return the results dict (also in results.json)."""
    from .lattice import get_xp

    out = Path(out)
    xp = get_xp(cfg["backend"])  # fails early for cupy without a device
    with run_folder(out, cfg):
        results = _run(cfg, out, xp, quiet)
        _status(out, "complete", finished=time.time(), wall_s=results["timings"]["total_s"])
    return results


def _run(cfg, out, xp, quiet):
    from .ensembles import generate
    from .observables.plan import measure_plans, stream_plans
    from .report import verdict_table, write_report

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
            ctx = registry.Context(ens["name"], spec, lattice, None, width, ens["options"],
                                   seed=cfg["seed"])
            plans = registry.shared_plans(ctx, ens["measure"])
            t0 = time.perf_counter()
            data, done = None, {}
            if cfg["keep_stores"]:
                log(f"[{ens['name']}] N={width}: generating {ens['samples']} networks -> {path}")
                ctx.store = generate(spec, lattice, ens["samples"], path, chunk=ens["chunk"],
                                     seed=seed, backend=cfg["backend"], dtype=cfg["dtype"],
                                     method=cfg["method"], progress=not quiet,
                                     generator=cfg.get("generator", "reference"))
                t_gen = time.perf_counter() - t0
                if plans:  # one pass over the store for every measurement that shares it
                    t0 = time.perf_counter()
                    meas, _ = measure_plans(ctx.store, plans, progress=not quiet)
                    data, done = registry.finalize_shared(plans, meas)
            else:  # measure on the fly: one pass, nothing stored
                log(f"[{ens['name']}] N={width}: generating and measuring {ens['samples']} networks")
                stream = stream_plans(plans, ens["samples"], ens["chunk"], lattice=lattice,
                                      spec=spec.to_dict())
                generate(spec, lattice, ens["samples"], None, chunk=ens["chunk"], seed=seed,
                         backend=cfg["backend"], dtype=cfg["dtype"], method=cfg["method"],
                         progress=not quiet, callback=stream,
                         generator=cfg.get("generator", "reference"))
                t_gen = time.perf_counter() - t0
                data, done = registry.finalize_shared(plans, stream.result())
                ctx.store = data
            row = {"generate_s": t_gen, "stored": bool(cfg["keep_stores"])}
            if plans and cfg["keep_stores"]:
                row["shared_pass_s"] = time.perf_counter() - t0
            for what in ens["measure"]:
                t0 = time.perf_counter()
                log(f"[{ens['name']}] N={width}: measuring {what}")
                row[what] = registry.run_one(what, ctx, data, done)
                row[f"{what}_s"] = time.perf_counter() - t0
            per_width[width] = row
        summary = registry.width_scan_summary(ens["widths"], {w: per_width[w] for w in ens["widths"]})
        results["ensembles"][ens["name"]] = {
            "arch": ens["arch"], "params": ens["params"], "lattice": lattice.to_dict(),
            "samples": ens["samples"], "widths": ens["widths"], "per_width": per_width,
            "scaling": summary}
    for table, study in STUDIES.items():
        if table in cfg:
            log(f"[{table}] {study.summary}")
            results[table] = study.run(cfg[table], out, quiet=quiet)
    results["verdicts"] = verdict_table(results)
    results["timings"]["total_s"] = time.perf_counter() - t_start
    write_report(results, out)
    _write_atomic(out / "results.json", json.dumps(_jsonable(results), indent=1))
    return results
