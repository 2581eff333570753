"""Parameter-space Markov chains (deformed cos-net) against field-space HMC on 2D phi^4.

Theory: 2D lattice phi^4, convention C, S = sum_x [1/2 (d phi)^2 + 1/2 m^2 phi^2 + (g/4!) phi^4],
at fixed m L (m_E L = 4 with m_E = 2 arcsinh(m/2), the bare free-field mass) and fixed
g/m^2 (``--g-over-m2``; g has mass dimension 2 in d = 2, so this is a line of constant physics
towards the continuum / critical point as L grows).

Samplers, all with ``--chains`` chains side by side in one process (NumPy, float64):
- field-space HMC (nnft.lattice.mcmc.HMC, Omelyan, randomised trajectory length), step size tuned
  to acceptance 0.8, for trajectory lengths 1 and L/4 (about the correlation length): the better
  of the two per observable is the "tuned" reference;
- ParamHMC on the deformed width-N lattice cos-net with N = V (one neuron per lattice momentum on
  average), base mass = the target's bare m^2, Delta S = (g/4!) phi^4;
- the independence sampler (fresh network proposals) on the same deformed theory.

The parameter-space chains sample the deformed width-V network theory, which differs from lattice
phi^4 at finite N (see docs/parameter-space-mcmc.md): values are reported for each theory; the
cost comparison is per independent sample of each chain for the same observables (|M|, chi_2,
E = (1/d) sum_mu G_c(mu)). tau_int by the Gamma method (independent samples give 1/2) in units
of updates (one trajectory + neuron refreshes, or one proposal); cost per independent sample =
production wall time / N_eff. The machine is named and was shared with other jobs: compare the
ratios within one run, not absolute times across runs.

Width mode (``--widths N1 N2 ...``): for the arXiv:1904.12072 points (convention A, m^2 = -4,
lambda_A = 6.975 at L = 6, 6.008 at L = 8, 5.550 at L = 10, 5.276 at L = 12; ``--points``; see
also param_vs_hmc_1904.py) and a weak-coupling point, run ParamHMC on the
deformed width-N cos-net (base = Hartree mass) at each width, extrapolate chi, G0, E and |M| in 1/N
(``nnft.ensembles.width_extrapolation``) and compare with field-space HMC on the lattice action
(z-scores). Quadratic observables in convention C (chi_A = chi_C / 2).

Usage: python benchmarks/param_vs_hmc.py [--sizes 8 16] [--chains 16] [--times 400] [--out DIR]
       python benchmarks/param_vs_hmc.py --widths 4 8 16 32 [--points 6 8 weak] (widths in units of V)
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from nnft.ensembles.deformed import DeformedCosNet
from nnft.ensembles.param_chains import IndependenceSampler, ParamHMC, run_param_chain
from nnft.lattice import HMC, Phi4Action, run_chain
from nnft.observables.gamma import chain_observables, primary_series

OBS = ("abs_M", "chi", "E")


def machine():
    import os
    import platform

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
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "numpy": np.__version__, "load_avg_1_5_15": load}


def analyse(series, R, V, wall, label, L, extra):
    ds = chain_observables(series, n_replicas=R, volume=V, include_primary=False)
    row = {"method": label, "L": L, "n_samples": int(series.shape[0]), "wall_s": wall, **extra}
    for o in OBS:
        d = ds.sel(observable=o)
        neff = float(d.n_eff)
        row[o] = {"value": float(d.value), "error": float(d.error), "tau_int": float(d.tau_int),
                  "dtau_int": float(d.dtau_int), "n_eff": neff,
                  "cost_per_indep_s": wall / neff if neff > 0 else float("inf")}
    return row


def run_field_hmc(act, R, T, traj_length, seed):
    out = []
    res = run_chain(HMC(act, traj_length=traj_length), R, T,
                    callback=lambda k, phi, w: out.append(primary_series(phi, 2)), seed=seed,
                    n_therm=100)
    lo, hi = HMC(act, eps=res.settings["eps"], traj_length=traj_length).n_steps_range()
    return np.concatenate(out), res.timings["production"], {
        "acceptance": res.acceptance, "eps": res.settings["eps"], "traj_length": traj_length,
        "force_evals_per_update": 2 * 0.5 * (lo + hi), "exp_mdH": res.exp_mdH_mean()[0]}


def run_param(sampler, R, T, seed):
    out = []
    res = run_param_chain(sampler, R, T, callback=lambda k, phi, w: out.append(primary_series(phi, 2)),
                          seed=seed, n_therm=50)
    extra = {"acceptance": res.acceptance, "theory": res.theory}
    if isinstance(sampler, ParamHMC):
        lo, hi = sampler.n_steps_range()
        extra.update({"eps": res.settings["eps"], "traj_length": sampler.traj_length,
                      "force_evals_per_update": 0.5 * (lo + hi) + 1,
                      "neuron_updates": sampler.neuron_updates,
                      "neuron_acceptance": res.neuron_acceptance,
                      "exp_mdH": res.exp_mdH_mean()[0]})
    return np.concatenate(out), res.timings["production"], extra


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--times", type=int, default=400)
    ap.add_argument("--g-over-m2", type=float, default=2.0)
    ap.add_argument("--mL", type=float, default=4.0, help="m_E L held fixed")
    ap.add_argument("--no-independence", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--widths", type=float, nargs="+", default=None,
                    help="width mode: widths N/V at which to run the deformed theory")
    ap.add_argument("--points", nargs="+", default=["6", "8", "weak"])
    ap.add_argument("--from-json", default=None, help="re-render the markdown of a result JSON")
    a = ap.parse_args(argv)
    if a.from_json:
        rep = json.loads(Path(a.from_json).read_text())
        Path(a.from_json).with_suffix(".md").write_text(markdown(rep))
        return None
    if a.widths:
        return widths_mode(a)
    mach = machine()
    rows = []
    t_all = time.time()
    for L in a.sizes:
        mE = a.mL / L
        m2 = (2 * math.sinh(mE / 2)) ** 2
        g = a.g_over_m2 * m2
        act = Phi4Action((L, L), "C", m2=m2, g=g)
        V = L * L
        print(f"L={L}: m2={m2:.6g} g={g:.6g}", flush=True)
        for tl in sorted({1.0, max(1.0, L / 4)}):
            s, w, ex = run_field_hmc(act, a.chains, a.times, tl, seed=L)
            rows.append(analyse(s, a.chains, V, w, f"field HMC (tau_MD={tl:g})", L,
                                dict(ex, theory=f"lattice phi^4 (C) m2={m2:.6g} g={g:.6g}")))
            print("  ", rows[-1]["method"], {o: round(rows[-1][o]["tau_int"], 2) for o in OBS}, flush=True)
        th = DeformedCosNet.from_action(act, V)
        s, w, ex = run_param(ParamHMC(th), a.chains, a.times, seed=L + 1)
        rows.append(analyse(s, a.chains, V, w, f"param HMC (N=V={V})", L, ex))
        print("  ", rows[-1]["method"], {o: round(rows[-1][o]["tau_int"], 2) for o in OBS}, flush=True)
        if not a.no_independence:
            s, w, ex = run_param(IndependenceSampler(th), a.chains, a.times, seed=L + 2)
            rows.append(analyse(s, a.chains, V, w, f"independence (N=V={V})", L, ex))
            print("  ", rows[-1]["method"], {o: round(rows[-1][o]["tau_int"], 2) for o in OBS},
                  f"acc={ex['acceptance']:.3g}", flush=True)
    report = {"machine": mach, "settings": vars(a), "rows": rows, "total_wall_s": time.time() - t_all}
    name = "param-vs-hmc-" + "".join(c if c.isalnum() else "-" for c in mach["cpu"]).strip("-")[:40]
    name += f"-{mach['cores']}cores" + (f"-{a.tag}" if a.tag else "")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=float))
    (out / f"{name}.md").write_text(markdown(report))
    print(f"wrote {out / name}.md")


POINTS = {"6": (6, {"convention": "A", "m2": -4.0, "lam": 6.975}),
          "8": (8, {"convention": "A", "m2": -4.0, "lam": 6.008}),
          "10": (10, {"convention": "A", "m2": -4.0, "lam": 5.550}),
          "12": (12, {"convention": "A", "m2": -4.0, "lam": 5.276}),
          # the arXiv:1904.12072 ensembles E1-E5: L = 6, 8, 10, 12, 14 with lambda_A = 6.975,
          # 6.008, 5.550, 5.276, 5.113 (an independent reproduction lists 5.267 for L = 12)
          "weak": (6, {"convention": "C", "m2": 0.5, "g": 0.5})}
WOBS = ("chi", "G0", "E", "abs_M")


def widths_mode(a):
    from nnft.ensembles.deformed import width_extrapolation

    mach = machine()
    t_all = time.time()
    out_rows = []
    for key in a.points:
        L, c = POINTS[key]
        act = Phi4Action((L, L), **c)
        actC = act.to("C")
        V = L * L
        ser = []
        res = run_chain(HMC(actC, traj_length=1.0), a.chains, 4 * a.times,
                        callback=lambda k, phi, w: ser.append(primary_series(phi, 2)), seed=V,
                        n_therm=200)
        ref = chain_observables(np.concatenate(ser), n_replicas=a.chains, volume=V,
                                include_primary=False)
        row = {"point": key, "L": L, "target": act.to_dict(), "hmc_acceptance": res.acceptance,
               "hmc": {o: [float(ref.sel(observable=o).value), float(ref.sel(observable=o).error)]
                       for o in WOBS}, "widths": []}
        print(key, "HMC", row["hmc"], flush=True)
        for f in a.widths:
            N = int(round(f * V))
            th = DeformedCosNet.from_action(act, N)
            ser = []
            r = run_param_chain(ParamHMC(th), a.chains, a.times,
                                callback=lambda k, phi, w: ser.append(primary_series(phi, 2)),
                                seed=N, n_therm=100)
            ds = chain_observables(np.concatenate(ser), n_replicas=a.chains, volume=V,
                                   include_primary=False)
            w = {"N": N, "acceptance": r.acceptance, "wall_s": r.timings["production"],
                 "base_m2": th.spec.m2}
            for o in WOBS:
                d = ds.sel(observable=o)
                w[o] = [float(d.value), float(d.error), float(d.tau_int)]
            row["widths"].append(w)
            print(key, N, {o: w[o] for o in WOBS}, flush=True)
        row["extrapolation"] = {}
        Ns = [w["N"] for w in row["widths"]]
        for o in WOBS:
            vals = [w[o][0] for w in row["widths"]]
            errs = [w[o][1] for w in row["widths"]]
            fit = width_extrapolation(Ns, vals, errs) if len(Ns) >= 2 else None
            if fit is not None:
                hv, he = row["hmc"][o]
                z = (fit["value"] - hv) / math.hypot(fit["error"], he)
                row["extrapolation"][o] = {"value": fit["value"], "error": fit["error"],
                                           "p_value": fit["p_value"], "z_vs_hmc": z,
                                           "fit_verdict": fit["fit_verdict"]}
        out_rows.append(row)
    rep = {"machine": mach, "settings": vars(a), "rows": out_rows, "total_wall_s": time.time() - t_all}
    name = "param-vs-hmc-widths-" + "".join(ch if ch.isalnum() else "-" for ch in mach["cpu"]).strip("-")[:40]
    name += f"-{mach['cores']}cores" + (f"-{a.tag}" if a.tag else "")
    outd = Path(a.out)
    outd.mkdir(parents=True, exist_ok=True)
    (outd / f"{name}.json").write_text(json.dumps(rep, indent=1, default=float))
    lines = ["# Deformed width-N cos-net: 1/N extrapolation against field-space HMC (2D phi^4)", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores (shared; load {mach['load_avg_1_5_15']}). "
             f"ParamHMC {a.chains} chains x {a.times}; field HMC {a.chains} x {4 * a.times} "
             f"(tau_MD = 1, acceptance tuned to 0.8). Observables in convention C; fit "
             "O(N) = O_inf + b/N, weighted least squares; z = (O_inf - HMC)/combined error.", ""]
    for row in out_rows:
        lines += [f"## point {row['point']}: L = {row['L']}, target {row['target']}", "",
                  "| N | acc | " + " | ".join(WOBS) + " | tau(chi) |",
                  "|---|---|" + "---|" * (len(WOBS) + 1)]
        for w in row["widths"]:
            lines.append(f"| {w['N']} | {w['acceptance']:.2f} | " + " | ".join(
                f"{w[o][0]:.4g}({w[o][1]:.2g})" for o in WOBS) + f" | {w['chi'][2]:.2f} |")
        lines.append("| N -> inf (1/N fit) | | " + " | ".join(
            f"{row['extrapolation'][o]['value']:.4g}({row['extrapolation'][o]['error']:.2g}) "
            f"p={row['extrapolation'][o]['p_value']:.2g}" for o in WOBS if o in row["extrapolation"])
            + " | |")
        lines.append("| field HMC | " + f"{row['hmc_acceptance']:.2f} | " + " | ".join(
            f"{row['hmc'][o][0]:.4g}({row['hmc'][o][1]:.2g})" for o in WOBS) + " | |")
        lines.append("| z (extrapolation vs HMC) | | " + " | ".join(
            f"{row['extrapolation'][o]['z_vs_hmc']:.1f}" for o in WOBS if o in row["extrapolation"])
            + " | |")
        lines.append("")
    (outd / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {outd / name}.md")


def _by_kind(rows):
    import re

    out = {}
    for r in rows:
        m = r["method"]
        if m.startswith("field HMC"):
            tl = float(re.search(r"tau_MD=([0-9.]+)", m).group(1))
            kind = "field HMC (tau_MD=1)" if tl == 1.0 and r["L"] > 4 else "field HMC (tau_MD=L/4)"
            if r["L"] <= 4:
                kind = "field HMC (tau_MD=1)"
        else:
            kind = m.split(" (")[0] + " (N=V)"
        out.setdefault(kind, []).append(r)
    return out


def markdown(rep):
    m, s = rep["machine"], rep["settings"]
    lines = [f"# Parameter-space chains vs field-space HMC, 2D phi^4 at fixed m L",
             "",
             f"Machine: {m['cpu']}, {m['cores']} cores, NumPy {m['numpy']}; load average at the end "
             f"{m['load_avg_1_5_15']} (shared with other jobs: compare ratios within this run).",
             f"Theory: convention C, m_E L = {s['mL']}, g = {s['g_over_m2']} m^2; {s['chains']} chains x "
             f"{s['times']} measurements per method, one update per measurement. Total wall "
             f"{rep['total_wall_s']:.0f} s.",
             "",
             "tau_int by the Gamma method (independent = 1/2) in updates; cost = production wall "
             "time per independent sample (ms); ratio = cost / cost of the better field HMC.",
             "The parameter-space chains sample the deformed width-V cos-net, not lattice phi^4: "
             "their values differ at finite N (last columns).",
             "",
             "| L | method | acc | tau(abs M) | tau(chi) | tau(E) | ms/indep abs M | chi | E | "
             "ratio abs M | chi | E | abs M value | chi value | E value |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for L in sorted({r["L"] for r in rep["rows"]}):
        rs = [r for r in rep["rows"] if r["L"] == L]
        best = {o: min(r[o]["cost_per_indep_s"] for r in rs if r["method"].startswith("field"))
                for o in OBS}
        for r in rs:
            tau = " | ".join(f"{r[o]['tau_int']:.2f}({r[o]['dtau_int']:.2f})" for o in OBS)
            cost = " | ".join(f"{1e3 * r[o]['cost_per_indep_s']:.3g}" for o in OBS)
            ratio = " | ".join(f"{r[o]['cost_per_indep_s'] / best[o]:.2g}" for o in OBS)
            vals = " | ".join(f"{r[o]['value']:.4g}({r[o]['error']:.2g})" for o in OBS)
            lines.append(f"| {L} | {r['method']} | {r.get('acceptance', float('nan')):.3g} | {tau} | "
                         f"{cost} | {ratio} | {vals} |")
    lines += ["", "Critical slowing down: z from a least-squares fit of log tau_int (and of log cost per "
              "independent sample) against log L over the sizes run (fixed m L, so xi grows like L).",
              "", "| method | z from tau(abs M) | tau(chi) | tau(E) | z_cost abs M | chi | E |",
              "|---|---|---|---|---|---|---|"]
    for kind, rows in _by_kind(rep["rows"]).items():
        if len(rows) < 2:
            continue
        Ls = np.log([r["L"] for r in rows])
        zt = [np.polyfit(Ls, np.log([r[o]["tau_int"] for r in rows]), 1)[0] for o in OBS]
        zc = [np.polyfit(Ls, np.log([r[o]["cost_per_indep_s"] for r in rows]), 1)[0] for o in OBS]
        lines.append(f"| {kind} | " + " | ".join(f"{z:.2f}" for z in zt + zc) + " |")
    lines += ["", "Sampler settings:", ""]
    for r in rep["rows"]:
        keep = {k: v for k, v in r.items() if k not in OBS and k not in ("theory",)}
        lines.append(f"- L={r['L']} {r['method']}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items()
            if k not in ("method", "L")))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
