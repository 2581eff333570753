"""CuPy kernels of the generation engine (GPU path).

- :func:`single_layer_cuda`: one fused RawKernel for single-hidden-layer nets and direct cos-nets.
  One thread per (network, site) loops over the N neurons, computing
  ``act(W0_i . x + b0_i - shift)`` in registers and accumulating the D outputs: the
  (networks, neurons, sites) tensor is never materialised. The activation is compiled in from its
  expression (``activations.cuda_expression``), so user activations run fused too.
- :func:`deep_cuda`: deep MLPs by batched matmul per layer (cuBLAS) with a fused elementwise
  activation kernel, blocked over networks as in the NumPy path.
- LatticeCosNet uses the array-API spectral path (``spectral.py``: ``bincount`` + cuFFT).
- :func:`fused_single_layer_cuda` (``method="fused"``): GaussNet/ErfNet/ReLUNet/TanhNet with the
  parameters generated inside the kernel by Philox4x32-10 (``ensembles.philox``), never stored;
  float32 arithmetic, blocked float32/float64 summation. NumPy reference:
  ``philox.fused_params`` + ``evaluate`` (float64).

Every kernel has a NumPy reference (``evaluate.dense_single_layer`` / ``dense_deep``) and a
``@pytest.mark.gpu`` test comparing them on the same parameters. Defining kernels needs no device;
calling them does. ``cupy`` is imported lazily, never at module import.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .activations import cuda_expression
from .specs import ContinuumCosNet, DeepMLP, GaussianCosNet, GaussNet, LatticeCosNet, Spec, _SingleLayer

_SOURCE = r"""
__device__ __forceinline__ double _nnft_sign(double x) { return (x > 0) - (x < 0); }
__device__ __forceinline__ double _nnft_act(double x) { return (ACT_EXPR); }

extern "C" __global__ void nnft_single_layer(
    const double* __restrict__ W0,   // (n, N, D_IN)
    const double* __restrict__ b0,   // (n, N)
    const double* __restrict__ W1,   // (n, D_OUT, N)
    const double* __restrict__ b1,   // (n, D_OUT) or unused
    const double* __restrict__ XT,   // (D_IN, V)
    const double* __restrict__ shift,// (V) or unused
    double* __restrict__ out,        // (n, D_OUT, V)
    const long long n, const int N, const int V, const int has_b1, const int has_shift)
{
    long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (tid >= n * (long long)V) return;
    const long long m = tid / V;
    const int v = (int)(tid - m * V);
    double x[D_IN];
    #pragma unroll
    for (int k = 0; k < D_IN; ++k) x[k] = XT[(long long)k * V + v];
    const double sh = has_shift ? shift[v] : 0.0;
    double acc[D_OUT];
    #pragma unroll
    for (int a = 0; a < D_OUT; ++a) acc[a] = 0.0;
    const double* w0 = W0 + m * (long long)N * D_IN;
    const double* bb = b0 + m * (long long)N;
    const double* w1 = W1 + m * (long long)D_OUT * N;
    for (int i = 0; i < N; ++i) {
        double z = bb[i] - sh;
        #pragma unroll
        for (int k = 0; k < D_IN; ++k) z += w0[(long long)i * D_IN + k] * x[k];
        const double h = _nnft_act(z);
        #pragma unroll
        for (int a = 0; a < D_OUT; ++a) acc[a] += w1[(long long)a * N + i] * h;
    }
    #pragma unroll
    for (int a = 0; a < D_OUT; ++a)
        out[(m * D_OUT + a) * (long long)V + v] = acc[a] + (has_b1 ? b1[m * D_OUT + a] : 0.0);
}
"""


def kernel_source(activation_c: str, d_in: int, d_out: int) -> str:
    """CUDA source of the fused single-layer kernel (defining it needs no device)."""
    return (f"#define ACT_EXPR {activation_c}\n#define D_IN {int(d_in)}\n#define D_OUT {int(d_out)}\n"
            + _SOURCE)


@functools.lru_cache(maxsize=64)
def _single_layer_kernel(activation_c: str, d_in: int, d_out: int):
    import cupy

    return cupy.RawKernel(kernel_source(activation_c, d_in, d_out), "nnft_single_layer")


def _act_c(spec_or_name) -> str:
    if isinstance(spec_or_name, GaussNet):
        return "exp(x)"
    if isinstance(spec_or_name, (GaussianCosNet, ContinuumCosNet, LatticeCosNet)):
        return "cos(x)"
    if isinstance(spec_or_name, str):
        return cuda_expression(spec_or_name)
    return cuda_expression(spec_or_name.activation_expr)


def single_layer_cuda(W0, b0, W1, b1, X, activation: str, *, shift=None, threads: int = 256):
    """Fused single-layer evaluation on the GPU; returns (n, D, V). See module docstring.

    ``activation`` is a CUDA C expression in ``x`` (e.g. from ``activations.cuda_expression``).
    """
    import cupy

    W0 = cupy.ascontiguousarray(W0, dtype=cupy.float64)
    b0 = cupy.ascontiguousarray(b0, dtype=cupy.float64)
    W1 = cupy.ascontiguousarray(W1, dtype=cupy.float64)
    n, N, d = W0.shape
    D = W1.shape[1]
    XT = cupy.ascontiguousarray(cupy.asarray(X, dtype=cupy.float64).T)
    V = XT.shape[1]
    out = cupy.empty((n, D, V), dtype=cupy.float64)
    dummy = cupy.zeros(1, dtype=cupy.float64)
    b1c = dummy if b1 is None else cupy.ascontiguousarray(b1, dtype=cupy.float64)
    shc = dummy if shift is None else cupy.ascontiguousarray(shift, dtype=cupy.float64)
    kern = _single_layer_kernel(activation, d, D)
    total = n * V
    grid = (total + threads - 1) // threads
    kern((grid,), (threads,), (W0, b0, W1, b1c, XT, shc, out, cupy.int64(n), cupy.int32(N),
                               cupy.int32(V), cupy.int32(b1 is not None),
                               cupy.int32(shift is not None)))
    return out


@functools.lru_cache(maxsize=64)
def _elementwise(activation_c: str):
    import cupy

    return cupy.ElementwiseKernel(
        "float64 x", "float64 y",
        f"y = ({activation_c});",
        "nnft_activation",
        preamble="__device__ double _nnft_sign(double x) { return (x > 0) - (x < 0); }")


def deep_cuda(Ws, bs, X, activation: str, *, block=None):
    """Deep MLP on the GPU: batched cuBLAS matmuls, fused activation kernel, blocked over networks."""
    import cupy

    from .evaluate import _check_block, _site_tiles

    block = _check_block(block, cupy)
    act = _elementwise(cuda_expression(activation))
    n, width = Ws[0].shape[0], Ws[0].shape[1]
    D = Ws[-1].shape[1]
    XT = cupy.ascontiguousarray(cupy.asarray(X, dtype=cupy.float64).T)
    V = XT.shape[1]
    out = cupy.empty((n, D, V), dtype=cupy.float64)
    for tile in _site_tiles(width, V):
        Vt = tile.stop - tile.start
        nb = max(1, block // (width * Vt))
        xt = XT[:, tile]
        for s in range(0, n, nb):
            e = min(s + nb, n)
            h = act(cupy.matmul(Ws[0][s:e], xt) + bs[0][s:e, :, None])
            for W, b in zip(Ws[1:-1], bs[1:-1]):
                h = act(cupy.matmul(W[s:e], h) + b[s:e, :, None])
            out[s:e, :, tile] = cupy.matmul(Ws[-1][s:e], h) + bs[-1][s:e, :, None]
    return out


def evaluate_cuda(spec: Spec, params: dict, lattice, *, block=None):
    """GPU evaluation of drawn parameters (CuPy arrays); returns (n, D, V) on the device."""
    import cupy

    from .evaluate import gauss_shift

    X = cupy.asarray(lattice.positions(cupy), dtype=cupy.float64)
    if isinstance(spec, LatticeCosNet):
        from .spectral import lattice_cos_spectral

        phi = lattice_cos_spectral(params, lattice, cupy)
        return phi.reshape(phi.shape[0], phi.shape[1], -1)
    if isinstance(spec, DeepMLP):
        return deep_cuda(params["Ws"], params["bs"], X, spec.activation, block=block)
    if isinstance(spec, (GaussianCosNet, ContinuumCosNet)):
        return single_layer_cuda(params["W0"], params["b0"], params["W1"], None, X, "cos(x)")
    if isinstance(spec, GaussNet):
        return single_layer_cuda(params["W0"], params["b0"], params["W1"], params["b1"], X,
                                 "exp(x)", shift=gauss_shift(spec, X, cupy))
    if isinstance(spec, _SingleLayer):
        return single_layer_cuda(params["W0"], params["b0"], params["W1"], params["b1"], X,
                                 _act_c(spec))
    raise ValueError(f"evaluate_cuda: unknown architecture {type(spec).__name__}")


# =============================================================================================
# method="fused": in-kernel Philox parameters, float32 arithmetic (single-layer Gauss/Erf/ReLU/Tanh)
# =============================================================================================
#: activation codes of the fused kernel
FUSED_ACTIVATIONS = {"ReLUNet": 0, "ErfNet": 1, "GaussNet": 2, "TanhNet": 3}
#: neurons accumulated in float32 before each float64 flush (blocked summation)
FUSED_FLUSH = 16
LOG2E = 1.4426950408889634

_FUSED_SOURCE = r"""
#if ACT == 0
#define NNFT_ACT(z) fmaxf((z), 0.0f)
#elif ACT == 1
#define NNFT_ACT(z) erff(z)
#elif ACT == 2
#define NNFT_ACT(z) exp2f(z)
#else
#define NNFT_ACT(z) tanhf(z)
#endif

#define BLOCK (NPB * TPN)
#define NNFT_NP (D_IN + 1 + D_OUT)          // parameters per neuron
#define NNFT_PS (4 * PQ)                    // padded parameters per neuron (float4 units PQ)
#define NNFT_NS ((NNFT_NP + 3) / 4)         // Philox calls per neuron
#define NNFT_BS ((D_OUT + 3) / 4)           // Philox calls for the output biases
#define ROW (TILE * PQ + 1)                 // float4 per network row in shared memory (+1 pad)

struct nnft_f4 { float x, y, z, w; };

extern "C" __global__ void __launch_bounds__(BLOCK)
nnft_fused_single_layer(
    const float* __restrict__ XT,      // (D_IN, V) site coordinates
    const float* __restrict__ shift,   // (V) Gauss-net shift times log2(e), or unused
    OUT_T* __restrict__ out,           // (n, D_OUT, V)
    float* __restrict__ dump,          // (n, N, NNFT_PS) parameters (if do_dump)
    float* __restrict__ dump_b1,       // (n, D_OUT) output biases (if do_dump)
    const unsigned int key0, const unsigned int key1,
    const int n, const int N, const int V, const unsigned int m_offset, const int do_dump,
    const float sw0, const float mw0, const float sb0, const float mb0,
    const float sw1, const float mw1, const float sb1, const float mb1)
{
    __shared__ nnft_f4 sp[NPB * ROW];
    const int tid = threadIdx.x;
    const int ln = tid / TPN;              // network within the block
    const int sl = tid - ln * TPN;         // site lane
    const int m_local = blockIdx.x * NPB + ln;
    const int vbase = blockIdx.y * (TPN * SPT) + sl;

    float x[SPT][D_IN];
#if ACT == 2
    float sh[SPT];
#endif
    #pragma unroll
    for (int j = 0; j < SPT; ++j) {
        const int v = vbase + j * TPN;
        #pragma unroll
        for (int k = 0; k < D_IN; ++k) x[j][k] = (v < V) ? XT[(size_t)k * V + v] : 0.0f;
#if ACT == 2
        sh[j] = (v < V) ? shift[v] : 0.0f;
#endif
    }
    float accf[D_OUT][SPT];
    double accd[D_OUT][SPT];
    #pragma unroll
    for (int a = 0; a < D_OUT; ++a) {
        #pragma unroll
        for (int j = 0; j < SPT; ++j) { accf[a][j] = 0.0f; accd[a][j] = 0.0; }
    }

    for (int i0 = 0; i0 < N; i0 += TILE) {
        __syncthreads();   // the previous tile's parameters are no longer read
        for (int q = tid; q < NPB * TILE; q += BLOCK) {
            const int lq = q / TILE;
            const int ii = q - lq * TILE;
            const int mq = blockIdx.x * NPB + lq;
            const int i = i0 + ii;
            float p[NNFT_PS];
            #pragma unroll
            for (int t = 0; t < NNFT_PS; ++t) p[t] = 0.0f;
            if (mq < n && i < N) {
                float g[4 * NNFT_NS];
                #pragma unroll
                for (int s = 0; s < NNFT_NS; ++s)
                    nnft_normals4(m_offset + (unsigned int)mq, (unsigned int)i, (unsigned int)s,
                                  key0, key1, g + 4 * s);
                #pragma unroll
                for (int k = 0; k < D_IN; ++k) p[k] = fmaf(sw0, g[k], mw0);
                p[D_IN] = fmaf(sb0, g[D_IN], mb0);
                #pragma unroll
                for (int a = 0; a < D_OUT; ++a) p[D_IN + 1 + a] = fmaf(sw1, g[D_IN + 1 + a], mw1);
                if (do_dump && blockIdx.y == 0) {
                    float* dp = dump + ((size_t)mq * N + i) * NNFT_PS;
                    #pragma unroll
                    for (int t = 0; t < NNFT_PS; ++t) dp[t] = p[t];
                }
#if ACT == 2
                #pragma unroll
                for (int k = 0; k <= D_IN; ++k) p[k] *= 1.4426950408889634f;   // exp(z) = exp2(z log2 e)
#endif
            }
            nnft_f4* dst = sp + lq * ROW + ii * PQ;
            #pragma unroll
            for (int t = 0; t < PQ; ++t) {
                nnft_f4 f; f.x = p[4 * t]; f.y = p[4 * t + 1]; f.z = p[4 * t + 2]; f.w = p[4 * t + 3];
                dst[t] = f;
            }
        }
        __syncthreads();
        const nnft_f4* row = sp + ln * ROW;
        for (int ii0 = 0; ii0 < TILE; ii0 += FLUSH) {
            #pragma unroll 4
            for (int ii = 0; ii < FLUSH; ++ii) {
                float p[NNFT_PS];
                #pragma unroll
                for (int t = 0; t < PQ; ++t) {
                    const nnft_f4 f = row[(ii0 + ii) * PQ + t];
                    p[4 * t] = f.x; p[4 * t + 1] = f.y; p[4 * t + 2] = f.z; p[4 * t + 3] = f.w;
                }
                #pragma unroll
                for (int j = 0; j < SPT; ++j) {
#if ACT == 2
                    float z = p[D_IN] - sh[j];
#else
                    float z = p[D_IN];
#endif
                    #pragma unroll
                    for (int k = 0; k < D_IN; ++k) z = fmaf(p[k], x[j][k], z);
                    const float h = NNFT_ACT(z);
                    #pragma unroll
                    for (int a = 0; a < D_OUT; ++a) accf[a][j] = fmaf(p[D_IN + 1 + a], h, accf[a][j]);
                }
            }
            #pragma unroll
            for (int a = 0; a < D_OUT; ++a) {
                #pragma unroll
                for (int j = 0; j < SPT; ++j) { accd[a][j] += (double)accf[a][j]; accf[a][j] = 0.0f; }
            }
        }
    }

    if (m_local >= n) return;
    float gb[4 * NNFT_BS];
    #pragma unroll
    for (int s = 0; s < NNFT_BS; ++s)
        nnft_normals4(m_offset + (unsigned int)m_local, 0xFFFFFFFFu, (unsigned int)s, key0, key1,
                      gb + 4 * s);
    #pragma unroll
    for (int a = 0; a < D_OUT; ++a) {
        const float b1 = fmaf(sb1, gb[a], mb1);
        if (do_dump && blockIdx.y == 0 && sl == 0) dump_b1[(size_t)m_local * D_OUT + a] = b1;
        #pragma unroll
        for (int j = 0; j < SPT; ++j) {
            const int v = vbase + j * TPN;
            if (v < V) out[((size_t)m_local * D_OUT + a) * V + v] = (OUT_T)(accd[a][j] + (double)b1);
        }
    }
}
"""


def fused_config(V: int, d_in: int, d_out: int) -> dict:
    """Launch shape of the fused kernel for ``V`` sites (pure Python; see :func:`fused_source`).

    Small site sets (``V * D <= 24``): one thread per network holds all sites (``TPN = 1``,
    ``SPT = V``), 128 networks per block. Otherwise ``SPT = 8`` sites per thread (4 for D > 2),
    ``TPN = min(128, ceil(V/SPT))`` threads per network and as many networks per block as fit
    in 128 threads. ``TILE`` neurons' parameters (at least one set per thread, so that all warps
    share the generation) (``PQ`` float4 each) sit in shared memory
    (at most 32 KiB per block).
    """
    V, d_in, d_out = int(V), int(d_in), int(d_out)
    pq = -(-(d_in + 1 + d_out) // 4)
    if V * d_out <= 24:
        spt, tpn = V, 1
    else:
        spt = 8 if d_out <= 2 else 4
        tpn = min(128, -(-V // spt))
    npb = max(1, 128 // tpn)
    tile = 32
    while npb * tile < npb * tpn and tile < 128:  # every thread generates: no idle warps
        tile *= 2
    while tile > 4 and npb * (tile * pq + 1) * 16 > 32 * 1024:
        tile //= 2
    flush = min(tile, FUSED_FLUSH)
    return {"SPT": spt, "TPN": tpn, "NPB": npb, "TILE": tile, "PQ": pq, "FLUSH": flush,
            "block": npb * tpn, "sites_per_block": tpn * spt}


def fused_source(act: int, d_in: int, d_out: int, cfg: dict, out_dtype: str = "float64") -> str:
    """CUDA source of the fused kernel (defining it needs no device)."""
    from .philox import CUDA_SOURCE

    if out_dtype not in ("float64", "float32"):
        raise ValueError(f"out_dtype must be 'float64' or 'float32', got {out_dtype!r}")
    head = "".join(f"#define {k} {int(cfg[k])}\n" for k in ("SPT", "TPN", "NPB", "TILE", "PQ", "FLUSH"))
    head += (f"#define ACT {int(act)}\n#define D_IN {int(d_in)}\n#define D_OUT {int(d_out)}\n"
             f"#define OUT_T {'double' if out_dtype == 'float64' else 'float'}\n")
    return head + CUDA_SOURCE + _FUSED_SOURCE


@functools.lru_cache(maxsize=128)
def _fused_kernel(act, d_in, d_out, cfg_items, out_dtype):
    import cupy

    src = fused_source(act, d_in, d_out, dict(cfg_items), out_dtype)
    return cupy.RawKernel(src, "nnft_fused_single_layer", options=("--std=c++14",))


def fused_supported(spec) -> bool:
    """True for the specs the fused path evaluates (GaussNet, ErfNet, ReLUNet, TanhNet)."""
    return type(spec).__name__ in FUSED_ACTIVATIONS


def fused_single_layer_cuda(spec, lattice_or_X, key, n: int, *, offset: int = 0,
                            out_dtype: str = "float64", dump: bool = False, out=None):
    """Fused in-kernel-RNG evaluation of ``n`` networks of ``spec`` (GPU); returns (n, D, V).

    Parameters are never stored: the kernel derives them from Philox4x32-10 with ``key`` and
    counter ``(offset + m, i, s, 0)`` (stream layout: ``ensembles.philox``), keeps a tile of
    neurons in shared memory and accumulates in float32 over ``FUSED_FLUSH`` neurons, then in
    float64. With ``dump=True`` also returns the parameters it generated,
    ``(out, {"W0", "b0", "W1", "b1"})`` as float32 CuPy arrays in ``draw_params`` layout.
    """
    import cupy

    from .evaluate import gauss_shift

    if not fused_supported(spec):
        raise ValueError(f"method='fused' supports GaussNet, ErfNet, ReLUNet and TanhNet, not "
                         f"{type(spec).__name__}")
    if hasattr(lattice_or_X, "positions"):
        X = np.asarray(lattice_or_X.positions(np), dtype=np.float64)
    else:
        X = np.asarray(cupy.asnumpy(lattice_or_X) if not isinstance(lattice_or_X, np.ndarray)
                       else lattice_or_X, dtype=np.float64)
    V, d = X.shape
    if d != spec.d_in:
        raise ValueError(f"{type(spec).__name__}.d_in: is {spec.d_in} but the sites have dimension {d}")
    n, N, D = int(n), int(spec.width), int(spec.n_components)
    if n < 1 or offset < 0 or offset + n > 2 ** 32:
        raise ValueError(f"n/offset: need n >= 1 and offset + n <= 2**32, got n={n}, offset={offset}")
    if N >= 2 ** 31 - 1:
        raise ValueError(f"{type(spec).__name__}.width too large for the fused kernel: {N}")
    act = FUSED_ACTIVATIONS[type(spec).__name__]
    cfg = fused_config(V, d, D)
    kern = _fused_kernel(act, d, D, tuple(sorted(cfg.items())), out_dtype)
    XT = cupy.asarray(np.ascontiguousarray(X.T), dtype=cupy.float32)
    if act == 2:
        sh = cupy.asarray(np.asarray(gauss_shift(spec, X, np)) * LOG2E, dtype=cupy.float32)
    else:
        sh = cupy.zeros(1, dtype=cupy.float32)
    if out is None:
        out = cupy.empty((n, D, V), dtype=out_dtype)
    elif out.shape != (n, D, V) or out.dtype != np.dtype(out_dtype) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {out_dtype} array of shape {(n, D, V)}")
    ps = 4 * cfg["PQ"]
    if dump:
        dp = cupy.full((n, N, ps), np.nan, dtype=cupy.float32)
        db = cupy.full((n, D), np.nan, dtype=cupy.float32)
    else:
        dp = db = cupy.zeros(1, dtype=cupy.float32)
    s0 = spec.sigma_w / math.sqrt(d)
    s1 = spec.sigma_w / math.sqrt(N)
    f32 = np.float32
    grid = (-(-n // cfg["NPB"]), -(-V // cfg["sites_per_block"]))
    if grid[1] > 65535:
        raise ValueError(f"too many sites for the fused kernel: V={V}")
    kern(grid, (cfg["block"],),
         (XT, sh, out, dp, db, np.uint32(int(key[0]) & 0xFFFFFFFF),
          np.uint32(int(key[1]) & 0xFFFFFFFF), np.int32(n), np.int32(N), np.int32(V),
          np.uint32(offset), np.int32(bool(dump)), f32(s0), f32(spec.mu_w0), f32(spec.sigma_b),
          f32(spec.mu_b0), f32(s1), f32(spec.mu_w1), f32(spec.sigma_b), f32(spec.mu_b1)))
    if not dump:
        return out
    params = {"W0": dp[:, :, :d], "b0": dp[:, :, d], "W1": dp[:, :, d + 1:d + 1 + D].transpose(0, 2, 1),
              "b1": db}
    return out, params
