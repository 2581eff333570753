"""Philox4x32-10 counter-based random numbers (Random123 / cuRAND), NumPy and CUDA.

The generator (Salmon et al., SC'11): key ``(k0, k1)`` (2 x 32 bit), counter ``(c0, c1, c2, c3)``
(4 x 32 bit), ten rounds of::

    (hi0, lo0) = mulhilo(0xD2511F53, c0);  (hi1, lo1) = mulhilo(0xCD9E8D57, c2)
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

with the key bumped by the Weyl constants ``(0x9E3779B9, 0xBB67AE85)`` between rounds. Each
(key, counter) gives four independent uint32 words; there is no state, so any element of a stream
can be computed on its own (which is what lets a GPU kernel derive every parameter where it is
used).

Normals: Box-Muller on pairs of words, ``u1 = ((x0 >> 8) + 1) 2^-24`` in (0, 1],
``u2 = (x1 >> 8) 2^-24`` in [0, 1), ``(z0, z1) = sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2)``;
one Philox call gives four normals. The uniforms are exact in float32 and float64, so the NumPy
(float64) and CUDA (float32, ``logf``/``sincospif``) versions differ only by the rounding of the
transcendental functions (a few float32 ulp).

The "fused" single-layer stream (:func:`fused_params`): network ``m`` of a chunk, neuron ``i``,
call ``s`` uses counter ``(m, i, s, 0)``; its normals ``g_0, g_1, ...`` (four per call) give
``W0_k = mu_w0 + sigma_w/sqrt(d_in) g_k`` (k < d_in), ``b0 = mu_b0 + sigma_b g_{d_in}``,
``W1_a = mu_w1 + sigma_w/sqrt(N) g_{d_in+1+a}``; the output biases of network m use counter
``(m, 0xFFFFFFFF, s, 0)``: ``b1_a = mu_b1 + sigma_b g_a``. Parameters are float32 by definition
(the float64 values rounded to float32). The key of chunk ``k`` is
``chunk_seed_sequence(seed, k).generate_state(2, uint32)`` (:func:`fused_key`).
"""
from __future__ import annotations

import math

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
ROUNDS = 10
#: neuron index reserved for the output-bias stream of a network
BIAS_STREAM = 0xFFFFFFFF
_MASK = np.uint64(0xFFFFFFFF)
_TWO_M24 = 2.0 ** -24


def _u32(a):
    return np.asarray(a, dtype=np.uint64) & _MASK


def philox4x32(counter, key, rounds: int = ROUNDS):
    """Philox4x32-R on arrays (vectorised, NumPy).

    Parameters
    ----------
    counter : array_like of uint32, shape (..., 4)
    key : array_like of uint32, shape (..., 2) (broadcast against ``counter[..., 0]``)
    rounds : int
        Number of rounds (10 for Philox4x32-10).

    Returns
    -------
    ndarray of uint32, shape (..., 4)
    """
    counter = np.asarray(counter)
    key = np.asarray(key)
    if counter.shape[-1:] != (4,):
        raise ValueError(f"counter must have a trailing axis of length 4, got shape {counter.shape}")
    if key.shape[-1:] != (2,):
        raise ValueError(f"key must have a trailing axis of length 2, got shape {key.shape}")
    c0, c1, c2, c3 = (_u32(counter[..., j]) for j in range(4))
    k0, k1 = _u32(key[..., 0]), _u32(key[..., 1])
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    w0, w1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
    s32 = np.uint64(32)
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & _MASK
            k1 = (k1 + w1) & _MASK
        p0 = c0 * m0  # < 2^64: exact in uint64
        p1 = c2 * m1
        c0, c1, c2, c3 = ((p1 >> s32) ^ c1 ^ k0, p1 & _MASK, (p0 >> s32) ^ c3 ^ k1, p0 & _MASK)
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def box_muller(x0, x1, dtype=np.float64):
    """Two standard normals from two uint32 arrays (see module docstring); computed in float64.

    ``dtype`` is the returned dtype (float32 rounds the float64 values).
    """
    x0 = np.asarray(x0, dtype=np.uint32)
    x1 = np.asarray(x1, dtype=np.uint32)
    u1 = ((x0 >> np.uint32(8)).astype(np.float64) + 1.0) * _TWO_M24
    u2 = (x1 >> np.uint32(8)).astype(np.float64) * _TWO_M24
    r = np.sqrt(-2.0 * np.log(u1))
    t = 2.0 * math.pi * u2
    return (r * np.cos(t)).astype(dtype), (r * np.sin(t)).astype(dtype)


def philox_normals(counter, key, dtype=np.float64):
    """Four standard normals per counter: array (..., 4) (Box-Muller on words (0,1) and (2,3))."""
    w = philox4x32(counter, key)
    z0, z1 = box_muller(w[..., 0], w[..., 1], dtype)
    z2, z3 = box_muller(w[..., 2], w[..., 3], dtype)
    return np.stack([z0, z1, z2, z3], axis=-1)


def fused_key(seed: int, k: int) -> tuple[int, int]:
    """Philox key of chunk ``k`` of an ensemble with seed entropy ``seed``."""
    from nnft.lattice.random import chunk_seed_sequence

    if k < 0:
        raise ValueError(f"chunk index k must be >= 0, got {k}")
    st = chunk_seed_sequence(seed, k).generate_state(2, dtype=np.uint32)
    return int(st[0]), int(st[1])


def calls_per_neuron(d_in: int, d_out: int) -> int:
    """Philox calls per neuron in the fused stream: ceil((d_in + 1 + D)/4)."""
    return -(-(int(d_in) + 1 + int(d_out)) // 4)


def fused_params(spec, n: int, key, *, offset: int = 0) -> dict:
    """Parameters of networks ``offset .. offset+n-1`` of a chunk in the fused stream (NumPy).

    Returns the dict of ``params.draw_params`` layout (float64 arrays holding float32 values):
    ``W0 (n, N, d_in)``, ``b0 (n, N)``, ``W1 (n, D, N)``, ``b1 (n, D)``.
    """
    N, d, D = int(spec.width), int(spec.d_in), int(spec.n_components)
    key = np.asarray([int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF], dtype=np.uint32)
    S = calls_per_neuron(d, D)
    m = np.arange(offset, offset + n, dtype=np.uint64)
    ctr = np.zeros((n, N, S, 4), dtype=np.uint32)
    ctr[..., 0] = m[:, None, None]
    ctr[..., 1] = np.arange(N, dtype=np.uint32)[None, :, None]
    ctr[..., 2] = np.arange(S, dtype=np.uint32)[None, None, :]
    g = philox_normals(ctr, key).reshape(n, N, 4 * S)  # float64
    f32 = np.float32
    sw0 = spec.sigma_w / math.sqrt(d)
    sw1 = spec.sigma_w / math.sqrt(N)
    W0 = (spec.mu_w0 + sw0 * g[:, :, :d]).astype(f32).astype(np.float64)
    b0 = (spec.mu_b0 + spec.sigma_b * g[:, :, d]).astype(f32).astype(np.float64)
    W1 = (spec.mu_w1 + sw1 * g[:, :, d + 1:d + 1 + D]).astype(f32).astype(np.float64)
    Sb = -(-D // 4)
    cb = np.zeros((n, Sb, 4), dtype=np.uint32)
    cb[..., 0] = m[:, None]
    cb[..., 1] = BIAS_STREAM
    cb[..., 2] = np.arange(Sb, dtype=np.uint32)[None, :]
    gb = philox_normals(cb, key).reshape(n, 4 * Sb)[:, :D]
    b1 = (spec.mu_b1 + spec.sigma_b * gb).astype(f32).astype(np.float64)
    return {"W0": W0, "b0": b0, "W1": np.ascontiguousarray(W1.transpose(0, 2, 1)), "b1": b1}


#: CUDA device code: Philox4x32-10 and float32 Box-Muller matching the NumPy version above.
CUDA_SOURCE = r"""
struct nnft_u4 { unsigned int x, y, z, w; };

__device__ __forceinline__ nnft_u4 nnft_philox4x32_10(unsigned int c0, unsigned int c1,
                                                       unsigned int c2, unsigned int c3,
                                                       unsigned int k0, unsigned int k1)
{
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const unsigned int hi0 = __umulhi(0xD2511F53u, c0);
        const unsigned int lo0 = 0xD2511F53u * c0;
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, c2);
        const unsigned int lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    nnft_u4 o; o.x = c0; o.y = c1; o.z = c2; o.w = c3;
    return o;
}

// Box-Muller: u1 in (0,1], u2 in [0,1), both exact in float32 (24-bit integers times 2^-24)
__device__ __forceinline__ void nnft_box_muller(unsigned int a, unsigned int b, float& z0, float& z1)
{
    const float u1 = ((float)(a >> 8) + 1.0f) * 5.9604644775390625e-8f;
    const float u2 = (float)(b >> 8) * 5.9604644775390625e-8f;
    const float r = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincospif(2.0f * u2, &s, &c);
    z0 = r * c;
    z1 = r * s;
}

// four standard normals from counter (c0, c1, c2, 0) and key (k0, k1)
__device__ __forceinline__ void nnft_normals4(unsigned int c0, unsigned int c1, unsigned int c2,
                                              unsigned int k0, unsigned int k1, float* g)
{
    const nnft_u4 w = nnft_philox4x32_10(c0, c1, c2, 0u, k0, k1);
    nnft_box_muller(w.x, w.y, g[0], g[1]);
    nnft_box_muller(w.z, w.w, g[2], g[3]);
}
"""

__all__ = ["philox4x32", "box_muller", "philox_normals", "fused_key", "fused_params",
           "calls_per_neuron", "CUDA_SOURCE", "BIAS_STREAM"]
