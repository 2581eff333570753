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


def one_round(codec, tmp, cfg):
    store_mod.DEFAULT_CODEC = codec  # codec of the stores created below
    r = {}
    p = tmp / f"free-{codec}"
    shutil.rmtree(p, ignore_errors=True)
    r["gen_free"], s = timed(lambda: sample_free_field(cfg["lat"], 0.25, cfg["n"], p,
                                                         chunk=cfg["chunk"], seed=1))
    q = tmp / f"net-{codec}"
    shutil.rmtree(q, ignore_errors=True)
    r["gen_net"], _ = timed(lambda: E.generate(cfg["spec"], cfg["net_lat"], cfg["n_net"], q,
                                               chunk=cfg["chunk_net"], seed=2, threads=1))
    s = FieldStore.open(p)
    r["bytes"] = file_bytes(p)
    r["raw_read"], _ = timed(lambda: raw_read(s))
    r["read"], _ = timed(lambda: [s.read_chunk(k) for k in range(s.n_chunks)])
    r["read_nofinite"], _ = timed(lambda: [s.read_chunk(k, check_finite=False)
                                           for k in range(s.n_chunks)])
    r["measure"], _ = timed(lambda: measure(s, [SiteMoments(), TwoPointMatrix()]))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args()
    if a.quick:
        cfg = dict(lat=Lattice((16, 16)), n=8192, chunk=1024, spec=E.ErfNet(64, d_in=2),
                   net_lat=Lattice((8, 8)), n_net=1024, chunk_net=256)
        a.rounds = min(a.rounds, 2)
    else:
        cfg = dict(lat=Lattice((16, 16)), n=131072, chunk=4096, spec=E.ErfNet(256, d_in=2),
                   net_lat=Lattice((16, 16)), n_net=4096, chunk_net=1024)
    codecs = list(store_mod.CODECS)
    default = store_mod.DEFAULT_CODEC
    best = {c: {} for c in codecs}
    tmp = Path(tempfile.mkdtemp(prefix="nnft-checksums-"))
    try:
        for rnd in range(a.rounds):
            for c in codecs:
                r = one_round(c, tmp, cfg)
                for key, v in r.items():
                    if key == "bytes":
                        best[c][key] = v
                    else:
                        best[c][key] = min(v, best[c].get(key, np.inf))
                print(f"round {rnd}: {c:11s} " + " ".join(
                    f"{k}={v:.3f}" for k, v in r.items() if k != "bytes"), flush=True)
    finally:
        store_mod.DEFAULT_CODEC = default
        shutil.rmtree(tmp, ignore_errors=True)

    nbytes = cfg["n"] * cfg["lat"].volume * 8
    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    ref = best["crc32c"]
    cols = [("gen_free", "free-field generation"), ("gen_net", "network generation"),
            ("raw_read", "raw file read"), ("read", "read_chunk (checksum+finite)"),
            ("read_nofinite", "read_chunk, no finite check"), ("measure", "measure pass")]
    lines = [f"# Checksums and store codecs: cost side by side ({'quick' if a.quick else 'full'} run)",
             "", f"Machine: {machine}; Python {platform.python_version()}. The machine was shared "
             "with other jobs: times are the minimum of "
             f"{a.rounds} interleaved rounds and the ratios (to \"crc32c\", the default) are the "
             "meaningful numbers.", "",
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
