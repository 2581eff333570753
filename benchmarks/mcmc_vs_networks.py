"""Network ensembles versus Markov chains on the same theory and the same observables.

Part 1 (free field, d = 2, m_E L = 4, L = 8, 16, 32, 64; docs/conventions.md): for
(a) the lattice free-scalar cos-net (``LatticeCosNet``) at N = V and N = 4V, (b) the exact Fourier
sampler, (c) HMC (Omelyan, randomised trajectory length; tau_MD = 1 and tau_MD = xi = L/4),
(d) checkerboard Metropolis (one sweep per measurement): wall time per sample and per independent
sample (wall / N_eff, N_eff from the Gamma method on chi), time to a 1% relative error on chi
and on E, the bias against the exact value in standard errors, and tau_int.
Wall time counts generation and the per-sample measurement (M, M^2, phi^2, links), on one
process with NumPy. Markov chains are charged their production only: tuning and thermalisation
(warm-up) are reported separately (column "warm-up s"). Threads are matched on both sides:
``--threads T`` (default 1) sets the BLAS / OpenMP threads before NumPy is imported and the
network generator's worker threads (``generate(..., threads=T)``); the Markov chains run in one
Python thread with the same BLAS threads.

Part 2 (phi^4, d = 2): arXiv:1904.12072 parameters (convention A, m^2 = -4; L = 8, lambda = 6.008
and L = 12, lambda = 5.276) and a weak coupling (convention C, m^2 = 0.5, g = 0.5): HMC against
free ensembles (exact sampler and cos-net N = V at the Hartree mass) reweighted by exp(-Delta S),
with the Kish ESS. Quadratic observables are quoted in the convention of the target.

Writes benchmarks/results/mcmc_vs_networks[_quick].{json,md,png} naming the machine.

Usage: python benchmarks/mcmc_vs_networks.py [--quick] [--sizes 8 16 ...] [--threads 1]
    [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path


def _threads_from_argv(argv) -> int:
    """``--threads T`` read before NumPy is imported (BLAS reads its thread count once)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


THREADS = _threads_from_argv(sys.argv[1:])
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(THREADS)

import numpy as np  # noqa: E402

import nnft.ensembles as _ensembles  # noqa: E402
from nnft.lattice import Lattice, sample_free_field  # noqa: E402
from nnft.lattice.actions import Phi4Action  # noqa: E402
from nnft.lattice.mcmc import HMC, run_chain  # noqa: E402
from nnft.observables.gamma import chain_observables, gamma_error, primary_series  # noqa: E402
from nnft.observables.reweighting import ReweightingWarning, base_mass, reweighted_observables  # noqa: E402

REL_ERR = 0.01  # target relative error for "time to error"


# The free-field part lives in nnft.compare (also driven by `nnft run` configs with [mcmc]).
from nnft.compare import machine, run_markov  # noqa: E402
from nnft.compare import run_independent as _run_independent  # noqa: E402


_generate = _ensembles.generate


def _generate_matched(*args, **kwargs):
    """``generate`` with the benchmark's thread count (nnft.compare looks it up at call time)."""
    kwargs.setdefault("threads", THREADS)
    return _generate(*args, **kwargs)


_ensembles.generate = _generate_matched


def _with_1pct(row):
    for o in ("chi", "E"):
        row[o]["time_to_1pct_s"] = row[o]["time_to_target_s"]
    return row


def run_independent(kind, L, n, width_factor=None, seed=1):
    return _with_1pct(_run_independent(kind, L, n, width_factor, seed=seed, rel_err=REL_ERR))


def run_mcmc(kind, L, n_chains, n_times, traj_length=1.0, seed=1, label=None):
    return _with_1pct(run_markov(kind, L, n_chains, n_times, traj_length=traj_length, seed=seed,
                                 n_therm=200, rel_err=REL_ERR, label=label))


def part1(sizes, quick, log):
    rows = []
    for L in sizes:
        big = L >= 64
        n_ind = 2000 if quick else (20000 if L <= 16 else (8000 if L == 32 else 2500))
        n_net4 = n_ind if L < 64 else n_ind // 2
        n_times = 300 if quick else 1500
        R = 16 if quick else 16
        jobs = [("exact", lambda: run_independent("exact", L, n_ind)),
                ("net1", lambda: run_independent("net", L, n_ind, 1)),
                ("net4", lambda: run_independent("net", L, n_net4, 4)),
                ("hmc1", lambda: run_mcmc("hmc", L, R, n_times, 1.0)),
                ("hmcxi", lambda: run_mcmc("hmc", L, R, n_times if not big else n_times // 2,
                                           L / 4.0, label="HMC tau=L/4")),
                ("metro", lambda: run_mcmc("metropolis", L, R, n_times * 2))]
        for name, job in jobs:
            try:
                row = job()
            except ImportError as e:
                log(f"  L={L} {name}: skipped ({e})")
                continue
            rows.append(row)
            log(f"  L={L:>3} {row['method']:<16} {row['time_per_sample_s'] * 1e6:10.1f} us/sample  "
                f"tau(chi)={row['chi']['tau_int']:7.2f}  {row['time_per_indep_sample_s'] * 1e6:11.1f}"
                f" us/indep  z(chi)={row['chi']['z']:+.2f} z(E)={row['E']['z']:+.2f}  "
                f"wall {row['wall_s']:.1f}s")
    return rows


# ------------------------------------------------------------------ part 2: phi^4
def part2(quick, log):
    cases = [
        {"name": "1904.12072 L=8", "L": 8, "conv": "A", "m2": -4.0, "lam": 6.008},
        {"name": "1904.12072 L=12", "L": 12, "conv": "A", "m2": -4.0, "lam": 5.276},
        {"name": "weak L=8", "L": 8, "conv": "C", "m2": 0.5, "g": 0.5},
        {"name": "weak L=16", "L": 16, "conv": "C", "m2": 0.5, "g": 0.5},
    ]
    if not quick:
        cases.append({"name": "weak L=32", "L": 32, "conv": "C", "m2": 0.5, "g": 0.5})
    n_times = 400 if quick else 2000
    n_rw = 4000 if quick else 40000
    out = []
    for c in cases:
        L = c["L"]
        lat = Lattice((L, L))
        coup = {"lam": c["lam"]} if c["conv"] != "C" else {"g": c["g"]}
        target = Phi4Action.from_lattice(lat, c["conv"], m2=c["m2"], **coup)
        scale2 = 1.0 if c["conv"] == "C" else 0.5  # quadratic observables: C -> A is a factor 1/2
        # HMC in the target's own convention
        parts = []
        t0 = time.perf_counter()
        res = run_chain(HMC(target, traj_length=1.0, eps=0.2), 16, n_times, seed=7, n_therm=300,
                        callback=lambda k, phi, lw: parts.append(primary_series(phi, 2)))
        # production only: tuning and thermalisation are not charged to the samples
        wall = float(res.timings.get("production", time.perf_counter() - t0))
        ds = chain_observables(np.concatenate(parts), n_replicas=16, volume=lat.volume,
                               include_primary=False)
        row = {"case": c["name"], "target": target.to_dict(), "hmc": {
            "wall_s": wall, "warmup_s": float(res.timings.get("warmup", float("nan"))),
            "acceptance": res.acceptance,
            "obs": {o: {"value": float(ds.sel(observable=o).value),
                        "error": float(ds.sel(observable=o).error),
                        "tau_int": float(ds.sel(observable=o).tau_int)}
                    for o in ("chi", "E", "abs_M")}}}
        g = gamma_error(res.exp_mdH.ravel(), n_replicas=16)
        row["hmc"]["exp_mdH"] = [g.value, g.error]
        mb = base_mass(target, "hartree")
        row["base_m2_hartree"] = mb
        row["reweighted"] = {}
        for src in ("exact", "net1"):
            t0 = time.perf_counter()
            phis = []
            cb = lambda k, phi, lw: phis.append(np.asarray(phi))  # noqa: E731
            if src == "exact":
                sample_free_field(lat, mb, n_rw, chunk=min(n_rw, 10000), seed=3, callback=cb)
            else:
                try:
                    from nnft.ensembles import LatticeCosNet, generate
                except ImportError:
                    continue
                generate(LatticeCosNet(lat.volume, mb), lat, n_rw, chunk=min(n_rw, 10000), seed=3,
                         callback=cb)
            phi = np.concatenate(phis)
            with warnings.catch_warnings(record=True) as wlist:
                warnings.simplefilter("always", ReweightingWarning)
                rds = reweighted_observables(phi, target, mb)
            wall_rw = time.perf_counter() - t0
            collapsed = any(issubclass(w.category, ReweightingWarning) for w in wlist)
            obs = {}
            for o in ("chi", "E", "abs_M"):
                s = scale2 if o in ("chi", "E") else math.sqrt(scale2)
                v, e = float(rds.sel(observable=o).value) * s, float(rds.sel(observable=o).error) * s
                h = row["hmc"]["obs"][o]
                obs[o] = {"value": v, "error": e,
                          "z_vs_hmc": (v - h["value"]) / math.hypot(e, h["error"])}
            row["reweighted"][src] = {"n": n_rw, "ess": rds.attrs["ess"],
                                      "ess_fraction": rds.attrs["ess_fraction"],
                                      "var_log_w": rds.attrs["var_log_w"], "collapsed": collapsed,
                                      "wall_s": wall_rw, "obs": obs}
        out.append(row)
        h = row["hmc"]["obs"]
        msg = (f"  {c['name']:<16} HMC chi={h['chi']['value']:.4f}+-{h['chi']['error']:.4f} "
               f"E={h['E']['value']:.4f}+-{h['E']['error']:.4f} tau(chi)={h['chi']['tau_int']:.1f}")
        for src, r in row["reweighted"].items():
            msg += (f" | {src}: ESS={r['ess']:.1f}/{r['n']} chi={r['obs']['chi']['value']:.4f}"
                    f"+-{r['obs']['chi']['error']:.4f} z={r['obs']['chi']['z_vs_hmc']:+.1f}")
        log(msg)
    return out


def headlines(free_rows) -> list:
    """Per L: wall seconds per independent sample (chi) of the cos-net at N = V against the best
    HMC trajectory length (production only), for benchmarks/readme_table.py."""
    out = []
    for L in sorted({r["L"] for r in free_rows}):
        net = [r for r in free_rows if r["L"] == L and r["method"] == "cos-net N=V"]
        hmc = [r for r in free_rows if r["L"] == L and r["method"].startswith("HMC")
               and r.get("tau_reliable", True)]
        if net and hmc:
            best = min(hmc, key=lambda r: r["time_per_indep_sample_s"])
            out.append({"what": f"free field L={L}: s per independent sample (chi), cos-net N=V",
                        "nnft_s": net[0]["time_per_indep_sample_s"],
                        "baseline": f"field {best['method']} (production only)",
                        "baseline_s": best["time_per_indep_sample_s"]})
    return out


# ------------------------------------------------------------------ outputs
def markdown(res):
    m = res["machine"]
    lines = [f"# MCMC vs network ensembles ({'quick' if res['quick'] else 'full'} run)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, "
             f"NumPy {m['numpy']}, backend numpy (single process). Date: {res['date']}. "
             f"Total wall time {res['total_wall_s']:.0f} s. Threads: "
             f"{res.get('threads', 'not matched (before the threads option)')} on every method "
             "(BLAS/OpenMP and the network generator). Markov chains: production only; "
             "warm-up (tuning + thermalisation) in its own column. "
             + ("The 2-core machine was shared with other jobs while this ran: wall times "
                "carry that load." if res.get("shared_machine") else ""), "",
             "## Free field, d = 2, m_E L = 4", "",
             "Cost per independent sample = wall / N_eff(chi); time to 1% = wall x "
             "(error / (0.01 x exact))^2; z = (value - exact)/error (Gamma method). "
             "tau_int in samples (measurements); '?' = chain shorter than 50 tau_int, tau_int "
             "(and the error) likely underestimated.", "",
             "| L | method | us/sample | tau_int(chi) | tau_int(E) | us/indep. sample | "
             "t(chi 1%) s | t(E 1%) s | z(chi) | z(E) | z(G0) | z(<abs M>) | warm-up s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["free"]:
        q = "" if r["tau_reliable"] else "?"
        lines.append(
            f"| {r['L']} | {r['method']} | {r['time_per_sample_s'] * 1e6:.1f} | "
            f"{r['chi']['tau_int']:.2f}{q} | {r['E']['tau_int']:.2f} | "
            f"{r['time_per_indep_sample_s'] * 1e6:.1f} | {r['chi']['time_to_1pct_s']:.3g} | "
            f"{r['E']['time_to_1pct_s']:.3g} | {r['chi']['z']:+.2f} | {r['E']['z']:+.2f} | "
            f"{r['G0']['z']:+.2f} | {r['abs_M']['z']:+.2f} | "
            f"{'-' if r.get('warmup_s') is None else format(r['warmup_s'], '.2f')} |")
    lines += ["", "## phi^4, d = 2: HMC vs reweighted free ensembles (Hartree base mass)", "",
              "Quadratic observables in the target's convention. ESS = Kish effective sample "
              "size of the reweighted ensemble; z = (reweighted - HMC)/combined error.", "",
              "| case | HMC chi | HMC E | tau(chi) HMC | source | ESS / N | rw chi | rw E | z(chi) | z(E) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in res["phi4"]:
        h = row["hmc"]["obs"]
        for src, r in row["reweighted"].items():
            o = r["obs"]
            flag = " (collapsed)" if r["collapsed"] else ""
            lines.append(
                f"| {row['case']} | {h['chi']['value']:.4f}({h['chi']['error']:.4f}) | "
                f"{h['E']['value']:.4f}({h['E']['error']:.4f}) | {h['chi']['tau_int']:.1f} | "
                f"{src} | {r['ess']:.1f} / {r['n']}{flag} | "
                f"{o['chi']['value']:.4f}({o['chi']['error']:.4f}) | "
                f"{o['E']['value']:.4f}({o['E']['error']:.4f}) | {o['chi']['z_vs_hmc']:+.1f} | "
                f"{o['E']['z_vs_hmc']:+.1f} |")
    return "\n".join(lines) + "\n"


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = []
    for r in res["free"]:
        if r["method"] not in methods:
            methods.append(r["method"])
    for meth in methods:
        rs = sorted((r for r in res["free"] if r["method"] == meth), key=lambda r: r["L"])
        ax.loglog([r["L"] for r in rs], [r["time_per_indep_sample_s"] for r in rs], "o-", label=meth)
    ax.set_xlabel("L (m_E L = 4, d = 2)")
    ax.set_ylabel("wall seconds per independent sample (chi)")
    ax.set_title(f"free field, {res['machine']['cpu']} x{res['machine']['cores']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and statistics (~1 min)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="lattice sizes L")
    ap.add_argument("--no-phi4", action="store_true", help="skip part 2")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--render", default=None, help="only re-render md/png from this JSON")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP and generator threads on every method (default 1)")
    ap.add_argument("--shared", action="store_true",
                    help="say in the result that the machine was shared with other jobs")
    ap.add_argument("--stem", default=None, help="result file name (default mcmc_vs_networks)")
    args = ap.parse_args(argv)
    if args.render:
        res = json.loads(Path(args.render).read_text())
        for r in res["free"]:
            if r["method"].startswith("HMC") and r["method"] != "HMC tau=1":
                r["method"] = "HMC tau=L/4"
        stem = Path(args.render).with_suffix("")
        Path(args.render).write_text(json.dumps(res, indent=1, default=float))
        Path(f"{stem}.md").write_text(markdown(res))
        plot(res, f"{stem}.png")
        return
    sizes = args.sizes or ([8, 16] if args.quick else [8, 16, 32, 64])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.stem or ("mcmc_vs_networks" + ("_quick" if args.quick else ""))
    log = lambda s: print(s, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    res = {"machine": machine(), "quick": args.quick, "sizes": sizes,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rel_err_target": REL_ERR,
           "threads": THREADS, "shared_machine": args.shared,
           "cost_charged": "production only (Markov-chain warm-up reported as warmup_s)"}
    log(f"machine: {res['machine']}")
    log("part 1: free field")
    res["free"] = part1(sizes, args.quick, log)
    res["phi4"] = [] if args.no_phi4 else (log("part 2: phi^4") or part2(args.quick, log))
    res["total_wall_s"] = time.perf_counter() - t0
    res["headlines"] = headlines(res["free"])
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float))
    (out / f"{stem}.md").write_text(markdown(res))
    plot(res, out / f"{stem}.png")
    log(f"wrote {out / stem}.{{json,md,png}} in {res['total_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
