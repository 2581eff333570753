"""Deformed cos-net at the arXiv:1904.12072 points: N -> infinity against field-space HMC.

Theory: 2D lattice phi^4 in the convention of arXiv:1904.12072 (convention A),
S = sum_x [sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4], m^2 = -4 and
lambda = 6.975 (L = 6), 6.008 (L = 8), 5.550 (L = 10), 5.276 (L = 12), 5.113 (L = 14)
(their ensembles E1-E5, m_p L ~ 4; an independent reproduction lists 5.267 for L = 12). The
points "10-5.276" and "14-4.081" are off that line (an earlier mis-pairing); they are kept so the
result files that ran them can be reproduced, plus a weak-coupling control point (convention C,
m^2 = 0.5, g = 0.5 on 6x6).

Width mode (default): for each point, ParamHMC (momentum moves on) on the deformed width-N
lattice cos-net (base = Hartree mass) at N = f V for the factors ``--widths``; the observables
chi, G0, E, |M| (convention C: chi_A = chi_C / 2) with Gamma-method errors; the weighted 1/N fit
O(N) = O_inf + b/N (``width_extrapolation``, its p-value tests the 1/N form and the errors) and the
z-score of O_inf against field-space HMC (Omelyan, acceptance tuned to 0.8, tau_MD = 1) on the
target action, plus the z-score of the widest network alone.

Replica mode (``--replicas K``): at one point and width, K independent groups of chains each give a
value and a Gamma-method error; the scatter of the K values against the quoted errors
(F = var(values)/mean(error^2), (K-1) F ~ chi^2_{K-1} when the errors are right) is reported for
the sampler with momentum moves and for the old configuration (4 neuron refreshes per update, no
momentum moves).

Everything runs in one process (NumPy, float64) on the machine named in the results, which is
shared with other jobs: compare within a run.

Usage: python benchmarks/param_vs_hmc_1904.py [--points 6 10 14 weak] [--widths 4 8 16 32]
           [--chains 16] [--times 400] [--hmc-times 1600] [--tag T]
       python benchmarks/param_vs_hmc_1904.py --replicas 12 --chains 8 --points weak 6 --widths 16
       python benchmarks/param_vs_hmc_1904.py --mixing --chains 8 --times 2000 --points weak 6 --widths 4 32

Mixing mode (``--mixing``): long chains of both configurations; tau_int (Gamma method) of chi, G0,
E, |M| and of the occupation numbers of the three lowest momentum shells.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from param_vs_hmc import machine  # noqa: E402

from nnft.ensembles.deformed import DeformedCosNet, width_extrapolation  # noqa: E402
from nnft.ensembles.param_chains import ParamHMC, run_param_chain  # noqa: E402
from nnft.lattice import HMC, Phi4Action, run_chain  # noqa: E402
from nnft.observables.gamma import chain_observables, primary_series  # noqa: E402

POINTS = {"6": (6, {"convention": "A", "m2": -4.0, "lam": 6.975}),
          "8": (8, {"convention": "A", "m2": -4.0, "lam": 6.008}),
          "10": (10, {"convention": "A", "m2": -4.0, "lam": 5.550}),
          "12": (12, {"convention": "A", "m2": -4.0, "lam": 5.276}),
          "14": (14, {"convention": "A", "m2": -4.0, "lam": 5.113}),
          # off the paper's line (an earlier mis-pairing), kept so that the result files
          # param-vs-hmc-1904-*.md that ran them can be reproduced: same m^2, other lambda
          "10-5.276": (10, {"convention": "A", "m2": -4.0, "lam": 5.276}),
          "14-4.081": (14, {"convention": "A", "m2": -4.0, "lam": 4.081}),
          "weak": (6, {"convention": "C", "m2": 0.5, "g": 0.5})}
OBS = ("chi", "G0", "E", "abs_M")
OLD = {"neuron_updates": 4, "momentum_fraction": 0.0}


def observables(parts, R, V):
    ds = chain_observables(np.concatenate(parts), n_replicas=R, volume=V, include_primary=False)
    return {o: [float(ds.sel(observable=o).value), float(ds.sel(observable=o).error),
                float(ds.sel(observable=o).tau_int)] for o in OBS}


def field_hmc(act_c, R, T, seed):
    parts = []
    t0 = time.perf_counter()
    res = run_chain(HMC(act_c, traj_length=1.0), R, T, seed=seed, n_therm=200,
                    callback=lambda k, phi, w: parts.append(primary_series(phi, 2)))
    return observables(parts, R, act_c.volume), res.acceptance, time.perf_counter() - t0


def param_chain(act, N, R, T, seed, sampler_kw=None):
    th = DeformedCosNet.from_action(act, N)
    s = ParamHMC(th, **(sampler_kw or {}))
    parts = []
    t0 = time.perf_counter()
    res = run_param_chain(s, R, T, seed=seed, n_therm=100,
                          callback=lambda k, phi, w: parts.append(primary_series(phi, 2)))
    wall = time.perf_counter() - t0
    return th, s, res, parts, wall


def widths_mode(a, mach):
    rows = []
    for key in a.points:
        L, c = POINTS[key]
        act = Phi4Action((L, L), **c)
        act_c = act.to("C") if act.convention != "C" else act
        V = L * L
        hmc, hacc, hwall = field_hmc(act_c, a.chains, a.hmc_times, seed=V)
        row = {"point": key, "L": L, "target": act.to_dict(), "hmc": hmc, "hmc_acceptance": hacc,
               "hmc_wall_s": hwall, "widths": []}
        print(f"[{key}] field HMC acc={hacc:.2f} " + " ".join(
            f"{o}={hmc[o][0]:.4g}({hmc[o][1]:.2g})" for o in OBS), flush=True)
        for f in a.widths:
            N = int(round(f * V))
            th, s, res, parts, wall = param_chain(act, N, a.chains, a.times, seed=1000 * L + N)
            w = {"N": N, "N_over_V": f, "acceptance": res.acceptance, "eps": s.eps,
                 "momentum_acceptance": s.last_momentum_acceptance,
                 "neuron_acceptance": res.neuron_acceptance, "base_m2": th.spec.m2,
                 "wall_s": wall, **observables(parts, a.chains, V)}
            row["widths"].append(w)
            print(f"[{key}] N={N} acc={res.acceptance:.2f} eps={s.eps:.3g} wall={wall:.0f}s " + " ".join(
                f"{o}={w[o][0]:.4g}({w[o][1]:.2g};tau {w[o][2]:.2f})" for o in OBS), flush=True)
        Ns = [w["N"] for w in row["widths"]]
        row["extrapolation"], row["widest_z"] = {}, {}
        for o in OBS:
            hv, he = hmc[o][0], hmc[o][1]
            wv, we = row["widths"][-1][o][:2]
            row["widest_z"][o] = (wv - hv) / math.hypot(we, he)
            if len(Ns) < 2:
                continue
            fit = width_extrapolation(Ns, [w[o][0] for w in row["widths"]],
                                      [w[o][1] for w in row["widths"]])
            row["extrapolation"][o] = {
                "value": fit["value"], "error": fit["error"], "slope": fit["slope"],
                "chi2": fit["chi2"], "dof": fit["dof"], "p_value": fit["p_value"],
                "fit_verdict": fit["fit_verdict"],
                "z_vs_hmc": (fit["value"] - hv) / math.hypot(fit["error"], he)}
            if len(set(Ns)) >= 4:  # the 1/N + 1/N^2 form, with one degree of freedom left
                f2 = width_extrapolation(Ns, [w[o][0] for w in row["widths"]],
                                         [w[o][1] for w in row["widths"]], order=2)
                row.setdefault("extrapolation2", {})[o] = {
                    "value": f2["value"], "error": f2["error"], "p_value": f2["p_value"],
                    "z_vs_hmc": (f2["value"] - hv) / math.hypot(f2["error"], he)}
        rows.append(row)
    return rows


def replicas_mode(a, mach):
    out = []
    K, R = a.replicas, a.chains
    for key in a.points:
        L, c = POINTS[key]
        act = Phi4Action((L, L), **c)
        V = L * L
        for f in a.widths:
            N = int(round(f * V))
            for label, kw in (("momentum moves (default)", {}), ("old: 4 refreshes, no momentum moves", OLD)):
                th, s, res, parts, wall = param_chain(act, N, K * R, a.times, seed=7 + N, sampler_kw=kw)
                ser = np.concatenate(parts)
                ser = ser.reshape(a.times, K, R, ser.shape[-1])
                vals = {o: [] for o in OBS}
                for g in range(K):
                    ob = observables([ser[:, g].reshape(a.times * R, -1)], R, V)
                    for o in OBS:
                        vals[o].append(ob[o])
                from scipy.stats import chi2 as chi2_dist

                rec = {"point": key, "L": L, "N": N, "sampler": label, "K": K, "chains": R,
                       "times": a.times, "wall_s": wall, "acceptance": res.acceptance}
                for o in OBS:
                    v = np.asarray([x[0] for x in vals[o]])
                    e = np.asarray([x[1] for x in vals[o]])
                    tau = np.asarray([x[2] for x in vals[o]])
                    F = float(v.var(ddof=1) / np.mean(e * e))
                    rec[o] = {"scatter": float(v.std(ddof=1)), "quoted": float(np.sqrt(np.mean(e * e))),
                              "ratio": math.sqrt(F), "p_value": float(chi2_dist.sf(F * (K - 1), K - 1)),
                              "tau_int_mean": float(tau.mean())}
                out.append(rec)
                print(f"[{key} N={N}] {label}: " + " ".join(
                    f"{o}: scatter/quoted={rec[o]['ratio']:.2f} p={rec[o]['p_value']:.2g} tau={rec[o]['tau_int_mean']:.2f}"
                    for o in OBS), flush=True)
    return out


def mixing_mode(a, mach):
    """Long chains: tau_int of |M|, chi, E and of the occupation numbers of the lowest momenta."""
    from nnft.ensembles.param_chains import initial_state
    from nnft.lattice import chunk_rng
    from nnft.lattice.mcmc import tune_step_size
    from nnft.observables.gamma import gamma_error

    out = []
    R, T = a.chains, a.times
    for key in a.points:
        L, c = POINTS[key]
        act = Phi4Action((L, L), **c)
        V = L * L
        for f in a.widths:
            N = int(round(f * V))
            th = DeformedCosNet.from_action(act, N)
            P = np.asarray(th.lattice.momenta(np)).reshape(V, 2)
            phat2 = (4 * np.sin(P / 2) ** 2).sum(1)
            shells = np.unique(np.round(phat2, 9))[:3]
            for label, kw in (("momentum moves (default)", {}), ("old: 4 refreshes, no momentum moves", OLD)):
                s = ParamHMC(th, **kw)
                rng, hrng = chunk_rng(11, 0, np), np.random.default_rng(12)
                st = initial_state(th, R, rng)
                st, _ = tune_step_size(s, st, rng, hrng, target=0.8, n_rounds=15, updates_per_round=5)
                if s.tune_blocks:
                    st, _ = s.tune_momentum_blocks(st, rng, hrng)
                for _ in range(100):
                    st, _, _ = s.update(st, rng, hrng)
                ser, occ = [], []
                t0 = time.perf_counter()
                for _ in range(T):
                    st, _, _ = s.update(st, rng, hrng)
                    ser.append(primary_series(st["phi"], 2))
                    occ.append([np.isin(st["k"], np.flatnonzero(np.isclose(phat2, sh))).sum(1)
                                for sh in shells])
                wall = time.perf_counter() - t0
                ob = observables(ser, R, V)
                occ = np.asarray(occ, dtype=float)  # (T, shells, R)
                rec = {"point": key, "L": L, "N": N, "sampler": label, "chains": R, "times": T,
                       "eps": s.eps, "wall_s": wall, "momentum_blocks": s.momentum_blocks,
                       **{o: ob[o] for o in OBS}}
                for j, sh in enumerate(shells):
                    g = gamma_error(occ[:, j, :].ravel(), R)
                    rec[f"n(phat^2={sh:.3g})"] = [g.value, g.error, g.tau_int, g.dtau_int]
                out.append(rec)
                print(f"[{key} N={N}] {label}: " + " ".join(f"tau({o})={rec[o][2]:.2f}" for o in OBS)
                      + " " + " ".join(f"tau({k})={v[2]:.1f}({v[3]:.1f})" for k, v in rec.items()
                                       if k.startswith("n(")), flush=True)
    return out


def markdown(rep):
    m, s = rep["machine"], rep["settings"]
    lines = []
    if rep.get("mixing"):
        lines += ["# Mixing of parameter-space chains: tau_int of observables and occupation numbers", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores, shared with other jobs (load "
                  f"{m['load_avg_1_5_15']}). {s['chains']} chains x {s['times']} updates after tuning "
                  "and 100 thermalisation updates; tau_int by the Gamma method (automatic window, "
                  "S = 2; independent = 1/2) in updates. n(phat^2) = number of neurons on the momenta "
                  "of one shell (the three lowest shells). Total wall "
                  f"{rep['total_wall_s']:.0f} s.", "",
                  "| point | N | sampler | eps | " + " | ".join(f"tau({o})" for o in OBS)
                  + " | tau(n) lowest shells | n (mean) |",
                  "|---|---|---|---|" + "---|" * (len(OBS) + 2)]
        for r in rep["mixing"]:
            ns = [(k, v) for k, v in r.items() if k.startswith("n(")]
            lines.append(f"| {r['point']} (L={r['L']}) | {r['N']} | {r['sampler']} | {r['eps']:.3g} | "
                         + " | ".join(f"{r[o][2]:.2f}" for o in OBS) + " | "
                         + ", ".join(f"{v[2]:.1f}({v[3]:.1f})" for _, v in ns) + " | "
                         + ", ".join(f"{v[0]:.1f}" for _, v in ns) + " |")
        return "\n".join(lines) + "\n"
    if rep.get("replicas"):
        lines += ["# Replica check of the quoted errors of parameter-space chains", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores, shared with other jobs (load "
                  f"{m['load_avg_1_5_15']}). K = {s['replicas']} independent groups of {s['chains']} "
                  f"chains x {s['times']} updates each; ratio = scatter of the K group values / rms "
                  "quoted Gamma-method error (1 when the errors are right); p = P(chi^2_{K-1} > "
                  "(K-1) ratio^2). Total wall "
                  f"{rep['total_wall_s']:.0f} s.", "",
                  "| point | N | sampler | acc | " + " | ".join(f"{o}: ratio, p, tau_int" for o in OBS) + " |",
                  "|---|---|---|---|" + "---|" * len(OBS)]
        for r in rep["replicas"]:
            lines.append(f"| {r['point']} (L={r['L']}) | {r['N']} | {r['sampler']} | {r['acceptance']:.2f} | "
                         + " | ".join(f"{r[o]['ratio']:.2f}, {r[o]['p_value']:.2g}, {r[o]['tau_int_mean']:.2f}"
                                      for o in OBS) + " |")
        return "\n".join(lines) + "\n"
    lines += ["# Deformed width-N cos-net at the arXiv:1904.12072 points: N -> infinity vs field-space HMC",
              "",
              f"Machine: {m['cpu']}, {m['cores']} cores, NumPy {m['numpy']}, shared with other jobs "
              f"(load {m['load_avg_1_5_15']}). Total wall {rep['total_wall_s']:.0f} s.",
              f"ParamHMC with momentum moves (defaults), {s['chains']} chains x {s['times']} updates per "
              f"width, base = Hartree mass; field HMC {s['chains']} x {s['hmc_times']} (tau_MD = 1, "
              "acceptance tuned to 0.8). Observables in convention C (chi_A = chi_C / 2). Fit "
              "O(N) = O_inf + b/N, weighted least squares (p = fit p-value); z = (O_inf - HMC) / "
              "combined error; z(widest) = the widest network alone against HMC.", ""]
    for row in rep["rows"]:
        t = row["target"]
        lines += [f"## point {row['point']}: L = {row['L']}, target {t}", "",
                  "| N | acc | eps | mom. acc | " + " | ".join(OBS) + " | tau(chi) | tau(abs_M) | wall s |",
                  "|---|---|---|---|" + "---|" * (len(OBS) + 3)]
        for w in row["widths"]:
            lines.append(f"| {w['N']} | {w['acceptance']:.2f} | {w['eps']:.3g} | {w['momentum_acceptance']:.2f} | "
                         + " | ".join(f"{w[o][0]:.4g}({w[o][1]:.2g})" for o in OBS)
                         + f" | {w['chi'][2]:.2f} | {w['abs_M'][2]:.2f} | {w['wall_s']:.0f} |")
        ex = row["extrapolation"]
        if ex:
            lines.append("| N -> inf (1/N fit) | | | | " + " | ".join(
                f"{ex[o]['value']:.4g}({ex[o]['error']:.2g}) p={ex[o]['p_value']:.2g}" for o in OBS) + " | | | |")
        lines.append(f"| field HMC | {row['hmc_acceptance']:.2f} | | | " + " | ".join(
            f"{row['hmc'][o][0]:.4g}({row['hmc'][o][1]:.2g})" for o in OBS) + " | | | |")
        if ex:
            lines.append("| z (extrapolation vs HMC) | | | | " + " | ".join(
                f"{ex[o]['z_vs_hmc']:+.1f}" for o in OBS) + " | | | |")
        ex2 = row.get("extrapolation2")
        if ex2:
            lines.append("| N -> inf (1/N + 1/N^2 fit) | | | | " + " | ".join(
                f"{ex2[o]['value']:.4g}({ex2[o]['error']:.2g}) p={ex2[o]['p_value']:.2g}"
                for o in OBS) + " | | | |")
            lines.append("| z (1/N + 1/N^2 extrapolation vs HMC) | | | | " + " | ".join(
                f"{ex2[o]['z_vs_hmc']:+.1f}" for o in OBS) + " | | | |")
        lines.append("| z (widest vs HMC) | | | | " + " | ".join(
            f"{row['widest_z'][o]:+.1f}" for o in OBS) + " | | | |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from nnft.compare import machine_tag

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=["6", "10", "14", "weak"], choices=sorted(POINTS))
    ap.add_argument("--widths", type=float, nargs="+", default=[4, 8, 16, 32],
                    help="widths in units of the volume, N = f V")
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--times", type=int, default=400)
    ap.add_argument("--hmc-times", type=int, default=1600)
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--mixing", action="store_true", help="long-chain tau_int mode")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--from-json", default=None, help="re-render the markdown of a result JSON")
    a = ap.parse_args(argv)
    if a.from_json:
        rep = json.loads(Path(a.from_json).read_text())
        Path(a.from_json).with_suffix(".md").write_text(markdown(rep))
        return None
    mach = machine()
    t0 = time.time()
    rep = {"machine": mach, "settings": vars(a)}
    if a.mixing:
        rep["mixing"] = mixing_mode(a, mach)
    elif a.replicas:
        rep["replicas"] = replicas_mode(a, mach)
    else:
        rep["rows"] = widths_mode(a, mach)
    rep["total_wall_s"] = time.time() - t0
    rep["machine"]["load_avg_1_5_15"] = machine()["load_avg_1_5_15"]
    name = "param-vs-hmc-1904-" + ("mixing-" if a.mixing else "replicas-" if a.replicas else "") + machine_tag() + (f"-{a.tag}" if a.tag else "")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rep, indent=1, default=float))
    (out / f"{name}.md").write_text(markdown(rep))
    print(f"wrote {out / name}.md")
    return rep


if __name__ == "__main__":
    main()
