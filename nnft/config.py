"""Run configs: TOML files that say what `nnft run` generates, measures and reports.

A config is validated completely before any work starts; every mistake is reported in one line
that names the key (``ensemble[1].widths: must be a list of integers >= 1, got 'ten'``).

Layout::

    title = "..."                      # report title
    paper = "arXiv:2008.08601"         # optional: what is being reproduced
    claims = ["...", "..."]            # optional: the paper's claims, quoted in the report
    seed = 0                           # seed entropy (ensemble i, width j get derived seeds)
    backend = "numpy"                  # numpy | cupy | auto
    dtype = "float64"                  # float32 | float64 (storage and generation)
    method = "auto"                    # evaluation: auto | dense | spectral | cuda | fused
                                       # (fused: float32 GPU kernel drawing its own parameters)
    keep_stores = true                 # write Zarr stores (false: stream through accumulators)

    [[ensemble]]                       # one or more
    name = "cosnet"
    arch = "LatticeCosNet"             # any nnft.ensembles architecture
    lattice = { shape = [32, 32] }     # or { points = [[x], ...] } or { points = [...], scale = 0.01 }
    widths = [4, 16, 64, 256]
    samples = 20000                    # networks per width
    chunk = 2000
    params = { m2 = 0.0156 }           # the architecture's other fields (see its docstring)
    measure = ["propagator", "four_point", "cluster", "symmetry"]
    options = { ... }                  # measurement options (see MEASUREMENTS)
"""
from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

TOP_KEYS = {"title": str, "paper": str, "description": str, "claims": list, "seed": int,
            "backend": str, "dtype": str, "method": str, "keep_stores": bool, "ensemble": list, "mcmc": dict}
ENSEMBLE_KEYS = {"name": str, "arch": str, "lattice": dict, "widths": list, "samples": int,
                 "chunk": int, "params": dict, "measure": list, "options": dict}
LATTICE_KEYS = {"shape": list, "spacing": (int, float), "origin": (int, float, list),
                "boundary": str, "points": list, "scale": (int, float)}
MEASUREMENTS = ("propagator", "two_point", "four_point", "six_point", "cluster", "symmetry",
                "couplings", "rg", "reweight", "generating")
BACKENDS = ("numpy", "cupy", "auto")
METHODS = ("auto", "dense", "spectral", "cuda", "fused")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A mistake in a run config; the message is one line naming the key."""


def _type_name(t):
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return {"str": "a string", "int": "an integer", "bool": "true/false", "list": "a list",
            "dict": "a table"}.get(t.__name__, t.__name__)


def _check_type(where, value, t):
    ok = isinstance(value, t) and not (t in (int, (int, float)) and isinstance(value, bool))
    if t is int and isinstance(value, bool):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: must be {_type_name(t)}, got {value!r}")


def _check_keys(where, table, allowed):
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{where}{key}: unknown key; allowed keys are {sorted(allowed)}")
        _check_type(f"{where}{key}", value, allowed[key])


def load_config(path) -> dict:
    """Read and validate a TOML config file; return the resolved config (defaults filled in)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return resolve_config(raw)


def resolve_config(raw: dict) -> dict:
    """Validate a config dict and fill in defaults. Raises :class:`ConfigError` (one line)."""
    cfg = copy.deepcopy(raw)
    _check_keys("", cfg, TOP_KEYS)
    cfg.setdefault("title", "nnft run")
    cfg.setdefault("seed", 0)
    cfg.setdefault("backend", "numpy")
    cfg.setdefault("dtype", "float64")
    cfg.setdefault("keep_stores", True)
    cfg.setdefault("method", "auto")
    cfg.setdefault("claims", [])
    if cfg["seed"] < 0:
        raise ConfigError(f"seed: must be >= 0, got {cfg['seed']}")
    if cfg["backend"] not in BACKENDS:
        raise ConfigError(f"backend: must be one of {BACKENDS}, got {cfg['backend']!r}")
    if cfg["method"] not in METHODS:
        raise ConfigError(f"method: must be one of {METHODS}, got {cfg['method']!r}")
    if cfg["dtype"] not in DTYPES:
        raise ConfigError(f"dtype: must be one of {DTYPES}, got {cfg['dtype']!r}")
    for i, c in enumerate(cfg["claims"]):
        _check_type(f"claims[{i}]", c, str)
    if "mcmc" in cfg:
        from .compare import validate_mcmc_section

        cfg["mcmc"] = validate_mcmc_section(cfg["mcmc"])
    ensembles = cfg.get("ensemble")
    if not ensembles and "mcmc" not in cfg:
        raise ConfigError("ensemble: at least one [[ensemble]] table is required")
    names = set()
    for i, ens in enumerate(ensembles or []):
        where = f"ensemble[{i}]."
        _check_type(f"ensemble[{i}]", ens, dict)
        _check_keys(where, ens, ENSEMBLE_KEYS)
        for req in ("arch", "lattice", "widths", "samples"):
            if req not in ens:
                raise ConfigError(f"{where}{req}: required key is missing")
        ens.setdefault("name", f"{ens['arch']}-{i}")
        if ens["name"] in names:
            raise ConfigError(f"{where}name: duplicate ensemble name {ens['name']!r}")
        names.add(ens["name"])
        ens.setdefault("chunk", min(ens["samples"], 4096))
        ens.setdefault("params", {})
        ens.setdefault("measure", ["propagator"])
        ens.setdefault("options", {})
        _validate_lattice(where + "lattice.", ens["lattice"])
        if not ens["widths"] or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                                        for w in ens["widths"]):
            raise ConfigError(f"{where}widths: must be a non-empty list of integers >= 1, "
                              f"got {ens['widths']!r}")
        for key in ("samples", "chunk"):
            if ens[key] < 1:
                raise ConfigError(f"{where}{key}: must be >= 1, got {ens[key]}")
        for m in ens["measure"]:
            if m not in MEASUREMENTS:
                raise ConfigError(f"{where}measure: unknown measurement {m!r}; "
                                  f"known: {list(MEASUREMENTS)}")
        if not cfg["keep_stores"]:
            from .measurements import STREAMABLE

            for m in ens["measure"]:
                if m not in STREAMABLE:
                    raise ConfigError(f"{where}measure: {m!r} reads a stored ensemble; with "
                                      f"keep_stores = false only {sorted(STREAMABLE)} run on the fly")
        _validate_spec(where, ens)
    return cfg


def _validate_lattice(where, lat):
    _check_keys(where, lat, LATTICE_KEYS)
    if ("shape" in lat) == ("points" in lat):
        raise ConfigError(f"{where[:-1]}: give exactly one of 'shape' or 'points'")
    try:
        geometry_from_config(lat)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{where[:-1]}: {e}") from None


def geometry_from_config(lat: dict):
    """The Lattice or PointSet described by a config's ``lattice`` table."""
    from .lattice import Lattice, PointSet

    if "points" in lat:
        import numpy as np

        pts = np.asarray(lat["points"], dtype=float) * float(lat.get("scale", 1.0))
        return PointSet(pts)
    return Lattice(lat["shape"], lat.get("spacing", 1.0), lat.get("origin", 0.0),
                   lat.get("boundary", "periodic"))


def spec_for(ens: dict, width: int):
    """The architecture spec of ensemble table ``ens`` at ``width``."""
    from .ensembles import spec_from_dict

    return spec_from_dict({"arch": ens["arch"], "width": width, **ens["params"]})


def _validate_spec(where, ens):
    lattice = geometry_from_config(ens["lattice"])
    if "width" in ens["params"]:
        raise ConfigError(f"{where}params.width: give widths in {where}widths, not in params")
    try:
        spec = spec_for(ens, ens["widths"][0])
        spec.check_geometry(lattice)
    except ValueError as e:
        raise ConfigError(f"{where}params: {e}") from None


def seed_for(cfg: dict, i_ensemble: int, i_width: int, i_run: int = 0) -> int:
    """Seed entropy of ensemble ``i``, width ``j``, run ``r``: distinct, reproducible streams."""
    import numpy as np

    ss = np.random.SeedSequence(cfg["seed"], spawn_key=(1000 + i_ensemble, i_width, i_run))
    return int(ss.generate_state(2, dtype=np.uint64)[0])


def dump_toml(cfg: dict) -> str:
    """Write a resolved config back as TOML (the subset of TOML nnft configs use)."""
    lines = []

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else
                                                      ("inf" if v > 0 else "-inf"))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {v!r} as TOML")

    for k, v in cfg.items():
        if k in ("ensemble", "mcmc"):
            continue
        lines.append(f"{k} = {fmt(v)}")
    if "mcmc" in cfg:
        lines.append("\n[mcmc]")
        lines.extend(f"{k} = {fmt(v)}" for k, v in cfg["mcmc"].items())
    for ens in cfg.get("ensemble", []):
        lines.append("\n[[ensemble]]")
        lines.extend(f"{k} = {fmt(v)}" for k, v in ens.items())
    return "\n".join(lines) + "\n"
