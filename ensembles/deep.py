"""Exact finite-width correlators of deep LINEAR networks (DeepMLP with the identity activation).

Layer l of a DeepMLP is ``z^{l+1} = W^{l+1} z^l + b^{l+1}`` with ``W ~ N(0, sigma_w^2/n_l)``,
``b ~ N(0, sigma_b^2)``. Given layer l, the n_{l+1} units of layer l+1 are i.i.d. Gaussian with
the *empirical* kernel

    Kh^l(x, y) = sigma_b^2 + (sigma_w^2/n_l) sum_j z^l_j(x) z^l_j(y),   Kh^0 = K^0 (inputs),

so the output is a Gaussian with a random covariance ``Kh^L`` and, exactly at every width,

    G2 = E[Kh^L],   G4c(x1..x4) = sum_3 Cov(Kh^L(x_i, x_j), Kh^L(x_k, x_l)).

For a linear activation the mean and the covariance of ``Kh`` close under the layer map:

    E^l = sigma_b^2 + sigma_w^2 E^{l-1},
    C^l_{ab,cd} = sigma_w^4 [ C^{l-1}_{ab,cd} + (E_ac E_bd + E_ad E_bc + C_{ac,bd} + C_{ad,bc})^{l-1} / n ],

with ``C^0 = 0`` (the first hidden layer's units are exactly Gaussian). This is exact, not a
1/N expansion.

For deep *nonlinear* nets the kernel's fluctuations do not close; at leading order in 1/N they
obey the four-point-vertex recursion of Yaida (2019) / Roberts, Yaida, Hanin (2021),
:func:`deep_leading_connected`: the mean follows the GP recursion and

    C^l = (sigma_w^4/n) (<s s s s> - <s s><s s>)_{E^{l-1}} + Jac C^{l-1} Jac^T,
    Jac = dF/dK at E^{l-1},  F(K) = sigma_b^2 + sigma_w^2 <s s>_K,

with Gaussian expectations by Gauss-Hermite quadrature (sub-covariances of at most 4 sites) and
the Jacobian by central differences of the kernel map. The neglected terms are O(1/N^2); the
2-point function's own 1/N shift is not computed (it does not enter G4c at this order).
"""
from __future__ import annotations

import numpy as np

from .specs import DeepMLP

LINEAR = ("identity", "x", "linear")
#: largest number of sites (the covariance tensor has V^4 entries)
MAX_SITES = 48


def _positions(geometry):
    if hasattr(geometry, "positions") and callable(geometry.positions):
        return np.asarray(geometry.positions(np), dtype=np.float64)
    X = np.asarray(geometry, dtype=np.float64)
    return X[:, None] if X.ndim == 1 else X


def deep_linear_kernel_moments(spec: DeepMLP, geometry):
    """Mean ``E^L`` (V, V) and covariance ``C^L`` (V, V, V, V) of the output's empirical kernel."""
    X = _positions(geometry)
    V = X.shape[0]
    if V > MAX_SITES:
        raise ValueError(f"geometry: deep linear theory supports at most {MAX_SITES} sites, got {V}")
    sw2, sb2, n = spec.sigma_w ** 2, spec.sigma_b ** 2, spec.width
    Em = sb2 + sw2 * (X @ X.T) / X.shape[1]
    C = np.zeros((V,) * 4)
    for _ in range(spec.depth):
        EE = np.einsum("ac,bd->abcd", Em, Em) + np.einsum("ad,bc->abcd", Em, Em)
        Cx = np.einsum("acbd->abcd", C) + np.einsum("adbc->abcd", C)
        C = sw2 ** 2 * (C + (EE + Cx) / n)
        Em = sb2 + sw2 * Em
    return Em, C


def deep_linear_connected(spec: DeepMLP, geometry, tuples):
    """Exact connected 2- and 4-point functions of a deep linear DeepMLP at its width.

    Returns ``(values, "closed form")``, or ``(None, None)`` when the spec is not a zero-mean deep
    linear net or the order is not 2 or 4 (odd orders vanish: zeros).
    """
    if not isinstance(spec, DeepMLP) or spec.activation not in LINEAR or spec.has_means:
        return None, None
    X = _positions(geometry)
    V, D = X.shape[0], spec.n_components
    arr = np.asarray(tuples, dtype=np.int64)
    if arr.ndim != 2:
        raise ValueError("tuples: expected an int array (n_tuples, r)")
    if arr.size and (arr.min() < 0 or arr.max() >= V * D):
        raise ValueError(f"tuples: site indices must lie in [0, {V * D})")
    r = arr.shape[1]
    if r % 2:
        return np.zeros(len(arr)), "closed form"
    if r not in (2, 4):
        return None, None
    Em, C = deep_linear_kernel_moments(spec, geometry)
    v, a = arr % V, arr // V
    if r == 2:
        return np.where(a[:, 0] == a[:, 1], Em[v[:, 0], v[:, 1]], 0.0), "closed form"
    out = np.zeros(len(arr))
    for (i, j), (k, l) in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        same = (a[:, i] == a[:, j]) & (a[:, k] == a[:, l])
        out += np.where(same, C[v[:, i], v[:, j], v[:, k], v[:, l]], 0.0)
    return out, "closed form"


__all__ = ["deep_linear_connected", "deep_linear_kernel_moments"]


# ---------------------------------------------------------------------------------------------
# deep nonlinear networks: the leading 1/N term (Yaida 2019; Roberts, Yaida, Hanin 2021)
# ---------------------------------------------------------------------------------------------
def _gauss_four(activation, E, n_nodes):
    """T4[a,b,c,d] = <s(z_a) s(z_b) s(z_c) s(z_d)> for z ~ N(0, E), all quadruples of sites.

    Each quadruple touches k <= 4 distinct sites: a k-dimensional Gauss-Hermite rule on the
    eigen-decomposed sub-covariance."""
    import itertools

    from .activations import compile_activation

    act = compile_activation(activation, np)
    V = E.shape[0]
    z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    w = w / np.sqrt(2 * np.pi)
    T4 = np.zeros((V,) * 4)
    rules = {}
    for quad in itertools.combinations_with_replacement(range(V), 4):
        sites, mult = np.unique(quad, return_counts=True)
        k = len(sites)
        if k not in rules:
            grids = np.meshgrid(*([z] * k), indexing="ij")
            U = np.stack([g.ravel() for g in grids], 1)
            W = np.ones(U.shape[0])
            for g in np.meshgrid(*([w] * k), indexing="ij"):
                W = W * g.ravel()
            rules[k] = (U, W)
        U, W = rules[k]
        ev, vec = np.linalg.eigh(E[np.ix_(sites, sites)])
        L = vec * np.sqrt(np.clip(ev, 0, None))
        Z = U @ L.T  # (Q, k)
        val = W @ np.prod(act(Z.copy()) ** mult, axis=1)
        for p in set(itertools.permutations(quad)):
            T4[p] = val
    return T4


def _kernel_jacobian(activation, E, sigma_w, sigma_b, h=1e-6):
    """Jac[a,b,e,f] = dF_ab/dK_ef over ordered pairs (e,f) (half the symmetric derivative off
    the diagonal), F(K) = sigma_b^2 + sigma_w^2 <s s>_K, by central differences."""
    from .kernels import _step

    V = E.shape[0]
    Jac = np.zeros((V,) * 4)
    for e in range(V):
        for f in range(e, V):
            d = np.zeros((V, V))
            d[e, f] = d[f, e] = h * max(1.0, abs(E[e, f]))
            dF = (_step(activation, E + d, sigma_w, sigma_b)
                  - _step(activation, E - d, sigma_w, sigma_b)) / (2 * d[e, f])
            if e == f:
                Jac[:, :, e, e] = dF
            else:
                Jac[:, :, e, f] = Jac[:, :, f, e] = 0.5 * dF
    return Jac


def deep_leading_kernel_moments(spec: DeepMLP, geometry, n_nodes: int = 16):
    """Leading-order mean ``E^L`` and covariance ``C^L`` (order 1/N) of the output's kernel.

    ``E^l = F(E^{l-1})``, ``C^l = (sigma_w^4/n) (<s s s s> - <s s><s s>)_{E^{l-1}}
    + Jac C^{l-1} Jac^T`` with ``Jac = dF/dK`` at ``E^{l-1}``: the recursion of the four-point
    vertex of Yaida (2019) / Roberts, Yaida, Hanin (2021) at leading order in 1/N. For a linear
    activation it agrees with :func:`deep_linear_kernel_moments` up to O(1/N^2).
    """
    X = _positions(geometry)
    V = X.shape[0]
    if V > 12:
        raise ValueError(f"geometry: the leading-order deep theory supports at most 12 sites, got {V}")
    from .kernels import _step

    sw, sb, n, act = spec.sigma_w, spec.sigma_b, spec.width, spec.activation
    E = sb ** 2 + sw ** 2 * (X @ X.T) / X.shape[1]
    C = np.zeros((V,) * 4)
    for _ in range(spec.depth):
        F = _step(act, E, sw, sb)
        T2 = (F - sb ** 2) / sw ** 2
        T4 = _gauss_four(act, E, n_nodes)
        noise = sw ** 4 / n * (T4 - np.einsum("ab,cd->abcd", T2, T2))
        if np.any(C):
            Jac = _kernel_jacobian(act, E, sw, sb)
            C = noise + np.einsum("abef,cdgh,efgh->abcd", Jac, Jac, C, optimize=True)
        else:
            C = noise
        E = F
    return E, C


def deep_leading_connected(spec: DeepMLP, geometry, tuples, n_nodes: int = 16):
    """Leading 1/N connected 4-point of a deep nonlinear DeepMLP (zero means, D = 1).

    ``G4c = sum_3 C^L`` from :func:`deep_leading_kernel_moments`; the neglected terms are
    O(1/N^2). Returns ``(values, "leading 1/N (quadrature err <= e)")`` with ``e`` the change
    under a coarser rule; ``(None, None)`` for orders other than 4 or non-zero means.
    """
    if not isinstance(spec, DeepMLP) or spec.has_means or spec.n_components != 1:
        return None, None
    arr = np.asarray(tuples, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        return None, None
    V = _positions(geometry).shape[0]
    if arr.min() < 0 or arr.max() >= V:
        raise ValueError(f"tuples: site indices must lie in [0, {V})")

    def value(nn):
        _, C = deep_leading_kernel_moments(spec, geometry, nn)
        a, b, c, d = arr.T
        return C[a, b, c, d] + C[a, c, b, d] + C[a, d, b, c]

    v = value(n_nodes)
    err = float(np.max(np.abs(v - value(max(8, (2 * n_nodes) // 3)))))
    return v, f"leading 1/N (quadrature err <= {err:.1e})"


__all__ += ["deep_leading_connected", "deep_leading_kernel_moments"]


def _register():
    from .exact import CONNECTED_THEORIES

    CONNECTED_THEORIES[DeepMLP] = deep_linear_connected


_register()
