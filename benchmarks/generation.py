"""Generation throughput: nnft's batched engine (reference and ``generator="fast"``) vs the
founding papers' loop; spectral cos-net vs the exact Fourier sampler. Prints the comparisons and
writes benchmarks/results/generation-<machine tag>.json and .md.

Every comparison is timed side by side in one process with the same thread count on both sides:
the contenders alternate for ``--rounds`` rounds and the best round of each is kept (the machine
may be shared: best-of-rounds with alternation keeps the ratios fair); one untimed warm-up run
of each contender comes first (imports, caches, alias tables) and is reported separately.

1. Papers' settings (arXiv:2008.08601): d_in = 1, six input points, width N = 1000, Erf-, ReLU- and
   Gauss-nets. The baseline is a faithful NumPy re-implementation of the public code
   (keeganstoner/nn-qft, lib.create_networks): a Python loop that, per network, builds the two
   Linear layers (PyTorch-style default uniform init, then the normal re-init of init_weights),
   evaluates them on the six points and grows the result with a concatenation. A "lean loop"
   (preallocated output, parameters drawn directly) is shown too, as the best one can do one
   network at a time.
   nnft is timed with ``generator="reference"`` (the default: float64, the stream of existing
   stores) and ``generator="fast"`` (float32 draws and evaluation), one thread each (per core)
   and with the default threads.
2. LatticeCosNet with N = V on 2D L x L lattices, spectral path (reference and fast), against
   nnft.lattice.sample_free_field, all single-threaded: time per configuration.
3. Peak traced memory of the engine at two ensemble sizes M (flat in M: bounded by chunk and block).

Usage: python benchmarks/generation.py [--quick] [--rounds R]
"""
from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import special

import nnft.ensembles as E
from nnft.lattice import Lattice, PointSet, sample_free_field

X_ERF = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
POINTS = {"ErfNet": X_ERF, "GaussNet": 0.01 * X_ERF, "ReLUNet": np.array([.2, .4, .6, .8, 1., 1.2])}


def machine() -> dict:
    from nnft.compare import machine as nnft_machine

    return {"hostname": socket.gethostname(), **nnft_machine()}


# -- the papers' loop, re-implemented faithfully in NumPy ----------------------------------------
class _Linear:
    """nn.Linear(in, out): default init (kaiming_uniform a=sqrt(5) -> U(+-1/sqrt(in)))."""

    def __init__(self, rng, fan_in, fan_out):
        bound = 1 / math.sqrt(fan_in)
        self.in_features = fan_in
        self.weight = rng.uniform(-bound, bound, (fan_out, fan_in))
        self.bias = rng.uniform(-bound, bound, fan_out)

    def __call__(self, x):
        return x @ self.weight.T + self.bias


def _init_weights(rng, m, sw, sb):
    m.weight = rng.normal(0.0, sw / math.sqrt(m.in_features), m.weight.shape)
    m.bias = rng.normal(0.0, sb, m.bias.shape)


def papers_loop(arch, xs, width, n_models, rng, sw=1.0, sb=1.0):
    """lib.create_networks of nn-qft: one network per iteration, results concatenated."""
    fss = None
    d_in = xs.shape[1]
    for _ in range(n_models):
        inp, out = _Linear(rng, d_in, width), _Linear(rng, width, 1)
        if arch == "GaussNet":  # GaussNet.__init__: normal init with mean 0
            _init_weights(rng, inp, sw, sb)
            _init_weights(rng, out, sw, sb)
            z = inp(xs)
            norm = np.sqrt(np.exp((4 + 4 * np.linalg.norm(xs, axis=1) ** 2) / (2.0 * d_in)))
            fs = out(np.exp(z) / norm[:, None])
        else:
            _init_weights(rng, inp, sw, sb)
            _init_weights(rng, out, sw, sb)
            z = inp(xs)
            fs = out(special.erf(z) if arch == "ErfNet" else np.maximum(z, 0))
        fs = fs.reshape(1, fs.shape[0], fs.shape[1])
        fss = fs if fss is None else np.concatenate((fss, fs))
    return fss


def lean_loop(arch, xs, width, n_models, rng, sw=1.0, sb=1.0):
    """Best-case one-network-at-a-time loop: preallocated output, direct draws."""
    out = np.empty((n_models, len(xs)))
    x = xs[:, 0]
    for m in range(n_models):
        w0 = rng.standard_normal(width) * sw
        b0 = rng.standard_normal(width) * sb
        w1 = rng.standard_normal(width) * (sw / math.sqrt(width))
        z = np.multiply.outer(x, w0) + b0
        h = special.erf(z) if arch == "ErfNet" else (np.maximum(z, 0) if arch == "ReLUNet" else
                                                      np.exp(z - sb ** 2 - sw ** 2 * (x * x)[:, None]))
        out[m] = h @ w1 + sb * rng.standard_normal()
    return out


def _side_by_side(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Best wall time of each callable over ``rounds`` alternating rounds, after one untimed
    warm-up call each; returns (best seconds, warm-up seconds)."""
    warm = {}
    for k, f in fns.items():
        t = time.perf_counter()
        f(warm=True)
        warm[k] = time.perf_counter() - t
    best = {k: math.inf for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f(warm=False)
            best[k] = min(best[k], time.perf_counter() - t)
    return best, warm


def _sink(k, phi, lw):
    return None


def bench_papers(quick: bool, rounds: int):
    width, rows = 1000, []
    m_loop = 300 if quick else 1500
    m_nnft = 4096 if quick else 16384
    for arch in ("ErfNet", "ReLUNet", "GaussNet"):
        xs = POINTS[arch][:, None]
        spec = getattr(E, arch)(width, sigma_b=0.0 if arch == "ReLUNet" else 1.0)
        pts = PointSet(xs)
        sb = spec.sigma_b

        def gen(generator, threads):
            def f(warm):
                E.generate(spec, pts, 512 if warm else m_nnft, chunk=4096, seed=1,
                           threads=threads, generator=generator, callback=_sink)
            return f

        fns = {
            "papers_loop": lambda warm: papers_loop(arch, xs, width, 20 if warm else m_loop,
                                                    np.random.default_rng(0), sb=sb),
            "lean_loop": lambda warm: lean_loop(arch, xs, width, 20 if warm else m_loop,
                                                np.random.default_rng(0), sb=sb),
            "nnft_1_thread": gen("reference", 1),
            "fast_1_thread": gen("fast", 1),
            "nnft_default_threads": gen("reference", None),
            "fast_default_threads": gen("fast", None),
        }
        best, warm = _side_by_side(fns, rounds)
        nets = {k: (m_loop if "loop" in k else m_nnft) / v for k, v in best.items()}
        rows.append({"arch": arch, "width": width, "points": 6, "networks_per_s": nets,
                     "neuron_site_evals_per_s": {k: v * width * 6 for k, v in nets.items()},
                     "fast_over_reference_1_thread": nets["fast_1_thread"] / nets["nnft_1_thread"],
                     "fast_over_reference_default_threads":
                         nets["fast_default_threads"] / nets["nnft_default_threads"],
                     "speedup_vs_papers_loop": nets["nnft_default_threads"] / nets["papers_loop"],
                     "fast_speedup_vs_papers_loop": nets["fast_default_threads"] / nets["papers_loop"],
                     "speedup_vs_lean_loop": nets["nnft_default_threads"] / nets["lean_loop"],
                     "warmup_s": warm,
                     "n_networks": {"loop": m_loop, "nnft": m_nnft}})
    return rows


def bench_spectral(quick: bool, rounds: int):
    rows = []
    for L in (16, 32, 64, 128):
        lat = Lattice((L, L))
        m2 = (2 * math.sinh(2.0 / L)) ** 2  # m_E L = 4
        V = L * L
        M = max(64, (2 ** 16 if not quick else 2 ** 13) // V * 4)
        chunk = min(M, max(4, 2 ** 18 // V))  # same chunk for all samplers
        spec = E.LatticeCosNet(V, m2=m2)

        def gen(generator):
            def f(warm):
                E.generate(spec, lat, chunk if warm else M, chunk=chunk, seed=1, threads=1,
                           generator=generator, callback=_sink)
            return f

        fns = {"reference": gen("reference"), "fast": gen("fast"),
               "exact": lambda warm: sample_free_field(lat, m2, chunk if warm else M, chunk=chunk,
                                                       seed=1, callback=_sink)}
        best, warm = _side_by_side(fns, rounds)
        rows.append({"L": L, "V": V, "N": V, "configs": M, "threads": 1,
                     "spectral_ms_per_config": 1e3 * best["reference"] / M,
                     "fast_spectral_ms_per_config": 1e3 * best["fast"] / M,
                     "exact_sampler_ms_per_config": 1e3 * best["exact"] / M,
                     "ratio_spectral_over_exact": best["reference"] / best["exact"],
                     "ratio_fast_over_exact": best["fast"] / best["exact"],
                     "fast_speedup": best["reference"] / best["fast"],
                     "warmup_s": warm})
    return rows


def bench_memory():
    spec, pts = E.ErfNet(1000), PointSet(X_ERF)
    out = {}
    for generator in ("reference", "fast"):
        for M in (8192, 32768):
            tracemalloc.start()
            E.generate(spec, pts, M, chunk=2048, seed=1, threads=2, callback=_sink,
                       generator=generator)
            out[f"{generator} M={M}"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
    return {"arch": "ErfNet N=1000, 6 points, chunk 2048, 2 threads",
            "peak_traced_MiB": out}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed rounds (best kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    from nnft.compare import machine_tag

    info = machine()
    print(f"machine: {info['cpu']} ({info['cores']} cores), host {info['hostname']}")
    papers = bench_papers(args.quick, args.rounds)
    print("\n1. Papers' settings: d_in=1, 6 points, N=1000 (networks/s)")
    keys = ("papers_loop", "lean_loop", "nnft_1_thread", "fast_1_thread", "nnft_default_threads",
            "fast_default_threads")
    print(f"{'arch':9s} " + " ".join(f"{k:>21s}" for k in keys) + f" {'fast/ref 1thr':>14s}")
    for r in papers:
        n = r["networks_per_s"]
        print(f"{r['arch']:9s} " + " ".join(f"{n[k]:21.0f}" for k in keys)
              + f" {r['fast_over_reference_1_thread']:14.2f}")
    spectral = bench_spectral(args.quick, args.rounds)
    print("\n2. LatticeCosNet N=V, spectral path vs exact Fourier sampler (ms per configuration, "
          "1 thread)")
    print(f"{'L':>4s} {'N=V':>6s} {'reference':>10s} {'fast':>8s} {'exact':>8s} {'ref/exact':>9s} "
          f"{'fast/exact':>10s}")
    for r in spectral:
        print(f"{r['L']:4d} {r['V']:6d} {r['spectral_ms_per_config']:10.4f} "
              f"{r['fast_spectral_ms_per_config']:8.4f} {r['exact_sampler_ms_per_config']:8.4f} "
              f"{r['ratio_spectral_over_exact']:9.2f} {r['ratio_fast_over_exact']:10.2f}")
    mem = bench_memory()
    print(f"\n3. Peak traced memory ({mem['arch']}): " +
          ", ".join(f"{k}: {v:.1f} MiB" for k, v in mem["peak_traced_MiB"].items()))
    result = {"machine": info, "quick": args.quick, "rounds": args.rounds,
              "papers_settings": papers, "spectral_vs_exact": spectral, "memory": mem,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    tag = machine_tag()
    (outdir / f"generation-{tag}.json").write_text(json.dumps(result, indent=2))
    md = [f"# Generation benchmark ({result['date']})", "",
          f"Machine: {info['cpu']}, {info['cores']} cores, host {info['hostname']}, "
          f"Python {info['python']}, NumPy {info['numpy']}. The machine was shared with other "
          f"jobs while this ran: absolute rates are pessimistic and vary between runs; each "
          f"comparison alternates its contenders for {args.rounds} rounds in one process with "
          f"the same threads and keeps the best round of each, so the ratios are the numbers "
          f"to read. Warm-up runs (one per contender) are excluded and recorded in the .json.",
          "", "Command: `python benchmarks/generation.py"
          + (" --quick" if args.quick else "") + f" --rounds {args.rounds}`", "",
          "## Papers' settings (d_in = 1, six points, N = 1000), networks per second", "",
          "`reference` is the default generator (float64; every existing store's stream); "
          "`fast` is `generator=\"fast\"` (float32 draws and evaluation, same law, another "
          "stream).", "",
          "| arch | papers' loop | lean loop | reference, 1 thread | fast, 1 thread | fast / reference (1 thread) | reference, default threads | fast, default threads | fast / reference (default threads) | fast x papers' loop |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in papers:
        n = r["networks_per_s"]
        md.append(f"| {r['arch']} | {n['papers_loop']:.0f} | {n['lean_loop']:.0f} | "
                  f"{n['nnft_1_thread']:.0f} | {n['fast_1_thread']:.0f} | "
                  f"**{r['fast_over_reference_1_thread']:.2f}** | {n['nnft_default_threads']:.0f} | "
                  f"{n['fast_default_threads']:.0f} | "
                  f"{r['fast_over_reference_default_threads']:.2f} | "
                  f"{r['fast_speedup_vs_papers_loop']:.1f} |")
    md += ["", "## LatticeCosNet (N = V) spectral path vs exact Fourier sampler, 2D, 1 thread", "",
           "| L | N = V | reference ms/config | fast ms/config | exact ms/config | reference / exact | fast / exact | fast speed-up |",
           "|---|---|---|---|---|---|---|---|"]
    for r in spectral:
        md.append(f"| {r['L']} | {r['V']} | {r['spectral_ms_per_config']:.4f} | "
                  f"{r['fast_spectral_ms_per_config']:.4f} | "
                  f"{r['exact_sampler_ms_per_config']:.4f} | {r['ratio_spectral_over_exact']:.2f} | "
                  f"**{r['ratio_fast_over_exact']:.2f}** | {r['fast_speedup']:.2f} |")
    md += ["", f"## Memory: {mem['arch']}", ""]
    md += [f"- {k}: peak traced {v:.1f} MiB" for k, v in mem["peak_traced_MiB"].items()]
    (outdir / f"generation-{tag}.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {outdir}/generation-{tag}.json and .md")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
