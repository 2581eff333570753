"""Old jackknife engine vs the feature-moment engine, side by side (issue 13).

Needs a staged copy of the pre-refactor package (commit 16e5caf) on OLD_NNFT_PATH, e.g.::

    mkdir -p /tmp/old && git archive 16e5caf | tar -x -C /tmp/old/src ... (see tests/test_layers.py
    ``stage`` for the layout)

and runs each case alternately in two subprocesses (old, new), printing the best of ``repeats``
wall times and their ratio. Usage: OLD_NNFT_PATH=/tmp/old/stage python benchmarks/engine_vs_legacy.py
"""
import os
import subprocess
import sys

CASE = r'''
import sys, time, tempfile
from pathlib import Path
import numpy as np
from nnft.ensembles import LatticeCosNet, generate
from nnft.lattice import Lattice, free_propagator, sample_free_field
from nnft.observables import symmetry, cluster, generating, couplings
lat = Lattice((16, 16))
tmp = tempfile.mkdtemp()
store = generate(LatticeCosNet(width=16, m2=0.5), lat, 20000, Path(tmp) / "s.zarr", chunk=2000, seed=1)
lat1 = Lattice((8,)); out = []
sample_free_field(lat1, 1.0, 100000, seed=21, chunk=5000, callback=lambda k, p, lw: out.append(p))
phi = np.concatenate(out); lw = -5e-4 * np.sum(phi ** 4, axis=1); G = free_propagator(lat1, 1.0)
J = 0.05 * np.random.default_rng(0).standard_normal((4, 16, 16))
cases = {
  "check_translation": lambda: symmetry.check_translation(store, lat, n_blocks=20),
  "check_hypercubic": lambda: symmetry.check_hypercubic(store, lat, n_blocks=20),
  "cluster_profile": lambda: cluster.cluster_profile(store, lat, n_blocks=20),
  "generating_functional": lambda: generating.generating_functional(store, J, n_blocks=20),
  "quartic_coupling(ref)": lambda: couplings.quartic_coupling(phi, lat1, G, log_weight=lw, n_blocks=20, reference="unweighted"),
  "amputated_vertex(ref)": lambda: couplings.amputated_vertex(phi, lat1, log_weight=lw, n_blocks=20, reference="unweighted"),
}
name = sys.argv[1]
best = 1e9
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); cases[name](); best = min(best, time.perf_counter() - t)
print(best)
'''

NAMES = ["check_translation", "check_hypercubic", "cluster_profile", "generating_functional",
         "quartic_coupling(ref)", "amputated_vertex(ref)"]


def run(path, name, repeats):
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    r = subprocess.run([sys.executable, "-c", CASE, name, str(repeats)], env=env, cwd="/tmp",
                       capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    old = os.environ["OLD_NNFT_PATH"]
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(f"{'case':26s} {'old s':>8s} {'new s':>8s} {'old/new':>8s}   (best of {repeats}; "
          "shared machine)")
    for name in NAMES:
        to = run(old, name, repeats)
        tn = run(None, name, repeats)
        print(f"{name:26s} {to:8.2f} {tn:8.2f} {to / tn:8.2f}")
