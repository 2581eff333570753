"""Helpers shared by the measurement modules (tuples, z summaries, option access)."""
from __future__ import annotations

import numpy as np


def _z_summary(value, error, expected):
    z = (np.asarray(value) - np.asarray(expected)) / np.asarray(error)
    z = z[np.isfinite(z)]
    return {"chi2_dof": float(np.mean(z**2)) if z.size else float("nan"),
            "max_abs_z": float(np.max(np.abs(z))) if z.size else float("nan"), "n_compared": int(z.size)}


def _tuples(ctx, order, count):
    """Fixed random point tuples (multisets), the same at every width: drawn from the sites of
    a small box at the origin (side ``options.box``, default 3) on a lattice, from all points
    on a point set (:func:`nnft.observables.combinatorics.box_multisets`)."""
    from ..observables.combinatorics import box_multisets

    return box_multisets(ctx.lattice, order, count, seed=ctx.seed,
                         box=int(ctx.options.get("box", 3)))


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


def _arch(ctx):
    return type(ctx.spec).__name__


def _is_lattice(ctx):
    return getattr(ctx.lattice, "kind", "") == "lattice"

