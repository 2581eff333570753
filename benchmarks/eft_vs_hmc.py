"""Lattice phi^4: the diagram engine's perturbation series against nnft's own HMC.

Theory: 2D lattice phi^4, convention C, S = sum_x [1/2 (d phi)^2 + 1/2 m^2 phi^2 + (g/4!) phi^4],
m^2 = 0.5, periodic L x L lattices (L = 8 and 16 by default). For each coupling g, field-space
HMC (nnft.lattice.mcmc.HMC, 16 chains, Omelyan, step size tuned to acceptance 0.8) is compared
with the engine's connected correlators (nnft.lattice.diagrams, free lattice propagator at the
same m^2) to orders 0, 1 and 2 in g:

- G2(p) = sum_x G2(x) exp(-i p x) at every lattice momentum (translation-averaged measurement,
  jackknife errors over 20 blocks of consecutive trajectories);
- G4c at five tuples around the origin (coincident, neighbouring, spread).

z = (HMC - series) / error of the measurement. Reported per coupling and order: the largest |z|
over G2(p) and over G4c, and the Holm verdict at level 0.01 over G2(x) and G4c
(nnft.observables.eft.perturbative_check). Expected: the order-2 series agrees at weak
coupling; the disagreement grows with g (the omitted terms are O(g^3)). The 2-core machine was
shared with other jobs: the wall times are indicative only.

Usage: python benchmarks/eft_vs_hmc.py [--sizes 8 16] [--couplings 0.1 0.25 0.5 1 2 4]
       [--times 8000 2000] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

M2 = 0.5


def run_point(L, g, n_times, seed):
    from nnft.lattice import HMC, Lattice, Phi4Action, run_chain
    from nnft.lattice.diagrams import Interaction
    from nnft.observables.eft import perturbative_check

    out = []
    t0 = time.perf_counter()
    run_chain(HMC(Phi4Action((L, L), "C", m2=M2, g=g)), 16, n_times, n_therm=200, seed=seed,
              callback=lambda k, phi, lw: out.append(np.asarray(phi)))
    t_hmc = time.perf_counter() - t0
    phi = np.concatenate(out)
    t0 = time.perf_counter()
    ds = perturbative_check(phi, Lattice((L, L)), Interaction({4: g}, "factorial"), m2=M2,
                            order=2, alpha=0.01)
    t_check = time.perf_counter() - t0
    z4 = ((ds.g4c - ds.g4c_pt) / ds.g4c_error).values  # (order, tuple)
    return {"L": L, "g": g, "n_samples": int(phi.shape[0]), "hmc_s": t_hmc,
            "engine_and_measure_s": t_check,
            "max_abs_z_g2p": ds.max_abs_z_g2p.values.tolist(),
            "max_abs_z_g4c": ds.max_abs_z_g4c.values.tolist(),
            "verdicts": list(ds.attrs["verdicts_by_order"]),
            "z_g4c_order2": z4[2].tolist(), "z_g4c_order1": z4[1].tolist(),
            "g2p0": float(ds.g2p[0]), "g2p0_error": float(ds.g2p_error[0]),
            "g2p0_series": ds.g2p_pt[:, 0].values.tolist(),
            "g4c_tuples": ds.points4.values.tolist()}


def main(argv=None):
    from nnft.compare import machine_tag

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--couplings", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1, 2, 4])
    ap.add_argument("--times", type=int, nargs="+", default=[8000, 2000],
                    help="HMC measurements per chain, one per size (16 chains)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    if len(a.times) != len(a.sizes):
        raise SystemExit("--times: one number per size")
    rows = []
    for L, nt in zip(a.sizes, a.times):
        for i, g in enumerate(a.couplings):
            r = run_point(L, g, nt, seed=1000 * L + i)
            rows.append(r)
            print(f"L={L} g={g}: max|z| G2(p) {np.round(r['max_abs_z_g2p'], 2)} G4c "
                  f"{np.round(r['max_abs_z_g4c'], 2)} {r['verdicts']}", flush=True)
    tag = machine_tag()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"eft-vs-hmc-{tag}.json").write_text(json.dumps(
        {"machine": tag, "m2": M2, "convention": "C", "chains": 16, "rows": rows}, indent=1))
    lines = ["# Diagram engine vs HMC: lattice phi^4, d = 2", "",
             f"Machine: {tag} (2 cores shared with other jobs; wall times indicative only). "
             f"Convention C, m^2 = {M2}, 16 HMC chains, 20 jackknife blocks. z = (HMC - "
             "series) / error. Command: `python benchmarks/eft_vs_hmc.py` "
             f"(sizes {a.sizes}, measurements per chain {a.times}).", "",
             "| L | g | samples | max abs z G2(p): order 0 / 1 / 2 | max abs z G4c: 0 / 1 / 2 | "
             "verdict (Holm 0.01) order 0 / 1 / 2 | G2(p=0): HMC | series order 0 / 1 / 2 | "
             "HMC s |", "|" + "---|" * 9]
    for r in rows:
        z2 = " / ".join(f"{v:.1f}" for v in r["max_abs_z_g2p"])
        z4 = " / ".join(f"{v:.1f}" for v in r["max_abs_z_g4c"])
        ser = " / ".join(f"{v:.4f}" for v in r["g2p0_series"])
        lines.append(f"| {r['L']} | {r['g']} | {r['n_samples']} | {z2} | {z4} | "
                     f"{' / '.join(r['verdicts'])} | {r['g2p0']:.4f}({1e4 * r['g2p0_error']:.0f})"
                     f" | {ser} | {r['hmc_s']:.1f} |")
    lines += ["", "G4c z-scores at order 2, per tuple (tuples as flat site indices: "
              f"{rows[0]['g4c_tuples']}):", "",
              "| L | g | z per tuple (order 2) | z per tuple (order 1) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['L']} | {r['g']} | {', '.join(f'{v:+.1f}' for v in r['z_g4c_order2'])}"
                     f" | {', '.join(f'{v:+.1f}' for v in r['z_g4c_order1'])} |")
    lines += ["", "Reading: at weak coupling the order-2 series agrees with HMC at every momentum "
              "and tuple (|z| of order 1-3 over 64 or 256 modes) while order 0 is rejected; the "
              "order-2 deviation grows with g as the omitted O(g^3) terms grow.", ""]
    (out / f"eft-vs-hmc-{tag}.md").write_text("\n".join(lines))
    print(out / f"eft-vs-hmc-{tag}.md")


if __name__ == "__main__":
    main()
