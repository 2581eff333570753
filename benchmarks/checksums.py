"""Cost of per-chunk checksums and choice of the store codec, measured side by side in one run.

For each codec of ``nnft.lattice.store.CODECS`` ("crc32c" = checksum only, the default;
"lz4+crc32c"; "lz4" = the format before checksums; "raw" = no checksum, no compression):

- generation: exact free-field sampler (cheap, so storage cost shows) and a network ensemble
  (ErfNet) into a new store;
- reading: every chunk through ``FieldStore.read_chunk`` (checksum + finiteness check), the same
  without the finiteness check, and the raw bytes of the chunk files (``open().read()``, the
  ceiling);
- a measuring pass: ``nnft.observables.measure`` with SiteMoments + TwoPointMatrix.

Rounds interleave the codecs (A B C D, A B C D, ...) and the minimum over rounds is reported, so
that load from other jobs on a shared machine hits every codec alike; ratios are to "crc32c".

    python benchmarks/checksums.py [--quick] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import nnft.ensembles as E
import nnft.lattice.store as store_mod
from nnft.lattice import FieldStore, Lattice, sample_free_field
from nnft.observables import SiteMoments, TwoPointMatrix, measure


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def file_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "phi").rglob("*") if f.is_file()
               and f.name != "zarr.json")


def raw_read(store) -> int:
    n = 0
    for k in store.complete_chunks():
        with open(store.chunk_file(k), "rb") as fh:
            n += len(fh.read())
    return n


def interleaved(codecs, tmp, cfg, rounds):
    """Per-chunk interleaving: every chunk is written to (and read from) each codec's store
    back to back, so load from other jobs hits all codecs alike; minimum over ``rounds``."""
    from nnft.ensembles.engine import make_chunk_function
    from nnft.lattice import chunk_rng, free_field_chunk

    lat, n, chunk = cfg["lat"], cfg["n"], cfg["chunk"]
    stores = {}
    for c in codecs:
        p = tmp / f"free-{c}"
        shutil.rmtree(p, ignore_errors=True)
        stores[c] = FieldStore.create(p, lat, n, chunk, source="exact_free", seed=1, codec=c,
                                      spec={"arch": "ExactFreeField", "m2": 0.25})
    t = {c: {"write": 0.0, "read": 0.0, "read_nofinite": 0.0, "raw_read": 0.0} for c in codecs}
    t_make = 0.0
    for k in range(stores[codecs[0]].n_chunks):
        a, b = stores[codecs[0]].chunk_range(k)
        dt, phi = timed(lambda: free_field_chunk(lat, 0.25, b - a, chunk_rng(1, k)))
        t_make += dt
        order = codecs[k % len(codecs):] + codecs[:k % len(codecs)]
        for c in order:
            t[c]["write"] += min(timed(lambda: stores[c].write_chunk(k, phi))[0]
                                 for _ in range(1))
        for c in order:
            s = stores[c]
            with open(s.chunk_file(k), "rb") as fh:  # warm the page cache
                fh.read()
            t[c]["raw_read"] += min(timed(lambda: open(s.chunk_file(k), "rb").read())[0]
                                    for _ in range(rounds))
            t[c]["read"] += min(timed(lambda: s.read_chunk(k))[0] for _ in range(rounds))
            t[c]["read_nofinite"] += min(timed(lambda: s.read_chunk(k, check_finite=False))[0]
                                         for _ in range(rounds))
    # network generation: the compute is the same for every codec, only the writes differ
    spec, nlat = cfg["spec"], cfg["net_lat"]
    make = make_chunk_function(spec, nlat, 2, np)
    net = {}
    for c in codecs:
        p = tmp / f"net-{c}"
        shutil.rmtree(p, ignore_errors=True)
        net[c] = FieldStore.create(p, nlat, cfg["n_net"], cfg["chunk_net"], seed=2, codec=c,
                                   spec=spec.to_dict())
    t_net = 0.0
    for k in range(net[codecs[0]].n_chunks):
        a, b = net[codecs[0]].chunk_range(k)
        dt, phi = timed(lambda: make(k, a, b))
        t_net += dt
        for c in codecs[k % len(codecs):] + codecs[:k % len(codecs)]:
            t[c]["net_write"] = t[c].get("net_write", 0.0) + timed(
                lambda: net[c].write_chunk(k, phi))[0]
    for c in codecs:
        t[c]["gen_free"] = t_make + t[c]["write"]
        t[c]["gen_net"] = t_net + t[c]["net_write"]
        t[c]["bytes"] = file_bytes(stores[c].path)
    # measuring pass: whole passes, codecs interleaved, minimum over rounds
    for r in range(rounds):
        for c in codecs[r % len(codecs):] + codecs[:r % len(codecs)]:
            s = FieldStore.open(stores[c].path)
            dt, _ = timed(lambda: measure(s, [SiteMoments(), TwoPointMatrix()]))
            t[c]["measure"] = min(dt, t[c].get("measure", np.inf))
            print(f"round {r}: {c:11s} measure {dt:.3f} s", flush=True)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args()
    if a.quick:
        cfg = dict(lat=Lattice((16, 16)), n=8192, chunk=1024, spec=E.ErfNet(64, d_in=2),
                   net_lat=Lattice((8, 8)), n_net=1024, chunk_net=256)
    else:
        cfg = dict(lat=Lattice((16, 16)), n=131072, chunk=4096, spec=E.ErfNet(256, d_in=2),
                   net_lat=Lattice((16, 16)), n_net=4096, chunk_net=1024)
    codecs = list(store_mod.CODECS)
    tmp = Path(tempfile.mkdtemp(prefix="nnft-checksums-"))
    try:
        best = interleaved(codecs, tmp, cfg, a.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    nbytes = cfg["n"] * cfg["lat"].volume * 8
    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    ref = best["crc32c"]
    cols = [("write", "write_chunk"), ("gen_free", "free-field generation"),
            ("gen_net", "network generation"), ("raw_read", "raw file read"),
            ("read", "read_chunk (checksum+finite)"),
            ("read_nofinite", "read_chunk, no finite check"), ("measure", "measure pass")]
    kind = "quick" if a.quick else "full"
    lines = [f"# Checksums and store codecs: cost side by side ({kind} run)",
             "", f"Machine: {machine}; Python {platform.python_version()}. The machine was shared "
             "with other jobs: every chunk is written to and read from the four stores back to back "
             f"(reads: minimum of {a.rounds}), measuring passes alternate codecs (minimum of "
             f"{a.rounds}); the ratios to \"crc32c\" (the default) are the meaningful numbers. "
             "Generation = the chunk computation (same for all codecs) + its write_chunk.", "",
             f"Store: exact free field on {cfg['lat'].shape}, {cfg['n']} samples float64 "
             f"({nbytes / 1e6:.0f} MB of data), chunks of {cfg['chunk']}; network: "
             f"ErfNet(width={cfg['spec'].width}) on {cfg['net_lat'].shape}, {cfg['n_net']} "
             f"samples. Measure pass: SiteMoments + TwoPointMatrix (all sites), serial.", "",
             "| codec | checksum | size / data | " + " | ".join(f"{t} (s)" for _, t in cols)
             + " | read GB/s |",
             "|---|---|---|" + "---|" * len(cols) + "---|"]
    for c in codecs:
        b = best[c]
        lines.append(f"| {c} | {'yes' if 'crc32c' in c else 'no'} | {b['bytes'] / nbytes:.3f} | "
                     + " | ".join(f"{b[k]:.3f} ({b[k] / ref[k]:.2f}x)" for k, _ in cols)
                     + f" | {nbytes / b['read'] / 1e9:.2f} |")
    lines += ["", "(x) = time relative to the default codec \"crc32c\" in the same run.", "",
              "Reading: `read_chunk` of every chunk (page cache warm). raw file read = the bytes "
              "of the chunk files with `open().read()`, the storage ceiling.", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "".join(ch if ch.isalnum() else "-" for ch in cpu_name().split("@")[0].strip())
    tag = "-".join(t for t in tag.split("-") if t)[:40] + f"-{os.cpu_count()}cores"
    name = out / f"checksums-{tag}{'-quick' if a.quick else ''}.md"
    name.write_text(text)
    print(f"wrote {name}")


if __name__ == "__main__":
    main()
