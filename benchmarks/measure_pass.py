"""The measuring pass against storage speed, side by side in one run.

On one FieldStore of a lattice cos-net (float64, default 32x32 and 131072 samples = 1.07 GB of
field data), each of these reads every complete chunk:

- ``raw``: the bytes of the chunk files (``open().read()``), the storage ceiling;
- ``read``: ``FieldStore.read_chunk`` of every chunk into NumPy (checksum + decode);
- ``scalars pass``: the measuring pass of ``nnft measure --what scalars`` alone (in process:
  ``measure(store, accumulators)`` with the accumulators the command builds);
- ``scalars+propagator pass``: the same for ``--what scalars,propagator`` (the scalars take
  their per-sample values from the propagator's FFT), and beside it the same pass with the
  scalars computed on their own (``standard_accumulators(..., shared=False)``);
- ``nnft measure --what scalars`` / ``scalars,propagator``: the whole command in a subprocess
  (start-up, imports, the pass, estimates, writing the output Dataset);
- ``shared pass``: the one shared pass of the default ``nnft run`` measurements (propagator,
  four_point, cluster, symmetry with the default options) through ``measure_plans``.

The variants are interleaved over ``--rounds`` (page cache warm after the first read) and the
minimum wall time is reported with its ratio to the raw read and to the FieldStore read (the
plain read rate), and the CPU time (user + system, all threads; child processes for the
commands) of the same rounds: on a shared machine the CPU time is the steadier number. Peak RSS of the shared pass is measured in a
fresh process per store size (``--rss-samples``) to show memory flat in the number of samples.

    python benchmarks/measure_pass.py [--L 32] [--samples 131072] [--rounds 2]
        [--rss-samples 10000,100000] [--quick]

Writes benchmarks/results/measure-pass-<machine>.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_MEASURES = ["propagator", "four_point", "cluster", "symmetry"]
DEFAULT_OPTIONS = {"box": 2, "n_tuples_4": 10}


def cpu_tag() -> str:
    from nnft.compare import machine_tag

    return machine_tag()


def make_store(path: Path, L: int, n: int, chunk: int, width: int = 64):
    from nnft.ensembles import generate, spec_from_dict
    from nnft.lattice import Lattice

    spec = spec_from_dict({"arch": "LatticeCosNet", "width": width, "m2": 0.015645,
                           "amplitude": "gaussian"})
    return generate(spec, Lattice((L, L)), n, path, chunk=chunk, seed=7)


def raw_read(path: Path) -> int:
    from nnft.lattice import FieldStore

    s = FieldStore.open(path)
    n = 0
    for k in s.complete_chunks():
        with open(s.chunk_file(k), "rb") as fh:
            n += len(fh.read())
    return n


def store_read(path: Path) -> int:
    from nnft.lattice import FieldStore

    s = FieldStore.open(path)
    n = 0
    for k in s.complete_chunks():
        phi, _ = s.read_chunk(k)
        n += phi.nbytes
    return n


def shared_pass(path: Path):
    """The default run's shared pass over one store (as nnft run does after generating)."""
    from nnft import measurements as registry
    from nnft.ensembles import spec_from_dict
    from nnft.lattice import FieldStore
    from nnft.observables.plan import measure_plans

    store = FieldStore.open(path)
    spec = spec_from_dict(dict(store.spec))
    ctx = registry.Context("bench", spec, store.lattice, store, spec.width,
                           dict(DEFAULT_OPTIONS), seed=2026)
    plans = registry.shared_plans(ctx, DEFAULT_MEASURES)
    meas, _ = measure_plans(store, plans)
    return registry.finalize_shared(plans, meas)


def cli_accumulators(path: Path, what: str, shared: bool = True) -> dict:
    """The accumulators ``nnft measure --what WHAT`` fills (as nnft/measure_cli.py builds them);
    ``shared=False``: the scalars computed on their own beside the FFT (the former pass)."""
    from nnft.lattice import FieldStore
    from nnft.observables.propagator import standard_accumulators

    lat = FieldStore.open(path).lattice
    fft = bool({"propagator", "two_point", "effective_mass", "xi"} & set(what.split(",")))
    return standard_accumulators(lat, fourier=fft, shared=shared)


def cli_pass(path: Path, what: str, shared: bool = True):
    """The measuring pass of ``nnft measure --what WHAT`` alone, in this process."""
    from nnft.lattice import FieldStore
    from nnft.observables import measure

    return measure(FieldStore.open(path), cli_accumulators(path, what, shared), blocks=20)


def cli_measure(path: Path, what: str, out: Path):
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "nnft", "measure", str(path), "--what", what,
                        "--out", str(out), "--no-plots", "--quiet"], capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])


def _cpu():
    """CPU seconds (user + system) of this process and its finished children."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def timed_cpu(f):
    """(wall seconds, CPU seconds) of ``f()``."""
    c, t = _cpu(), time.perf_counter()
    f()
    return time.perf_counter() - t, _cpu() - c


RSS_CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
from benchmarks.measure_pass import shared_pass
from pathlib import Path
t = time.perf_counter()
shared_pass(Path({path!r}))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss_of_pass(path: Path, python: str = sys.executable):
    """(seconds of the pass alone, peak RSS in MB) of the shared pass in a fresh process."""
    r = subprocess.run([python, "-c", RSS_CHILD.format(root=str(ROOT), path=str(path))],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    wall, kb = r.stdout.split()[-2:]
    return float(wall), int(kb) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=32)
    ap.add_argument("--samples", type=int, default=131072)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rss-samples", default="10000,100000",
                    help="comma-separated store sizes for the peak-RSS runs (16x16 lattice)")
    ap.add_argument("--old", default=None,
                    help="python of an older nnft checkout: its shared pass is timed on the same "
                         "store, interleaved with this checkout's (both in fresh processes)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--tmp", default=None, help="directory for the stores (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    if a.quick:
        a.L, a.samples, a.chunk, a.rounds, a.rss_samples = 16, 8192, 1024, 1, "2000,8000"
    tmp = Path(tempfile.mkdtemp(prefix="nnft-measure-pass-", dir=a.tmp))
    try:
        t0 = time.perf_counter()
        store = make_store(tmp / "big.zarr", a.L, a.samples, a.chunk)
        t_gen = time.perf_counter() - t0
        nbytes = a.samples * a.L * a.L * 8
        print(f"store: {nbytes / 1e9:.2f} GB generated in {t_gen:.1f} s", flush=True)
        raw_read(store.path)  # warm the page cache
        # imports outside the timings (the in-process rows time the pass, not the imports)
        import nnft.measurements  # noqa: F401
        import nnft.observables.plan  # noqa: F401
        from nnft.observables import measure  # noqa: F401
        from nnft.observables.propagator import standard_accumulators  # noqa: F401
        tasks = {
            "raw file read": lambda: raw_read(store.path),
            "FieldStore.read_chunk (all chunks)": lambda: store_read(store.path),
            "scalars pass (`nnft measure --what scalars` without start-up/output)":
                lambda: cli_pass(store.path, "scalars"),
            "scalars+propagator pass": lambda: cli_pass(store.path, "scalars,propagator"),
            "scalars+propagator pass, scalars not from the FFT (shared=False)":
                lambda: cli_pass(store.path, "scalars,propagator", shared=False),
            "`nnft measure --what scalars` (whole command)": lambda: cli_measure(
                store.path, "scalars", tmp / "m1.zarr"),
            "`nnft measure --what scalars,propagator` (whole command)": lambda: cli_measure(
                store.path, "scalars,propagator", tmp / "m2.zarr"),
            "default-run shared pass (in process)": lambda: shared_pass(store.path),
        }
        if a.old:
            tasks["shared pass, this checkout (fresh process, pass only)"] = \
                lambda: rss_of_pass(store.path)[0]
            tasks["shared pass, old checkout (fresh process, pass only)"] = \
                lambda: rss_of_pass(store.path, a.old)[0]
        best = {k: float("inf") for k in tasks}
        cpu = {k: float("inf") for k in tasks}
        for r in range(a.rounds):
            for k, f in tasks.items():
                if "pass only" in k:
                    c = _cpu()
                    dt = f()
                    dc = _cpu() - c
                else:
                    dt, dc = timed_cpu(f)
                best[k] = min(best[k], dt)
                cpu[k] = min(cpu[k], dc)
                print(f"round {r}: {k}: {dt:.2f} s wall, {dc:.2f} s CPU", flush=True)
        # process start-up + imports of the CLI, to separate from the pass itself
        t_import = min(timed(lambda: subprocess.run(
            [sys.executable, "-c", "import nnft.measure_cli, nnft.observables"], check=True))
            for _ in range(2))
        rss = []
        for n in [int(v) for v in a.rss_samples.split(",") if v]:
            s = make_store(tmp / f"rss-{n}.zarr", 16, n, min(a.chunk, n))
            wall, mb = rss_of_pass(s.path)
            rss.append((n, n * 256 * 8 / 1e6, wall, mb))
            print(f"rss: {n} samples: {mb:.0f} MB peak, {wall:.1f} s", flush=True)
            shutil.rmtree(s.path, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ref = best["raw file read"]
    rd = best["FieldStore.read_chunk (all chunks)"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Measuring pass against storage speed ({'quick' if a.quick else 'full'} run)", "",
        f"Machine: {cpu_tag()} ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}, git {commit}. The machine was shared with other jobs: "
        f"the variants are interleaved over {a.rounds} rounds and the minimum is kept; the "
        "ratios (same run) are the meaningful numbers.", "",
        f"Store: LatticeCosNet(width=64, m2=0.015645, gaussian amplitude) on {a.L}x{a.L}, "
        f"{a.samples} samples float64 ({nbytes / 1e9:.2f} GB), chunks of {a.chunk}, default "
        f"codec; generated in {t_gen:.1f} s. Page cache warm."
        + (f" Old checkout: `{a.old}`." if a.old else ""), "",
        "| what | wall (s) | GB/s of field data | wall / raw read | wall / FieldStore read "
        "| CPU (s) | CPU / FieldStore read CPU |",
        "|---|---|---|---|---|---|---|"]
    rdc = cpu["FieldStore.read_chunk (all chunks)"]
    for k, t in best.items():
        lines.append(f"| {k} | {t:.2f} | {nbytes / t / 1e9:.2f} | {t / ref:.2f} | "
                     f"{t / rd:.2f} | {cpu[k]:.2f} | {cpu[k] / rdc:.2f} |")
    sc = best["scalars pass (`nnft measure --what scalars` without start-up/output)"]
    sp = best["scalars+propagator pass"]
    sc_c = cpu["scalars pass (`nnft measure --what scalars` without start-up/output)"]
    sp_c = cpu["scalars+propagator pass"]
    lines += ["", f"Targets (FieldStore read = the plain read rate): scalars pass at "
              f"{rd / sc:.0%} of the plain read rate by wall time ({rdc / sc_c:.0%} by CPU time; "
              f"target >= 70%); scalars+propagator pass {sp / rd:.2f}x the plain read by wall "
              f"time ({sp_c / rdc:.2f}x by CPU time; target <= 2x)."]
    lines += ["", f"The two whole-command rows run in a fresh process: start-up and imports take "
              f"{t_import:.2f} s of them, the estimates and writing the output Dataset the rest "
              "beyond the pass. The pass rows time the same measuring pass in process.", "",
              f"Peak RSS of the default-run shared pass (fresh process each; 16x16 lattice, "
              f"chunks of {a.chunk}):", "",
              "| samples | field data (MB) | pass (s) | peak RSS (MB) |", "|---|---|---|---|"]
    for n, mb_data, wall, mb in rss:
        lines.append(f"| {n} | {mb_data:.0f} | {wall:.1f} | {mb:.0f} |")
    lines += ["", "Command: `python benchmarks/measure_pass.py "
              + (" --quick" if a.quick else f"--L {a.L} --samples {a.samples} --chunk {a.chunk} "
                 f"--rounds {a.rounds} --rss-samples {a.rss_samples}") + "`", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"measure-pass-{cpu_tag()}{'-quick' if a.quick else ''}.md"
    name.write_text(text)
    print(f"wrote {name}")
    (out / (name.stem + ".json")).write_text(json.dumps(
        {"benchmark": "measure-pass", "machine": cpu_tag(), "commit": commit,
         "shared_machine": True, "best_s": best, "cpu_s": cpu, "t_import_s": t_import,
         "rss": rss, "bytes": nbytes, "t_gen": t_gen,
         "headlines": [
             {"what": f"{what} ({a.samples} x {a.L}x{a.L}, {nbytes / 1e9:.2f} GB, wall)",
              "nnft_s": t, "baseline": "FieldStore.read_chunk of every chunk", "baseline_s": rd}
             for what, t in (("`nnft measure --what scalars` pass", sc),
                             ("`nnft measure --what scalars,propagator` pass", sp))]},
        indent=1))


if __name__ == "__main__":
    main()
