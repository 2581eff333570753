"""Work-block sizes of the evaluators (shared by the dense, spectral and CUDA paths).

``block`` bounds the float64 elements of the temporaries an evaluator holds at once; results
never depend on it (see ``evaluate``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BLOCK", "GPU_BLOCK", "TILE_ELEMENTS", "check_block"]

#: default bound on the elements of the (networks, neurons, sites) temporaries (2 MiB float64,
#: cache-sized: larger blocks are slower on CPUs)
DEFAULT_BLOCK = 2 ** 18
#: the same bound on a GPU (~0.3 GB of float64): small blocks leave it idle between tiny launches
GPU_BLOCK = 2 ** 25
#: fixed site-tile bound (independent of ``block``), in elements of one network's (neurons, sites)
TILE_ELEMENTS = 2 ** 22


def check_block(block, xp=np):
    """``block`` validated, or the default for array module ``xp`` when it is None."""
    if block is None:
        return DEFAULT_BLOCK if xp is np else GPU_BLOCK
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer (elements), got {block!r}")
    return int(block)
