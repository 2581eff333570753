"""Random streams keyed by (seed, chunk).

Chunk ``k`` of every ensemble is drawn from a generator that depends only on the seed entropy
and ``k``, so a result is independent of how the chunks are distributed over calls, processes
or workers, and a resumed run reproduces exactly the chunks it would have made.

NumPy uses PCG64 and CuPy Philox4x32-10; the two streams differ, so CPU and GPU ensembles with
the same seed agree statistically, not bit for bit. The store records which one was used.
"""
from __future__ import annotations

import numpy as np

from .backend import backend_name


def resolve_seed(seed: int | None) -> int:
    """Return non-negative integer entropy; a fresh one from the OS when ``seed`` is None."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return int(seed)


def bit_generator_name(xp) -> str:
    """Name of the bit generator nnft uses with array module ``xp``."""
    return "Philox4x3210" if backend_name(xp) == "cupy" else "PCG64"


def chunk_seed_sequence(seed: int, k: int) -> np.random.SeedSequence:
    """The SeedSequence of chunk ``k`` of an ensemble with entropy ``seed``."""
    return np.random.SeedSequence(resolve_seed(seed), spawn_key=(int(k),))


def chunk_rng(seed: int, k: int, xp=np):
    """Generator for chunk ``k``: its stream depends only on ``(seed, k)``.

    Parameters
    ----------
    seed : int
        Seed entropy of the ensemble (see :func:`resolve_seed`).
    k : int
        Chunk index (>= 0).
    xp : module
        ``numpy`` (PCG64) or ``cupy`` (Philox4x32-10, drawn on the device).
    """
    if k < 0:
        raise ValueError(f"chunk index k must be >= 0, got {k}")
    ss = chunk_seed_sequence(seed, k)
    if backend_name(xp) == "cupy":
        import cupy

        return cupy.random.Generator(cupy.random.Philox4x3210(ss))
    return np.random.Generator(np.random.PCG64(ss))
