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
1/N expansion. For deep *nonlinear* nets the kernel's fluctuations do not close (they need all
moments of the activation under a random Gaussian); nnft offers Monte Carlo only there (the
leading 1/N term of Yaida (2019) / Roberts, Yaida, Hanin (2021) is not implemented).
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
