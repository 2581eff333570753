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
    generator = "reference"            # reference | fast (CPU: float32 draws and evaluation,
                                       # same law, another random stream; docs/generation.md)
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
    options = { ... }                  # measurement options: see docs/measurements.md
                                       # (every key is checked against the registry)
"""
from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import tomli_w

from . import measurements as registry
from .errors import ConfigError
from .studies import STUDIES

TOP_KEYS = {"title": str, "paper": str, "description": str, "claims": list, "seed": int,
            "backend": str, "dtype": str, "method": str, "generator": str, "keep_stores": bool,
            "ensemble": list,
            **{table: dict for table in STUDIES}}
ENSEMBLE_KEYS = {"name": str, "arch": str, "lattice": dict, "widths": list, "samples": int,
                 "chunk": int, "params": dict, "measure": list, "options": dict}
LATTICE_KEYS = {"shape": list, "spacing": (int, float), "origin": (int, float, list),
                "boundary": str, "points": list, "scale": (int, float)}
BACKENDS = ("numpy", "cupy", "auto")
METHODS = ("auto", "dense", "spectral", "cuda", "fused")
DTYPES = ("float32", "float64")
GENERATORS = ("reference", "fast")

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def check_plain_name(where: str, name: str) -> str:
    """``name`` if it is a plain file name (letters, digits, ``. _ + -``; no path separators,
    no leading dot, at most 100 characters), else :class:`ConfigError`."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"{where}: must be a plain name (letters, digits, '.', '_', '+', '-'; "
                          f"no '/' or leading '.'), got {name!r}")
    return name


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
    cfg.setdefault("generator", "reference")
    cfg.setdefault("claims", [])
    if cfg["seed"] < 0:
        raise ConfigError(f"seed: must be >= 0, got {cfg['seed']}")
    if cfg["backend"] not in BACKENDS:
        raise ConfigError(f"backend: must be one of {BACKENDS}, got {cfg['backend']!r}")
    if cfg["method"] not in METHODS:
        raise ConfigError(f"method: must be one of {METHODS}, got {cfg['method']!r}")
    if cfg["dtype"] not in DTYPES:
        raise ConfigError(f"dtype: must be one of {DTYPES}, got {cfg['dtype']!r}")
    if cfg["generator"] not in GENERATORS:
        raise ConfigError(f"generator: must be one of {GENERATORS}, got {cfg['generator']!r}")
    if cfg["generator"] == "fast" and (cfg["backend"] == "cupy"
                                       or cfg["method"] in ("cuda", "fused")):
        raise ConfigError(f"generator: 'fast' is a CPU path (backend 'numpy', method 'auto', "
                          f"'dense' or 'spectral'), got backend {cfg['backend']!r}, method "
                          f"{cfg['method']!r}")
    for i, c in enumerate(cfg["claims"]):
        _check_type(f"claims[{i}]", c, str)
    for table, study in STUDIES.items():
        if table in cfg:
            cfg[table] = study.validate(cfg[table])
    ensembles = cfg.get("ensemble")
    if not ensembles and not any(t in cfg for t in STUDIES):
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
        check_plain_name(f"{where}name", ens["name"])
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
        if len(set(ens["widths"])) != len(ens["widths"]):
            raise ConfigError(f"{where}widths: each width may appear once, got {ens['widths']!r}")
        for key in ("samples", "chunk"):
            if ens[key] < 1:
                raise ConfigError(f"{where}{key}: must be >= 1, got {ens[key]}")
        for j, m in enumerate(ens["measure"]):
            _check_type(f"{where}measure[{j}]", m, str)
            if m not in registry.REGISTRY:
                raise ConfigError(f"{where}measure: unknown measurement {m!r}; "
                                  f"known: {registry.names()}")
        if len(set(ens["measure"])) != len(ens["measure"]):
            raise ConfigError(f"{where}measure: each measurement may appear once, "
                              f"got {ens['measure']!r}")
        if not cfg["keep_stores"]:
            for m in ens["measure"]:
                if not registry.get(m).streamable:
                    raise ConfigError(f"{where}measure: {m!r} reads a stored ensemble; with "
                                      f"keep_stores = false only {registry.streamable()} run "
                                      f"on the fly")
        try:
            ens["options"] = registry.check_options(f"{where}options.", ens["measure"],
                                                    ens["options"])
        except registry.OptionError as e:
            raise ConfigError(str(e)) from None
        _validate_spec(where, ens, cfg["generator"])
        _check_requirements(where, ens)
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


def _validate_spec(where, ens, generator="reference"):
    lattice = geometry_from_config(ens["lattice"])
    if "width" in ens["params"]:
        raise ConfigError(f"{where}params.width: give widths in {where}widths, not in params")
    try:
        spec = spec_for(ens, ens["widths"][0])
        spec.check_geometry(lattice)
    except ValueError as e:
        raise ConfigError(f"{where}params: {e}") from None
    if generator == "fast":
        from .ensembles.params import fast_supported

        if not fast_supported(spec):
            raise ConfigError(f"{where}arch: generator = 'fast' supports the single-layer nets, "
                              f"LatticeCosNet and MassMixtureCosNet, not {ens['arch']!r} (use "
                              f"generator = 'reference')")


def seed_for(cfg: dict, i_ensemble: int, i_width: int, i_run: int = 0) -> int:
    """Seed entropy of ensemble ``i``, width ``j``, run ``r``: distinct, reproducible streams."""
    import numpy as np

    ss = np.random.SeedSequence(cfg["seed"], spawn_key=(1000 + i_ensemble, i_width, i_run))
    return int(ss.generate_state(2, dtype=np.uint64)[0])


def dump_toml(cfg: dict) -> str:
    """A resolved config as TOML text (tomli-w: any title or string round-trips through
    :func:`tomllib.loads`)."""
    return tomli_w.dumps(cfg)


def _check_requirements(where, ens):
    """Each listed measurement applies to this ensemble (spec, kernel, lattice kind)."""
    lattice = geometry_from_config(ens["lattice"])
    is_lattice = getattr(lattice, "kind", "") == "lattice"
    for name in ens["measure"]:
        req = registry.get(name).requires
        if ("lattice" in req or "periodic" in req) and not is_lattice:
            raise ConfigError(f"{where}measure: {name!r} needs a lattice, not a point set")
        if "periodic" in req and not getattr(lattice, "periodic", False):
            raise ConfigError(f"{where}measure: {name!r} needs a periodic lattice")
