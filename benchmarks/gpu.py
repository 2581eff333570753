"""GPU benchmark (issue 8): network generation and measurement against the device's ceilings.

One command; writes benchmarks/results/gpu-<device>.json and .md and prints a table.

Sections
1. ceilings: FP32 (an FMA-bound RawKernel: 16 independent fmaf chains per thread, 2 flops per
   FMA), memory bandwidth (large device-to-device copy, bytes read + written), FP64/FP32 GEMM
   (cupy.matmul), and the measured cost of each special function and of one Philox4x32-10 call
   (+ 2 Box-Muller pairs = 4 normals), in "FMA slots" (FMA instructions the SM could have issued
   in the same time).
2. accuracy: the fused float32 kernel against a float64 evaluation of the very parameters it
   generated (it dumps them), norm-wise relative error, per architecture, 6 points and 64 x 64.
3. direct path: GaussNet/ErfNet/ReLUNet/TanhNet, N = 1000, M >= 10^6 networks, on 6 points
   (d_in = 1..4) and on a 64 x 64 lattice, method="fused" (in-kernel Philox, float32) and
   method="cuda" (float64 parameters drawn by cupy, float64 kernel).
   Counting convention per neuron-site evaluation: useful flops F = 2 d_in (pre-activation FMAs,
   bias as addend) + 2 D (output FMAs) + 1 (GaussNet's shift subtraction); the activation is one
   special-function call, counted separately (ReLU's max included); the in-kernel RNG costs
   ceil((d_in + 1 + D)/4) Philox calls per neuron and network, amortised over the sites that share
   one generation (V for small point sets, 1024 or 512 sites per block on lattices).
   Reported: useful GFLOP/s and its fraction of the FP32 ceiling ("useful"), and the fraction of
   a cost-model bound that charges the activation and RNG at their measured FMA-slot costs
   ("model": 1.0 = the kernel runs as fast as its instruction mix allows).
4. deep MLP (cuBLAS, float64): flops 2 V (d_in w + (L-1) w^2 + w D) per network vs DGEMM rate.
5. spectral LatticeCosNet (N = V) and the exact Fourier sampler: time per configuration at
   2D L = 64..512 and 4D L = 16, 32 vs a bandwidth floor of 40 bytes per site (float64 output
   written once + one complex128 spectrum written and read).
6. measurement on the device: TwoPointMatrix.update vs cupy matmul of the same shape;
   FourierTwoPoint.update vs cupy.fft.rfftn; SiteMoments(4) vs one read of the chunk.
7. Zarr I/O: generate(method="fused", dtype="float32") into a store of a few GB (1 GB with
   --quick), with writer_threads = 0 (serial), 1 and 4 (background copy/compress/write
   overlapping the kernels) and the compute-only rate.

Usage: python benchmarks/gpu.py [--quick] [--only SECTION,...] [--store-gb 2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import nnft.ensembles as E
from nnft.lattice import Lattice, PointSet, chunk_rng, sample_free_field

HERE = Path(__file__).resolve().parent
X6 = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
ARCHS = {"ReLUNet": E.ReLUNet, "ErfNet": E.ErfNet, "GaussNet": E.GaussNet, "TanhNet": E.TanhNet}
ACT_OF = {"ReLUNet": "relu", "ErfNet": "erf", "GaussNet": "exp2", "TanhNet": "tanh"}


# ---------------------------------------------------------------------------------------------
def cp():
    import cupy

    return cupy


def timed(fn, repeat=3, warmup=1):
    """Median device time (s) of fn() between CUDA events (fn may also block the host)."""
    cupy = cp()
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    ts = []
    for _ in range(repeat):
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(cupy.cuda.get_elapsed_time(e0, e1) / 1e3)
    return float(np.median(ts))


def device_info():
    cupy = cp()
    p = cupy.cuda.runtime.getDeviceProperties(0)
    name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
    return {"name": name, "sms": int(p["multiProcessorCount"]),
            "clock_khz": int(p.get("clockRate", 0)), "mem_gb": p["totalGlobalMem"] / 1e9,
            "cc": f"{p['major']}.{p['minor']}", "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "host": socket.gethostname(), "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------
_PEAK_SRC = r"""
extern "C" __global__ void fma_peak(float* out, const int iters, const float a, const float b) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    float x[16];
    #pragma unroll
    for (int k = 0; k < 16; ++k) x[k] = 1e-3f * (tid & 7) + 0.01f * k;
    for (int i = 0; i < iters; ++i) {
        #pragma unroll
        for (int k = 0; k < 16; ++k) x[k] = fmaf(x[k], a, b);
    }
    float s = 0.f;
    #pragma unroll
    for (int k = 0; k < 16; ++k) s += x[k];
    out[tid] = s;
}
"""

_SF_SRC = r"""
#define CHAINS 8
__device__ __forceinline__ float act(float z) { return ACT_EXPR; }
extern "C" __global__ void sf_rate(float* out, const int iters, const float a, const float b) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    float x[CHAINS];
    #pragma unroll
    for (int k = 0; k < CHAINS; ++k) x[k] = 1e-3f * (tid & 7) + 0.05f * k;
    for (int i = 0; i < iters; ++i) {
        #pragma unroll
        for (int k = 0; k < CHAINS; ++k) x[k] = act(fmaf(x[k], a, b));
    }
    float s = 0.f;
    #pragma unroll
    for (int k = 0; k < CHAINS; ++k) s += x[k];
    out[tid] = s;
}
"""

_RNG_SRC = r"""
extern "C" __global__ void rng_rate(float* out, const int iters, const unsigned int k0,
                                    const unsigned int k1) {
    const unsigned int tid = blockIdx.x * blockDim.x + threadIdx.x;
    float s = 0.f, g[4];
    for (int i = 0; i < iters; ++i) {
        nnft_normals4(tid, (unsigned int)i, 0u, k0, k1, g);
        s += (g[0] + g[1]) + (g[2] + g[3]);
    }
    out[tid] = s;
}
"""

ACT_EXPRS = {"fma_only": "z", "relu": "fmaxf(z, 0.0f)", "erf": "erff(z)", "exp2": "exp2f(z)",
             "tanh": "tanhf(z)"}


def ceilings(quick):
    cupy = cp()
    from nnft.ensembles.philox import CUDA_SOURCE

    info = device_info()
    res = {}
    blocks, threads = info["sms"] * 16, 256
    out = cupy.empty(blocks * threads, dtype=cupy.float32)
    iters = 2048 if quick else 8192
    k = cupy.RawKernel(_PEAK_SRC, "fma_peak")
    t = timed(lambda: k((blocks,), (threads,), (out, np.int32(iters), np.float32(0.999),
                                                 np.float32(1e-3))), repeat=5)
    fmas = blocks * threads * 16 * iters
    res["fp32_tflops"] = 2 * fmas / t / 1e12
    res["fma_rate"] = fmas / t  # FMA instructions (lanes) per second
    # bandwidth
    n = (1 << 28) if quick else (1 << 29)  # float32 elements: 1 or 2 GiB
    a = cupy.random.random(n, dtype=cupy.float32)
    b = cupy.empty_like(a)
    t = timed(lambda: cupy.copyto(b, a), repeat=5)
    res["bandwidth_gbs"] = 2 * a.nbytes / t / 1e9
    del a, b
    # GEMM rates
    for dt, nm in ((cupy.float64, "dgemm_tflops"), (cupy.float32, "sgemm_tflops")):
        s = 4096 if quick else 8192
        A = cupy.random.random((s, s)).astype(dt)
        B = cupy.random.random((s, s)).astype(dt)
        t = timed(lambda: cupy.matmul(A, B), repeat=3)
        res[nm] = 2 * s ** 3 / t / 1e12
        del A, B
    # special functions: calls/s with one FMA each; cost in FMA slots (minus that FMA)
    sf = {}
    for name, expr in ACT_EXPRS.items():
        kern = cupy.RawKernel(f"#define ACT_EXPR ({expr})\n" + _SF_SRC, "sf_rate")
        it = iters // 2
        t = timed(lambda: kern((blocks,), (threads,), (out, np.int32(it), np.float32(0.7),
                                                        np.float32(0.1))), repeat=3)
        calls = blocks * threads * 8 * it
        sf[name] = {"calls_per_s": calls / t, "fma_slots": res["fma_rate"] / (calls / t)}
    base = sf["fma_only"]["fma_slots"]
    for name in sf:
        sf[name]["fma_slots_net"] = max(0.0, sf[name]["fma_slots"] - base)
    res["special"] = sf
    kern = cupy.RawKernel(CUDA_SOURCE + _RNG_SRC, "rng_rate")
    it = 256 if quick else 1024
    t = timed(lambda: kern((blocks,), (threads,), (out, np.int32(it), np.uint32(1),
                                                    np.uint32(2))), repeat=3)
    calls = blocks * threads * it
    res["philox_calls_per_s"] = calls / t
    res["philox_fma_slots"] = res["fma_rate"] / (calls / t)
    res["device"] = info
    return res


# ---------------------------------------------------------------------------------------------
def six_points(d_in, arch):
    if d_in == 1:
        x = X6[:, None] if arch != "ReLUNet" else np.array([.2, .4, .6, .8, 1., 1.2])[:, None]
    else:
        x = np.random.default_rng(d_in).uniform(-1, 1, size=(6, d_in))
        if arch == "ReLUNet":
            x = np.abs(x) + 0.2
    return 0.01 * x if arch == "GaussNet" else x


def make_spec(arch, N, d_in, D):
    kw = {"sigma_b": 0.0} if arch == "ReLUNet" else {}
    return ARCHS[arch](N, d_in=d_in, components=None if D == 1 else D, **kw)


def accuracy(quick):
    cupy = cp()
    from nnft.ensembles.cuda import fused_single_layer_cuda
    from nnft.ensembles.philox import fused_key

    rows = []
    key = fused_key(7, 0)
    for arch in ARCHS:
        for where, X, d_in in (("6 points", six_points(1, arch), 1),
                               ("64x64", Lattice((64, 64), spacing=1 / 32, origin=-1.0).positions(), 2)):
            if arch == "GaussNet" and where == "64x64":
                X = 0.3 * X
            for D in (1, 3):
                spec = make_spec(arch, 1000, d_in, D)
                n = 256 if where == "6 points" else 32
                out, p = fused_single_layer_cuda(spec, X, key, n, dump=True)
                pd = {k: cupy.asarray(v, dtype=cupy.float64) for k, v in p.items()}
                ref = E.evaluate(spec, pd, PointSet(X), cupy, method="dense")
                rel = float(cupy.linalg.norm(out - ref) / cupy.linalg.norm(ref))
                rows.append({"arch": arch, "where": where, "D": D, "rel_err_vs_f64": rel,
                             "finite": bool(cupy.isfinite(out).all())})
    return rows


def direct(quick, ceil):
    cupy = cp()
    from nnft.ensembles.cuda import fused_config, fused_single_layer_cuda
    from nnft.ensembles.engine import chunk_fields
    from nnft.ensembles.philox import calls_per_neuron, fused_key

    N = 1000
    M = (1 << 16) if quick else (1 << 20)
    fma_rate = ceil["fma_rate"]
    sf = ceil["special"]
    rows = []
    key = fused_key(11, 0)

    def record(method, arch, where, d_in, D, V, M_run, t, cfg=None):
        ns = M_run * N * V
        F = 2 * d_in + 2 * D + (1 if arch == "GaussNet" else 0)
        rate = ns / t
        act_slots = sf[ACT_OF[arch]]["fma_slots_net"]
        row = {"method": method, "arch": arch, "where": where, "d_in": d_in, "D": D, "V": V,
               "M": M_run, "N": N, "time_s": t, "neuron_sites_per_s": rate,
               "useful_flops_per_ns": F, "useful_tflops": F * rate / 1e12,
               "useful_frac_fp32": F * rate / (2 * fma_rate), "act_fma_slots": act_slots}
        if cfg is not None:
            regen = -(-V // cfg["sites_per_block"])
            rng_calls = calls_per_neuron(d_in, D) * regen / V
            rng_slots = rng_calls * ceil["philox_fma_slots"]
            model = F / 2 + act_slots + rng_slots  # FMA slots per neuron-site
            row.update({"rng_calls_per_ns": rng_calls, "rng_fma_slots_per_ns": rng_slots,
                        "model_fma_slots_per_ns": model, "model_frac": rate * model / fma_rate})
        rows.append(row)
        return row

    cases = [("6 points", d, 1) for d in (1, 2, 3, 4)] + [("6 points", 1, 3), ("64x64", 2, 1)]
    for where, d_in, D in cases:
        for arch in ARCHS:
            if where == "6 points":
                X = six_points(d_in, arch)
            else:
                X = Lattice((64, 64), spacing=1 / 32, origin=-1.0).positions()
                if arch == "GaussNet":
                    X = 0.3 * X
            V = X.shape[0]
            spec = make_spec(arch, N, d_in, D)
            cfg = fused_config(V, d_in, D)
            sub = M if V * D <= 64 else max(1, (1 << 28) // (V * D))  # <= 1 GiB float32 output
            Mr = M if where == "6 points" else (M if not quick else 1 << 14)
            buf = cupy.empty((sub, D, V), dtype=cupy.float32)
            fused_single_layer_cuda(spec, X, key, 64, out_dtype="float32")  # compile

            def run_fused():
                for off in range(0, Mr, sub):
                    fused_single_layer_cuda(spec, X, key, sub, offset=off, out_dtype="float32",
                                            out=buf)

            t = timed(run_fused, repeat=3 if where == "6 points" else 1, warmup=0)
            r = record("fused", arch, where, d_in, D, V, Mr, t, cfg)
            print(f"  fused {arch:8s} {where:8s} d_in={d_in} D={D}: {r['useful_frac_fp32']:.1%} "
                  f"useful, model {r['model_frac']:.1%}", flush=True)
            del buf
            # method="cuda": float64 parameters drawn by cupy (included in the time)
            if where == "6 points" and not (d_in in (1, 4) and D == 1):
                continue
            lat = PointSet(X)
            Mc = (1 << 16) if where == "6 points" else (1 << 10 if quick else 1 << 12)
            subc = min(Mc, 1 << 16)
            rng = chunk_rng(3, 0, cupy)
            chunk_fields(spec, lat, 16, rng, cupy, method="cuda")  # compile

            def run_cuda():
                for _ in range(0, Mc, subc):
                    chunk_fields(spec, lat, subc, rng, cupy, method="cuda")

            t = timed(run_cuda, repeat=1, warmup=0)
            r = record("cuda (float64)", arch, where, d_in, D, V, Mc, t)
            print(f"  cuda  {arch:8s} {where:8s} d_in={d_in} D={D}: {r['useful_frac_fp32']:.1%} "
                  f"useful", flush=True)
            cupy.get_default_memory_pool().free_all_blocks()
    return rows


def deep(quick, ceil):
    cupy = cp()
    from nnft.ensembles.engine import chunk_fields

    rows = []
    lat = Lattice((64, 64), spacing=1 / 32, origin=-1.0)
    V = lat.volume
    for depth, width, act in ((3, 256, "relu"), (3, 512, "erf")):
        spec = E.DeepMLP(depth, width, act, d_in=2)
        n = 16 if quick else 64
        rng = chunk_rng(1, 0, cupy)
        chunk_fields(spec, lat, 2, rng, cupy, method="cuda", block=1 << 24)
        t = timed(lambda: chunk_fields(spec, lat, n, rng, cupy, method="cuda", block=1 << 24),
                  repeat=1, warmup=0)
        flops = 2 * V * (2 * width + (depth - 1) * width ** 2 + width) * n
        rows.append({"depth": depth, "width": width, "act": act, "V": V, "M": n, "time_s": t,
                     "tflops_f64": flops / t / 1e12,
                     "frac_dgemm": flops / t / 1e12 / ceil["dgemm_tflops"],
                     "act_calls_per_network": depth * width * V})
    return rows


def spectral(quick, ceil):
    cupy = cp()
    from nnft.ensembles.engine import chunk_fields

    bw = ceil["bandwidth_gbs"] * 1e9
    shapes = [(64, 64), (128, 128), (256, 256), (512, 512), (16,) * 4, (32,) * 4]
    if quick:
        shapes = [(64, 64), (256, 256), (16,) * 4]
    rows = []
    for shape in shapes:
        lat = Lattice(shape)
        V = lat.volume
        n = int(max(4, min(1024, (1 << 25) // V)))
        spec = E.LatticeCosNet(V, m2=0.5)
        rng = chunk_rng(2, 0, cupy)
        chunk_fields(spec, lat, 2, rng, cupy)
        t_net = timed(lambda: chunk_fields(spec, lat, n, rng, cupy), repeat=2, warmup=0)
        sample_free_field(lat, 0.5, 2, chunk=2, seed=1, backend="cupy", callback=lambda *a: None)
        t_ex = timed(lambda: sample_free_field(lat, 0.5, n, chunk=n, seed=1, backend="cupy",
                                               callback=lambda *a: None), repeat=2, warmup=0)
        floor = 40 * V / bw
        rows.append({"shape": "x".join(map(str, shape)), "V": V, "n": n,
                     "cosnet_s_per_config": t_net / n, "exact_s_per_config": t_ex / n,
                     "floor_s_per_config": floor, "cosnet_over_floor": t_net / n / floor,
                     "exact_over_floor": t_ex / n / floor})
        cupy.get_default_memory_pool().free_all_blocks()
    return rows


def measurement(quick, ceil):
    cupy = cp()
    import nnft.observables as O

    rows = []
    bw = ceil["bandwidth_gbs"] * 1e9
    # two-point matrix over all sites of 32x32 (float64): n x V chunk, V x V product
    n, L = (4096, 32) if quick else (16384, 32)
    V = L * L
    phi = cupy.random.standard_normal((n, L, L))
    acc = O.TwoPointMatrix()
    acc.update(phi)
    t_acc = timed(lambda: acc.update(phi), repeat=3, warmup=0)
    X = phi.reshape(n, V)
    t_mm = timed(lambda: X.T @ X, repeat=3)
    fl = 2 * n * V * V
    rows.append({"what": f"TwoPointMatrix {L}x{L}, n={n}", "time_s": t_acc,
                 "tflops": fl / t_acc / 1e12, "primitive_time_s": t_mm,
                 "primitive": "cupy X.T @ X (float64)", "frac_of_primitive": t_mm / t_acc,
                 "frac_of_dgemm_ceiling": fl / t_acc / 1e12 / ceil["dgemm_tflops"]})
    del phi, X
    # momentum-space propagator
    n, L = (64, 256) if quick else (256, 256)
    phi = cupy.random.standard_normal((n, L, L))
    acc = O.FourierTwoPoint(2)
    acc.update(phi)
    t_acc = timed(lambda: acc.update(phi), repeat=3, warmup=0)
    t_fft = timed(lambda: cupy.fft.rfftn(phi, axes=(1, 2)), repeat=3)
    rows.append({"what": f"FourierTwoPoint {L}x{L}, n={n}", "time_s": t_acc,
                 "primitive_time_s": t_fft, "primitive": "cupy.fft.rfftn (cuFFT)",
                 "frac_of_primitive": t_fft / t_acc,
                 "floor_time_s": phi.nbytes / bw, "frac_of_bandwidth_floor": phi.nbytes / bw / t_acc})
    del phi
    n, L = (2048, 64) if quick else (8192, 64)
    phi = cupy.random.standard_normal((n, L, L))
    acc = O.SiteMoments(4)
    acc.update(phi)
    t_acc = timed(lambda: acc.update(phi), repeat=3, warmup=0)
    rows.append({"what": f"SiteMoments(4) {L}x{L}, n={n}", "time_s": t_acc,
                 "floor_time_s": phi.nbytes / bw, "frac_of_bandwidth_floor": phi.nbytes / bw / t_acc})
    del phi
    cupy.get_default_memory_pool().free_all_blocks()
    return rows


def zarr_io(quick, store_gb):
    cupy = cp()

    lat = Lattice((64, 64), spacing=1 / 32, origin=-1.0)
    spec = E.ErfNet(1000, d_in=2)
    chunk = 2048
    gb = 1.0 if quick else store_gb
    n = int(gb * 1e9 / (lat.volume * 4)) // chunk * chunk
    nbytes = n * lat.volume * 4
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="nnft-gpu-bench-"))
    try:
        E.generate(spec, lat, chunk, callback=lambda *a: None, chunk=chunk, seed=1,
                   backend="cupy", method="fused", dtype="float32")
        t0 = time.perf_counter()
        E.generate(spec, lat, n, callback=lambda *a: None, chunk=chunk, seed=1, backend="cupy",
                   method="fused", dtype="float32")
        cupy.cuda.Device().synchronize()
        t = time.perf_counter() - t0
        rows.append({"what": "compute only (callback, no store)", "samples": n, "GB": nbytes / 1e9,
                     "time_s": t, "GB_per_s": nbytes / 1e9 / t, "configs_per_s": n / t})
        for w in (0, 1, 4):
            path = tmp / f"s{w}"
            t0 = time.perf_counter()
            E.generate(spec, lat, n, path, chunk=chunk, seed=1, backend="cupy", method="fused",
                       dtype="float32", writer_threads=w)
            t = time.perf_counter() - t0
            du = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            rows.append({"what": f"store, writer_threads={w}", "samples": n, "GB": nbytes / 1e9,
                         "time_s": t, "GB_per_s": nbytes / 1e9 / t, "configs_per_s": n / t,
                         "on_disk_GB": du / 1e9})
            shutil.rmtree(path, ignore_errors=True)
            print(f"  zarr writer_threads={w}: {nbytes / 1e9 / t:.2f} GB/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------------------------
def _fmt(v):
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def table(rows, cols):
    if not rows:
        return ""
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |\n"
                          for r in rows)


def markdown(res):
    c = res.get("ceilings", {})
    dev = c.get("device", {})
    out = [f"# nnft GPU benchmark: {dev.get('name', '?')}\n",
           f"{dev.get('sms', '?')} SMs, compute capability {dev.get('cc', '?')}, CuPy "
           f"{dev.get('cupy', '?')}; quick={res['quick']}; {res['date']}\n"]
    if c:
        out.append("## Ceilings\n")
        out.append(table([{"FP32 TFLOP/s (FMA kernel)": c["fp32_tflops"],
                           "bandwidth GB/s (copy, r+w)": c["bandwidth_gbs"],
                           "DGEMM TFLOP/s": c["dgemm_tflops"], "SGEMM TFLOP/s": c["sgemm_tflops"],
                           "Philox call (4 normals), FMA slots": c["philox_fma_slots"]}],
                         ["FP32 TFLOP/s (FMA kernel)", "bandwidth GB/s (copy, r+w)",
                          "DGEMM TFLOP/s", "SGEMM TFLOP/s", "Philox call (4 normals), FMA slots"]))
        out.append("\nSpecial functions (cost in FMA slots beyond the chained FMA):\n\n")
        out.append(table([{"function": k, "calls/s": v["calls_per_s"],
                           "FMA slots": v["fma_slots_net"]} for k, v in c["special"].items()],
                         ["function", "calls/s", "FMA slots"]))
    for key, title, cols in [
        ("accuracy", "Fused float32 kernel vs float64 on the same parameters",
         ["arch", "where", "D", "rel_err_vs_f64", "finite"]),
        ("direct", "Direct single-layer path (N = 1000)",
         ["method", "arch", "where", "d_in", "D", "M", "time_s", "neuron_sites_per_s",
          "useful_tflops", "useful_frac_fp32", "rng_fma_slots_per_ns", "model_frac"]),
        ("deep", "Deep MLP (cuBLAS, float64)",
         ["depth", "width", "act", "M", "time_s", "tflops_f64", "frac_dgemm"]),
        ("spectral", "Spectral cos-net and exact sampler (per configuration)",
         ["shape", "n", "cosnet_s_per_config", "exact_s_per_config", "floor_s_per_config",
          "cosnet_over_floor", "exact_over_floor"]),
        ("measurement", "Measurement on the device",
         ["what", "time_s", "primitive", "primitive_time_s", "frac_of_primitive",
          "frac_of_bandwidth_floor"]),
        ("zarr", "Zarr I/O (ErfNet N=1000 on 64x64, float32, method=fused)",
         ["what", "GB", "time_s", "GB_per_s", "configs_per_s", "on_disk_GB"]),
    ]:
        if res.get(key):
            out.append(f"\n## {title}\n\n")
            out.append(table(res[key], cols))
    if res.get("errors"):
        out.append("\n## Errors\n\n" + "".join(f"- {k}: {v.splitlines()[-1]}\n"
                                                for k, v in res["errors"].items()))
    out.append("\nConventions: see the docstring of benchmarks/gpu.py (useful flops per "
               "neuron-site = 2 d_in + 2 D (+1 Gauss); activation and in-kernel RNG counted "
               "separately at their measured FMA-slot cost; model_frac = achieved / that bound).\n")
    return "".join(out)


SECTIONS = ("ceilings", "accuracy", "direct", "deep", "spectral", "measurement", "zarr")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--store-gb", type=float, default=2.0, help="size of the Zarr I/O store")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder")
    args = ap.parse_args(argv)
    from nnft.lattice import cuda_available

    if not cuda_available():
        print("no CUDA device: nothing to benchmark", file=sys.stderr)
        return 2
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"--only: unknown sections {bad}; choose from {SECTIONS}")
    res = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "errors": {}}
    t_all = time.perf_counter()
    ceil = None
    for sec in SECTIONS:
        if sec not in only and not (sec == "ceilings" and ceil is None):
            continue
        t0 = time.perf_counter()
        print(f"[{sec}] ...", flush=True)
        try:
            if sec == "ceilings":
                ceil = res["ceilings"] = ceilings(args.quick)
            elif sec == "accuracy":
                res["accuracy"] = accuracy(args.quick)
            elif sec == "direct":
                res["direct"] = direct(args.quick, ceil)
            elif sec == "deep":
                res["deep"] = deep(args.quick, ceil)
            elif sec == "spectral":
                res["spectral"] = spectral(args.quick, ceil)
            elif sec == "measurement":
                res["measurement"] = measurement(args.quick, ceil)
            elif sec == "zarr":
                res["zarr"] = zarr_io(args.quick, args.store_gb)
        except Exception:  # noqa: BLE001 - one failing section must not lose the others
            res["errors"][sec] = traceback.format_exc()
            print(res["errors"][sec], file=sys.stderr, flush=True)
            if sec == "ceilings":
                break
        print(f"[{sec}] {time.perf_counter() - t0:.1f} s", flush=True)
        cp().get_default_memory_pool().free_all_blocks()
    res["total_s"] = time.perf_counter() - t_all
    name = res.get("ceilings", {}).get("device", {}).get("name", "unknown-gpu")
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (outdir / f"gpu-{slug}{suffix}.json").write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res)
    (outdir / f"gpu-{slug}{suffix}.md").write_text(md)
    print(md)
    print(f"total {res['total_s']:.0f} s; wrote {outdir / f'gpu-{slug}{suffix}.json'} and .md")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
