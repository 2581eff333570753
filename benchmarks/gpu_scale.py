"""GPU at scale (issue 9): a billion networks streamed through the observables, a large lattice
cos-net ensemble streamed and stored, and the multi-worker (dask.distributed) path on the GPU.

Run on a GPU machine::

    python benchmarks/gpu_scale.py --out DIR [--networks 1e9] [--configs 1e7] [--stored 1e6]

Writes DIR/gpu_scale-<device>.json and .md (wall times, peak host RSS and device memory, the
measured connected 4-point functions with their standard errors against the closed forms).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np


BACKEND = "cupy"


def _sync():
    if BACKEND == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def _device():
    if BACKEND != "cupy":
        return platform.processor() or "cpu"
    import cupy

    return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


def _peak_host_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB on Linux


class _DevicePeak:
    """Peak bytes held by CuPy's memory pool, sampled after every chunk."""

    def __init__(self):
        self.peak = 0
        self.pool = None
        if BACKEND == "cupy":
            import cupy

            self.pool = cupy.get_default_memory_pool()

    def sample(self):
        if self.pool is not None:
            self.peak = max(self.peak, self.pool.total_bytes())


def billion_networks(n_networks: int, width: int, chunk: int) -> dict:
    """ErfNet on the papers' six points, streamed: connected 4-point functions vs section 7."""
    from nnft.ensembles import ErfNet, generate, neuron_moment
    from nnft.lattice import PointSet
    from nnft.observables import PointMoments, StreamingMeasurement, connected_correlator
    from nnft.observables import single_neuron_connected

    pts = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1])
    spec = ErfNet(width=width, d_in=1)
    tuples = np.array([[0, 0, 0, 0], [0, 1, 2, 3], [2, 3, 4, 5], [0, 0, 5, 5], [1, 2, 3, 4],
                       [0, 1, 1, 2], [2, 2, 3, 3], [0, 1, 4, 5]])
    peak = _DevicePeak()
    stream = StreamingMeasurement({"moments": PointMoments(tuples, max_order=4)}, n_networks,
                                  chunk, blocks=50)

    t0 = time.perf_counter()
    done = [0]

    def cb(k, phi, lw):
        stream(k, phi, lw)
        peak.sample()
        done[0] += 1
        if done[0] % 8 == 0:
            print(f"  billion: {done[0]} chunks of {chunk} in {time.perf_counter() - t0:.1f} s",
                  flush=True)

    _sync()
    t0 = time.perf_counter()
    generate(spec, pts, n_networks, None, chunk=chunk, seed=10**9, backend=BACKEND,
             dtype="float32", method="fused", callback=cb)
    _sync()
    wall = time.perf_counter() - t0
    ds = connected_correlator(stream.result(), tuples)
    P = pts.positions()
    cache = {}

    def E(*i):
        key = tuple(sorted(i))
        if key not in cache:
            cache[key] = neuron_moment(spec, P[list(key)])
        return cache[key]

    expected = single_neuron_connected(E, E, tuples, width, sigma=1.0)
    val, err = ds["value"].values, ds["error"].values
    z = (val - expected) / err
    return {"what": f"ErfNet N={width}, 6 points, {n_networks:.3g} networks, streamed (fused float32)",
            "networks": n_networks, "chunk": chunk, "wall_s": wall,
            "networks_per_s": n_networks / wall, "peak_device_pool_gb": peak.peak / 1e9,
            "peak_host_rss_gb": _peak_host_gb(),
            "tuples": tuples.tolist(), "g4c": val.tolist(), "g4c_error": err.tolist(),
            "g4c_expected": expected.tolist(), "z": z.tolist(),
            "max_abs_z": float(np.max(np.abs(z))),
            "relative_error_of_g4c": (err / np.abs(expected)).tolist()}


def cosnet_lattice(n_stream: int, n_stored: int, width: int, chunk: int, out: Path) -> dict:
    """LatticeCosNet on 64x64: n_stream configurations streamed, n_stored also written to Zarr."""
    from nnft.ensembles import LatticeCosNet, generate
    from nnft.lattice import Lattice, free_propagator
    from nnft.observables import PointMoments, StreamingMeasurement, connected_correlator
    from nnft.observables import cosnet_connected_4pt

    lat = Lattice((64, 64))
    m2 = (2 * np.sinh(2.0 / 64)) ** 2  # m_E L = 4
    spec = LatticeCosNet(width=width, m2=m2)
    idx = lambda x, y: x * 64 + y  # noqa: E731
    tuples = np.array([[idx(0, 0)] * 4, [idx(0, 0), idx(0, 1), idx(1, 0), idx(1, 1)],
                       [idx(0, 0), idx(0, 0), idx(0, 8), idx(0, 8)],
                       [idx(0, 0), idx(0, 1), idx(0, 16), idx(0, 17)]])
    G = free_propagator(lat, m2)
    expected = cosnet_connected_4pt(G, tuples, width, kurtosis=3.0)
    res = {"what": f"LatticeCosNet N={width} on 64x64 (m_E L = 4)", "width": width}
    for label, n, store in (("streamed", n_stream, None), ("stored", n_stored, out / "cosnet64.zarr")):
        peak = _DevicePeak()
        stream = StreamingMeasurement({"moments": PointMoments(tuples, max_order=4)}, n, chunk,
                                      blocks=50)

        def cb(k, phi, lw):
            stream(k, phi.reshape(phi.shape[0], -1), lw)
            peak.sample()

        if store is not None and store.exists():
            shutil.rmtree(store)
        _sync()
        t0 = time.perf_counter()
        generate(spec, lat, n, store, chunk=chunk, seed=7, backend=BACKEND, dtype="float32",
                 callback=cb, writer_threads=4 if store is not None else None)
        _sync()
        wall = time.perf_counter() - t0
        ds = connected_correlator(stream.result(), tuples)
        val, err = ds["value"].values, ds["error"].values
        res[label] = {"configurations": n, "wall_s": wall, "configs_per_s": n / wall,
                      "peak_device_pool_gb": peak.peak / 1e9, "peak_host_rss_gb": _peak_host_gb(),
                      "g4c": val.tolist(), "g4c_error": err.tolist(),
                      "z": ((val - expected) / err).tolist()}
        if store is not None:
            res[label]["store_gb_on_disk"] = sum(p.stat().st_size for p in store.rglob("*")
                                                 if p.is_file()) / 1e9
            shutil.rmtree(store)
    res["tuples"] = tuples.tolist()
    res["g4c_expected"] = expected.tolist()
    return res


def distributed_path(out: Path) -> dict:
    """generate_distributed on a one-GPU LocalCluster equals the single-process store bit for bit."""
    import zarr
    from distributed import Client, LocalCluster

    from nnft.ensembles import ReLUNet, generate, generate_distributed
    from nnft.lattice import Lattice

    lat = Lattice((32, 32))
    spec = ReLUNet(width=256, d_in=2)
    a, b = out / "single.zarr", out / "dask.zarr"
    for p in (a, b):
        if p.exists():
            shutil.rmtree(p)
    t0 = time.perf_counter()
    generate(spec, lat, 200_000, a, chunk=20_000, seed=3, backend=BACKEND, dtype="float32",
             method="fused")
    t_single = time.perf_counter() - t0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        generate_distributed(spec, lat, 200_000, b, client, chunk=20_000, seed=3, backend=BACKEND,
                             dtype="float32", method="fused")
        t_dask = time.perf_counter() - t0
    same = zarr.open_group(a, mode="r")["phi"][:].tobytes() == zarr.open_group(b, mode="r")["phi"][:].tobytes()
    for p in (a, b):
        shutil.rmtree(p)
    return {"what": "ReLUNet N=256 on 32x32, 2e5 networks: single process vs dask LocalCluster "
                    "(1 GPU worker process; dask-cuda is not installed on the device)",
            "bit_identical": bool(same), "single_s": t_single, "dask_s": t_dask}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--networks", type=float, default=1e9)
    ap.add_argument("--width", type=int, default=10)
    ap.add_argument("--configs", type=float, default=1e7)
    ap.add_argument("--stored", type=float, default=1e6)
    ap.add_argument("--cos-width", type=int, default=64)
    ap.add_argument("--only", default="billion,cosnet,dask")
    ap.add_argument("--backend", default="cupy", help="cupy (default) or numpy for a dry run")
    args = ap.parse_args(argv)
    global BACKEND
    BACKEND = args.backend
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/nnft_scale")
    work.mkdir(exist_ok=True)
    only = set(args.only.split(","))
    dev = _device()
    res = {"device": dev, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    name = "gpu_scale-" + dev.replace(" ", "-")
    jpath = out / f"{name}.json"
    if jpath.exists():  # sections run in separate calls accumulate in one file
        res = {**json.loads(jpath.read_text()), **res}
    sections = {"billion": lambda: billion_networks(int(args.networks), args.width,
                                                    min(2**24, int(args.networks))),
                "cosnet": lambda: cosnet_lattice(int(args.configs), int(args.stored),
                                                 args.cos_width, min(100_000, int(args.stored)), work),
                "dask": lambda: distributed_path(work)}
    for key in ("billion", "cosnet", "dask"):
        if key in only:
            res[key] = sections[key]()
            jpath.write_text(json.dumps(res, indent=1))  # keep what is done if a later one dies
            print(f"== {key} done", flush=True)
    lines = [f"# GPU at scale on {dev} ({res['date']})", ""]
    if "billion" in res:
        b = res["billion"]
        lines += [f"## {b['what']}", "",
                  f"wall {b['wall_s']:.1f} s ({b['networks_per_s']:.3g} networks/s), peak device pool "
                  f"{b['peak_device_pool_gb']:.2f} GB, peak host RSS {b['peak_host_rss_gb']:.2f} GB", "",
                  "| tuple | G4c measured | error | closed form | z |", "|---|---|---|---|---|"]
        lines += [f"| {t} | {v:.6g} | {e:.2g} | {x:.6g} | {z:+.2f} |"
                  for t, v, e, x, z in zip(b["tuples"], b["g4c"], b["g4c_error"], b["g4c_expected"], b["z"])]
        lines.append("")
    if "cosnet" in res:
        c = res["cosnet"]
        lines += [f"## {c['what']}", ""]
        for label in ("streamed", "stored"):
            r = c[label]
            lines.append(f"- {label}: {r['configurations']:.3g} configurations in {r['wall_s']:.1f} s "
                         f"({r['configs_per_s']:.3g}/s), peak device pool {r['peak_device_pool_gb']:.2f} GB, "
                         f"peak host RSS {r['peak_host_rss_gb']:.2f} GB"
                         + (f", {r['store_gb_on_disk']:.1f} GB on disk" if "store_gb_on_disk" in r else ""))
            lines.append(f"  G4c {['%.4g +- %.2g (z %+.2f)' % t for t in zip(r['g4c'], r['g4c_error'], r['z'])]}")
        lines += [f"- closed form (docs/conventions.md): {['%.4g' % v for v in c['g4c_expected']]}", ""]
    if "dask" in res:
        d = res["dask"]
        lines += [f"## {d['what']}", "", f"bit identical: {d['bit_identical']}; single {d['single_s']:.1f} s, "
                  f"dask {d['dask_s']:.1f} s", ""]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
