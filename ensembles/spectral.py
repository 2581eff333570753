"""Spectral evaluation of the lattice free-scalar cos-net (docs/conventions.md).

``phi_a(x) = sum_i a_{a i} cos(p_i . x + c_i)`` with lattice momenta ``p_i``. Writing
``cos t = (e^{it} + e^{-it})/2``, each neuron puts ``z/2 = a e^{i c}/2`` at ``p_i`` and ``conj(z)/2``
at ``-p_i``. Only the half spectrum of the last axis is kept (the array is Hermitian), so every
neuron lands on exactly one half-spectrum bin: ``z/2`` at ``p_i`` when ``p_i`` is in the strict
interior of the half, ``conj(z)/2`` at ``-p_i`` when ``-p_i`` is, and ``z`` itself when ``p_i`` lies on a
self-conjugate plane (last index 0 or L/2), which is then symmetrised,
``H <- (H + conj(H(-k)))/2``. One scatter-add of N terms (two ``bincount``), one real inverse FFT:
``phi = V * irfftn(H)``. Cost O(N + V log V) per configuration instead of O(N V), with the same
parameters as the direct evaluation (``evaluate.lattice_cos_direct``) to float rounding.
Positions include origin and spacing: ``p . x = 2 pi k . n / L + p . origin``.
"""
from __future__ import annotations

import numpy as np

from .blocking import check_block

_TABLES: dict = {}


def _tables(lattice):
    """Per-momentum (C order) target bin in the half spectrum, real/imag weight factors, phase."""
    key = (tuple(lattice.shape), lattice.spacing, tuple(lattice.origin))
    if key in _TABLES:
        return _TABLES[key]
    shape = tuple(lattice.shape)
    d = len(shape)
    V = int(np.prod(shape))
    Ll = shape[-1]
    Lh = Ll // 2 + 1
    half_shape = shape[:-1] + (Lh,)
    kvec = np.indices(shape).reshape(d, V)
    neg = (-kvec) % np.asarray(shape)[:, None]
    klast = kvec[-1]
    selfconj = (klast == 0) | ((Ll % 2 == 0) & (klast == Ll // 2))
    interior = (klast < Lh) & ~selfconj
    use = np.where(selfconj | interior, 0, 1)  # 0: bin of k, 1: bin of -k (conjugated)
    tv = np.where(use == 0, kvec, neg)
    target = np.ravel_multi_index(tuple(tv), half_shape).astype(np.int64)
    fac = np.where(selfconj, 1.0, 0.5)
    fr, fi = fac, np.where(use == 0, fac, -fac)
    P = np.asarray(lattice.momenta(np)).reshape(V, d)
    phase = P @ np.asarray(lattice.origin, dtype=np.float64)
    has_phase = bool(np.any(phase != 0.0))
    # self-conjugate planes: indices into the last axis that need symmetrising
    planes = [0] + ([Ll // 2] if Ll % 2 == 0 and Ll > 1 else [])
    out = (half_shape, target, fr, fi, phase if has_phase else None, planes)
    if len(_TABLES) > 32:
        _TABLES.clear()
    _TABLES[key] = out
    return out


def _reverse_axes(a, axes, xp):
    """a(-k) on the given periodic axes: flip then roll by one."""
    for ax in axes:
        a = xp.roll(xp.flip(a, axis=ax), 1, axis=ax)
    return a


def lattice_cos_spectral(params: dict, lattice, xp=np, *, block=None):
    """Fields (n, D, *lattice.shape) of LatticeCosNet parameters ``{"k", "c", "a"}`` by FFT.

    Parameters
    ----------
    params : dict
        ``k`` (n, N) flat C-order momentum indices, ``c`` (n, N) phases, ``a`` (n, D, N) amplitudes.
    lattice : Lattice
        Periodic lattice (its momenta, spacing and origin are used).
    xp : module
        numpy or cupy (``bincount`` with weights and ``fft.irfftn`` on the device).
    block : int, optional
        Bound on the temporaries' elements: configurations are processed in groups of
        ``block // (D max(N, V))`` (each configuration independently, so results do not depend on it).
    """
    block = check_block(block, xp)
    k, c, a = params["k"], params["c"], params["a"]
    n, N = k.shape
    D = a.shape[1]
    shape = tuple(lattice.shape)
    out = xp.empty((n, D) + shape, dtype=xp.float64)
    nb = max(1, block // (D * max(N, lattice.volume)))
    tabs = _tables(lattice)
    if xp is not np:
        half_shape, target, fr, fi, phase, planes = tabs
        tabs = (half_shape, xp.asarray(target), xp.asarray(fr), xp.asarray(fi),
                None if phase is None else xp.asarray(phase), planes)
    fast = xp is np and c.dtype == np.float32
    if fast:
        tabs = _tables32(lattice)
    for s in range(0, n, nb):
        e = min(s + nb, n)
        if fast:
            _spectral_block_float32(k[s:e], c[s:e], a[s:e], tabs, shape, out[s:e])
        else:
            out[s:e] = _spectral_block(k[s:e], c[s:e], a[s:e], tabs, shape, xp)
    return out


_TABLES32: dict = {}


def _tables32(lattice):
    """Tables of the float32 path: per momentum (C order) twice its half-spectrum bin (int64),
    ``V fac`` and ``V fac sign`` (float32; ``fac`` 1 on self-conjugate planes else 1/2, ``sign``
    -1 where the conjugate bin is used; the factor V of ``phi = V irfftn(H)`` folded in), the
    origin phases (float32 or None) and the self-conjugate planes."""
    key = (tuple(lattice.shape), lattice.spacing, tuple(lattice.origin))
    if key not in _TABLES32:
        half_shape, target, fr, fi, phase, planes = _tables(lattice)
        V = float(np.prod(lattice.shape))
        if len(_TABLES32) > 32:
            _TABLES32.clear()
        _TABLES32[key] = (half_shape, 2 * target, (V * fr).astype(np.float32),
                          (V * fi).astype(np.float32),
                          None if phase is None else phase.astype(np.float32), planes)
    return _TABLES32[key]


def _spectral_block_float32(k, c, a, tabs, shape, out):
    """:func:`_spectral_block` for float32 phases and amplitudes (``generator="fast"``, NumPy),
    written into ``out`` (n, D, *shape): phasors ``cos c``, ``sin c`` and their weights in
    float32, one scatter-add into interleaved (re, im) float64 bins (the complex half spectrum
    itself) and a float64 inverse FFT."""
    half_shape, target2, fr, fi, phase, planes = tabs
    n, N = k.shape
    D = a.shape[1]
    d = len(shape)
    Vh = int(np.prod(half_shape))
    theta = c if phase is None else c + phase[k]
    cr = np.cos(theta)
    cr *= fr[k]
    ci = np.sin(theta)
    ci *= fi[k]
    m = n * D * N
    idx = np.empty(2 * m, dtype=np.int64)  # 2 * bin (real parts), then 2 * bin + 1 (imaginary)
    w = np.empty(2 * m, dtype=np.float64)
    lo = idx[:m].reshape(n, D, N)
    np.take(target2, k, out=lo[:, 0, :])
    if D > 1:
        lo[:, 1:, :] = lo[:, :1, :]
    lo += (np.arange(n * D, dtype=np.int64) * (2 * Vh)).reshape(n, D, 1)
    np.add(idx[:m], 1, out=idx[m:])
    np.multiply(a, cr[:, None, :], out=w[:m].reshape(n, D, N))
    np.multiply(a, ci[:, None, :], out=w[m:].reshape(n, D, N))
    H = np.bincount(idx, weights=w, minlength=2 * n * D * Vh).view(np.complex128)
    H = H.reshape((n, D) + half_shape)
    other = tuple(range(2, 1 + d))
    for j in planes:
        P = H[..., j]
        H[..., j] = 0.5 * (P + np.conj(_reverse_axes(P, other, np)))
    np.fft.irfftn(H, s=shape, axes=tuple(range(2, 2 + d)), out=out)


def _spectral_block(k, c, a, tabs, shape, xp):
    half_shape, target, fr, fi, phase, planes = tabs
    n, N = k.shape
    D = a.shape[1]
    d = len(shape)
    Vh = int(np.prod(half_shape))
    theta = c if phase is None else c + phase[k]
    wr = xp.cos(theta)
    wr *= fr[k]
    wi = xp.sin(theta)
    wi *= fi[k]
    idx = target[k]
    if D == 1:
        idx += (xp.arange(n, dtype=xp.int64) * Vh)[:, None]
        a1 = a[:, 0, :]
        wr *= a1
        wi *= a1
    else:
        idx = idx[:, None, :] + (xp.arange(n * D, dtype=xp.int64) * Vh).reshape(n, D, 1)
        wr = a * wr[:, None, :]
        wi = a * wi[:, None, :]
    idx = idx.ravel()
    re = xp.bincount(idx, weights=wr.ravel(), minlength=n * D * Vh)
    im = xp.bincount(idx, weights=wi.ravel(), minlength=n * D * Vh)
    H = xp.empty(n * D * Vh, dtype=xp.complex128)
    H.real = re
    H.imag = im
    H = H.reshape((n, D) + half_shape)
    other = tuple(range(2, 1 + d))  # axes of the first d-1 lattice directions
    for j in planes:
        P = H[..., j]
        H[..., j] = 0.5 * (P + xp.conj(_reverse_axes(P, other, xp)))
    phi = xp.fft.irfftn(H, s=shape, axes=tuple(range(2, 2 + d)))
    phi *= int(np.prod(shape))
    return phi
