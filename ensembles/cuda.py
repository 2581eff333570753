"""CuPy kernels of the generation engine (GPU path).

- :func:`single_layer_cuda`: one fused RawKernel for single-hidden-layer nets and direct cos-nets.
  One thread per (network, site) loops over the N neurons, computing
  ``act(W0_i . x + b0_i - shift)`` in registers and accumulating the D outputs: the
  (networks, neurons, sites) tensor is never materialised. The activation is compiled in from its
  expression (``activations.cuda_expression``), so user activations run fused too.
- :func:`deep_cuda`: deep MLPs by batched matmul per layer (cuBLAS) with a fused elementwise
  activation kernel, blocked over networks as in the NumPy path.
- LatticeCosNet uses the array-API spectral path (``spectral.py``: ``bincount`` + cuFFT).

Every kernel has a NumPy reference (``evaluate.dense_single_layer`` / ``dense_deep``) and a
``@pytest.mark.gpu`` test comparing them on the same parameters. Defining kernels needs no device;
calling them does. ``cupy`` is imported lazily, never at module import.
"""
from __future__ import annotations

import functools

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

    block = _check_block(block)
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
