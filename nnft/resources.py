"""Resource estimates of a run config, made before any work: memory, disk, rough time.

`nnft run --check` prints them; every `nnft run` prints them at its start and refuses, in one
line and before any file is written, a config whose largest step needs more memory than the
machine has available or whose stores need more disk than the output folder's file system
has free.

The estimates are deliberately simple upper-bound models (bytes of the arrays each step holds
at once), not measurements:

- generation: one chunk of fields (chunk x V x components, float64 or float32) plus the
  evaluation block of the network (the evaluators cut it to at most 2^25 elements);
- the closed-form kernel / exact propagator of measurements that compare with it: a V x V
  float64 matrix and a V x V int64 displacement table;
- the shared measuring pass: a PointMoments table per error block;
- disk: every stored sample (``keep_stores = true``), uncompressed.

The time is a rough figure from per-element costs measured on a 2-core AMD EPYC (numpy);
expect a factor of 2 either way, and far less on a GPU.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import geometry_from_config
from .errors import RunError

__all__ = ["Estimate", "estimate", "check_fits", "available_memory", "existing_store_bytes"]

# measured on the project's 2-core CPU (s per unit), see benchmarks/results/generation-*.md
_GEN_S_PER_NEURON_SITE = 2.0e-9
_MEASURE_S_PER_SITE = 5.0e-8
_PLAN_MAX_SITES = 256  # exact estimator variances of lattice cos-nets grow fast with V
_KERNEL_MEASUREMENTS = ("propagator", "two_point", "four_point", "six_point", "couplings",
                        "generating")


@dataclass
class Estimate:
    """Upper-bound resource figures of a config (bytes and seconds)."""

    memory_bytes: int
    memory_step: str
    disk_bytes: int
    seconds: float

    def lines(self) -> list[str]:
        return [f"largest step: {_size(self.memory_bytes)} of memory ({self.memory_step})",
                f"stores on disk: {_size(self.disk_bytes)}",
                f"rough time: {_duration(self.seconds)} (2-core CPU figures; a GPU is faster)"]


def _size(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def estimate(cfg: dict) -> Estimate:
    """Memory of the largest step, disk of the stores and a rough time for resolved ``cfg``."""
    item = 4 if cfg.get("dtype") == "float32" else 8
    mem, step, disk, secs = 0, "nothing", 0, 0.0
    for ens in cfg.get("ensemble", []):
        geo = geometry_from_config(ens["lattice"])
        V = int(geo.volume)
        comps = int(ens["params"].get("components") or 1)
        F = V * comps
        n, chunk = int(ens["samples"]), int(ens["chunk"])
        gen = chunk * F * 8 * 2 + min(2 ** 25, chunk * max(ens["widths"]) * V) * 8 * 3
        if gen > mem:
            mem, step = gen, f"generating {ens['name']!r}: chunks of {chunk} x {F} values"
        if any(m in _KERNEL_MEASUREMENTS for m in ens["measure"]):
            ker = 16 * F * F + 8 * V * V
            if ker > mem:
                mem, step = ker, f"the {V} x {V} kernel / exact propagator of {ens['name']!r}"
        if cfg.get("keep_stores", True):
            disk += n * F * item * len(ens["widths"])
        secs += sum(n * w * V * _GEN_S_PER_NEURON_SITE for w in ens["widths"])
        secs += n * F * len(ens["widths"]) * _MEASURE_S_PER_SITE * max(1, len(ens["measure"]))
    return Estimate(int(mem), step, int(disk), secs)


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _free_disk(out: Path) -> int | None:
    p = Path(out).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_fits(est: Estimate, out: Path, *, existing_bytes: int = 0) -> None:
    """Raise :class:`RunError` (one line) when ``est`` cannot fit this machine.

    ``existing_bytes``: bytes of stores already in the folder (a resumed run needs only the
    rest).
    """
    mem = available_memory()
    if mem is not None and est.memory_bytes > mem:
        raise RunError(f"not enough memory: the largest step ({est.memory_step}) needs about "
                       f"{_size(est.memory_bytes)}, {_size(mem)} is available; use a smaller "
                       f"lattice or chunk")
    free = _free_disk(out)
    need = max(0, est.disk_bytes - existing_bytes)
    if free is not None and need > free:
        raise RunError(f"not enough disk: the stores need about {_size(need)}, "
                       f"{_size(free)} is free under {str(out)!r}; use keep_stores = false "
                       f"(measure on the fly), fewer samples or another --out")


def existing_store_bytes(out: Path) -> int:
    """Bytes already in ``out/stores`` (counted when a run resumes)."""
    total = 0
    root = Path(out) / "stores"
    if root.is_dir():
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
    return total


def sample_plan_lines(cfg: dict, target_rel_error: float = 0.01) -> list[str]:
    """Samples each width needs for ``target_rel_error`` on m_4 / m_6 (and the median connected
    correlator), from the exact parameter-space theory, before any sampling
    (:func:`nnft.ensembles.plan_samples`), with its warnings (infinite variance, rare-event
    dominated). Ensembles without an exact theory say so."""
    from . import measurements as registry
    from .config import spec_for
    from .ensembles import plan_samples

    lines = []
    for ens in cfg.get("ensemble", []):
        orders = [o for o, m in ((4, "four_point"), (6, "six_point")) if m in ens["measure"]]
        if not orders:
            continue
        geo = geometry_from_config(ens["lattice"])
        if geo.volume > _PLAN_MAX_SITES:
            lines.append(f"{ens['name']}: sample plan skipped ({geo.volume} sites > "
                         f"{_PLAN_MAX_SITES}: the exact 8th/12th moments take minutes; call "
                         f"nnft.ensembles.plan_samples yourself)")
            continue
        spec = spec_for(ens, ens["widths"][0])
        tuples = {}
        for o, m in ((4, "four_point"), (6, "six_point")):
            if o in orders:
                sub = registry.base.resolve_options(registry.get(m), ens["options"])
                tuples[o] = registry.get(m).tuples(
                    registry.Context(ens["name"], spec, geo, None, spec.width, sub,
                                     seed=cfg["seed"]))
        try:
            rows = plan_samples(spec, geo, tuples, target_rel_error, orders=tuple(orders),
                                widths=ens["widths"])
        except (ValueError, TypeError, NotImplementedError) as e:
            lines.append(f"{ens['name']}: no exact sample plan ({e})")
            continue
        if not rows or rows[0].get("method") is None:
            lines.append(f"{ens['name']}: no exact theory for {ens['arch']}; no sample plan")
            continue
        lines.append(f"{ens['name']}: samples for {target_rel_error:.0%} relative error "
                     f"(you run {ens['samples']}), exact theory ({rows[0]['method']}):")
        for r in rows:
            flags = f"  [{'; '.join(r['flags'])}]" if r.get("flags") else ""
            lines.append(f"  N={r['width']:<6d} m_{r['order']}: {r['samples_m_n']:.3g}   "
                         f"median G{r['order']}c: {r['samples_connected_median']:.3g}{flags}")
    return lines
