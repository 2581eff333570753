"""Shared pass vs one pass per measurement over a stored ensemble (issue 13).

Runs five plan-based measurements (translation, hypercubic, cluster profile, W[J], connected
4-point) first as five store-level calls (each reads the whole store), then as one
``run_plans`` pass, side by side, alternating, and prints wall times, their ratio and the
chunk reads. Usage: python benchmarks/one_pass.py [n_samples] [repeats]
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nnft.ensembles import LatticeCosNet, generate
from nnft.lattice import Lattice
from nnft.observables import (check_hypercubic, check_translation, cluster_plan, cluster_profile,
                              correlator_plan, correlator_replicas, generating_functional,
                              generating_plan, hypercubic_plan, run_plans, translation_plan)

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
lat = Lattice((16, 16))
J = 0.05 * np.random.default_rng(0).standard_normal((4, 16, 16))
t4 = np.random.default_rng(1).integers(0, 256, size=(64, 4))
with tempfile.TemporaryDirectory() as tmp:
    store = generate(LatticeCosNet(width=16, m2=0.5), lat, n, Path(tmp) / "s.zarr", chunk=2000,
                     seed=1)

    def separate():
        reads = [0]
        orig = store.read_chunk

        def counted(k):
            reads[0] += 1
            return orig(k)
        store.read_chunk = counted
        try:
            check_translation(store, lat, n_blocks=20)
            check_hypercubic(store, lat, n_blocks=20)
            cluster_profile(store, lat, n_blocks=20)
            generating_functional(store, J, n_blocks=20)
            correlator_replicas(store, t4, n_blocks=20)
        finally:
            del store.read_chunk
        return reads[0]

    def shared():
        res = run_plans(store, {"t": translation_plan(lat), "h": hypercubic_plan(lat),
                                "c": cluster_plan(lat), "W": generating_plan(J, (16, 16)),
                                "g": correlator_plan(t4)}, n_blocks=20)
        return res.n_reads

    ts, tp = [], []
    for _ in range(repeats):
        t0 = time.perf_counter(); rs = separate(); ts.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); rp = shared(); tp.append(time.perf_counter() - t0)
    print(f"n_samples={n}, chunks={store.n_chunks}, repeats={repeats} (machine shared)")
    print(f"five separate passes: {min(ts):.2f} s (min), chunk reads {rs}")
    print(f"one shared pass     : {min(tp):.2f} s (min), chunk reads {rp}")
    print(f"ratio separate/shared: {min(ts) / min(tp):.2f}")
