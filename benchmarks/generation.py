"""Generation throughput: nnft's batched engine vs the founding papers' loop; spectral cos-net vs
the exact Fourier sampler. Prints both comparisons side by side and writes
benchmarks/results/generation-<machine>.json and .md.

1. Papers' settings (arXiv:2008.08601): d_in = 1, six input points, width N = 1000, Erf-, ReLU- and
   Gauss-nets. The baseline is a faithful NumPy re-implementation of the public code
   (keeganstoner/nn-qft, lib.create_networks): a Python loop that, per network, builds the two
   Linear layers (PyTorch-style default uniform init, then the normal re-init of init_weights),
   evaluates them on the six points and grows the result with a concatenation. A "lean loop"
   (preallocated output, parameters drawn directly) is shown too, as the best one can do one
   network at a time.
2. LatticeCosNet with N = V on 2D L x L lattices, spectral path, against
   nnft.lattice.sample_free_field: time per configuration.
3. Peak traced memory of the engine at two ensemble sizes M (flat in M: bounded by chunk and block).

Usage: python benchmarks/generation.py [--quick]
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


def _time(fn, repeat=2):
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_papers(quick: bool):
    width, rows = 1000, []
    m_loop = 300 if quick else 1500
    m_nnft = 4096 if quick else 32768
    for arch in ("ErfNet", "ReLUNet", "GaussNet"):
        xs = POINTS[arch][:, None]
        spec = getattr(E, arch)(width, sigma_b=0.0 if arch == "ReLUNet" else 1.0)
        pts = PointSet(xs)
        sb = spec.sigma_b
        t_paper = _time(lambda: papers_loop(arch, xs, width, m_loop, np.random.default_rng(0), sb=sb), 1)
        t_lean = _time(lambda: lean_loop(arch, xs, width, m_loop, np.random.default_rng(0), sb=sb), 1)
        res = {}
        for threads in (1, None):
            t = _time(lambda: E.generate(spec, pts, m_nnft, chunk=4096, seed=1, threads=threads,
                                         callback=lambda k, phi, lw: None))
            res[threads] = m_nnft / t
        nets = {"papers_loop": m_loop / t_paper, "lean_loop": m_loop / t_lean,
                "nnft_1_thread": res[1], "nnft_default_threads": res[None]}
        rows.append({"arch": arch, "width": width, "points": 6, "networks_per_s": nets,
                     "neuron_site_evals_per_s": {k: v * width * 6 for k, v in nets.items()},
                     "speedup_vs_papers_loop": res[None] / nets["papers_loop"],
                     "speedup_vs_lean_loop": res[None] / nets["lean_loop"],
                     "n_networks": {"loop": m_loop, "nnft": m_nnft}})
    return rows


def bench_spectral(quick: bool):
    rows = []
    for L in (16, 32, 64, 128):
        lat = Lattice((L, L))
        m2 = (2 * math.sinh(2.0 / L)) ** 2  # m_E L = 4
        V = L * L
        M = max(64, (2 ** 16 if not quick else 2 ** 13) // V * 4)
        chunk = min(M, max(4, 2 ** 18 // V))  # same chunk for both samplers
        spec = E.LatticeCosNet(V, m2=m2)
        t_nn = _time(lambda: E.generate(spec, lat, M, chunk=chunk, seed=1, threads=1,
                                        callback=lambda k, phi, lw: None))
        t_nn_thr = _time(lambda: E.generate(spec, lat, M, chunk=chunk, seed=1,
                                            callback=lambda k, phi, lw: None))
        t_ex = _time(lambda: sample_free_field(lat, m2, M, chunk=chunk, seed=1,
                                               callback=lambda k, phi, lw: None))
        rows.append({"L": L, "V": V, "N": V, "configs": M,
                     "spectral_ms_per_config": 1e3 * t_nn / M,
                     "spectral_default_threads_ms_per_config": 1e3 * t_nn_thr / M,
                     "exact_sampler_ms_per_config": 1e3 * t_ex / M,
                     "ratio_spectral_over_exact": t_nn / t_ex,
                     "ratio_default_threads_over_exact": t_nn_thr / t_ex})
    return rows


def bench_memory():
    spec, pts = E.ErfNet(1000), PointSet(X_ERF)
    out = {}
    for M in (8192, 32768):
        tracemalloc.start()
        E.generate(spec, pts, M, chunk=2048, seed=1, threads=2, callback=lambda k, phi, lw: None)
        out[M] = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    return {"arch": "ErfNet N=1000, 6 points, chunk 2048, 2 threads",
            "peak_traced_MiB": {str(k): v for k, v in out.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']} ({info['cores']} cores), host {info['hostname']}")
    papers = bench_papers(args.quick)
    print("\n1. Papers' settings: d_in=1, 6 points, N=1000 (networks/s | neuron-site evaluations/s)")
    hdr = f"{'arch':9s} {'papers loop':>22s} {'lean loop':>22s} {'nnft 1 thread':>22s} {'nnft default':>22s} {'x papers':>9s} {'x lean':>7s}"
    print(hdr)
    for r in papers:
        n, e = r["networks_per_s"], r["neuron_site_evals_per_s"]
        cells = [f"{n[k]:9.0f} | {e[k]:9.2e}" for k in ("papers_loop", "lean_loop", "nnft_1_thread",
                                                       "nnft_default_threads")]
        print(f"{r['arch']:9s} " + " ".join(f"{c:>22s}" for c in cells)
              + f" {r['speedup_vs_papers_loop']:9.1f} {r['speedup_vs_lean_loop']:7.1f}")
    spectral = bench_spectral(args.quick)
    print("\n2. LatticeCosNet N=V, spectral path vs exact Fourier sampler (ms per configuration)")
    print(f"{'L':>4s} {'N=V':>6s} {'spectral(1 thr)':>16s} {'spectral(dflt)':>15s} {'exact':>8s} {'ratio':>6s}")
    for r in spectral:
        print(f"{r['L']:4d} {r['V']:6d} {r['spectral_ms_per_config']:16.4f} "
              f"{r['spectral_default_threads_ms_per_config']:15.4f} "
              f"{r['exact_sampler_ms_per_config']:8.4f} {r['ratio_spectral_over_exact']:6.2f}")
    mem = bench_memory()
    print(f"\n3. Peak traced memory ({mem['arch']}): " +
          ", ".join(f"M={k}: {v:.1f} MiB" for k, v in mem["peak_traced_MiB"].items()))
    result = {"machine": info, "quick": args.quick, "papers_settings": papers,
              "spectral_vs_exact": spectral, "memory": mem,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    tag = "".join(c if c.isalnum() or c in "-_" else "-" for c in
                  (info["cpu"] if info["cpu"] != "unknown" else info["hostname"])).strip("-")
    tag = f"{tag}-{info['cores']}cores"
    (outdir / f"generation-{tag}.json").write_text(json.dumps(result, indent=2))
    md = [f"# Generation benchmark ({result['date']})", "",
          f"Machine: {info['cpu']}, {info['cores']} cores, host {info['hostname']}, "
          f"Python {info['python']}, NumPy {info['numpy']}", "",
          "## Papers' settings (d_in = 1, six points, N = 1000)", "",
          "| arch | papers' loop nets/s | lean loop nets/s | nnft 1 thread nets/s | nnft default nets/s | nnft neuron-site evals/s | x papers' loop | x lean loop |",
          "|---|---|---|---|---|---|---|---|"]
    for r in papers:
        n = r["networks_per_s"]
        md.append(f"| {r['arch']} | {n['papers_loop']:.0f} | {n['lean_loop']:.0f} | "
                  f"{n['nnft_1_thread']:.0f} | {n['nnft_default_threads']:.0f} | "
                  f"{r['neuron_site_evals_per_s']['nnft_default_threads']:.3g} | "
                  f"{r['speedup_vs_papers_loop']:.1f} | {r['speedup_vs_lean_loop']:.1f} |")
    md += ["", "## LatticeCosNet (N = V) spectral vs exact Fourier sampler, 2D", "",
           "| L | N = V | spectral ms/config (1 thread) | spectral ms/config (default threads) | exact ms/config | ratio (1 thread) |",
           "|---|---|---|---|---|---|"]
    for r in spectral:
        md.append(f"| {r['L']} | {r['V']} | {r['spectral_ms_per_config']:.4f} | "
                  f"{r['spectral_default_threads_ms_per_config']:.4f} | "
                  f"{r['exact_sampler_ms_per_config']:.4f} | {r['ratio_spectral_over_exact']:.2f} |")
    md += ["", f"## Memory: {mem['arch']}", ""]
    md += [f"- M = {k}: peak traced {v:.1f} MiB" for k, v in mem["peak_traced_MiB"].items()]
    (outdir / f"generation-{tag}.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {outdir}/generation-{tag}.json and .md")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
