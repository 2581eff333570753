"""``nnft free``: the exact Fourier sampler of the free field into a store, with a summary."""
from __future__ import annotations

import math
import time

import numpy as np

from .lattice import UserError


def add_parser(sub):
    p = sub.add_parser("free", help="sample the exact free field into a Zarr store and summarise it",
                       description="Draw exact free-field configurations (docs/conventions.md section 3) "
                                   "into a FieldStore and compare G(0), chi, E, <|M|> with the "
                                   "exact values.")
    p.add_argument("store", help="path of the Zarr store to write (resumed if it exists)")
    p.add_argument("--L", type=int, default=16, help="linear size of the 2D lattice (default 16)")
    p.add_argument("--dim", type=int, default=2, help="dimension d (default 2)")
    p.add_argument("--m2", type=float, default=None,
                   help="bare mass squared (default: m_E L = 4, the docs/conventions.md table)")
    p.add_argument("--samples", type=int, default=20000, help="number of configurations")
    p.add_argument("--chunk", type=int, default=2000, help="configurations per chunk")
    p.add_argument("--seed", type=int, default=0, help="seed entropy")
    p.add_argument("--backend", default=None, help="numpy, cupy or auto (default: $NNFT_BACKEND or numpy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def summarise(store) -> dict:
    """Per-sample G(0), E, M over the store, with naive errors of the mean (independent samples)."""
    d = store.lattice.dim
    axes = tuple(range(1, d + 1))
    sums = {"G0": [], "E": [], "M": [], "absM": [], "M2": []}
    for _, phi, _ in store.iter_chunks():
        phi = phi.astype(np.float64)
        sums["G0"].append(np.mean(phi * phi, axis=axes))
        sums["E"].append(np.mean([np.mean(phi * np.roll(phi, -1, axis=1 + mu), axis=axes)
                                  for mu in range(d)], axis=0))
        M = phi.mean(axis=axes)
        sums["M"].append(M)
        sums["absM"].append(np.abs(M))
        sums["M2"].append(M * M)
    out = {}
    n = None
    for k, v in sums.items():
        v = np.concatenate(v)
        n = v.size
        out[k] = (float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)))
    V = store.lattice.volume
    out["chi"] = (V * out["M2"][0], V * out["M2"][1])
    out["n"] = n
    return out


def main(args) -> int:
    from .lattice import Lattice, free_field_exact, sample_free_field

    if args.L < 2 or args.dim < 1:
        raise UserError(f"--L must be >= 2 and --dim >= 1, got L={args.L}, dim={args.dim}")
    lat = Lattice((args.L,) * args.dim)
    m2 = args.m2
    if m2 is None:
        m2 = (2 * math.sinh(4.0 / args.L / 2)) ** 2  # m_E L = 4
    t0 = time.perf_counter()
    store = sample_free_field(lat, m2, args.samples, args.store, chunk=args.chunk, seed=args.seed,
                              backend=args.backend, progress=not args.quiet)
    wall = time.perf_counter() - t0
    res = summarise(store)
    ex = free_field_exact(lat, m2)
    print(f"exact free field, L={args.L}, d={args.dim}, m^2={m2:.6f}, {res['n']} configurations "
          f"in {wall:.2f} s -> {store.path}")
    print(f"{'observable':>10} {'measured':>22} {'exact':>12} {'z':>7}")
    for name, key in (("G(0)", "G0"), ("chi", "chi"), ("E", "E"), ("<|M|>", "absM")):
        val, err = res[key]
        exact = {"G0": ex["G0"], "chi": ex["chi"], "E": ex["E"], "absM": ex["abs_M"]}[key]
        z = (val - exact) / err if err > 0 else float("nan")
        print(f"{name:>10} {val:>13.6f} +- {err:<7.6f} {exact:>12.6f} {z:>7.2f}")
    return 0
