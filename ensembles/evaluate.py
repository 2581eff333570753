"""Batched evaluation of drawn parameters on the sites (NumPy reference path, works with CuPy too).

No Python loop over networks: the work ``(networks, neurons, sites)`` is done in blocks of whole
networks whose temporaries hold at most ``block`` float64 elements (plus one network when a single
network is larger). When one network times all sites exceeds :data:`TILE_ELEMENTS`, sites are
processed in fixed tiles whose size depends only on the width and the number of sites, never on
``block``; together with drawing all parameters of a chunk first (``params.draw_params``) this
makes the result bit-identical for every ``block``.

Single-layer nets and direct cos-net evaluation share :func:`dense_single_layer`:
``out[m, a, v] = b1[m, a] + sum_i W1[m, a, i] act(W0[m, i] . x_v + b0[m, i] - shift_v)``.
"""
from __future__ import annotations

import numpy as np

from .activations import compile_activation, compile_activation_float32
from .blocking import DEFAULT_BLOCK, GPU_BLOCK, TILE_ELEMENTS, check_block  # noqa: F401
from .specs import (ContinuumCosNet, DeepMLP, GaussianCosNet, GaussNet, LatticeCosNet, Spec,
                    _SingleLayer)
from .spectral import lattice_cos_spectral


#: float32 elements per block of the fast generator's evaluation (``generator="fast"``):
#: a few such temporaries stay in a core's L2 cache
FAST_BLOCK = 2 ** 16


def _site_tiles(N: int, V: int):
    if N * V <= TILE_ELEMENTS:
        return [slice(0, V)]
    t = max(1, TILE_ELEMENTS // N)
    return [slice(s, min(s + t, V)) for s in range(0, V, t)]


_check_block = check_block  # old private name (engine, cuda)


def dense_single_layer(W0, b0, W1, b1, X, activation, xp=np, *, block=None, shift=None,
                       out=None):
    """Evaluate single-hidden-layer networks on the points X.

    Parameters
    ----------
    W0 : (n, N, d)
    b0 : (n, N)
    W1 : (n, D, N)
    b1 : (n, D) or None
    X : (V, d) positions
    activation : str or callable
        Name/expression (see ``ensembles.activations``) or a callable ``act(z)`` that may work in
        place.
    shift : (V,) or None
        Subtracted from the pre-activation before the activation (the Gauss-net normalisation).
    block : int
        Bound on temporary elements per block (see module docstring).

    Returns
    -------
    (n, D, V) array
    """
    block = _check_block(block, xp)
    act = compile_activation(activation, xp) if isinstance(activation, str) else activation
    n, N, d = W0.shape
    D = W1.shape[1]
    V = X.shape[0]
    if out is None:
        out = xp.empty((n, D, V), dtype=xp.float64)
    XT = xp.ascontiguousarray(X.T)
    for tile in _site_tiles(N, V):
        Vt = tile.stop - tile.start
        nb = max(1, block // (N * Vt))
        xt = XT[:, tile]
        sh = None if shift is None else shift[tile]
        for s in range(0, n, nb):
            e = min(s + nb, n)
            if d == 1:
                z = W0[s:e] * xt[0]  # (nb, N, 1) * (Vt,) -> (nb, N, Vt)
            else:
                z = xp.matmul(W0[s:e], xt)
            z += b0[s:e, :, None]
            if sh is not None:
                z -= sh
            h = act(z)
            y = xp.matmul(W1[s:e], h)
            if b1 is not None:
                y += b1[s:e, :, None]
            out[s:e, :, tile] = y
    return out


def dense_deep(Ws, bs, X, activation, xp=np, *, block=None):
    """Evaluate deep MLPs (parameters as drawn by ``draw_params``) on X; returns (n, D, V)."""
    block = _check_block(block, xp)
    act = compile_activation(activation, xp)
    n = Ws[0].shape[0]
    width = Ws[0].shape[1]
    D = Ws[-1].shape[1]
    V = X.shape[0]
    out = xp.empty((n, D, V), dtype=xp.float64)
    XT = xp.ascontiguousarray(X.T)
    for tile in _site_tiles(width, V):
        Vt = tile.stop - tile.start
        nb = max(1, block // (width * Vt))
        xt = XT[:, tile]
        for s in range(0, n, nb):
            e = min(s + nb, n)
            h = xp.matmul(Ws[0][s:e], xt)
            h += bs[0][s:e, :, None]
            h = act(h)
            for W, b in zip(Ws[1:-1], bs[1:-1]):
                z = xp.matmul(W[s:e], h)
                z += b[s:e, :, None]
                h = act(z)
            y = xp.matmul(Ws[-1][s:e], h)
            y += bs[-1][s:e, :, None]
            out[s:e, :, tile] = y
    return out


def gauss_shift(spec: GaussNet, X, xp=np):
    """Gauss-net normalisation ``sigma_b^2 + sigma_w^2 x.x/d_in`` per site."""
    return spec.sigma_b ** 2 + spec.sigma_w ** 2 * (X * X).sum(axis=1) / spec.d_in


def lattice_cos_direct(params, lattice, xp=np, *, block=None):
    """Direct O(N V) evaluation of LatticeCosNet parameters (the reference of the spectral path)."""
    P = xp.asarray(lattice.momenta(xp)).reshape(lattice.volume, lattice.dim)
    W0 = P[params["k"]]
    X = xp.asarray(lattice.positions(xp))
    return dense_single_layer(W0, params["c"], params["a"], None, X, "cos", xp, block=block)


def evaluate(spec: Spec, params: dict, lattice, xp=np, *, block=None, method="auto"):
    """Fields of the networks in ``params`` on ``lattice``: array (n, D, V) on backend ``xp``.

    ``method``: "auto" (spectral for LatticeCosNet, dense otherwise), "dense", or "spectral".
    The CuPy fused kernels live in ``ensembles.cuda``; this is the array-API reference path.
    """
    X = xp.asarray(lattice.positions(xp), dtype=xp.float64)
    if isinstance(spec, LatticeCosNet):
        if method in ("auto", "spectral"):
            phi = lattice_cos_spectral(params, lattice, xp, block=block)
            return phi.reshape(phi.shape[0], phi.shape[1], -1)
        return lattice_cos_direct(params, lattice, xp, block=block)
    if method == "spectral":
        raise ValueError(f"method='spectral' is only available for LatticeCosNet, not "
                         f"{type(spec).__name__}")
    if isinstance(spec, DeepMLP):
        return dense_deep(params["Ws"], params["bs"], X, spec.activation, xp, block=block)
    if isinstance(spec, (GaussianCosNet, ContinuumCosNet)):
        return dense_single_layer(params["W0"], params["b0"], params["W1"], None, X, "cos", xp,
                                  block=block)
    if isinstance(spec, GaussNet):
        return dense_single_layer(params["W0"], params["b0"], params["W1"], params["b1"], X,
                                  _exp_act(xp), xp, block=block, shift=gauss_shift(spec, X, xp))
    if isinstance(spec, _SingleLayer):
        return dense_single_layer(params["W0"], params["b0"], params["W1"], params["b1"], X,
                                  spec.activation_expr, xp, block=block)
    raise ValueError(f"evaluate: unknown architecture {type(spec).__name__}")


def _exp_act(xp):
    if xp is np:
        return lambda z: np.exp(z, out=z)
    return xp.exp


# -- the "fast" generator: float32 evaluation ------------------------------------------------------

def dense_single_layer_float32(W0, b0, W1, b1, X, activation, *, block=None, shift=None):
    """Float32 evaluation of single-hidden-layer networks (``generator="fast"``, NumPy).

    Same formula as :func:`dense_single_layer` with float32 parameters: the pre-activations
    ``W0 . x + b0 [- shift]`` and the activation are computed in float32 in site-major blocks
    ``(networks, sites, neurons)`` (long contiguous inner loops), the output sum over neurons by
    one BLAS matrix-vector product per network (float32), the output bias added in float64.
    Blocks hold at most ``block`` float32 elements (default :data:`FAST_BLOCK`, cache-sized);
    each network is computed the same way for every ``block`` (bit-identical results).

    Parameters
    ----------
    W0 : float32 (n, N, d)
    b0 : float32 (n, N)
    W1 : float32 (n, D, N)
    b1 : (n, D) or None
    X : (V, d) positions
    activation : str
        Name or expression (``activations.compile_activation_float32``).
    shift : (V,) or None
        Subtracted from the pre-activation (Gauss-net normalisation).

    Returns
    -------
    float64 ndarray (n, D, V)
    """
    block = FAST_BLOCK if block is None else check_block(block)
    act = compile_activation_float32(activation)
    n, N, d = W0.shape
    D = W1.shape[1]
    V = X.shape[0]
    out = np.empty((n, D, V), dtype=np.float64)
    X32 = np.asarray(X, dtype=np.float32)
    sh32 = None if shift is None else np.asarray(shift, dtype=np.float32)
    W1T = W1.transpose(0, 2, 1)  # (n, N, D), Fortran-ordered matrices: BLAS transposed operand
    for tile in _site_tiles(N, V):
        Vt = tile.stop - tile.start
        nb = max(1, block // (N * Vt))
        xt = X32[tile]  # (Vt, d)
        for s in range(0, n, nb):
            e = min(s + nb, n)
            z = np.multiply(W0[s:e, None, :, 0], xt[None, :, 0, None])  # (nb, Vt, N)
            for j in range(1, d):
                z += W0[s:e, None, :, j] * xt[None, :, j, None]
            z += b0[s:e, None, :]
            if sh32 is not None:
                z -= sh32[tile, None]
            h = act(z)
            y = np.matmul(h, W1T[s:e])  # (nb, Vt, D) float32
            o = out[s:e, :, tile]
            o[...] = y.transpose(0, 2, 1)
            if b1 is not None:
                o += np.asarray(b1[s:e], dtype=np.float64)[:, :, None]
    return out


def evaluate_fast(spec: Spec, params: dict, lattice, *, block=None, method="auto"):
    """Fields (n, D, V), float64, of parameters drawn by ``params.draw_params_fast`` (NumPy).

    Single-layer nets: :func:`dense_single_layer_float32`; LatticeCosNet: the spectral path with
    float32 phasors (``method="dense"``: the direct float64 evaluation, the reference).
    """
    if isinstance(spec, LatticeCosNet):
        return evaluate(spec, params, lattice, np, block=block, method=method)
    if method == "spectral":
        raise ValueError(f"method='spectral' is only available for LatticeCosNet, not "
                         f"{type(spec).__name__}")
    X = np.asarray(lattice.positions(np), dtype=np.float64)
    if isinstance(spec, GaussNet):
        return dense_single_layer_float32(params["W0"], params["b0"], params["W1"],
                                          params["b1"], X, "exp", block=block,
                                          shift=gauss_shift(spec, X, np))
    if isinstance(spec, _SingleLayer):
        return dense_single_layer_float32(params["W0"], params["b0"], params["W1"],
                                          params["b1"], X, spec.activation_expr, block=block)
    raise ValueError(f"generator='fast' supports the single-layer nets and LatticeCosNet, not "
                     f"{type(spec).__name__}")
