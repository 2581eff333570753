"""Array backend selection: NumPy everywhere, CuPy where a CUDA device is really present.

Array code in nnft is written once against an array module ``xp`` (``numpy`` or ``cupy``).
This module picks that module and moves arrays back to the host.

The choice comes from an explicit argument or, when none is given, from the ``NNFT_BACKEND``
environment variable (default ``"numpy"``). ``"auto"`` selects CuPy only when a CUDA device
answers; ``import cupy`` alone proves nothing (it succeeds on machines without a GPU).
"""
from __future__ import annotations

import functools
import os

import numpy as np

BACKENDS = ("numpy", "cupy", "auto")
ENV_VAR = "NNFT_BACKEND"


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """Return True when CuPy is importable *and* at least one CUDA device answers."""
    try:
        import cupy

        if not cupy.cuda.is_available():
            return False
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        cupy.zeros(1).sum().item()  # a real allocation and kernel launch
        return True
    except Exception:
        return False


def get_xp(backend: str | None = None):
    """Return the array module for ``backend``.

    Parameters
    ----------
    backend : {"numpy", "cupy", "auto"} or None
        ``None`` reads the ``NNFT_BACKEND`` environment variable (default ``"numpy"``).
        ``"auto"`` returns CuPy when a CUDA device is present and NumPy otherwise.
        A module (numpy or cupy) is returned unchanged.

    Raises
    ------
    ValueError
        For an unknown backend name, or ``"cupy"`` when no CUDA device is present.
    """
    if backend is not None and not isinstance(backend, str):
        name = getattr(backend, "__name__", "")
        if name in ("numpy", "cupy"):
            return backend
        raise ValueError(f"backend must be one of {BACKENDS} or an array module, got {backend!r}")
    source = "argument backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR, "numpy") or "numpy"
        source = f"environment variable {ENV_VAR}"
    name = backend.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {backend!r}")
    if name == "numpy":
        return np
    if name == "auto":
        if cuda_available():
            import cupy

            return cupy
        return np
    if not cuda_available():
        raise ValueError(
            f"{source} is 'cupy' but no CUDA device is available "
            "(install the gpu extra on a machine with an NVIDIA GPU, or use 'numpy'/'auto')"
        )
    import cupy

    return cupy


def backend_name(xp) -> str:
    """``"numpy"`` or ``"cupy"`` for an array module."""
    name = getattr(xp, "__name__", "")
    if name not in ("numpy", "cupy"):
        raise ValueError(f"not an array module: {xp!r}")
    return name


def array_module(a):
    """The array module (numpy or cupy) that owns array ``a``."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def xp_of(a):
    """Alias of :func:`array_module`: numpy for NumPy arrays and scalars, cupy for CuPy arrays."""
    return array_module(a)


def module_name(a) -> str:
    """``"cupy"`` for a CuPy array, ``"numpy"`` for anything else (the name ``get_xp`` takes)."""
    return "cupy" if type(a).__module__.split(".")[0] == "cupy" else "numpy"


def to_numpy(a) -> np.ndarray:
    """Copy ``a`` to the host as a NumPy array (no copy for NumPy input)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)
