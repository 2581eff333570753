"""``nnft mcmc CONFIG.toml``: run Markov chains (HMC or Metropolis) into a FieldStore.

Config (TOML; every key is checked, unknown keys are errors)::

    [lattice]
    shape = [16, 16]                 # periodic, spacing 1

    [action]                         # docs/conventions.md section 4
    convention = "C"                 # C (m2, g), B (m2, lam), A (m2, lam), H (kappa, lam)
    m2 = 0.062826
    g = 0.0

    [sampler]
    kind = "hmc"                     # "hmc" or "metropolis"
    eps = 0.2                        # hmc: initial step size (tuned when chain.tune)
    traj_length = 4.0                # hmc: mean trajectory length
    integrator = "omelyan"           # hmc: "omelyan" or "leapfrog"
    n_steps_jitter = 0.5             # hmc: randomised number of steps, +-50%
    # delta = 1.0, n_hits = 1        # metropolis

    [chain]
    n_chains = 32
    n_times = 1000                   # measurements per chain
    chunk_times = 100                # measurements per chain per store chunk
    every = 1                        # updates between measurements
    n_therm = 200
    tune = true
    target_accept = 0.8              # default 0.8 (hmc), 0.5 (metropolis)
    n_tune_rounds = 20
    init = "hot"                     # "hot" or "cold"
    seed = 0
    backend = "numpy"                # numpy, cupy, auto
    dtype = "float64"

    [output]
    store = "chain.zarr"             # resumed (bit for bit) when it exists
    overwrite = false
"""
from __future__ import annotations

import time

from .lattice import UserError

SCHEMA = {
    "lattice": {"shape": list},
    "action": {"convention": str, "m2": (int, float), "g": (int, float), "lam": (int, float),
               "kappa": (int, float)},
    "sampler": {"kind": str, "eps": (int, float), "traj_length": (int, float),
                "integrator": str, "n_steps_jitter": (int, float), "delta": (int, float),
                "n_hits": int},
    "chain": {"n_chains": int, "n_times": int, "chunk_times": int, "every": int,
              "n_therm": int, "tune": bool, "target_accept": (int, float),
              "n_tune_rounds": int, "init": str, "seed": int, "backend": str, "dtype": str},
    "output": {"store": str, "overwrite": bool},
}
REQUIRED = {"lattice": ("shape",), "action": (), "sampler": ("kind",),
            "chain": ("n_chains", "n_times"), "output": ()}


def _sampler_keys(cls) -> set:
    """The keyword settings a sampler class accepts (its constructor's keyword-only args)."""
    import inspect

    return {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is p.KEYWORD_ONLY}


def add_parser(sub):
    p = sub.add_parser("mcmc", help="run HMC or Metropolis chains into a Zarr store",
                       description="Run independent Markov chains (HMC or checkerboard Metropolis) "
                                   "for a lattice scalar action described by a TOML config, write "
                                   "them to a FieldStore (resumable) and print a Gamma-method "
                                   "summary.")
    p.add_argument("config", help="TOML config (see nnft.mcmc_cli for the keys)")
    p.add_argument("--store", default=None, help="store path (overrides [output] store)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no per-chunk progress lines")
    p.set_defaults(func=main)
    return p


def load_config(path):
    """Read and validate a config file; returns the dict (ValueError naming the bad key)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config {str(path)!r} is not valid TOML: {e}") from None
    return validate_config(cfg)


def validate_config(cfg):
    """Check sections, keys and types of a config dict (see the module docstring)."""
    if not isinstance(cfg, dict):
        raise UserError("config must be a TOML table")
    for sec in cfg:
        if sec not in SCHEMA:
            raise UserError(f"unknown config section [{sec}]; allowed: {sorted(SCHEMA)}")
    for sec, keys in SCHEMA.items():
        tab = cfg.get(sec, {})
        if not isinstance(tab, dict):
            raise UserError(f"[{sec}] must be a table")
        for k, v in tab.items():
            if k not in keys:
                raise UserError(f"unknown key {sec}.{k}; allowed: {sorted(keys)}")
            typ = keys[k]
            ok = isinstance(v, typ) and not (isinstance(v, bool) and typ is not bool
                                              and bool not in (typ if isinstance(typ, tuple) else (typ,)))
            if not ok:
                raise UserError(f"{sec}.{k} has the wrong type ({type(v).__name__}): {v!r}")
        for k in REQUIRED[sec]:
            if k not in tab:
                raise UserError(f"missing required key {sec}.{k}")
    kind = cfg["sampler"]["kind"]
    from .lattice.mcmc import SAMPLERS

    if kind not in SAMPLERS:
        raise UserError(f"sampler.kind must be one of {sorted(SAMPLERS)}, got {kind!r}")
    own = _sampler_keys(SAMPLERS[kind])
    for k in cfg["sampler"]:
        if k != "kind" and k not in own:
            raise UserError(f"sampler.{k} does not apply to sampler.kind = {kind!r}; its "
                            f"settings are {sorted(own)}")
    shape = cfg["lattice"]["shape"]
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise UserError(f"lattice.shape must be a list of positive integers, got {shape!r}")
    return cfg


def build(cfg):
    """(sampler, run_chain keyword arguments) from a validated config."""
    from .lattice import Lattice
    from .lattice.actions import Phi4Action
    from .lattice.mcmc import make_sampler

    lat = Lattice(tuple(cfg["lattice"]["shape"]))
    a = dict(cfg.get("action", {}))
    conv = a.pop("convention", "C")
    action = Phi4Action.from_lattice(lat, conv, **a)
    s = dict(cfg["sampler"])
    kind = s.pop("kind")
    sampler = make_sampler(kind, action, **s)
    c = dict(cfg["chain"])
    kw = {"n_chains": c.pop("n_chains"), "n_times": c.pop("n_times"), "lattice": lat}
    kw.update(c)
    return sampler, kw


def main(args) -> int:
    from .lattice.mcmc import run_chain

    cfg = load_config(args.config)
    store = args.store or cfg.get("output", {}).get("store")
    if not store:
        raise UserError("no store path: set [output] store or pass --store")
    overwrite = bool(args.overwrite or cfg.get("output", {}).get("overwrite", False))
    sampler, kw = build(cfg)
    n_chains, n_times = kw.pop("n_chains"), kw.pop("n_times")
    t0 = time.perf_counter()
    res = run_chain(sampler, n_chains, n_times, store, overwrite=overwrite,
                    progress=not args.quiet, **kw)
    wall = time.perf_counter() - t0
    summarise(res, wall)
    return 0


def summarise(res, wall):
    """Print acceptance, <exp(-dH)>, the thermalisation check (split halves, Geweke, split
    R-hat, MSER cut) and a Gamma-method table (with exact free-field values)."""
    from .observables.gamma import chain_observables, gamma_error
    from .observables.thermalization import thermalization_check

    st = res.store
    act = res.settings
    print(f"{act['sampler']} chains: {res.n_chains} x {st.n_samples // res.n_chains} measurements "
          f"in {wall:.2f} s -> {st.path}")
    print(f"settings: {act}")
    print(f"acceptance {res.acceptance:.4f}")
    if res.exp_mdH is not None and res.exp_mdH.shape[0] > 1:
        g = gamma_error(res.exp_mdH.ravel(), n_replicas=res.n_chains)
        print(f"<exp(-dH)> = {g.value:.5f} +- {g.error:.5f} (must be 1)")
    try:
        a = thermalization_check(st).attrs
    except ValueError as e:  # too few measurements per chain for the split tests
        print(f"thermalisation: inconclusive (not checked: {e})")
    else:
        line = (f"thermalisation: {a.get('outcome')} "
                f"(p = {float(a.get('p_value', float('nan'))):.3g})")
        if a.get("outcome") != "consistent":
            line += (f"; discard the first {int(a.get('recommended_cut', 0))} measurements per "
                     f"chain or thermalise longer ({a.get('message', '')})")
        print(line)
    ds = chain_observables(st, include_primary=False)
    exact = _exact(st)
    print(f"{'observable':>10} {'value':>22} {'tau_int':>14} {'N_eff':>9}" +
          (f" {'exact':>10} {'z':>6}" if exact else ""))
    for o in ds.observable.values:
        v = ds.sel(observable=o)
        line = (f"{o:>10} {float(v.value):>12.6f} +- {float(v.error):<8.6f} "
                f"{float(v.tau_int):>6.2f} +- {float(v.dtau_int):<5.2f} {float(v.n_eff):>9.0f}")
        if exact:
            ex = exact[str(o)]
            line += f" {ex:>10.6f} {(float(v.value) - ex) / float(v.error):>6.2f}"
        print(line)


def _exact(store):
    spec = store.spec or {}
    if spec.get("convention") != "C" or spec.get("g", 1.0) != 0.0 or not spec.get("m2", 0) > 0:
        return None
    from .lattice import free_field_exact

    ex = free_field_exact(store.lattice, spec["m2"])
    return {k: ex[k] for k in ("chi", "G0", "E", "abs_M")}
