"""The free scalar field on a periodic lattice (docs/conventions.md, convention C, a = 1).

Action ``S = sum_x [1/2 sum_mu (phi_{x+mu} - phi_x)^2 + 1/2 m^2 phi_x^2]``. Momentum-space
propagator ``Gt(p) = 1/(phat^2 + m^2)``; position space ``G(x) = (1/V) sum_p exp(i p.x) Gt(p)``,
i.e. ``ifftn(Gt).real``, indexed by the displacement ``x`` (``G[0, ..., 0] = G(0)``).

The exact sampler ``phi = ifftn(fftn(eta) sqrt(Gt)).real`` (eta real white noise) draws
independent, exactly distributed configurations: it is the cost floor of any free-field method.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import backend_name, get_xp
from .geometry import Lattice
from .random import bit_generator_name, chunk_rng, resolve_seed
from .sampling import run_chunks
from .store import FieldStore


def _check(lattice, m2):
    if not isinstance(lattice, Lattice):
        raise ValueError(f"lattice must be a periodic nnft.lattice.Lattice, got {lattice!r}")
    if not lattice.periodic:
        raise ValueError("the free propagator needs boundary='periodic'")
    try:
        m2 = float(m2)
    except (TypeError, ValueError):
        raise ValueError(f"m2 must be a positive number, got {m2!r}") from None
    if not (math.isfinite(m2) and m2 > 0):
        raise ValueError(f"m2 (the bare mass squared) must be positive and finite, got {m2!r}")
    return m2


def free_propagator_momentum(lattice: Lattice, m2: float, xp=np):
    """``Gt(p) = 1/(phat^2 + m^2)`` on the lattice momenta, shape ``lattice.shape``."""
    m2 = _check(lattice, m2)
    return 1.0 / (lattice.phat2(xp) + m2)


def free_propagator(lattice: Lattice, m2: float, xp=np):
    """Position-space propagator ``G(r) = ifftn(Gt).real`` as a function of displacement index."""
    return xp.fft.ifftn(free_propagator_momentum(lattice, m2, xp)).real


def effective_mass_exact(m2: float) -> float:
    """``m_E = 2 arcsinh(m/2)``: the exact arccosh effective mass of the free field."""
    return 2.0 * math.asinh(math.sqrt(m2) / 2.0)


def free_field_exact(lattice: Lattice, m2: float) -> dict:
    """Exact free-field values on ``lattice`` at bare mass squared ``m2``.

    Returns a dict with ``chi`` (= 1/m^2), ``G0``, ``E`` ((1/d) sum_mu G(mu)), ``abs_M``
    (``sqrt(2 chi/(pi V))``), ``xi2`` (second-moment correlation length along axis 0) and ``m_E``.
    """
    m2 = _check(lattice, m2)
    G = free_propagator(lattice, m2)
    Gt = free_propagator_momentum(lattice, m2)
    d = lattice.dim
    unit = [tuple(1 if nu == mu else 0 for nu in range(d)) for mu in range(d)]
    E = float(np.mean([G[u] for u in unit]))
    chi = 1.0 / m2
    L0 = lattice.shape[0]
    F = float(Gt[(1,) + (0,) * (d - 1)]) if L0 > 1 else float("nan")
    xi2 = math.sqrt(chi / F - 1.0) / (2.0 * math.sin(math.pi / L0)) if L0 > 1 else float("nan")
    return {"chi": chi, "G0": float(G[(0,) * d]), "E": E,
            "abs_M": math.sqrt(2.0 * chi / (math.pi * lattice.volume)),
            "xi2": xi2, "m_E": effective_mass_exact(m2)}


def free_field_chunk(lattice: Lattice, m2: float, n: int, rng, xp=np, dtype=None):
    """Draw ``n`` exact free-field configurations with generator ``rng``.

    Uses real FFTs: ``phi = irfftn(rfftn(eta) * sqrt(Gt))``, identical in law to the complex form.
    """
    dtype = dtype or xp.float64
    sqrtG = xp.sqrt(free_propagator_momentum(lattice, m2, xp))
    sqrtG = sqrtG[..., : lattice.shape[-1] // 2 + 1]
    axes = tuple(range(1, lattice.dim + 1))
    eta = rng.standard_normal((n,) + lattice.shape, dtype=xp.float64)
    phi = xp.fft.irfftn(xp.fft.rfftn(eta, axes=axes) * sqrtG, s=lattice.shape, axes=axes)
    return phi.astype(dtype, copy=False)


def sample_free_field(lattice: Lattice, m2: float, n_samples: int, store=None, *, chunk: int = 1024,
                      seed: int | None = None, backend=None, callback=None, dtype="float64",
                      progress: bool = False):
    """Exact Fourier sampler of the free field, chunked and seeded like the network generator.

    Parameters
    ----------
    lattice : Lattice
        Periodic lattice.
    m2 : float
        Bare mass squared (> 0), convention C.
    n_samples : int
        Number of configurations.
    store : str, os.PathLike, FieldStore or None
        Where to write (source ``"exact_free"``); an existing matching store is resumed.
    chunk : int
        Configurations per chunk; chunk ``k`` comes from ``chunk_rng(seed, k)`` only.
    seed : int or None
        Seed entropy; None draws a fresh one (or reuses the seed of a store being resumed).
    backend : {"numpy", "cupy", "auto"} or None
    callback : callable(k, phi, log_weight), optional
        Called with each chunk (on the backend's device) instead of, or as well as, storing.

    Returns
    -------
    FieldStore or None
    """
    m2 = _check(lattice, m2)
    xp = get_xp(backend)
    spec = {"arch": "ExactFreeField", "m2": m2, "convention": "C"}
    if store is not None and not isinstance(store, FieldStore):
        store = FieldStore.open_or_create(
            store, lattice, n_samples, chunk, source="exact_free", spec=spec, seed=seed,
            backend=backend_name(xp), bit_generator=bit_generator_name(xp), dtype=dtype)
    if store is not None:
        seed = store.seed
    seed = resolve_seed(seed)

    def make_chunk(k, start, stop):
        return free_field_chunk(lattice, m2, stop - start, chunk_rng(seed, k, xp), xp, dtype)

    return run_chunks(n_samples, chunk, make_chunk, store=store, callback=callback,
                      progress=progress, description="exact free field")
