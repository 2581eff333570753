"""Peak memory against the number of samples: generating a store and the default run's
measuring pass over it, at M = 10^4, 10^5, 10^6 samples.

For each M a fresh process generates a FieldStore of a lattice cos-net (float64, default
16 x 16, width 64, chunks of 4096) and reports its peak RSS; then another fresh process runs the
one shared measuring pass of the default ``nnft run`` measurements (propagator, four_point,
cluster, symmetry with the default options, as ``nnft run`` does after generating each store)
and reports its peak RSS. Both stream chunks through mergeable accumulators, so peak RSS must
not grow with M (the field data grows 100-fold from the first to the last row). The default
``nnft run`` itself is not run at 10^6 samples (five widths of a 32 x 32 lattice would write
40 GB of stores); its measuring pass is what this times, on a smaller lattice.

    python benchmarks/memory.py [--L 16] [--samples 10000,100000,1000000] [--tmp DIR]

Writes benchmarks/results/memory-<machine>.md and .json. Each store is deleted after use.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GEN_CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from benchmarks.measure_pass import make_store
t = time.perf_counter()
make_store(Path({path!r}), {L}, {n}, {chunk})
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

PASS_CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from benchmarks.measure_pass import shared_pass
t = time.perf_counter()
shared_pass(Path({path!r}))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

BASE_CHILD = r"""
import resource, sys
sys.path.insert(0, {root!r})
import benchmarks.measure_pass, nnft.measurements, nnft.observables.plan, nnft.ensembles
print(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def child(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) printed by a fresh Python process running ``code``."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    wall, kb = r.stdout.split()[-2:]
    return float(wall), int(kb) / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=16, help="lattice side (L x L), default 16")
    ap.add_argument("--samples", default="10000,100000,1000000",
                    help="comma-separated sample counts M")
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--tmp", default=None, help="directory for the stores (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    from nnft.compare import machine_tag

    sizes = [int(v) for v in a.samples.split(",") if v]
    need = max(sizes) * a.L * a.L * 8
    tmp = Path(tempfile.mkdtemp(prefix="nnft-memory-", dir=a.tmp))
    free = shutil.disk_usage(tmp).free
    if need > 0.8 * free:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"--samples: the largest store needs {need / 1e9:.1f} GB, "
                         f"{free / 1e9:.1f} GB free in {tmp.parent}")
    rows = []
    t0 = time.perf_counter()
    try:
        _, base = child(BASE_CHILD.format(root=str(ROOT)))
        print(f"imports alone: {base:.0f} MB", flush=True)
        for n in sizes:
            path = tmp / f"m{n}.zarr"
            chunk = min(a.chunk, n)
            t_gen, rss_gen = child(GEN_CHILD.format(root=str(ROOT), path=str(path), L=a.L, n=n,
                                                    chunk=chunk))
            t_pass, rss_pass = child(PASS_CHILD.format(root=str(ROOT), path=str(path)))
            shutil.rmtree(path, ignore_errors=True)
            rows.append({"samples": n, "field_MB": n * a.L * a.L * 8 / 1e6, "generate_s": t_gen,
                         "generate_peak_rss_MB": rss_gen, "pass_s": t_pass,
                         "pass_peak_rss_MB": rss_pass})
            print(f"M={n}: generate {t_gen:.1f} s, {rss_gen:.0f} MB peak; pass {t_pass:.1f} s, "
                  f"{rss_pass:.0f} MB peak", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - t0
    tag = machine_tag()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lo, hi = rows[0], rows[-1]
    growth = {k: hi[k] - lo[k] for k in ("generate_peak_rss_MB", "pass_peak_rss_MB")}
    lines = [
        "# Peak memory against the number of samples", "",
        f"Machine: {tag} ({platform.machine()}), Python {platform.python_version()}, git "
        f"{commit}. The 2-core machine was shared with other jobs (times below carry that load; "
        f"peak RSS does not depend on it). Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"What: LatticeCosNet(width=64, m2=0.015645) on {a.L}x{a.L}, float64, chunks of "
        f"{a.chunk}. For each M a fresh process generates the store (peak RSS of generating and "
        "writing it), then a fresh process runs the default run's shared measuring pass over it "
        "(propagator, four_point, cluster, symmetry with the default options; peak RSS of the "
        f"pass). Python with the imports alone: {base:.0f} MB. The default `nnft run` itself is "
        "not run at 10^6 samples (its stores would take 40 GB); its measuring pass is, on this "
        "smaller lattice.", "",
        "| samples M | field data (MB) | generate (s) | generate peak RSS (MB) | pass (s) | "
        "pass peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['samples']} | {r['field_MB']:.0f} | {r['generate_s']:.1f} | "
                     f"{r['generate_peak_rss_MB']:.0f} | {r['pass_s']:.1f} | "
                     f"{r['pass_peak_rss_MB']:.0f} |")
    lines += ["", f"From M = {lo['samples']} to {hi['samples']} the field data grow "
              f"{hi['field_MB'] / lo['field_MB']:.0f}-fold; peak RSS changes by "
              f"{growth['generate_peak_rss_MB']:+.0f} MB (generate) and "
              f"{growth['pass_peak_rss_MB']:+.0f} MB (pass).", "",
              f"Command: `python benchmarks/memory.py --L {a.L} --samples {a.samples} --chunk "
              f"{a.chunk}` ({total:.0f} s in all).", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"memory-{tag}.md").write_text(text)
    (out / f"memory-{tag}.json").write_text(json.dumps(
        {"benchmark": "memory", "machine": tag, "commit": commit, "shared_machine": True,
         "L": a.L, "chunk": a.chunk, "imports_rss_MB": base, "rows": rows,
         "growth_MB": growth}, indent=1))


if __name__ == "__main__":
    main()
