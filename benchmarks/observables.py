"""Throughput of the one-pass measurement (nnft.observables) on this machine.

1. Read rate: a plain read of every chunk of a FieldStore (decompression included) against a
   measuring pass over the same store with the standard accumulators (FFT two-point function,
   per-sample observables, per-site moments up to order 4), in GB/s of phi (float64 bytes).
2. Two-point matrix: TwoPointMatrix.update on in-memory chunks (n, V) against this machine's
   plain matrix-product rate for the same shapes (X^T X), in GFLOP/s (2 n V^2 flops).

Writes benchmarks/results/observables-<machine>.{json,md} naming the CPU.

Usage: python benchmarks/observables.py [--L 32] [--samples 20000] [--chunk 1000] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from nnft.lattice import Lattice, sample_free_field
from nnft.observables import (FourierTwoPoint, ScalarObservables, SiteMoments, TwoPointMatrix,
                              measure)


def cpu_name() -> str:
    from nnft.compare import machine

    return machine()["cpu"]


def best(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, default=32)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--V2", type=int, default=1024, help="sites of the two-point matrix test")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)

    lat = Lattice((args.L, args.L))
    tmp = Path(tempfile.mkdtemp(prefix="nnft-bench-obs-"))
    try:
        st = sample_free_field(lat, 0.1, args.samples, tmp / "s", chunk=args.chunk, seed=1)
        gb = args.samples * lat.volume * 8 / 1e9

        def plain():
            for k in range(st.n_chunks):
                st.read_chunk(k)

        def measuring():
            measure(st, {"fourier": FourierTwoPoint(2), "scalars": ScalarObservables(2),
                         "sites": SiteMoments(4)}, blocks=20)

        def measuring_dask():
            measure(st, {"fourier": FourierTwoPoint(2), "scalars": ScalarObservables(2),
                         "sites": SiteMoments(4)}, blocks=20, executor="dask",
                    scheduler="threads")

        t_plain = best(plain)
        t_meas = best(measuring)
        t_dask = best(measuring_dask)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rng = np.random.default_rng(0)
    n, V = args.chunk, args.V2
    X = rng.standard_normal((n, V))
    flops = 2.0 * n * V * V
    t_mm = best(lambda: X.T @ X, 5)
    acc = TwoPointMatrix()
    acc.update(X)
    t_tp = best(lambda: acc.update(X), 5)

    res = {
        "machine": platform.node(), "cpu": cpu_name(), "cores": os.cpu_count(),
        "numpy": np.__version__, "date": time.strftime("%Y-%m-%d"),
        "store": {"lattice": list(lat.shape), "samples": args.samples, "chunk": args.chunk,
                  "phi_GB": gb},
        "plain_read_s": t_plain, "plain_read_GBps": gb / t_plain,
        "measure_pass_s": t_meas, "measure_pass_GBps": gb / t_meas,
        "measure_pass_dask_threads_s": t_dask, "measure_pass_dask_threads_GBps": gb / t_dask,
        "measure_over_plain_time": t_meas / t_plain,
        "two_point": {"n": n, "V": V, "matmul_GFLOPs": flops / t_mm / 1e9,
                      "TwoPointMatrix_update_GFLOPs": flops / t_tp / 1e9,
                      "efficiency": t_mm / t_tp},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", platform.node() or "machine")
    (out / f"observables-{tag}.json").write_text(json.dumps(res, indent=2))
    md = f"""# nnft.observables throughput on {res['machine']}

CPU: {res['cpu']} ({res['cores']} cores), numpy {res['numpy']}, {res['date']}.
Store: exact free field on {args.L}x{args.L}, {args.samples} samples, chunk {args.chunk},
{gb:.3f} GB of float64 phi (zarr, blosc lz4 compressed). Best of 3.

| pass | time (s) | GB/s of phi |
|---|---|---|
| plain read of every chunk | {t_plain:.3f} | {gb / t_plain:.3f} |
| measuring pass (FFT G(r), scalars, site moments to order 4), serial | {t_meas:.3f} | {gb / t_meas:.3f} |
| same, dask threads (one task per chunk, tree merge) | {t_dask:.3f} | {gb / t_dask:.3f} |

Measuring pass / plain read time: {t_meas / t_plain:.2f}.

Two-point matrix (chunk n = {n}, V = {V} sites, 2 n V^2 flops):
plain X^T X {flops / t_mm / 1e9:.1f} GFLOP/s; TwoPointMatrix.update
{flops / t_tp / 1e9:.1f} GFLOP/s ({t_mm / t_tp:.0%} of the matmul rate).
"""
    (out / f"observables-{tag}.md").write_text(md)
    print(md)
    return res


if __name__ == "__main__":
    main()
