"""Combinatorics of n-point functions: set partitions, Wick pairings, point-tuple generators.

The one home of these helpers (the moment-cumulant algebra of ``cumulants``, the jackknife
engine of ``jackknife``, the closed forms of ``cluster`` and ``couplings`` and the front end all
use them).

Conventions
-----------
* A set partition of ``range(n)`` is a tuple of blocks, each a tuple of positions in increasing
  order; a pairing (perfect matching, Wick contraction) is a tuple of ``(i, j)`` pairs, i < j.
  :func:`partition_masks` and :func:`pairing_masks` give the same objects as bit masks
  (block ``b`` -> ``sum_{i in b} 2**i``), the form the vectorised estimators index with.
* Joint cumulant (moment-cumulant formula)::

      kappa(x_1..x_n) = sum_{partitions P} (-1)^(|P|-1) (|P|-1)! prod_{B in P} E[prod_{i in B} x_i]

* A *point tuple* is a sequence of flat site (or point) indices; the generators return int64
  arrays ``(count, order)``. Every generator is deterministic for a given seed, and the
  front-end generators reproduce, draw for draw, the tuples the ``nnft run`` measurements
  have always used (so results do not change when callers switch to them).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = [
    "set_partitions", "partitions_without_singletons", "partition_masks", "cumulant_coefficient",
    "cumulant_terms", "pairings", "pairing_masks", "pairs_and_rest", "joint_cumulant",
    "cumulant_from_central",
    "random_tuples", "near_tuples", "local_tuples", "box_multisets", "point_multisets",
    "unique_sorted_tuples",
]


# --------------------------------------------------------------------------------------------
# partitions and pairings
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def set_partitions(n: int) -> tuple:
    """All set partitions of ``range(n)`` as tuples of blocks (tuples of positions).

    There are Bell(n) of them (1, 1, 2, 5, 15, 52, 203, 877, 4140 for n = 0..8).
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if n == 0:
        return ((),)
    out = []
    for p in set_partitions(n - 1):
        # put n-1 into each existing block, or into a block of its own
        for i in range(len(p)):
            out.append(tuple(b + (n - 1,) if j == i else b for j, b in enumerate(p)))
        out.append(p + ((n - 1,),))
    return tuple(out)


@lru_cache(maxsize=None)
def partitions_without_singletons(n: int) -> tuple:
    """``(number of blocks, partition)`` for the set partitions of ``range(n)`` whose blocks all
    have at least two elements (the terms of a cumulant in terms of central moments)."""
    return tuple((len(p), p) for p in set_partitions(n) if all(len(b) > 1 for b in p))


def cumulant_coefficient(k: int) -> int:
    """Coefficient ``(-1)^(k-1) (k-1)!`` of a k-block term of the moment-cumulant formula."""
    return (-1) ** (k - 1) * math.factorial(k - 1)


@lru_cache(maxsize=None)
def partition_masks(n: int) -> tuple:
    """Set partitions of ``range(n)`` as tuples of block bit masks."""
    return tuple(tuple(sum(1 << i for i in b) for b in p) for p in set_partitions(n))


@lru_cache(maxsize=None)
def cumulant_terms(n: int) -> tuple:
    """``(coefficient, block masks)`` of every term of the joint cumulant of n variables."""
    return tuple((cumulant_coefficient(len(m)), m) for m in partition_masks(n))


@lru_cache(maxsize=None)
def pairings(n: int) -> tuple:
    """All perfect matchings of ``range(n)`` as tuples of pairs ((n-1)!! of them; () if n odd).

    The first pair always contains 0; ``pairings(4)`` is
    ``(((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))``.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if n == 0:
        return ((),)
    if n % 2:
        return ()
    out = []
    for j in range(1, n):
        rest = [i for i in range(1, n) if i != j]
        for p in pairings(n - 2):
            out.append(((0, j),) + tuple((rest[a], rest[b]) for a, b in p))
    return tuple(out)


@lru_cache(maxsize=None)
def pairing_masks(n: int) -> tuple:
    """Pairings of ``range(n)`` as tuples of 2-bit masks."""
    return tuple(tuple((1 << a) | (1 << b) for a, b in p) for p in pairings(n))


@lru_cache(maxsize=None)
def pairs_and_rest(n: int = 6) -> tuple:
    """``((a, b), rest)`` for every pair a < b of ``range(n)``, rest = the other positions."""
    out = []
    for a in range(n):
        for b in range(a + 1, n):
            out.append(((a, b), tuple(i for i in range(n) if i not in (a, b))))
    return tuple(out)


def joint_cumulant(moment, n: int):
    """Joint cumulant of order ``n`` from a moment function.

    ``moment(block)`` returns E[prod_{i in block} phi(x_i)] for a tuple of positions
    ``block`` (a subset of ``range(n)``). Works for scalars and arrays.
    """
    total = 0.0
    for p in set_partitions(n):
        term = cumulant_coefficient(len(p))
        for b in p:
            term = term * moment(b)
        total = total + term
    return total


def cumulant_from_central(key, central: dict, mean: dict | None = None):
    """Joint cumulant of the points ``key`` from a table of central moments.

    ``central`` maps sorted index tuples to central moments E[prod (phi_i - <phi_i>)];
    ``mean`` maps a site to its mean (used for order 1 only).
    """
    key = tuple(key)
    n = len(key)
    if n == 1:
        return 0.0 if mean is None else float(mean[key[0]])
    total = 0.0
    for k, p in partitions_without_singletons(n):
        term = cumulant_coefficient(k)
        for b in p:
            term *= central[tuple(sorted(key[i] for i in b))]
        total += term
    return total


# --------------------------------------------------------------------------------------------
# point-tuple generators
# --------------------------------------------------------------------------------------------
def _check_count(order, count):
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be a positive int, got {order!r}")
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")


def random_tuples(rng, n_points: int, order: int, count: int, distinct: bool = True) -> np.ndarray:
    """``count`` random tuples of ``order`` point indices in ``range(n_points)``.

    Points within a tuple are distinct when ``distinct`` and ``order <= n_points`` (one
    ``rng.choice`` per tuple).
    """
    _check_count(order, count)
    out = [rng.choice(n_points, size=order, replace=not distinct or order > n_points)
           for _ in range(count)]
    return np.array(out, dtype=np.int64).reshape(count, order)


def near_tuples(rng, lattice, order: int, count: int, radius: int = 2) -> np.ndarray:
    """Random tuples of sites within ``radius`` (per axis) of a random anchor site.

    Correlators are large there compared with their noise. Periodic axes wrap, open axes clip;
    a PointSet (``lattice.kind == "points"``) gets :func:`random_tuples` of its points.
    """
    _check_count(order, count)
    if getattr(lattice, "kind", "lattice") == "points":
        return random_tuples(rng, int(lattice.volume), order, count)
    shape = np.asarray(tuple(int(s) for s in lattice.shape))
    d = len(shape)
    out = []
    for _ in range(count):
        anchor = rng.integers(0, shape)
        pts = anchor + rng.integers(-radius, radius + 1, size=(order, d))
        pts = pts % shape if lattice.boundary == "periodic" else np.clip(pts, 0, shape - 1)
        out.append(np.ravel_multi_index(tuple(pts.T), tuple(shape)))
    return np.array(out, dtype=np.int64)


def local_tuples(lattice, n: int, count: int, *, seed=0) -> np.ndarray:
    """Tuples of n sites near the origin: first (0,..,0), then random multisets of the origin and
    its nearest neighbours (where a quartic vertex signal is largest); deduplicated.

    On open lattices the neighbourhood is centred at the middle site ``shape // 2``.
    """
    _check_count(n, count)
    rng = np.random.default_rng(seed)
    shape = tuple(lattice.shape)
    d = len(shape)
    offs = [np.zeros(d, dtype=np.int64)]
    for mu in range(d):
        for sgn in (1, -1):
            e = np.zeros(d, dtype=np.int64)
            e[mu] = sgn
            offs.append(e)
    offs = np.array(offs)
    periodic = getattr(lattice, "boundary", "periodic") == "periodic"
    if not periodic:
        offs = offs + np.asarray(shape) // 2
    seen = {(0,) * n}
    out = [np.zeros(n, dtype=np.int64)]
    tries = 0
    while len(out) < count and tries < 100 * count:
        tries += 1
        pick = np.sort(rng.integers(0, len(offs), size=n))
        key = tuple(pick.tolist())
        if key in seen:
            continue
        seen.add(key)
        out.append(pick)
    coords = offs[np.array(out)] % np.asarray(shape)
    return np.ravel_multi_index(tuple(np.moveaxis(coords, -1, 0)), shape)


def box_multisets(lattice, order: int, count: int, *, seed, box: int = 3) -> np.ndarray:
    """Sorted random multisets of points (repeats allowed), the same for every network width.

    On a lattice the points are the sites of a box of side ``box`` at the origin (where the
    n-point functions are large compared with their noise); on a point set all points.
    ``min(count, C(n_sites + order - 1, order))`` distinct multisets, sorted, drawn with
    ``numpy.random.default_rng([seed, order, 7])`` (the tuples of ``nnft run``'s n-point
    measurements).
    """
    _check_count(order, count)
    if getattr(lattice, "kind", "") == "lattice":
        side = int(box)
        grid = np.stack(np.meshgrid(*[np.arange(min(side, L)) for L in lattice.shape],
                                    indexing="ij"), -1).reshape(-1, lattice.dim)
        sites = np.ravel_multi_index(grid.T, lattice.shape)
    else:
        sites = np.arange(lattice.volume)
    n = min(count, math.comb(len(sites) + order - 1, order))
    rng = np.random.default_rng([seed, order, 7])
    out = set()
    while len(out) < n:
        out.add(tuple(sorted(rng.choice(sites, size=order, replace=True).tolist())))
    return np.array(sorted(out))


def point_multisets(n_points: int, order: int, count: int, *, seed) -> np.ndarray:
    """``min(count, C(n_points + order - 1, order))`` distinct sorted random multisets of point
    indices, sorted, drawn with ``numpy.random.default_rng([seed, order, 11])`` (the tuples of
    ``nnft run``'s continuum coupling measurement)."""
    _check_count(order, count)
    rng = np.random.default_rng([seed, order, 11])
    count = min(count, math.comb(n_points + order - 1, order))
    seen = set()
    while len(seen) < count:
        seen.add(tuple(sorted(rng.integers(0, n_points, size=order).tolist())))
    return np.array(sorted(seen), dtype=np.int64)


def unique_sorted_tuples(rng, n_points: int, order: int, count: int) -> np.ndarray:
    """Draw ``count`` tuples of point indices in one call, sort each, drop duplicates
    (``np.unique`` order; at most ``count`` rows)."""
    _check_count(order, count)
    return np.unique(np.sort(rng.integers(0, n_points, size=(count, order)), axis=1), axis=0)
