"""Drawing the parameters of a chunk of networks (one fixed order per architecture).

``draw_params(spec, lattice, n, rng, xp)`` draws every parameter of ``n`` networks from the
generator ``rng`` in a fixed order, all at once, before any evaluation: the fields made from them
therefore do not depend on how the evaluation is blocked. The returned dict holds arrays on the
backend of ``xp`` (parameters are drawn on the device with CuPy).

Orders (g = standard normal, u = uniform [0, 1); shapes with n networks, N neurons, D components):

- single layer: ``W0 g(n,N,d)``, ``b0 g(n,N)``, ``W1 g(n,D,N)``, ``b1 g(n,D)`` [, ``eta g(n,D)``
  for CorrelatedNet] [, ``s^2 gamma(n)`` for ScaleMixtureNet]
- DeepMLP: for each hidden layer ``W g(n,width,n_prev)``, ``b g(n,width)``; then ``W g(n,D,width)``,
  ``b g(n,D)``
- GaussianCosNet: ``w g(n,N,d)``, ``c u(n,N)``, amplitudes
- ContinuumCosNet: direction ``g(n,N,d)``, radius ``u(n,N)``, ``c u(n,N)``, amplitudes
- LatticeCosNet: momentum ``u(n,N)`` (Walker alias table over the C-ordered momenta, one uniform
  per draw: integer part of ``u V`` picks the column, the fraction accepts it or its alias),
  ``c u(n,N)``, amplitudes
- MassMixtureCosNet: mass choice ``u(n)``, momentum ``u(n,N)``, ``c u(n,N)``, unit amplitudes
- amplitudes: Gaussian ``g(n,D,N)``; constant: nothing for D = 1, else ``g(n,D,N)`` normalised over D.
"""
from __future__ import annotations

import math

import numpy as np

from .specs import (ContinuumCosNet, CorrelatedNet, DeepMLP, GaussianCosNet, LatticeCosNet,
                    MassMixtureCosNet, ScaleMixtureNet, Spec, _SingleLayer)

F64 = np.float64


def _g(rng, shape, xp):
    return rng.standard_normal(shape, dtype=xp.float64)


def _normal(rng, shape, xp, mu, sigma):
    """mu + sigma * g, computed in place."""
    a = rng.standard_normal(shape, dtype=xp.float64)
    if sigma != 1.0:
        a *= sigma
    if mu != 0.0:
        a += mu
    return a


def _u(rng, shape, xp):
    return rng.random(shape, dtype=xp.float64)


def _phases(rng, n, N, xp):
    return math.pi * (2.0 * _u(rng, (n, N), xp) - 1.0)


def _amplitudes(rng, n, N, D, kind, s, xp):
    """(n, D, N) amplitudes with E a^2 = s^2/N per component (see specs module docstring)."""
    if kind == "gaussian":
        return (s / math.sqrt(N)) * _g(rng, (n, D, N), xp)
    if D == 1:
        return xp.full((n, 1, N), s / math.sqrt(N), dtype=xp.float64)
    v = _g(rng, (n, D, N), xp)
    v /= xp.sqrt((v * v).sum(axis=1, keepdims=True))
    return (s * math.sqrt(D / N)) * v


def _radial_cdf(r, d, m, xp=np):
    """``I_d(r) = int_0^r t^{d-1}/(t^2 + m^2) dt`` (elementwise, NumPy or CuPy)."""
    if d == 1:
        return xp.arctan(r / m) / m
    if d == 2:
        return 0.5 * xp.log1p((r / m) ** 2)
    return r ** (d - 2) / (d - 2) - m * m * _radial_cdf(r, d - 2, m, xp)


def continuum_norm(spec: ContinuumCosNet) -> float:
    """Amplitude scale of a ContinuumCosNet: ``A`` (form "amplitude") or ``s`` (form "density")."""
    d, lam, m = spec.d_in, spec.cutoff, math.sqrt(spec.m2)
    if spec.form == "amplitude":
        vball = math.pi ** (d / 2) * lam ** d / math.gamma(d / 2 + 1)
        return math.sqrt(2 * vball / (2 * math.pi) ** d)
    S = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
    Z = S * float(_radial_cdf(np.float64(lam), d, m))
    return math.sqrt(2 * Z / (2 * math.pi) ** d)


def _inverse_radial_cdf(u, d, m, lam, xp):
    """Radii with density proportional to r^{d-1}/(r^2 + m^2) on [0, lam], by inversion of u."""
    total = float(_radial_cdf(np.float64(lam), d, m))
    t = u * total
    if d == 1:
        return m * xp.tan(t * m)
    if d == 2:
        return m * xp.sqrt(xp.expm1(2 * t))
    grid = xp.linspace(0.0, lam, 4097)
    cdf = _radial_cdf(grid, d, m, xp)
    r = xp.interp(t, cdf, grid)
    for _ in range(4):  # Newton polish: F'(r) = r^{d-1}/(r^2+m^2)
        f = _radial_cdf(r, d, m, xp) - t
        fp = r ** (d - 1) / (r * r + m * m)
        r = xp.clip(r - f / xp.where(fp > 0, fp, 1.0), 0.0, lam)
    return r


def alias_table(prob: np.ndarray):
    """Walker/Vose alias table of a discrete distribution (built on the host in float64).

    Returns ``(accept, alias)``: draw ``j = floor(u V)``, ``f = u V - j``; the outcome is ``j`` if
    ``f < accept[j]`` else ``alias[j]``. One uniform per draw, O(1) per draw.
    """
    p = np.asarray(prob, dtype=np.float64)
    V = p.size
    q = p * (V / p.sum())
    accept = np.ones(V)
    alias = np.arange(V)
    small = [i for i in range(V) if q[i] < 1.0]
    large = [i for i in range(V) if q[i] >= 1.0]
    while small and large:
        s_, l_ = small.pop(), large.pop()
        accept[s_] = q[s_]
        alias[s_] = l_
        q[l_] = (q[l_] + q[s_]) - 1.0
        (small if q[l_] < 1.0 else large).append(l_)
    return accept, alias


_ALIAS_CACHE: dict = {}


def momentum_alias(lattice, m2, xp=np):
    """Alias table of the C-ordered lattice momenta with ``P(p) = Gt(p)/sum Gt``, and ``G(0)``."""
    from nnft.lattice import free_propagator_momentum

    key = (tuple(lattice.shape), lattice.spacing, float(m2))
    if key not in _ALIAS_CACHE:
        Gt = np.asarray(free_propagator_momentum(lattice, m2, np)).ravel()
        accept, alias = alias_table(Gt)
        if len(_ALIAS_CACHE) > 32:
            _ALIAS_CACHE.clear()
        _ALIAS_CACHE[key] = (accept, alias, float(Gt.mean()))
    accept, alias, G0 = _ALIAS_CACHE[key]
    return xp.asarray(accept), xp.asarray(alias), G0


def momentum_cdf(lattice, m2, xp=np):
    """Cumulative probabilities of the C-ordered lattice momenta, ``P(p) = Gt(p)/sum Gt`` , and G(0)."""
    from nnft.lattice import free_propagator_momentum

    Gt = xp.asarray(free_propagator_momentum(lattice, m2, xp)).ravel()
    tot = Gt.sum()
    cdf = xp.cumsum(Gt / tot)
    return cdf, float(tot) / Gt.size


def draw_params(spec: Spec, lattice, n: int, rng, xp=np) -> dict:
    """Draw the parameters of ``n`` networks of ``spec`` (see the module docstring for the order)."""
    D = spec.n_components
    if isinstance(spec, _SingleLayer):
        N, d = spec.width, spec.d_in
        p = {
            "W0": _normal(rng, (n, N, d), xp, spec.mu_w0, spec.sigma_w / math.sqrt(d)),
            "b0": _normal(rng, (n, N), xp, spec.mu_b0, spec.sigma_b),
        }
        xi = _g(rng, (n, D, N), xp)
        p["b1"] = _normal(rng, (n, D), xp, spec.mu_b1, spec.sigma_b)
        if isinstance(spec, CorrelatedNet):
            eta = _g(rng, (n, D), xp)
            xi *= math.sqrt(1.0 - spec.rho)
            xi += math.sqrt(spec.rho) * eta[:, :, None]
        if isinstance(spec, ScaleMixtureNet):
            s2 = rng.standard_gamma(spec.shape, (n,), dtype=xp.float64) / spec.shape
            xi *= xp.sqrt(s2)[:, None, None]
        xi *= spec.sigma_w / math.sqrt(N)
        if spec.mu_w1 != 0.0:
            xi += spec.mu_w1
        p["W1"] = xi
        return p
    if isinstance(spec, DeepMLP):
        Ws, bs = [], []
        n_prev = spec.d_in
        for _ in range(spec.depth):
            Ws.append(_normal(rng, (n, spec.width, n_prev), xp, spec.mu_w,
                              spec.sigma_w / math.sqrt(n_prev)))
            bs.append(_normal(rng, (n, spec.width), xp, spec.mu_b, spec.sigma_b))
            n_prev = spec.width
        Ws.append(_normal(rng, (n, D, n_prev), xp, spec.mu_w, spec.sigma_w / math.sqrt(n_prev)))
        bs.append(_normal(rng, (n, D), xp, spec.mu_b, spec.sigma_b))
        return {"Ws": Ws, "bs": bs}
    if isinstance(spec, GaussianCosNet):
        N, d = spec.width, spec.d_in
        w = _normal(rng, (n, N, d), xp, 0.0, spec.sigma_w / math.sqrt(d))
        c = _phases(rng, n, N, xp)
        a = _amplitudes(rng, n, N, D, spec.amplitude, spec.s, xp)
        return {"W0": w, "b0": c, "W1": a}
    if isinstance(spec, ContinuumCosNet):
        N, d, lam, m = spec.width, spec.d_in, spec.cutoff, math.sqrt(spec.m2)
        direction = _g(rng, (n, N, d), xp)
        direction /= xp.sqrt((direction * direction).sum(axis=-1, keepdims=True))
        u = _u(rng, (n, N), xp)
        if spec.form == "amplitude":
            r = lam * u ** (1.0 / d)
        else:
            r = _inverse_radial_cdf(u, d, m, lam, xp)
        w = direction * r[:, :, None]
        c = _phases(rng, n, N, xp)
        a = _amplitudes(rng, n, N, D, spec.amplitude, continuum_norm(spec), xp)
        if spec.form == "amplitude":
            a = a / xp.sqrt(r * r + spec.m2)[:, None, :]
        return {"W0": w, "b0": c, "W1": a}
    if isinstance(spec, MassMixtureCosNet):
        return _draw_mass_mixture(spec, lattice, n, rng, xp)
    if isinstance(spec, LatticeCosNet):
        N = spec.width
        accept, alias, G0 = momentum_alias(lattice, spec.m2, xp)
        V = accept.size
        uV = _u(rng, (n, N), xp) * V
        j = xp.minimum(uV.astype(xp.int64), V - 1)
        uV -= j
        k = xp.where(uV < accept[j], j, alias[j])
        c = _phases(rng, n, N, xp)
        a = _amplitudes(rng, n, N, D, spec.amplitude, math.sqrt(2.0 * G0), xp)
        return {"k": k, "c": c, "a": a}
    raise ValueError(f"draw_params: unknown architecture {type(spec).__name__}")


def _draw_mass_mixture(spec, lattice, n, rng, xp):
    """MassMixtureCosNet: mass choice ``u(n)``, momentum ``u(n,N)`` (alias table of the chosen
    mass), ``c u(n,N)``, amplitudes (unit scale, then times ``sqrt(2 G_m(0))`` per network)."""
    N, D = spec.width, spec.n_components
    alt = _u(rng, (n,), xp) < spec.p_alt
    uV = _u(rng, (n, N), xp)
    ks, scales = [], []
    for m2 in spec.masses:
        accept, alias, G0 = momentum_alias(lattice, m2, xp)
        V = accept.size
        x = uV * V
        j = xp.minimum(x.astype(xp.int64), V - 1)
        x -= j
        ks.append(xp.where(x < accept[j], j, alias[j]))
        scales.append(math.sqrt(2.0 * G0))
    k = xp.where(alt[:, None], ks[1], ks[0])
    c = _phases(rng, n, N, xp)
    a = _amplitudes(rng, n, N, D, spec.amplitude, 1.0, xp)
    a *= xp.where(alt, scales[1], scales[0])[:, None, None]
    return {"k": k, "c": c, "a": a}


def params_to(params: dict, xp) -> dict:
    """Copy a parameter dict to the backend ``xp`` (for comparing backends on equal parameters)."""
    out = {}
    for key, v in params.items():
        out[key] = [xp.asarray(a) for a in v] if isinstance(v, list) else xp.asarray(v)
    return out


# -- the "fast" generator: float32 parameters from the raw bits of the chunk's generator ---------
#
# ``generator="fast"`` (see ``engine.generate``) draws every parameter in float32 from the raw
# 64-bit words of the chunk's bit generator (``rng.bit_generator.random_raw``; NumPy only):
#
# - normals by Box-Muller, one 64-bit word per pair: the top 40 bits give the radius uniform
#   ``u = ((w >> 24) + 1/2) 2^-40`` in (0, 1) (``-2 ln u`` computed in float64, its square root in
#   float32, so the law is exact up to float32 rounding and a tail cut at |g| = 7.54,
#   probability 4.7e-14 per draw), the low 24 bits the angle ``2 pi (w mod 2^24) 2^-24``
#   (float32 cos/sin);
#   a block of ``m`` pairs yields its ``m`` cosines then its ``m`` sines;
# - uniforms: 32-bit words (two per 64-bit word, low word first), ``u = w 2^-32``;
# - lattice momenta: Walker alias with integer arithmetic on one 32-bit word ``w``:
#   ``j = (w V) >> 32``, accepted when ``(w V) mod 2^32 < accept_j 2^32`` (else ``alias_j``):
#   exact for ``V < 2^32`` up to the 2^-32 resolution of the acceptance thresholds.
#
# The stream differs from the reference draws (``draw_params``); parameters are never
# materialised in float64.

_FAST_BLOCK = 2 ** 13  # pairs per Box-Muller block (cache-sized temporaries)
_TWO_M40 = 2.0 ** -40
_ANGLE32 = np.float32(2.0 * math.pi * 2.0 ** -32)
_ANGLE24 = np.float32(2.0 * math.pi * 2.0 ** -24)
_LOW24 = np.uint64(0xFFFFFF)
_S23 = np.uint64(23)
_ONE = np.uint64(1)
_M2LOG_2M41 = 82.0 * math.log(2.0)  # -2 ln 2^-41
_TWO_M32 = 2.0 ** -32
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)
_ALIAS_BLOCK = 2 ** 14


def _raw_words(rng, m):
    """``m`` raw 64-bit words of ``rng``'s bit generator (NumPy Generator)."""
    return rng.bit_generator.random_raw(m)


def normal_float32(rng, shape, mu=0.0, sigma=1.0, *, out=None):
    """``mu + sigma g`` with ``g`` standard normal, float32, by Box-Muller on raw 64-bit words.

    Parameters
    ----------
    rng : numpy.random.Generator
        Its bit generator supplies one 64-bit word per pair of normals (see the notes above).
    shape : tuple of int
    mu, sigma : float
        Mean and standard deviation (applied in float32).
    out : float32 array of ``shape``, optional
        Written in place.

    Returns
    -------
    float32 ndarray of ``shape``
    """
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    n = flat.size
    m_all = (n + 1) // 2
    for s in range(0, m_all, _FAST_BLOCK):
        e = min(s + _FAST_BLOCK, m_all)
        k = e - s
        raw = _raw_words(rng, k)
        w = raw >> _S23
        w |= _ONE  # 2 (w >> 24) + 1: u = (2 (w >> 24) + 1) 2^-41 = ((w >> 24) + 1/2) 2^-40
        r = w.astype(np.float64)
        np.log(r, out=r)
        r *= -2.0
        r += _M2LOG_2M41  # -2 ln u, in float64
        r32 = r.astype(np.float32)
        np.sqrt(r32, out=r32)
        raw &= _LOW24  # bits 0..23: the angle (the radius uses bits 24..63)
        ang = raw.astype(np.float32)
        ang *= _ANGLE24
        lo, mid, hi = 2 * s, 2 * s + k, min(2 * e, n)
        c = flat[lo:mid]
        np.cos(ang, out=c)
        c *= r32
        if hi > mid:
            sn = flat[mid:hi]
            np.sin(ang[:hi - mid], out=sn)
            sn *= r32[:hi - mid]
    if sigma != 1.0:
        flat *= np.float32(sigma)
    if mu != 0.0:
        flat += np.float32(mu)
    return out


def uniform_words(rng, n):
    """``n`` uniform 32-bit words (uint32): the low then the high half of each raw 64-bit word."""
    m = (n + 1) // 2
    return _raw_words(rng, m).view(np.uint32)[:n]


def uniform_float32(rng, shape):
    """Uniforms ``w 2^-32`` in [0, 1) from 32-bit words, float32 (rounded: may equal 1.0)."""
    n = int(np.prod(shape))
    u = uniform_words(rng, n).astype(np.float32)
    u *= np.float32(_TWO_M32)
    return u.reshape(shape)


_ALIAS32_CACHE: dict = {}


def momentum_alias32(lattice, m2):
    """Integer alias table of the lattice momenta: ``(threshold uint64, alias int64, G(0))``.

    ``threshold_j = round(accept_j 2^32)`` (2^32 for columns that are always accepted).
    """
    key = (tuple(lattice.shape), lattice.spacing, float(m2))
    if key not in _ALIAS32_CACHE:
        accept, alias, G0 = momentum_alias(lattice, m2, np)
        thr = np.minimum(np.rint(accept * 2.0 ** 32), 2.0 ** 32).astype(np.uint64)
        thr[accept >= 1.0] = np.uint64(2 ** 32)
        if len(_ALIAS32_CACHE) > 32:
            _ALIAS32_CACHE.clear()
        _ALIAS32_CACHE[key] = (thr, alias.astype(np.int64), G0)
    return _ALIAS32_CACHE[key]


def alias_draw32(words, thr, alias):
    """Alias-table draws (int64) from uint32 ``words`` (see :func:`momentum_alias32`).

    ``x = w V`` (exact in uint64): column ``j = x >> 32``, accepted when ``x mod 2^32 <
    threshold_j`` (else ``alias_j``); processed in cache-sized blocks.
    """
    V = np.uint64(thr.size)
    out = np.empty(words.size, dtype=np.int64)
    for s in range(0, words.size, _ALIAS_BLOCK):
        e = min(s + _ALIAS_BLOCK, words.size)
        x = words[s:e].astype(np.uint64)
        x *= V
        j = (x >> _S32).view(np.int64)  # < V: the same bits as int64
        x &= _MASK32
        accept = x < np.take(thr, j)
        o = out[s:e]
        np.take(alias, j, out=o)
        np.copyto(o, j, where=accept)
    return out


def _amplitudes_fast(rng, n, N, D, kind, s):
    if kind == "gaussian":
        return normal_float32(rng, (n, D, N), 0.0, s / math.sqrt(N))
    if D == 1:
        return np.full((n, 1, N), s / math.sqrt(N), dtype=np.float32)
    v = normal_float32(rng, (n, D, N))
    v /= np.sqrt((v * v).sum(axis=1, keepdims=True))
    v *= np.float32(s * math.sqrt(D / N))
    return v


#: architectures the fast generator supports
def fast_supported(spec) -> bool:
    """True if ``generator="fast"`` can draw and evaluate ``spec``."""
    return isinstance(spec, (_SingleLayer, LatticeCosNet))


def draw_params_fast(spec: Spec, lattice, n: int, rng, xp=np) -> dict:
    """Parameters of ``n`` networks for ``generator="fast"``: float32, same order as
    :func:`draw_params` (single layer: W0, b0, W1, b1 [, eta] [, s^2]; LatticeCosNet: momenta,
    phases, amplitudes), from the raw words of ``rng`` (NumPy only).

    LatticeCosNet: ``k`` int64 momentum indices (one 32-bit word each), ``c`` float32 phases
    ``2 pi w 2^-32 - pi`` (one word each), amplitudes float32.
    """
    if xp is not np:
        raise ValueError("generator='fast' runs on the NumPy backend only (on a GPU use "
                         "method='fused')")
    D = spec.n_components
    if isinstance(spec, _SingleLayer):
        N, d = spec.width, spec.d_in
        p = {"W0": normal_float32(rng, (n, N, d), spec.mu_w0, spec.sigma_w / math.sqrt(d)),
             "b0": normal_float32(rng, (n, N), spec.mu_b0, spec.sigma_b)}
        xi = normal_float32(rng, (n, D, N))
        p["b1"] = normal_float32(rng, (n, D), spec.mu_b1, spec.sigma_b)
        if isinstance(spec, CorrelatedNet):
            eta = normal_float32(rng, (n, D))
            xi *= np.float32(math.sqrt(1.0 - spec.rho))
            xi += np.float32(math.sqrt(spec.rho)) * eta[:, :, None]
        if isinstance(spec, ScaleMixtureNet):
            s2 = rng.standard_gamma(spec.shape, (n,), dtype=np.float32) / np.float32(spec.shape)
            xi *= np.sqrt(s2)[:, None, None]
        xi *= np.float32(spec.sigma_w / math.sqrt(N))
        if spec.mu_w1 != 0.0:
            xi += np.float32(spec.mu_w1)
        p["W1"] = xi
        return p
    if isinstance(spec, MassMixtureCosNet):
        return _draw_mass_mixture_fast(spec, lattice, n, rng)
    if isinstance(spec, LatticeCosNet):
        N = spec.width
        thr, alias, G0 = momentum_alias32(lattice, spec.m2)
        k = alias_draw32(uniform_words(rng, n * N), thr, alias).reshape(n, N)
        c = _phases_fast(rng, n, N)
        a = _amplitudes_fast(rng, n, N, D, spec.amplitude, math.sqrt(2.0 * G0))
        return {"k": k, "c": c, "a": a}
    raise ValueError(f"generator='fast' supports the single-layer nets and LatticeCosNet, not "
                     f"{type(spec).__name__}")


def _phases_fast(rng, n, N):
    c = uniform_words(rng, n * N).astype(np.float32)
    c *= _ANGLE32
    c -= np.float32(math.pi)
    return c.reshape(n, N)


def _draw_mass_mixture_fast(spec, lattice, n, rng):
    N, D = spec.width, spec.n_components
    alt = uniform_float32(rng, (n,)) < spec.p_alt
    w = uniform_words(rng, n * N)
    ks, scales = [], []
    for m2 in spec.masses:
        thr, alias, G0 = momentum_alias32(lattice, m2)
        ks.append(alias_draw32(w, thr, alias).reshape(n, N))
        scales.append(math.sqrt(2.0 * G0))
    k = np.where(alt[:, None], ks[1], ks[0])
    c = _phases_fast(rng, n, N)
    a = _amplitudes_fast(rng, n, N, D, spec.amplitude, 1.0)
    a *= np.where(alt, scales[1], scales[0]).astype(np.float32)[:, None, None]
    return {"k": k, "c": c, "a": a}
