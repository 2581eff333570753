"""Closed-form (and quadrature) two-point functions of the network ensembles.

``gp_kernel(spec, geometry)`` returns the (V, V) two-point matrix ``E[f(x) f(x')]`` over the
sites of a Lattice / PointSet (or an explicit ``(V, d)`` positions array), per component
(components are identically distributed and uncorrelated). Conventions: docs/conventions.md.

- GaussNet, ErfNet, ReLUNet: closed forms; TanhNet / ActivationNet: 2D Gauss-Hermite quadrature of
  ``E[sigma(u) sigma(v)]`` (accurate to ~1e-12 for smooth activations, ~1e-3 for activations
  with kinks such as user expressions with ``maximum``; relu and erf use their closed forms).
- DeepMLP: the layer recursion ``K^{l+1} = sigma_b^2 + sigma_w^2 E[sigma(z) sigma(z')]`` starting
  from ``K^0 = sigma_b^2 + sigma_w^2 x.x'/d_in`` (closed-form steps for relu and erf).
- CorrelatedNet: the exact two-point function at the spec's width,
  ``sigma_b^2 + sigma_w^2 (E[h h'] + rho (N - 1) E[h] E[h'])``.
- ScaleMixtureNet, MassMixtureCosNet: the exact two-point function of ``ensembles.exact`` (the
  uncorrelated kernel, since ``E s^2 = 1``; the mixture of the two lattice propagators).
- GaussianCosNet: ``(s^2/2) exp(-sigma_w^2 r^2/(2 d))``; ContinuumCosNet: the cut-off continuum
  propagator by radial quadrature; LatticeCosNet: the exact lattice propagator.

For the cos-nets and the single-layer nets these are exact at every width, not only as N -> inf.
Nets with non-zero parameter means have no kernel here (ValueError).

:func:`neuron_moment` gives the single-neuron moments ``E_k = E[h(x_1) ... h(x_k)]`` that enter the
finite-width cumulants of docs/conventions.md.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .activations import compile_activation, is_odd
from .specs import (ActivationNet, ContinuumCosNet, CorrelatedNet, DeepMLP, ErfNet, GaussianCosNet,
                    GaussNet, LatticeCosNet, MassMixtureCosNet, ReLUNet, ScaleMixtureNet, Spec,
                    TanhNet, _SingleLayer)


# -- geometry helpers ---------------------------------------------------------------------------
def _positions(geometry) -> np.ndarray:
    if hasattr(geometry, "positions") and callable(geometry.positions):
        X = np.asarray(geometry.positions(np), dtype=np.float64)
    else:
        X = np.asarray(geometry, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"positions must have shape (V, d), got {X.shape}")
    return X


def _out(K, xp):
    return K if xp is np else xp.asarray(K)


# -- elementary kernels ---------------------------------------------------------------------
def k0_matrix(X, Y, sigma_w: float, sigma_b: float) -> np.ndarray:
    """Input-layer kernel ``K0(x, y) = sigma_b^2 + sigma_w^2 x.y/d_in`` for rows of X and Y."""
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    return sigma_b ** 2 + sigma_w ** 2 * (X @ Y.T) / X.shape[1]


def gauss_kernel(X, Y, sigma_w: float, sigma_b: float) -> np.ndarray:
    """Gauss-net kernel ``sigma_b^2 + sigma_w^2 exp(-sigma_w^2 |x - y|^2/(2 d_in))``."""
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    r2 = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    return sigma_b ** 2 + sigma_w ** 2 * np.exp(-sigma_w ** 2 * r2 / (2 * X.shape[1]))


def erf_expectation(Kxy, Kxx, Kyy):
    """``E[erf(u) erf(v)]`` for a centred Gaussian pair with the given (co)variances."""
    return (2 / np.pi) * np.arcsin(np.clip(2 * Kxy / np.sqrt((1 + 2 * Kxx) * (1 + 2 * Kyy)), -1, 1))


def relu_expectation(Kxy, Kxx, Kyy):
    """``E[relu(u) relu(v)] = sqrt(Kxx Kyy)/(2 pi) (sin t + (pi - t) cos t)``, cos t = correlation."""
    nrm = np.sqrt(Kxx * Kyy)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(nrm > 0, Kxy / np.where(nrm > 0, nrm, 1.0), 1.0)
    c = np.clip(c, -1.0, 1.0)
    t = np.arccos(c)
    return nrm / (2 * np.pi) * (np.sin(t) + (np.pi - t) * c)


def _gh(n):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / np.sqrt(2 * np.pi)


def quadrature_expectation(activation: str, Kxy, Kxx, Kyy, n_nodes: int = 64):
    """``E[sigma(u) sigma(v)]`` for a centred Gaussian pair by 2D Gauss-Hermite quadrature."""
    act = compile_activation(activation, np)
    Kxy, Kxx, Kyy = np.broadcast_arrays(*(np.asarray(a, float) for a in (Kxy, Kxx, Kyy)))
    shape = Kxy.shape
    Kxy, Kxx, Kyy = Kxy.ravel(), Kxx.ravel(), Kyy.ravel()
    z, w = _gh(n_nodes)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    W = np.outer(w, w).ravel()
    z1, z2 = z1.ravel(), z2.ravel()
    sx, sy = np.sqrt(np.maximum(Kxx, 0)), np.sqrt(np.maximum(Kyy, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(sx * sy > 0, Kxy / np.where(sx * sy > 0, sx * sy, 1.0), 0.0)
    rho = np.clip(rho, -1, 1)
    out = np.empty(Kxy.shape)
    step = max(1, 2 ** 20 // z1.size)
    for s in range(0, Kxy.size, step):
        sl = slice(s, s + step)
        u = sx[sl, None] * z1
        v = sy[sl, None] * (rho[sl, None] * z1 + np.sqrt(1 - rho[sl, None] ** 2) * z2)
        out[sl] = (act(u.copy()) * act(v.copy())) @ W
    return out.reshape(shape)


def _step(activation: str, K, sigma_w, sigma_b):
    """One layer of the GP recursion on a full symmetric matrix K."""
    d = np.diag(K)
    Kxx, Kyy = d[:, None], d[None, :]
    if activation == "relu":
        E = relu_expectation(K, Kxx, Kyy)
    elif activation == "erf":
        E = erf_expectation(K, Kxx, Kyy)
    else:
        iu = np.triu_indices(K.shape[0])
        vals = quadrature_expectation(activation, K[iu], d[iu[0]], d[iu[1]])
        E = np.empty_like(K)
        E[iu] = vals
        E[(iu[1], iu[0])] = vals
    return sigma_b ** 2 + sigma_w ** 2 * E


def deep_kernel(X, activation: str, depth: int, sigma_w: float, sigma_b: float) -> np.ndarray:
    """GP kernel of a depth-``depth`` MLP by the layer recursion (docs/conventions.md)."""
    K = k0_matrix(X, X, sigma_w, sigma_b)
    for _ in range(depth):
        K = _step(activation, K, sigma_w, sigma_b)
    return K


def _composite_legendre(a, b, panels, order=16):
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()


def continuum_propagator(r, d: int, m2: float, cutoff: float, panels: int = 256):
    """``int_{|p|<cutoff} d^dp/(2 pi)^d exp(i p.r)/(p^2 + m2)`` as a function of ``|r|``.

    Radial composite Gauss-Legendre quadrature (``panels`` x 16 nodes) of ``S_{d-1}/(2 pi)^d p^{d-1}/(p^2+m2) Omega_d(p r)`` with
    ``Omega_d(z) = Gamma(d/2) (2/z)^{d/2-1} J_{d/2-1}(z)`` the angular average of ``exp(i p.r)``.
    """
    r = np.asarray(r, float)
    p, w = _composite_legendre(0.0, cutoff, panels)
    S = 2 * np.pi ** (d / 2) / math.gamma(d / 2)
    radial = S / (2 * np.pi) ** d * p ** (d - 1) / (p ** 2 + m2) * w
    z = np.multiply.outer(r.ravel(), p)
    nu = d / 2 - 1
    if d == 1:
        omega = np.cos(z)
    elif d == 3:
        omega = np.sinc(z / np.pi)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            omega = math.gamma(d / 2) * (2 / z) ** nu * special.jv(nu, z)
        omega = np.where(z == 0, 1.0, omega)
    return (omega @ radial).reshape(r.shape)


def lattice_displacement_index(lattice) -> np.ndarray:
    """(V, V) flat index of the periodic displacement ``n_x - n_y`` between sites (C order)."""
    shape = lattice.shape
    n = np.indices(shape).reshape(len(shape), -1)
    diff = (n[:, :, None] - n[:, None, :]) % np.asarray(shape)[:, None, None]
    return np.ravel_multi_index(tuple(diff), shape)


# -- single-neuron moments ------------------------------------------------------------------------
def neuron_moment(spec: Spec, points, n_nodes: int | None = None) -> float:
    """``E_k = E[h(x_1) ... h(x_k)]`` of one hidden neuron of a single-layer net (or cos-net).

    Parameters
    ----------
    spec : GaussNet, ErfNet, ReLUNet, TanhNet, ActivationNet or CorrelatedNet
    points : array (k, d_in)
        The k input points (repeat a point to raise its power).
    n_nodes : int, optional
        Gauss-Hermite nodes per dimension (default 96 in 2D, 40 in 3D, 16 above).

    Notes
    -----
    ``z_k = W0 . x_k + b0`` is Gaussian; GaussNet moments are closed form; ReLU without means in
    d_in = 1 uses the exact polar reduction (positive homogeneity); everything else integrates the
    (d_in + 1)-dimensional Gaussian by tensor Gauss-Hermite quadrature.
    """
    X = np.asarray(points, float)
    if X.ndim == 1:
        X = X[:, None]
    if not isinstance(spec, _SingleLayer):
        raise ValueError(f"neuron_moment: spec must be a single-layer net, got {type(spec).__name__}")
    if X.shape[1] != spec.d_in:
        raise ValueError(f"points: dimension {X.shape[1]} does not match spec.d_in={spec.d_in}")
    d = spec.d_in
    sw, sb = spec.sigma_w, spec.sigma_b
    A = np.concatenate([sw * X / np.sqrt(d), np.full((len(X), 1), sb)], axis=1)  # z = mu + A u
    mu = spec.mu_w0 * X.sum(1) + spec.mu_b0
    k = len(X)
    if isinstance(spec, GaussNet):
        norm = sb ** 2 + sw ** 2 * (X ** 2).sum(1) / d
        s = A.sum(0)
        return float(np.exp(mu.sum() + 0.5 * s @ s - norm.sum()))
    act = spec.activation_expr
    if act == "relu" and d == 1 and not np.any(mu):
        # z_k = r (A_k . (cos t, sin t)); E[r^k] for the 2D Rayleigh radius.
        er = 2 ** (k / 2) * math.gamma(1 + k / 2)
        kinks = []
        for a in A:
            t0 = math.atan2(-a[0], a[1])  # a.(cos t, sin t) = 0
            kinks += [t0 % (2 * np.pi), (t0 + np.pi) % (2 * np.pi)]
        edges = np.unique(np.concatenate([[0.0, 2 * np.pi], kinks]))
        gx, gw = np.polynomial.legendre.leggauss(64)
        total = 0.0
        for lo, hi in zip(edges[:-1], edges[1:]):
            t = 0.5 * (hi - lo) * (gx + 1) + lo
            u = np.stack([np.cos(t), np.sin(t)])
            vals = np.prod(np.maximum(A @ u, 0.0), axis=0)
            total += 0.5 * (hi - lo) * (gw @ vals)
        return float(er * total / (2 * np.pi))
    f = compile_activation(act, np)
    dim = d + 1
    n = n_nodes or {2: 96, 3: 40}.get(dim, 16)
    z, w = _gh(n)
    grids = np.meshgrid(*([z] * dim), indexing="ij")
    U = np.stack([g.ravel() for g in grids])
    W = np.ones(U.shape[1])
    for wg in np.meshgrid(*([w] * dim), indexing="ij"):
        W = W * wg.ravel()
    prod = np.ones(U.shape[1])
    for a, m in zip(A, mu):
        prod = prod * f(m + a @ U)
    return float(prod @ W)


# -- the public entry point ---------------------------------------------------------------------
def gp_kernel(spec: Spec, lattice, xp=np):
    """Two-point matrix ``E[f(x) f(x')]`` of ``spec`` over the sites of ``lattice``.

    Parameters
    ----------
    spec : Spec
        Any architecture with a known kernel (see the module docstring).
    lattice : Lattice, PointSet or array (V, d)
        Sites, in the C order of ``lattice.positions()``. LatticeCosNet needs a periodic Lattice.
    xp : module
        Array module of the result (the computation runs in NumPy float64).

    Returns
    -------
    array (V, V)
        Per component; components are identically distributed and uncorrelated.

    Raises
    ------
    ValueError
        Dimension mismatch, non-zero parameter means, or an architecture without a kernel.
    """
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be an nnft.ensembles spec, got {spec!r}")
    if isinstance(spec, (MassMixtureCosNet, ScaleMixtureNet)):
        # correlated families: the exact two-point function (ensembles.exact)
        from .exact import exact_two_point

        return _out(exact_two_point(spec, lattice), xp)
    if isinstance(spec, LatticeCosNet):
        spec.check_geometry(lattice)
        from nnft.lattice import free_propagator

        G = np.asarray(free_propagator(lattice, spec.m2, np)).ravel()
        return _out(G[lattice_displacement_index(lattice)], xp)
    X = _positions(lattice)
    d_in = getattr(spec, "d_in", None)
    if d_in is not None and X.shape[1] != d_in:
        raise ValueError(f"{type(spec).__name__}.d_in: is {d_in} but the positions have "
                         f"dimension {X.shape[1]}")
    if getattr(spec, "has_means", False):
        raise ValueError(f"{type(spec).__name__}: gp_kernel is defined for zero parameter means "
                         "(mu_* = 0) only")
    own = getattr(spec, "kernel_matrix", None)  # plug-in architectures (ensembles/architectures)
    if own is not None:
        return _out(np.asarray(own(X), dtype=float), xp)
    if isinstance(spec, GaussianCosNet):
        r2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        K = 0.5 * spec.s ** 2 * np.exp(-spec.sigma_w ** 2 * r2 / (2 * spec.d_in))
        return _out(K, xp)
    if isinstance(spec, ContinuumCosNet):
        r = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
        ru, inv = np.unique(np.round(r, 12), return_inverse=True)
        vals = continuum_propagator(ru, spec.d_in, spec.m2, spec.cutoff)
        return _out(vals[inv].reshape(r.shape), xp)
    if isinstance(spec, DeepMLP):
        return _out(deep_kernel(X, spec.activation, spec.depth, spec.sigma_w, spec.sigma_b), xp)
    if isinstance(spec, GaussNet):
        return _out(gauss_kernel(X, X, spec.sigma_w, spec.sigma_b), xp)
    if isinstance(spec, (ErfNet, ReLUNet, TanhNet, ActivationNet, CorrelatedNet)):
        K = _step(spec.activation_expr, k0_matrix(X, X, spec.sigma_w, spec.sigma_b),
                  spec.sigma_w, spec.sigma_b)
        if isinstance(spec, CorrelatedNet) and spec.rho > 0 and not is_odd(spec.activation):
            m = np.array([neuron_moment(spec, x[None, :]) for x in X])
            K = K + spec.sigma_w ** 2 * spec.rho * (spec.width - 1) * np.outer(m, m)
        return _out(K, xp)
    raise ValueError(f"gp_kernel: no kernel known for {type(spec).__name__}")


__all__ = ["gp_kernel", "neuron_moment", "k0_matrix", "gauss_kernel", "erf_expectation",
           "relu_expectation", "quadrature_expectation", "deep_kernel", "continuum_propagator",
           "lattice_displacement_index"]
