"""The default `nnft run` before and after, side by side on one machine.

Runs the embedded default config (2D L = 32 cos-net, widths 2..64) with this checkout and with
an older checkout of nnft (``--old PATH``: a git worktree with its own virtual environment,
e.g. ``git worktree add /tmp/old 5b3ef5e`` and ``pip install -e /tmp/old`` into
``/tmp/old/.venv``), alternating the two ``--repeats`` times with the same ``--samples``, and
compares wall time, CPU time (user + system of the child process and its threads: the steadier
number on a shared machine) and every number of results.json (timings aside).

    python benchmarks/default_run.py --old /tmp/old --samples 30000 --repeats 2

Writes benchmarks/results/default-run-<machine>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cli"))
from smoke import strip_timings  # noqa: E402


def machine() -> str:
    from nnft.compare import machine_tag

    return machine_tag()


def _child_cpu():
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(python, samples, out):
    """(wall s, CPU s, results) of one ``nnft run`` of the default config in a fresh process."""
    t0, c0 = time.perf_counter(), _child_cpu()
    r = subprocess.run([python, "-m", "nnft", "run", "--samples", str(samples), "--out", str(out),
                        "--quiet"], capture_output=True, text=True, cwd=out.parent)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return wall, cpu, json.loads((out / "results.json").read_text())


def diff(a, b, where=""):
    """Largest relative difference between the numbers of two results trees."""
    worst = (0.0, "")
    if isinstance(a, dict):
        for k in a:
            if k in b:
                worst = max(worst, diff(a[k], b[k], f"{where}/{k}"))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            worst = max(worst, diff(x, y, f"{where}[{i}]"))
    elif isinstance(a, float) and isinstance(b, (int, float)):
        d = abs(a - b) / max(abs(a), 1e-300)
        worst = (d, where)
    return worst


def all_diffs(a, b, where=""):
    """Every (relative difference, path) between the numbers of two results trees."""
    out = []
    if isinstance(a, dict):
        for k in a:
            if k in b:
                out += all_diffs(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            out += all_diffs(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        out.append((abs(a - b) / max(abs(a), 1e-300), where))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="checkout of the older nnft with .venv/")
    ap.add_argument("--samples", type=int, default=30000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    old_py = str(Path(args.old) / ".venv" / "bin" / "python")
    new_py = sys.executable
    times = {"old": [], "new": []}
    cpus = {"old": [], "new": []}
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for tag, py in (("old", old_py), ("new", new_py)):
                out = Path(tmp) / f"{tag}{i}"
                wall, cpu, res[tag] = run(py, args.samples, out)
                times[tag].append(wall)
                cpus[tag].append(cpu)
                print(f"{tag} run {i}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    worst, where = diff(strip_timings(res["old"]), strip_timings(res["new"]))
    diffs = sorted(all_diffs(strip_timings(res["old"]), strip_timings(res["new"])), reverse=True)
    moved = [(d, w) for d, w in diffs if d > 1e-9]
    rest = max((d for d, w in diffs if not w.endswith(("/rate", "/rate_error"))), default=0.0)
    best = {k: min(v) for k, v in times.items()}
    bcpu = {k: min(v) for k, v in cpus.items()}
    old_commit = subprocess.run(['git', '-C', args.old, 'rev-parse', '--short', 'HEAD'],
                                capture_output=True, text=True).stdout.strip()
    new_commit = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'],
                                capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    text = f"""# Default `nnft run`, before and after (side by side)

Machine: {machine()}; Python {platform.python_version()}. Command: `python benchmarks/default_run.py
--old <checkout> --samples {args.samples} --repeats {args.repeats}`; old = `{args.old}`
(git {old_commit}), new = this checkout (git {new_commit}). Runs alternate old/new; the best of
{args.repeats} is compared. Each run writes its own stores (generation included). The 2-core
machine was shared with other jobs (load average {load:.1f} at the end): CPU time (user +
system of each `nnft run` process, all its threads) is the steadier comparison.

| | old | new | old / new |
|---|---|---|---|
| wall time (s), best | {best['old']:.1f} | {best['new']:.1f} | {best['old'] / best['new']:.2f} |
| CPU time (s), best | {bcpu['old']:.1f} | {bcpu['new']:.1f} | {bcpu['old'] / bcpu['new']:.2f} |
| all runs, wall (s) | {', '.join(f'{t:.1f}' for t in times['old'])} | {', '.join(f'{t:.1f}' for t in times['new'])} | |
| all runs, CPU (s) | {', '.join(f'{t:.1f}' for t in cpus['old'])} | {', '.join(f'{t:.1f}' for t in cpus['new'])} | |

Physics numbers: largest relative difference over every number of results.json present in
both (timings aside): {worst:.2e} at `{where}`. Numbers compared: {len(diffs)}; differing by
more than 1e-9 relative: {len(moved)}{' (' + ', '.join(f'`{w}` {d:.1e}' for d, w in moved[:6]) + (', ...' if len(moved) > 6 else '') + ')' if moved else ''}.
Largest difference outside the exponential-fit `rate` / `rate_error` outputs: {rest:.1e}.
"""
    path = ROOT / "benchmarks" / "results" / f"default-run-{machine()}.md"
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps({
        "benchmark": "default-run", "machine": machine(), "shared_machine": True,
        "samples": args.samples, "repeats": args.repeats, "old": args.old,
        "old_commit": old_commit, "new_commit": new_commit, "wall_s": times, "cpu_s": cpus,
        "largest_rel_diff": worst, "largest_rel_diff_at": where,
        "n_numbers": len(diffs), "moved_over_1e-9": [[d, w] for d, w in moved],
        "largest_rel_diff_outside_fit_rates": rest,
        "headlines": [{"what": f"default nnft run, {args.samples} samples ({kind} time)",
                       "nnft_s": v["new"], "baseline": f"nnft git {old_commit}",
                       "baseline_s": v["old"]} for kind, v in (("CPU", bcpu), ("wall", best))]},
        indent=1))
    print(text)


if __name__ == "__main__":
    main()
