"""Parameter-space Markov chains on deformed cos-nets against field-space HMC, from a run config.

The ``[param_mcmc]`` table of a run config (validated by :func:`validate_param_mcmc`)::

    [param_mcmc]
    widths = [144, 288, 576, 1152]      # network widths N of the deformed cos-net (>= 1)
    amplitude = "gaussian"              # amplitude law of the base network ("constant")
    base_m2 = "hartree"                 # base mass^2: "hartree", "bare" or a number > 0
    sampler = "hmc"                     # ParamHMC ("hmc") or the independence sampler
    n_chains = 16                       # chains side by side
    n_times = 400                       # measurements per chain (one update each)
    n_therm = 100                       # thermalisation updates (after step-size tuning)
    hmc = true                          # field-space HMC on the limit action as reference
    hmc_times = 1600                    # HMC trajectories per chain (default 4 n_times)
    observables = ["abs_M", "chi", "E"] # subset of abs_M, chi, E, G0
    order = 1                           # extrapolation polynomial degree in 1/N (1 or 2)
    alpha = 0.01                        # level of the 1/N fit test and of the HMC comparison
    seed = 1

    [[param_mcmc.target]]               # one table per coupling point (or a single table)
    label = "strong"
    shape = [6, 6]
    convention = "A"                    # C (m2, g), B / A (m2, lam) as nnft.lattice.Phi4Action
    m2 = -4.0
    lam = 6.975
    # kinetic = 0.5                     # optional derivative term: kinetic term times 1 + kinetic

For every target and width N, :func:`run_param_mcmc` samples the deformed width-N lattice cos-net
``P(theta) exp(-Delta S[phi_theta])`` whose N -> infinity limit is the target
(:meth:`nnft.ensembles.DeformedCosNet.from_action`) with :func:`nnft.ensembles.run_param_chain`,
measures the observables with the Gamma method (chains as replicas), extrapolates them in 1/N
(:func:`nnft.ensembles.width_extrapolation`) and compares the N -> infinity value with field-space
HMC on the target action (z = difference / combined error). Observables are in convention C
(S = sum_x [1/2 (d phi)^2 + 1/2 m^2 phi^2 + (g/4!) phi^4]; quadratic observables of a convention-A
target are twice those in A). Verdicts: "consistent" / "inconsistent" at level ``alpha``
(two-sided, from z), "inconclusive" when the 1/N fit itself is rejected at that level. They also
go, as ``verdict_rows``, into the run-wide verdict table of the report (Holm correction over every
test of the run).

A target may carry a derivative term: ``kinetic = c`` (a number > -1) multiplies the kinetic term
of the target's action by ``1 + c`` (the same factor in conventions C, B and A). The deformation
then gains ``(c/2) sum_x sum_mu (phi(x+mu) - phi(x))^2`` (convention C), and the field HMC
reference samples the rescaled field ``phi' = sqrt(1 + c) phi``, whose action is phi^4 in
convention C with ``m'^2 = m^2/(1 + c)`` and ``g' = g/(1 + c)^2`` (:func:`reference_action`);
its observables are converted back to phi (``|M|`` divided by ``sqrt(1 + c)``, chi, E and G0 by
``1 + c``).
"""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["PARAM_MCMC_DEFAULTS", "OBSERVABLES", "validate_param_mcmc", "smoke_param_mcmc",
           "run_param_mcmc", "target_action", "reference_action", "field_hmc_reference",
           "compare_to_reference", "verdict_rows", "plot_extrapolation"]

OBSERVABLES = ("abs_M", "chi", "E", "G0")
SAMPLER_KINDS = ("hmc", "independence")
PARAM_MCMC_DEFAULTS = {"widths": [144, 288, 576, 1152], "amplitude": "gaussian",
                       "base_m2": "hartree", "sampler": "hmc", "n_chains": 16, "n_times": 400,
                       "n_therm": 100, "hmc": True, "hmc_times": None,
                       "observables": ["abs_M", "chi", "E"], "order": 1, "alpha": 0.01,
                       "seed": 1}
_TYPES = {"target": (dict, list), "widths": list, "amplitude": str, "base_m2": (str, int, float),
          "sampler": str, "n_chains": int, "n_times": int, "n_therm": int, "hmc": bool,
          "hmc_times": int, "observables": list, "order": int, "alpha": (int, float),
          "seed": int}
_TARGET_KEYS = ("label", "shape", "convention", "m2", "g", "lam", "kinetic")
# observables linear (abs_M) and quadratic (chi, E, G0) in the field, for the field rescaling
_FIELD_POWER = {"abs_M": 1, "chi": 2, "E": 2, "G0": 2}


def _err(msg):
    return ConfigError(msg)


def _type_name(t):
    if t is bool:
        return "true or false"
    if t is list:
        return "a list"
    if t is int:
        return "an integer"
    if t is str:
        return "a string"
    if t == (dict, list):
        return "a table or a list of tables"
    if t == (str, int, float):
        return "a string or a number"
    return "a number"


def _validate_target(t, i):
    """One target table -> resolved dict with ``label`` and a Phi4Action-ready ``action`` dict."""
    where = f"param_mcmc.target[{i}]"
    if not isinstance(t, dict):
        raise _err(f"{where}: must be a table, got {t!r}")
    for k in t:
        if k not in _TARGET_KEYS:
            raise _err(f"{where}.{k}: unknown key; allowed keys are {list(_TARGET_KEYS)}")
    shape = t.get("shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 2 for n in shape)):
        raise _err(f"{where}.shape: must be a list of 1 to 4 integers >= 2, got {shape!r}")
    conv = t.get("convention", "C")
    if conv not in ("C", "B", "A"):
        raise _err(f"{where}.convention: must be 'C', 'B' or 'A', got {conv!r}")
    coupling = "g" if conv == "C" else "lam"
    other = "lam" if conv == "C" else "g"
    if other in t:
        raise _err(f"{where}.{other}: convention {conv} uses {coupling}, not {other}")
    for k in ("m2", coupling):
        v = t.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _err(f"{where}.{k}: must be a finite number, got {v!r}")
    if t[coupling] < 0:
        raise _err(f"{where}.{coupling}: must be >= 0, got {t[coupling]}")
    if t[coupling] == 0 and t["m2"] <= 0:
        raise _err(f"{where}.m2: a free target needs m2 > 0, got {t['m2']}")
    label = t.get("label", f"point {i}")
    if not isinstance(label, str) or not label:
        raise _err(f"{where}.label: must be a non-empty string, got {label!r}")
    act = {"shape": list(shape), "convention": conv, "m2": float(t["m2"]),
           coupling: float(t[coupling])}
    if "kinetic" in t:
        c = t["kinetic"]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
            raise _err(f"{where}.kinetic: must be a finite number > -1 (the kinetic term is "
                       f"multiplied by 1 + kinetic), got {c!r}")
        if not c > -1:
            raise _err(f"{where}.kinetic: must be > -1 (the kinetic term is multiplied by "
                       f"1 + kinetic, which must stay positive), got {c}")
        act["kinetic"] = float(c)
    return {"label": label, **act}


def validate_param_mcmc(section) -> dict:
    """Validate a config's ``[param_mcmc]`` table; a copy with the defaults filled in.

    ``target`` becomes a list of tables (one per coupling point).

    Raises
    ------
    nnft.errors.ConfigError
        One line naming the key (``param_mcmc.widths: ...``).
    """
    if not isinstance(section, dict):
        raise _err(f"param_mcmc: must be a table, got {section!r}")
    for key, value in section.items():
        if key not in _TYPES:
            raise _err(f"param_mcmc.{key}: unknown key; allowed keys are {sorted(_TYPES)}")
        t = _TYPES[key]
        bad = (isinstance(value, bool) and t is not bool) or not isinstance(value, t)
        if key == "hmc_times" and value is None:
            bad = False
        if bad:
            raise _err(f"param_mcmc.{key}: must be {_type_name(t)}, got {value!r}")
    if "target" not in section:
        raise _err("param_mcmc.target: required (a table with shape, convention, m2 and g or lam)")
    s = {**PARAM_MCMC_DEFAULTS, **section}
    targets = s["target"] if isinstance(s["target"], list) else [s["target"]]
    if not targets:
        raise _err("param_mcmc.target: give at least one target table")
    s["target"] = [_validate_target(t, i) for i, t in enumerate(targets)]
    labels = [t["label"] for t in s["target"]]
    if len(set(labels)) != len(labels):
        raise _err(f"param_mcmc.target: labels must differ, got {labels}")
    w = s["widths"]
    if not w or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in w):
        raise _err(f"param_mcmc.widths: must be a non-empty list of integers >= 1, got {w!r}")
    s["widths"] = sorted(set(w))
    if s["amplitude"] not in ("gaussian", "constant"):
        raise _err(f"param_mcmc.amplitude: must be 'gaussian' or 'constant', got {s['amplitude']!r}")
    b = s["base_m2"]
    if isinstance(b, str):
        if b not in ("hartree", "bare"):
            raise _err(f"param_mcmc.base_m2: must be 'hartree', 'bare' or a number > 0, got {b!r}")
    elif isinstance(b, bool) or not (math.isfinite(b) and b > 0):
        raise _err(f"param_mcmc.base_m2: must be 'hartree', 'bare' or a number > 0, got {b!r}")
    else:
        s["base_m2"] = float(b)
    if s["base_m2"] == "bare":
        for t in s["target"]:
            if t["m2"] <= 0:
                raise _err(f"param_mcmc.base_m2: 'bare' needs every target m2 > 0 (target "
                           f"{t['label']!r} has {t['m2']}); use 'hartree'")
    for i, t in enumerate(s["target"]):
        if t.get("g", t.get("lam")) == 0:  # a quadratic deformation can fail to be normalisable
            try:
                _deformed_theory(s, t, 1)
            except ValueError as e:
                raise _err(f"param_mcmc.target[{i}]: the deformed density is not normalisable "
                           f"({e})") from None
    if s["sampler"] not in SAMPLER_KINDS:
        raise _err(f"param_mcmc.sampler: must be one of {list(SAMPLER_KINDS)}, got {s['sampler']!r}")
    for key, lo in (("n_chains", 2), ("n_times", 20), ("n_therm", 0), ("seed", 0)):
        if s[key] < lo:
            raise _err(f"param_mcmc.{key}: must be >= {lo}, got {s[key]}")
    if s["hmc_times"] is not None and s["hmc_times"] < 20:
        raise _err(f"param_mcmc.hmc_times: must be >= 20, got {s['hmc_times']}")
    obs = s["observables"]
    if not obs or any(o not in OBSERVABLES for o in obs) or len(set(obs)) != len(obs):
        raise _err(f"param_mcmc.observables: must be distinct entries of {list(OBSERVABLES)}, "
                   f"got {obs!r}")
    if s["order"] not in (1, 2):
        raise _err(f"param_mcmc.order: must be 1 or 2, got {s['order']}")
    if len(s["widths"]) < s["order"] + 1:
        raise _err(f"param_mcmc.widths: order {s['order']} needs at least {s['order'] + 1} "
                   f"distinct widths, got {s['widths']}")
    if not 0 < s["alpha"] < 1:
        raise _err(f"param_mcmc.alpha: must be in (0, 1), got {s['alpha']}")
    s["alpha"] = float(s["alpha"])
    s["observables"] = list(obs)
    return s


def smoke_param_mcmc(section: dict, samples: int) -> dict:
    """A validated copy of ``section`` scaled for a smoke run (``nnft run --samples``):
    at most 8 chains, ``samples // n_chains`` (at least 20) measurements per chain, as many
    HMC trajectories, at most 20 thermalisation updates and the ``order + 2`` smallest widths."""
    s = validate_param_mcmc(section)
    s["n_chains"] = min(s["n_chains"], 8)
    s["n_times"] = max(20, int(samples) // s["n_chains"])
    s["hmc_times"] = s["n_times"]
    s["n_therm"] = min(s["n_therm"], 20)
    s["widths"] = s["widths"][: s["order"] + 2]
    return validate_param_mcmc(s)


def target_action(target: dict):
    """The :class:`nnft.lattice.Phi4Action` of a validated target table's m2 and coupling (its
    derivative term ``kinetic``, if any, is not part of it: see :func:`reference_action`)."""
    from .lattice import Phi4Action

    kw = {k: v for k, v in target.items() if k in ("m2", "g", "lam")}
    return Phi4Action(tuple(target["shape"]), target["convention"], **kw)


def reference_action(target: dict):
    """``(action, field_scale)``: the phi^4 action in convention C that field-space HMC samples
    for ``target``, and the factor with ``phi' = field_scale * phi``.

    Without a derivative term this is the target itself in convention C and 1. With
    ``kinetic = c`` the target's action ``sum_x [(1 + c)/2 (d phi)^2 + m^2/2 phi^2 + g/4! phi^4]``
    (C) is that of ``phi' = sqrt(1 + c) phi`` with ``m'^2 = m^2/(1 + c)``, ``g' = g/(1 + c)^2``.
    """
    from .lattice import Phi4Action

    act = target_action(target)
    act_c = act if act.convention == "C" else act.to("C")
    kf = 1.0 + float(target.get("kinetic", 0.0))
    if kf == 1.0:
        return act_c, 1.0
    return Phi4Action(act_c.shape, "C", m2=act_c.m2 / kf, g=act_c.g / kf ** 2), math.sqrt(kf)


def _base_m2(choice, act_c):
    """Base mass^2 for the (rescaled, when there is a derivative term) action ``act_c``."""
    from .ensembles.deformed import hartree_mass
    from .lattice import Lattice

    if choice == "hartree":
        return hartree_mass(act_c.m2, act_c.g, Lattice(act_c.shape))
    if choice == "bare":
        return act_c.m2
    return float(choice)


def _analyse(parts, n_chains, volume, observables):
    from .observables.gamma import chain_observables

    ds = chain_observables(np.concatenate(parts), n_replicas=n_chains, volume=volume,
                           include_primary=False)
    out = {}
    for o in observables:
        d = ds.sel(observable=o)
        out[o] = float(d.value)
        out[f"{o}_error"] = float(d.error)
        out[f"{o}_tau_int"] = float(d.tau_int)
    return out


def field_hmc_reference(action, n_chains, n_times, *, seed, n_therm=100,
                        observables=("abs_M", "chi", "E"), field_scale=1.0) -> dict:
    """Field-space HMC (Omelyan, trajectory length 1, step size tuned to acceptance 0.8) on
    ``action`` converted to convention C: flat row with each observable, ``<o>_error``,
    ``<o>_tau_int`` (Gamma method, chains as replicas), ``acceptance`` and ``eps``.

    With ``field_scale`` s != 1 the action is that of ``phi' = s phi`` (see
    :func:`reference_action`) and the observables are returned for phi: ``|M|`` divided by s,
    chi, E and G0 by s^2 (errors alike; tau_int unchanged)."""
    from .lattice.mcmc import make_sampler, run_chain
    from .observables.gamma import primary_series

    act = action if action.convention == "C" else action.to("C")
    parts = []
    t0 = time.perf_counter()
    res = run_chain(make_sampler("hmc", act, traj_length=1.0), n_chains, n_times, seed=seed,
                    n_therm=n_therm, callback=lambda k, phi, lw: parts.append(
                        primary_series(np.asarray(phi), len(act.shape))))
    row = {"method": "field HMC", "N": None, "acceptance": float(res.acceptance),
           "eps": float(res.settings["eps"]), "n_chains": n_chains, "n_times": n_times}
    row.update(_analyse(parts, n_chains, act.volume, observables))
    s = float(field_scale)
    if s != 1.0:
        for o in observables:
            f = s ** _FIELD_POWER[o]
            row[o] /= f
            row[f"{o}_error"] /= f
        row["field_scale"] = s
    row["wall_s"] = time.perf_counter() - t0
    return row


def compare_to_reference(extrapolated: dict, reference: dict, observables, alpha=0.01) -> dict:
    """z-scores and verdicts of N -> infinity values against a reference row.

    Returns ``{o: {"z", "p_value", "verdict"}}``: "consistent" when the two-sided p-value of z is
    >= ``alpha``, "inconsistent" below, "inconclusive" when the 1/N fit of ``o`` was rejected
    (``extrapolated[o + "_fit_verdict"] == "inconsistent"``) or an error is not positive.
    """
    from scipy.stats import norm

    out = {}
    for o in observables:
        v, e = extrapolated[o], extrapolated[f"{o}_error"]
        hv, he = reference[o], reference[f"{o}_error"]
        se = math.hypot(e, he)
        if not (se > 0 and math.isfinite(se)):
            out[o] = {"z": float("nan"), "p_value": float("nan"), "verdict": "inconclusive"}
            continue
        z = (v - hv) / se
        p = float(2 * norm.sf(abs(z)))
        if extrapolated.get(f"{o}_fit_verdict") == "inconsistent":
            verdict = "inconclusive"
        else:
            verdict = "consistent" if p >= alpha else "inconsistent"
        out[o] = {"z": float(z), "p_value": p, "verdict": verdict}
    return out


def verdict_rows(label, extrapolated, comparison, observables) -> list:
    """Rows of the run-wide verdict table (:func:`nnft.report.verdict_table`) for one target:
    each observable's N -> infinity extrapolation against the field HMC reference, with the
    two-sided p-value of its z and the study's verdict (the table applies Holm's correction over
    every test of the run)."""
    rows = []
    for o in observables:
        c = comparison[o]
        p = c["p_value"]
        fit_p = extrapolated.get(f"{o}_fit_p_value")
        note = f"z = {c['z']:+.2f}" if math.isfinite(c["z"]) else "no positive error"
        if extrapolated.get(f"{o}_fit_verdict") == "inconsistent":
            note += f"; the 1/N fit is rejected (p = {fit_p:.2g}): not decided"
        rows.append({"ensemble": f"param_mcmc: {label}", "N": "N -> infinity",
                     "check": f"{o} (convention C): 1/N extrapolation of the deformed cos-net "
                              f"against field HMC",
                     "expected": "field HMC on the limit lattice action",
                     "p_value": float(p) if isinstance(p, float) and math.isfinite(p) else None,
                     "verdict": c["verdict"], "note": note})
    return rows


def _deformed_theory(s, target, N, base=None):
    """The deformed width-N cos-net whose N -> infinity limit is ``target`` (``base``: its base
    mass^2, default from ``s["base_m2"]``)."""
    from .ensembles.deformed import DeformedCosNet

    act = target_action(target)
    act_c = act if act.convention == "C" else act.to("C")
    if base is None:
        base = _base_m2(s["base_m2"], reference_action(target)[0])
    return DeformedCosNet.from_action(act_c, N, base_m2=base, amplitude=s["amplitude"],
                                      kinetic=float(target.get("kinetic", 0.0)))


def _safe_label(label) -> str:
    """A target label as a file-name part (letters, digits, '-', '_' and '.' kept)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("._") or "target"


def _run_widths(s, ip, target, log, out=None):
    from .ensembles.deformed import width_extrapolation
    from .ensembles.param_chains import IndependenceSampler, ParamHMC, run_param_chain
    from .observables.gamma import primary_series

    act = target_action(target)
    act_c = act if act.convention == "C" else act.to("C")
    kin = float(target.get("kinetic", 0.0))
    base = _base_m2(s["base_m2"], reference_action(target)[0])
    rows, theory = [], None
    for iw, N in enumerate(s["widths"]):
        theory = _deformed_theory(s, target, N, base)
        sampler = ParamHMC(theory) if s["sampler"] == "hmc" else IndependenceSampler(theory)
        parts = []
        t0 = time.perf_counter()
        # chains are stored in the run folder, so an interrupted run resumes each width from
        # its last complete chunk (complete chunks are replayed to the callback)
        store = None
        if out is not None:
            (Path(out) / "param_mcmc").mkdir(parents=True, exist_ok=True)
            store = Path(out) / "param_mcmc" / f"{_safe_label(target['label'])}-N{N}.zarr"
        res = run_param_chain(sampler, s["n_chains"], s["n_times"], store,
                              seed=s["seed"] + 1000 * ip + iw + 1,
                              n_therm=s["n_therm"], callback=lambda k, phi, lw: parts.append(
                                  primary_series(np.asarray(phi), len(act_c.shape))))
        wall = time.perf_counter() - t0
        row = {"point": target["label"], "method": f"param {s['sampler']}", "N": N,
               "N_over_V": N / act_c.volume, "acceptance": res.acceptance}
        if s["sampler"] == "hmc":
            row["eps"] = float(res.settings["eps"])
            row["neuron_acceptance"] = res.neuron_acceptance
            row["exp_mdH"] = res.exp_mdH_mean()[0]
        row.update(_analyse(parts, s["n_chains"], act_c.volume, s["observables"]))
        row["wall_s"] = wall
        rows.append(row)
        log(f"[param_mcmc] {target['label']}: N={N:>6} acc={res.acceptance:.3f} " + " ".join(
            f"{o}={row[o]:.5g}({row[o + '_error']:.2g})" for o in s["observables"]))
    ext = {"point": target["label"], "method": f"N -> infinity ({'1/N' if s['order'] == 1 else '1/N^2'} fit)",
           "N": None}
    for o in s["observables"]:
        fit = width_extrapolation([r["N"] for r in rows], [r[o] for r in rows],
                                  [r[f"{o}_error"] for r in rows], order=s["order"],
                                  alpha=s["alpha"])
        ext[o] = fit["value"]
        ext[f"{o}_error"] = fit["error"]
        ext[f"{o}_slope"] = fit["slope"]
        ext[f"{o}_fit_p_value"] = fit["p_value"]
        ext[f"{o}_fit_verdict"] = fit["fit_verdict"]
        # the other form (1/N alone or with a 1/N^2 term), when the widths leave it a degree of
        # freedom: at strong coupling the approach is faster than 1/N, and a 1/N fit can pass its
        # own test and still miss; the spread between the two is the honest systematic
        alt = 3 - s["order"]
        if len(set(s["widths"])) >= alt + 2:
            f2 = width_extrapolation([r["N"] for r in rows], [r[o] for r in rows],
                                     [r[f"{o}_error"] for r in rows], order=alt,
                                     alpha=s["alpha"])
            ext[f"{o}_other_order"] = alt
            ext[f"{o}_other_value"] = f2["value"]
            ext[f"{o}_other_error"] = f2["error"]
            ext[f"{o}_other_fit_p_value"] = f2["p_value"]
    lim = theory.limit()
    tc = {"m2": act_c.m2, "g": act_c.g}
    if "kinetic" in target:
        tc["kinetic"] = kin
    info = {"label": target["label"], "target": {k: v for k, v in target.items() if k != "label"},
            "target_convention_C": tc, "base_m2": base,
            "sampled_theory": theory.name.replace(f"width-{theory.width}", "width-N"),
            "limit": lim["description"]}
    return rows, ext, info


def plot_extrapolation(points, observables, path, title=""):
    """PNG: each observable against 1/N per point, the 1/N fit line and the field HMC value at
    1/N = 0 (written under a temporary name, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(observables)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, o in zip(axes[0], observables):
        for k, (label, rows, ext, ref) in enumerate(points):
            col = f"C{k}"
            x = np.array([1.0 / r["N"] for r in rows])
            ax.errorbar(x, [r[o] for r in rows], [r[f"{o}_error"] for r in rows], fmt="o",
                        color=col, ms=4, label=f"{label}: deformed width-N net")
            xs = np.linspace(0.0, x.max() * 1.05, 50)
            b1 = ext[f"{o}_slope"]
            # the plotted line is the linear part of the fit (exact for order 1)
            ax.plot(xs, ext[o] + b1 * xs, "-", color=col, lw=1)
            ax.errorbar([0.0], [ext[o]], [ext[f"{o}_error"]], fmt="s", color=col, ms=5,
                        mfc="none", label=f"{label}: N -> infinity")
            if ref is not None:
                ax.errorbar([-0.04 * x.max()], [ref[o]], [ref[f"{o}_error"]], fmt="*",
                            color=col, ms=9, label=f"{label}: field HMC")
        ax.set_xlabel("1/N")
        ax.set_ylabel(f"{o} (convention C)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    plt.close(fig)
    return path


def run_param_mcmc(section: dict, out, *, quiet: bool = False) -> dict:
    """Run the ``[param_mcmc]`` study of a run config into ``out`` (PNG under ``out/plots``).

    Returns
    -------
    dict
        ``settings`` (validated table), ``points`` (per target: its convention-C form, the base
        mass, the sampled theory and its N -> infinity limit, and the comparison ``verdicts``),
        ``rows`` (flat dicts: one per target and width, the field HMC reference and the
        N -> infinity extrapolation with ``<o>_z_vs_hmc`` and ``<o>_verdict``, and, when the
        widths allow it, the other fit form beside it: ``<o>_other_order`` (2 for a 1/N study, 1
        for a 1/N^2 one), ``<o>_other_value``, ``_other_error``, ``_other_fit_p_value`` and
        ``_other_z_vs_hmc``; the spread between the two forms is the extrapolation's
        systematic), ``plot``,
        ``columns`` (the row keys the report shows), ``wall_s``, ``summary`` rows (label,
        value, error or None) and ``verdict_rows`` (:func:`verdict_rows`, for the run-wide
        verdict table).
    """
    s = validate_param_mcmc(section)
    out = Path(out)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    t_start = time.perf_counter()
    rows, points, plotted, summary, vrows = [], [], [], [], []
    obs = s["observables"]
    for ip, target in enumerate(s["target"]):
        wrows, ext, info = _run_widths(s, ip, target, log, out)
        ref = None
        if s["hmc"]:
            ref_act, scale = reference_action(target)
            ref = field_hmc_reference(ref_act, s["n_chains"], s["hmc_times"] or 4 * s["n_times"],
                                      seed=s["seed"] + 1000 * ip, n_therm=max(s["n_therm"], 50),
                                      observables=obs, field_scale=scale)
            ref = {"point": target["label"], **ref}
            info["reference"] = {"method": "field HMC", "convention": "C", "m2": ref_act.m2,
                                 "g": ref_act.g, "field_scale": scale}
            cmp_ = compare_to_reference(ext, ref, obs, s["alpha"])
            for o in obs:
                ext[f"{o}_z_vs_hmc"] = cmp_[o]["z"]
                ext[f"{o}_p_vs_hmc"] = cmp_[o]["p_value"]
                if f"{o}_other_value" in ext:
                    ext[f"{o}_other_z_vs_hmc"] = (
                        (ext[f"{o}_other_value"] - ref[o])
                        / math.hypot(ext[f"{o}_other_error"], ref[f"{o}_error"]))
                ext[f"{o}_verdict"] = cmp_[o]["verdict"]
            info["verdicts"] = {o: cmp_[o]["verdict"] for o in obs}
            vrows += verdict_rows(target["label"], ext, cmp_, obs)
            log(f"[param_mcmc] {target['label']}: field HMC " + " ".join(
                f"{o}={ref[o]:.5g}({ref[o + '_error']:.2g})" for o in obs))
        rows += wrows + ([ref] if ref else []) + [ext]
        points.append(info)
        plotted.append((target["label"], wrows, ext, ref))
        lab = target["label"]
        summary.append((f"{lab}: sampled", info["sampled_theory"], None))
        summary.append((f"{lab}: N -> infinity limit", info["limit"], None))
        if ref and ref.get("field_scale", 1.0) != 1.0:
            summary.append((f"{lab}: field HMC reference",
                            f"phi^4 (C) of phi' = {ref['field_scale']:.6g} phi with "
                            f"m'^2={ref_act.m2:.6g}, g'={ref_act.g:.6g}; its observables "
                            f"converted to phi", None))
        summary.append((f"{lab}: acceptance at N = {', '.join(str(r['N']) for r in wrows)}",
                        ", ".join(f"{r['acceptance']:.3f}" for r in wrows), None))
        for o in obs:
            summary.append((f"{lab}: {o} (C) at N -> infinity, fit p = "
                            f"{_p(ext[o + '_fit_p_value'])}", ext[o], ext[f"{o}_error"]))
            if ref:
                summary.append((f"{lab}: {o} (C) field HMC (tau_int {ref[o + '_tau_int']:.2g})",
                                ref[o], ref[f"{o}_error"]))
                summary.append((f"{lab}: {o} extrapolation vs HMC: z = "
                                f"{ext[o + '_z_vs_hmc']:+.2f}", ext[f"{o}_verdict"], None))
            if f"{o}_other_value" in ext:
                form = "1/N + 1/N^2" if ext[f"{o}_other_order"] == 2 else "1/N"
                zo = (f", vs HMC: z = {ext[o + '_other_z_vs_hmc']:+.2f}"
                      if f"{o}_other_z_vs_hmc" in ext else "")
                summary.append((f"{lab}: {o} (C) at N -> infinity, {form} fit (systematic "
                                f"check), fit p = {_p(ext[o + '_other_fit_p_value'])}{zo}",
                                ext[f"{o}_other_value"], ext[f"{o}_other_error"]))
    plot = plot_extrapolation(plotted, obs, out / "plots" / "param-mcmc-extrapolation.png",
                              title=f"deformed cos-net ({s['sampler']} in parameter space) vs "
                                    "field HMC; observables in convention C")
    columns = (["point", "method", "N", "acceptance"] + obs + [f"{o}_tau_int" for o in obs]
               + [f"{o}_z_vs_hmc" for o in obs])
    return {"settings": s, "points": points, "rows": rows, "columns": columns, "plot": str(plot),
            "wall_s": time.perf_counter() - t_start, "summary": summary, "verdict_rows": vrows}


def _p(p):
    return "n/a (no spare width)" if not (isinstance(p, float) and math.isfinite(p)) else f"{p:.2g}"
