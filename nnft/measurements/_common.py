"""Helpers shared by the measurement modules (tuples, z summaries, option access)."""
from __future__ import annotations

import math

import numpy as np


def _z_summary(value, error, expected):
    z = (np.asarray(value) - np.asarray(expected)) / np.asarray(error)
    z = z[np.isfinite(z)]
    return {"chi2_dof": float(np.mean(z**2)) if z.size else float("nan"),
            "max_abs_z": float(np.max(np.abs(z))) if z.size else float("nan"), "n_compared": int(z.size)}


def _tuples(ctx, order, count):
    """Fixed random point tuples (multisets: repeated points allowed), the same at every width.

    On a lattice the points are drawn from the sites of a small box at the origin (side 3, or
    ``options.box``), where the n-point functions are large compared with their noise; on a
    point set from all points, as in the founding papers' experiments.
    """
    if getattr(ctx.lattice, "kind", "") == "lattice":
        side = int(ctx.options.get("box", 3))
        box = np.stack(np.meshgrid(*[np.arange(min(side, L)) for L in ctx.lattice.shape],
                                   indexing="ij"), -1).reshape(-1, ctx.lattice.dim)
        sites = np.ravel_multi_index(box.T, ctx.lattice.shape)
    else:
        sites = np.arange(ctx.lattice.volume)
    n = min(count, math.comb(len(sites) + order - 1, order))
    rng = np.random.default_rng([ctx.seed, order, 7])
    out = set()
    while len(out) < n:
        out.add(tuple(sorted(rng.choice(sites, size=order, replace=True).tolist())))
    return np.array(sorted(out))


def _pairs(ctx):
    """Site pairs of the two-point comparison: (0, r) on periodic lattices, all pairs otherwise."""
    V = ctx.lattice.volume
    if getattr(ctx.lattice, "periodic", False):
        pairs = np.array([(0, j) for j in range(V)])  # G(r) = <phi(0) phi(r)>
    else:
        pairs = np.array([(i, j) for i in range(V) for j in range(i, V)])
    if len(pairs) > 4096:
        pairs = pairs[np.random.default_rng(ctx.seed).choice(len(pairs), 4096, replace=False)]
    return pairs



def _npoint_tuples(ctx, order):
    return _tuples(ctx, order, int(ctx.options.get(f"n_tuples_{order}", 12)))


def _num(v):
    """float, None for non-finite (summary rows stay JSON-clean)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _arch(ctx):
    return type(ctx.spec).__name__


def _is_lattice(ctx):
    return getattr(ctx.lattice, "kind", "") == "lattice"

