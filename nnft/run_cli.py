"""``nnft run [CONFIG.toml] [--out DIR]``: the main job."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path


def _measurements_epilog() -> str:
    from . import measurements as registry

    rows = [f"  {n:<11s} {m.summary}" for n, m in registry.REGISTRY.items()]
    return ("measurements (measure = [...] in an [[ensemble]] table; their options are listed "
            "in docs/measurements.md):\n" + "\n".join(rows))


def add_parser(sub):
    import argparse

    p = sub.add_parser("run", epilog=_measurements_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter, help="generate, measure and report a run config (default: the 2D "
                                   "lattice free scalar from a cos-net)",
                       description="Run a config: generate the network ensembles into Zarr stores, "
                                   "measure them and write a report (markdown, HTML, PNG plots).")
    p.add_argument("config", nargs="?", default=None,
                   help="TOML run config (default: the embedded 2D cos-net free-scalar run)")
    p.add_argument("--out", default=None, help="output folder (default: nnft-run-<config name>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--samples", type=int, default=None,
                   help="override every ensemble's number of networks (e.g. a quick smoke run)")
    p.add_argument("--backend", default=None, choices=("numpy", "cupy", "auto"),
                   help="override the config's array backend")
    p.add_argument("--widths", default=None,
                   help="override every ensemble's widths, comma-separated (e.g. 2,8,32)")
    p.set_defaults(func=main)
    return p


def default_config_text() -> str:
    return resources.files("nnft").joinpath("configs/default.toml").read_text()


def override(cfg: dict, *, samples=None, widths=None, backend=None) -> dict:
    """A copy of ``cfg`` with every ensemble's samples and/or widths, or the backend, replaced
    (re-validated)."""
    from .config import resolve_config
    from .errors import ConfigError

    cfg = dict(cfg)
    if backend is not None:
        cfg["backend"] = backend
    ensembles = []
    for ens in cfg.get("ensemble", []):
        ens = dict(ens)
        if samples is not None:
            if samples < 1:
                raise ConfigError(f"--samples: must be >= 1, got {samples}")
            ens["samples"] = samples
            ens["chunk"] = min(ens["chunk"], samples)
        if widths is not None:
            try:
                ens["widths"] = [int(w) for w in str(widths).split(",")]
            except ValueError:
                raise ConfigError(f"--widths: must be comma-separated integers, got {widths!r}") from None
        ensembles.append(ens)
    if ensembles:
        cfg["ensemble"] = ensembles
    if samples is not None:
        from .studies import STUDIES

        for table, study in STUDIES.items():
            if table in cfg:
                cfg[table] = study.smoke(cfg[table], samples)
    return resolve_config(cfg)


def main(args) -> int:
    import tomllib

    from .config import load_config, resolve_config
    from .run import run_config

    if args.config is None:
        cfg = resolve_config(tomllib.loads(default_config_text()))
        stem = "default"
    else:
        cfg = load_config(args.config)
        stem = Path(args.config).stem
    if args.samples is not None or args.widths is not None or args.backend is not None:
        cfg = override(cfg, samples=args.samples, widths=args.widths, backend=args.backend)
    from .resources import check_fits, estimate, existing_store_bytes, sample_plan_lines

    out = Path(args.out or f"nnft-run-{stem}")
    est = estimate(cfg)
    if args.check:
        print(f"config OK: {len(cfg.get('ensemble', []))} ensemble(s)")
        for line in est.lines():
            print(f"  {line}")
        for line in sample_plan_lines(cfg):
            print(f"  {line}")
        check_fits(est, out, existing_bytes=existing_store_bytes(out))
        return 0
    check_fits(est, out, existing_bytes=existing_store_bytes(out))
    if not args.quiet:
        print("; ".join(est.lines()), flush=True)
    t0 = time.perf_counter()
    run_config(cfg, out, quiet=args.quiet)
    print(f"report: {out / 'report.md'} (and report.html) in {time.perf_counter() - t0:.1f} s")
    return 0
