"""Network ensembles against Markov chains on the free lattice scalar, driven by a run config.

The ``[mcmc]`` table of a run config (validated by :func:`validate_mcmc_section`)::

    [mcmc]
    sizes = [8, 16, 32]                 # lattice extents L (d = 2, even, >= 4)
    m_E_L = 4.0                         # m_E L fixed: m^2 = (2 sinh(m_E/2))^2, m_E = m_E_L / L
    samplers = ["hmc", "metropolis"]    # hmc (tau_MD = 1), hmc-xi (tau_MD = L/4), metropolis
    networks = ["cosnet-V", "cosnet-4V", "exact"]   # LatticeCosNet at N = V, 4V; exact sampler
    samples = 20000                     # independent configurations per network method
    chains = 16                         # Markov chains run side by side
    trajectories = 1500                 # measurements per chain (Metropolis: 2x sweeps)
    n_therm = 200                       # thermalisation updates (after step-size tuning)
    target_rel_error = 0.01             # for the "time to target error" column
    seed = 1

For every (method, L) :func:`run_mcmc_comparison` measures chi, E, G0 and <|M|> per sample,
analyses them with the Gamma method (docs/conventions.md; chains as replicas, independent
samples give tau_int = 1/2), and reports tau_int, wall time per sample and per independent sample
(wall / N_eff(chi)), time to reach the target relative error on chi and on E, and the bias
against the exact free-field values (docs/conventions.md section 3) in standard errors. Wall time counts
generation and the per-sample measurement on one process; MCMC cost is production only (the
chains' own production timer: tuning and thermalisation are reported separately as
``warmup_s`` in the row's ``detail``, not charged to the samples, as for the networks, which
need none).
"""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["MCMC_DEFAULTS", "SAMPLERS", "NETWORKS", "validate_mcmc_section", "smoke_mcmc_section",
           "run_mcmc_comparison", "m2_for", "machine", "analyse_series", "run_independent",
           "run_markov", "plot_cost", "summary_rows", "machine_tag"]

SAMPLERS = ("hmc", "hmc-xi", "metropolis")
NETWORKS = ("cosnet-V", "cosnet-4V", "exact")
MCMC_DEFAULTS = {"sizes": [8, 16, 32], "m_E_L": 4.0, "samplers": ["hmc", "metropolis"],
                 "networks": ["cosnet-V", "cosnet-4V", "exact"], "samples": 20000, "chains": 16,
                 "trajectories": 1500, "n_therm": 200, "target_rel_error": 0.01, "seed": 1}
_TYPES = {"sizes": list, "m_E_L": (int, float), "samplers": list, "networks": list,
          "samples": int, "chains": int, "trajectories": int, "n_therm": int,
          "target_rel_error": (int, float), "seed": int}


def _err(msg):
    return ConfigError(msg)


def validate_mcmc_section(section) -> dict:
    """Validate a config's ``[mcmc]`` table and return a copy with the defaults filled in.

    Raises
    ------
    nnft.config.ConfigError
        One line naming the key (``mcmc.sizes: ...``).
    """
    if not isinstance(section, dict):
        raise _err(f"mcmc: must be a table, got {section!r}")
    for key, value in section.items():
        if key not in _TYPES:
            raise _err(f"mcmc.{key}: unknown key; allowed keys are {sorted(_TYPES)}")
        t = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, t):
            name = {list: "a list", int: "an integer"}.get(t, "a number")
            raise _err(f"mcmc.{key}: must be {name}, got {value!r}")
    s = {**MCMC_DEFAULTS, **section}
    sizes = s["sizes"]
    if not sizes or not all(isinstance(L, int) and not isinstance(L, bool) and L >= 4 and L % 2 == 0
                            for L in sizes):
        raise _err(f"mcmc.sizes: must be a non-empty list of even integers >= 4, got {sizes!r}")
    for key, allowed in (("samplers", SAMPLERS), ("networks", NETWORKS)):
        for v in s[key]:
            if v not in allowed:
                raise _err(f"mcmc.{key}: unknown entry {v!r}; known: {list(allowed)}")
    if not s["samplers"] and not s["networks"]:
        raise _err("mcmc.samplers: give at least one sampler or network method")
    for key, lo in (("samples", 100), ("chains", 1), ("trajectories", 20), ("n_therm", 0),
                    ("seed", 0)):
        if s[key] < lo:
            raise _err(f"mcmc.{key}: must be >= {lo}, got {s[key]}")
    if not (math.isfinite(s["m_E_L"]) and s["m_E_L"] > 0):
        raise _err(f"mcmc.m_E_L: must be > 0, got {s['m_E_L']}")
    if not 0 < s["target_rel_error"] < 1:
        raise _err(f"mcmc.target_rel_error: must be in (0, 1), got {s['target_rel_error']}")
    s["m_E_L"] = float(s["m_E_L"])
    s["target_rel_error"] = float(s["target_rel_error"])
    return s


def smoke_mcmc_section(section: dict, samples: int) -> dict:
    """A validated copy of ``section`` scaled for a smoke run (the ``--samples`` override):
    the two smallest sizes only, ``samples`` independent configurations per network method and
    ``samples // chains`` (at least 50) measurements per chain."""
    s = validate_mcmc_section(section)
    s["sizes"] = sorted(s["sizes"])[:2]
    s["samples"] = max(100, int(samples))
    s["trajectories"] = max(50, int(samples) // s["chains"])
    s["n_therm"] = min(s["n_therm"], max(20, s["trajectories"] // 2))
    return validate_mcmc_section(s)


def m2_for(L, m_E_L=4.0):
    """Bare m^2 with m_E L = ``m_E_L``: m = 2 sinh(m_E/2) (inverse of m_E = 2 arcsinh(m/2))."""
    return (2 * math.sinh(m_E_L / (2 * L))) ** 2


def machine() -> dict:
    """CPU, core count, platform and versions (for reports of timings)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"cpu": cpu, "cores": cores, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "backend": "numpy"}


def machine_tag() -> str:
    """Short machine name for benchmark result files, e.g. ``AMD-EPYC-2cores``."""
    import re

    m = machine()
    words = re.sub(r"\(R\)|\(TM\)|CPU|Processor|\d+-Core", "", m["cpu"]).split()
    return "-".join(words[:2] + [f"{m['cores']}cores"])


def analyse_series(series, R, V, exact, wall, n_updates, label, L, *, rel_err=0.01, extra=None):
    """Gamma-method row for one (method, L) from primary series (n, 5) of ``R`` replicas."""
    from .observables.gamma import chain_observables

    ds = chain_observables(series, n_replicas=R, volume=V, include_primary=False)
    row = {"method": label, "L": L, "n_samples": int(series.shape[0]), "wall_s": wall,
           "time_per_sample_s": wall / series.shape[0], "n_updates": int(n_updates)}
    for o in ("chi", "E", "G0", "abs_M"):
        v = ds.sel(observable=o)
        val, err = float(v.value), float(v.error)
        row[o] = {"value": val, "error": err, "exact": float(exact[o]),
                  "z": (val - exact[o]) / err, "tau_int": float(v.tau_int),
                  "dtau_int": float(v.dtau_int), "n_eff": float(v.n_eff)}
        if o in ("chi", "E"):
            row[o]["time_to_target_s"] = wall * (err / (rel_err * abs(exact[o]))) ** 2
    row["time_per_indep_sample_s"] = wall / row["chi"]["n_eff"]
    per_chain = series.shape[0] // R
    row["tau_reliable"] = bool(per_chain > 50 * row["chi"]["tau_int"])
    if extra:
        row.update(extra)
    return row


def run_independent(kind, L, n, width_factor=None, *, seed=1, m_E_L=4.0, rel_err=0.01):
    """Exact Fourier sampler (``kind="exact"``) or LatticeCosNet at N = width_factor * V."""
    from .lattice import Lattice, free_field_exact, sample_free_field
    from .observables.gamma import primary_series

    lat = Lattice((L, L))
    m2 = m2_for(L, m_E_L)
    parts = []

    def cb(k, phi, lw):
        parts.append(primary_series(np.asarray(phi), 2))

    chunk = min(n, max(100, 2 ** 18 // lat.volume))
    t0 = time.perf_counter()
    if kind == "exact":
        sample_free_field(lat, m2, n, chunk=chunk, seed=seed, callback=cb)
        label = "exact sampler"
    else:
        from .ensembles import LatticeCosNet, generate

        generate(LatticeCosNet(width_factor * lat.volume, m2), lat, n, chunk=chunk, seed=seed,
                 callback=cb)
        label = f"cos-net N={width_factor}V" if width_factor != 1 else "cos-net N=V"
    wall = time.perf_counter() - t0
    return analyse_series(np.concatenate(parts), 1, lat.volume, free_field_exact(lat, m2), wall,
                          n, label, L, rel_err=rel_err)


def run_markov(kind, L, n_chains, n_times, *, traj_length=1.0, seed=1, n_therm=200, m_E_L=4.0,
               rel_err=0.01, label=None):
    """HMC (``kind="hmc"``, Omelyan, randomised length ``traj_length``) or checkerboard
    Metropolis on the free action; one measurement per trajectory / sweep."""
    from .lattice import Lattice, free_field_exact
    from .lattice.actions import free_action
    from .lattice.mcmc import make_sampler, run_chain
    from .observables.gamma import gamma_error, primary_series

    lat = Lattice((L, L))
    m2 = m2_for(L, m_E_L)
    act = free_action(lat, m2)
    settings = {"hmc": {"traj_length": traj_length, "eps": min(0.5, traj_length)},
                "metropolis": {"delta": 1.5}}
    sampler = make_sampler(kind, act, **settings.get(kind, {}))
    label = label or (f"HMC tau={traj_length:g}" if kind == "hmc" else kind.capitalize())
    parts = []
    t0 = time.perf_counter()
    res = run_chain(sampler, n_chains, n_times, callback=lambda k, phi, lw: parts.append(
        primary_series(phi, 2)), seed=seed, n_therm=n_therm,
        chunk_times=max(1, 2 ** 17 // (n_chains * lat.volume)))
    total = time.perf_counter() - t0
    # charge only production to the samples (warm-up excluded, reported separately)
    wall = float(res.timings.get("production", total))
    extra = {"settings": res.settings, "acceptance": float(res.acceptance), "n_chains": n_chains,
             "warmup_s": float(res.timings.get("warmup", 0.0)), "total_s": total}
    if res.exp_mdH is not None:
        g = gamma_error(np.asarray(res.exp_mdH).ravel(), n_replicas=n_chains)
        extra["exp_mdH"] = {"value": float(g.value), "error": float(g.error)}
    return analyse_series(np.concatenate(parts), n_chains, lat.volume, free_field_exact(lat, m2),
                          wall, n_times * n_chains, label, L, rel_err=rel_err, extra=extra)


def _jobs(s, L):
    seed, mel, rel = s["seed"], s["m_E_L"], s["target_rel_error"]
    jobs = []
    for net in s["networks"]:
        if net == "exact":
            jobs.append(lambda: run_independent("exact", L, s["samples"], seed=seed, m_E_L=mel,
                                                rel_err=rel))
        else:
            f = 1 if net == "cosnet-V" else 4
            jobs.append(lambda f=f: run_independent("net", L, s["samples"], f, seed=seed,
                                                    m_E_L=mel, rel_err=rel))
    for smp in s["samplers"]:
        kw = dict(seed=seed, n_therm=s["n_therm"], m_E_L=mel, rel_err=rel)
        if smp == "hmc":
            jobs.append(lambda kw=kw: run_markov("hmc", L, s["chains"], s["trajectories"], **kw))
        elif smp == "hmc-xi":
            jobs.append(lambda kw=kw: run_markov("hmc", L, s["chains"], s["trajectories"],
                                                 traj_length=L / 4.0, label="HMC tau=L/4", **kw))
        else:
            jobs.append(lambda kw=kw: run_markov("metropolis", L, s["chains"],
                                                 2 * s["trajectories"], **kw))
    return jobs


def plot_cost(rows, path, title=""):
    """log-log PNG of wall seconds per independent sample (chi) against L, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    for meth in methods:
        rs = sorted((r for r in rows if r["method"] == meth), key=lambda r: r["L"])
        ax.loglog([r["L"] for r in rs], [r["time_per_indep_sample_s"] for r in rs], "o-",
                  label=meth)
    ax.set_xlabel("L (d = 2, m_E L fixed)")
    ax.set_ylabel("wall seconds per independent sample (chi)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def summary_rows(rows):
    """(label, value, error) rows: cost per independent sample, tau_int and bias per method/L."""
    out = []
    for r in rows:
        tag = f"L={r['L']} {r['method']}"
        out.append((f"{tag}: us per independent sample", r["time_per_indep_sample_s"] * 1e6, None))
        out.append((f"{tag}: tau_int(chi)", r["chi"]["tau_int"], r["chi"]["dtau_int"]))
        out.append((f"{tag}: bias z(chi), z(E)", f"{r['chi']['z']:+.2f}, {r['E']['z']:+.2f}", None))
    return out


def run_mcmc_comparison(section: dict, out, *, quiet: bool = False) -> dict:
    """Run the ``[mcmc]`` comparison of a run config into ``out`` (PNG under ``out/plots``).

    Returns
    -------
    dict
        ``settings`` (validated section), ``machine``, ``rows`` (one per method and L: ``method``,
        ``L``, ``tau_int`` (chi), ``cost_per_indep_sample_s``, ``bias_z_chi``, ``bias_z_E``,
        ``time_to_target_chi_s``, ``time_to_target_E_s`` plus the full per-observable detail
        under ``detail``), ``plot`` (path of the PNG), ``wall_s`` and ``summary`` rows.
    """
    s = validate_mcmc_section(section)
    out = Path(out)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    t_start = time.perf_counter()
    # warm-up (imports, FFT plans) so that the first timed method is not charged for them
    for kind, f in (("exact", None), ("net", 1)):
        run_independent(kind, 4, 100, f, seed=s["seed"])
    detail = []
    for L in s["sizes"]:
        for job in _jobs(s, L):
            r = job()
            detail.append(r)
            log(f"[mcmc] L={L:>3} {r['method']:<16} tau(chi)={r['chi']['tau_int']:7.2f} "
                f"{r['time_per_indep_sample_s'] * 1e6:11.1f} us/indep  z(chi)={r['chi']['z']:+.2f}"
                f" z(E)={r['E']['z']:+.2f}")
    rows = [{"method": r["method"], "L": r["L"], "tau_int": r["chi"]["tau_int"],
             "tau_int_E": r["E"]["tau_int"], "tau_reliable": r["tau_reliable"],
             "time_per_sample_s": r["time_per_sample_s"],
             "cost_per_indep_sample_s": r["time_per_indep_sample_s"],
             "bias_z_chi": r["chi"]["z"], "bias_z_E": r["E"]["z"],
             "time_to_target_chi_s": r["chi"]["time_to_target_s"],
             "time_to_target_E_s": r["E"]["time_to_target_s"], "detail": r} for r in detail]
    mach = machine()
    plot = plot_cost(detail, out / "plots" / "mcmc-cost.png",
                     title=f"free field, m_E L = {s['m_E_L']:g}; {mach['cpu']} x{mach['cores']}")
    return {"settings": s, "machine": mach, "rows": rows, "plot": str(plot),
            "wall_s": time.perf_counter() - t_start, "summary": summary_rows(detail)}
