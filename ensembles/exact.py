"""Exact parameter-space theory of network ensembles: moments, connected correlators, W[J], plans.

Every network field here has the form

    f(x) = b(x) + sum_{i=1}^N t_i(x),

a bias ``b`` (the output bias ``b1`` of the single-layer nets; absent for cos-nets) plus ``N``
neuron terms ``t_i(x) = W1_i h_i(x)`` (output weight times hidden unit; for cos-nets
``a_i cos(w_i . x + c_i)``). The output weights already carry the ``1/sqrt(N)`` of the specs
(``W1 ~ N(mu_w1, sigma_w^2/N)``, ``E a^2 = s^2/N``), so for i.i.d. neurons the joint cumulants
(connected correlators) are

    G_c^(r)(x_1..x_r) = N kappa_r(t(x_1), .., t(x_r)) + kappa_r(b),

i.e. ``kappa_r(sqrt(N) t)/N^(r/2 - 1)`` plus the bias (``sigma_b^2`` in the 2-point function, the
mean ``mu_b1`` in the 1-point function), and ``W[J] = log E exp(sum_x J(x) f(x)) =
N log E exp(J.t) + J.mu_b + sigma_b^2 (sum J)^2/2``.

Correlated parameters (the non-perturbative families) are handled as mixtures: given a latent
variable ``alpha`` shared by the neurons of one network (the shared scale, the shared output
weight offset ``eta`` of :class:`CorrelatedNet`, the shared mass of a cos-net) the neurons are
i.i.d., and every moment of ``f`` is the ``alpha``-average of the i.i.d. moments. The average is
an exact finite sum (discrete laws) or a Gauss rule that is exact because the conditional
moments are polynomials in the latent variable.

Method
------
Single-neuron moments ``E[t(x_1)..t(x_r)]`` over every sub-tuple factor into the output-weight
moments (exact) times hidden-unit moments ``E[h(x_1)..h(x_r)]``:

* Gauss-net: closed form (Gaussian integral of an exponential);
* lattice cos-net: exact sum over the lattice momenta times an equally spaced phase rule that is
  exact for trigonometric polynomials (the product of r cosines has degree r in the phase);
* ReLU-net, d_in = 1, zero means: exact polar reduction (radial moments closed form, the angular
  integral by Gauss-Legendre on panels between the kinks: smooth on each panel);
* everything else (Erf, Tanh, custom activations, ReLU with means or d_in > 1, Gaussian and
  continuum cos-nets): tensor Gauss quadrature over one neuron's parameters. The result is
  computed twice, with the rule and a coarser one (about 2/3 of the nodes per dimension), and the
  stated error is the largest difference; the tests check it against a much finer rule.

From the moments of all sub-tuples the cumulants follow by the set-partition formula, evaluated
as a logarithm in the ring of set functions under subset convolution (ranked zeta transform;
Bjorklund et al. 2007): ``kappa(f) = N log M_t + kappa_b`` and ``M_f = exp(N log M_t + kappa_b)``
(the moments of a sum of independent terms are the subset-convolution product of theirs).

Points are flat site indices, component-major when the spec has D components
(``a * V + v`` for component a and site v, as in the rest of nnft).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .activations import NAMED as _NAMED
from .activations import compile_activation
from .specs import (ContinuumCosNet, CorrelatedNet, GaussianCosNet, GaussNet,
                    LatticeCosNet, Spec, _SingleLayer)

#: largest order r of a moment over one tuple (the ring of set functions has 2^r entries)
MAX_ORDER = 16
#: activations with bounded units (W[J] by quadrature is safe for them)
_BOUNDED = ("erf", "tanh", "sigmoid", "sin", "cos")
#: bound on the elements of one (tuples, nodes) temporary
_BLOCK = 2 ** 22


# ---------------------------------------------------------------------------------------------
# the ring of set functions under subset convolution
# ---------------------------------------------------------------------------------------------
def _popcount(r):
    m = np.arange(2 ** r)
    return np.array([bin(int(v)).count("1") for v in m])


def _zeta(M, r):
    """Ranked zeta transform: (..., 2^r) -> (..., 2^r, r+1), F[S, k] = sum_{A<=S,|A|=k} M[A]."""
    pc = _popcount(r)
    F = np.zeros(M.shape + (r + 1,))
    F[..., np.arange(2 ** r), pc] = M
    for i in range(r):
        G = F.reshape(M.shape[:-1] + (2 ** (r - 1 - i), 2, 2 ** i, r + 1))
        G[..., 1, :, :] += G[..., 0, :, :]
    return F


def _moebius(F, r):
    """Inverse of :func:`_zeta` followed by picking degree |S|: (..., 2^r, r+1) -> (..., 2^r)."""
    F = F.copy()
    for i in range(r):
        G = F.reshape(F.shape[:-2] + (2 ** (r - 1 - i), 2, 2 ** i, r + 1))
        G[..., 1, :, :] -= G[..., 0, :, :]
    return F[..., np.arange(2 ** r), _popcount(r)]


def _moebius_full(F, r):
    """The Moebius inverse at the full set only (degree r): sum_A (-1)^(r-|A|) F[A, r]."""
    sign = (-1.0) ** (r - _popcount(r))
    return F[..., r] @ sign


def _series_log(F):
    """log of power series (last axis, constant term 1), truncated."""
    n = F.shape[-1]
    L = np.zeros_like(F)
    for k in range(1, n):
        acc = k * F[..., k]
        for j in range(1, k):
            acc = acc - j * L[..., j] * F[..., k - j]
        L[..., k] = acc / k
    return L


def _series_exp(L):
    """exp of power series (last axis, constant term ignored = 0), truncated."""
    n = L.shape[-1]
    E = np.zeros_like(L)
    E[..., 0] = 1.0
    for k in range(1, n):
        acc = 0.0
        for j in range(1, k + 1):
            acc = acc + j * L[..., j] * E[..., k - j]
        E[..., k] = acc / k
    return E


# ---------------------------------------------------------------------------------------------
# output-weight laws (moments of the amplitudes, exact)
# ---------------------------------------------------------------------------------------------
_DF = np.array([1.0] + [float(np.prod(np.arange(k, 0, -2))) for k in range(0, 40)])


def _dfact(k):
    """Double factorial k!! for integer arrays k >= -1 ((-1)!! = 0!! = 1)."""
    return _DF[np.asarray(k) + 1]


def _gauss_raw_moments(mu, var, nmax):
    """E[(mu + sqrt(var) g)^n], n = 0..nmax (mu may be an array: moments on the last axis)."""
    mu = np.asarray(mu, float)
    out = np.zeros(mu.shape + (nmax + 1,))
    for n in range(nmax + 1):
        tot = np.zeros(mu.shape)
        for j in range(0, n + 1, 2):
            tot = tot + math.comb(n, j) * mu ** (n - j) * var ** (j / 2) * _dfact(j - 1)
        out[..., n] = tot
    return out


@dataclass
class _Law:
    """Law of one neuron's output-weight vector (D components).

    kind "gauss": components independent N(mean_a, var); "fixed": D = 1, the constant ``radius``;
    "sphere": ``radius`` times a uniform unit vector in D >= 2 dimensions.
    """

    kind: str
    D: int
    var: float = 0.0
    mean: np.ndarray | float = 0.0
    radius: float = 0.0

    def moment(self, counts):
        """E[prod_a W_a^{n_a}] for counts (..., D) -> (...)."""
        counts = np.asarray(counts)
        nmax = int(counts.max(initial=0))
        if self.kind == "gauss":
            mean = np.broadcast_to(np.asarray(self.mean, float), (self.D,))
            tab = _gauss_raw_moments(mean, self.var, nmax)  # (D, nmax+1)
            out = np.ones(counts.shape[:-1])
            for a in range(self.D):
                out = out * tab[a][counts[..., a]]
            return out
        n = counts.sum(-1)
        if self.kind == "fixed":
            return self.radius ** n.astype(float)
        # uniform unit vector: prod (n_a - 1)!! / (D (D+2) .. (D + n - 2)), zero if any n_a odd
        odd = np.any(counts % 2 == 1, axis=-1)
        num = np.ones(counts.shape[:-1])
        for a in range(self.D):
            num = num * _dfact(counts[..., a] - 1)
        den = np.ones(counts.shape[:-1])
        for j in range(0, int(n.max(initial=0)), 2):
            den = np.where(n > j, den * (self.D + j), den)
        return np.where(odd, 0.0, self.radius ** n.astype(float) * num / den)

    def mgf_given(self, Y):
        """E_W exp(sum_a W_a Y_a) for Y (..., D); NaN where unknown (sphere law)."""
        if self.kind == "gauss":
            mean = np.broadcast_to(np.asarray(self.mean, float), (self.D,))
            return np.exp(Y @ mean + 0.5 * self.var * (Y * Y).sum(-1))
        if self.kind == "fixed":
            return np.exp(self.radius * Y[..., 0])
        return np.full(Y.shape[:-1], np.nan)

    def power_moments_given(self, Y, nmax):
        """E_W[(sum_a W_a Y_a)^n], n = 0..nmax, for Y (..., D) -> (..., nmax+1)."""
        if self.kind == "gauss":
            mean = np.broadcast_to(np.asarray(self.mean, float), (self.D,))
            return _gauss_raw_moments(Y @ mean, self.var * (Y * Y).sum(-1), nmax)
        if self.kind == "fixed":
            y = self.radius * Y[..., 0]
            return y[..., None] ** np.arange(nmax + 1)
        nrm = np.sqrt((Y * Y).sum(-1))
        n = np.arange(nmax + 1)
        c = np.array([0.0 if k % 2 else _dfact(k - 1) /
                      np.prod([self.D + j for j in range(0, k, 2)]) for k in n])
        return (self.radius * nrm)[..., None] ** n * c


# ---------------------------------------------------------------------------------------------
# the neuron model of one architecture
# ---------------------------------------------------------------------------------------------
@dataclass
class _Model:
    """``f = b + sum_{i<=N} t_i``; given the latent index j the neurons are i.i.d. with
    ``t(x) = W . h(x)`` (W ~ laws[j], hidden moments from nodes/closed form)."""

    N: int
    V: int
    D: int
    laws: list
    latent_w: np.ndarray
    #: quadrature nodes of the hidden unit: H (Q, V) values, w (Q, J) or (Q, 1) weights
    H: np.ndarray | None = None
    w: np.ndarray | None = None
    #: E[R^n] factors (n = 0..MAX_ORDER) for positively homogeneous units (ReLU polar), or None
    radial: np.ndarray | None = None
    #: closed-form hidden moments: callable(pos (T, k)) -> (T,) for Gauss-nets
    closed: object = None
    bias_mean: float = 0.0
    bias_var: float = 0.0
    exact: bool = True
    note: str = ""
    extra: dict = field(default_factory=dict)


def _positions(geometry):
    if hasattr(geometry, "positions") and callable(geometry.positions):
        X = np.asarray(geometry.positions(np), dtype=np.float64)
    else:
        X = np.asarray(geometry, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
    return X


def _gh(n):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / np.sqrt(2 * np.pi)


def _tensor_gh(dim, n):
    z, w = _gh(n)
    grids = np.meshgrid(*([z] * dim), indexing="ij")
    U = np.stack([g.ravel() for g in grids], axis=1)  # (Q, dim)
    W = np.ones(U.shape[0])
    for wg in np.meshgrid(*([w] * dim), indexing="ij"):
        W = W * wg.ravel()
    return U, W


def _single_layer_law(spec, latent=None):
    D, N = spec.n_components, spec.width
    return _Law("gauss", D, var=spec.sigma_w ** 2 / N, mean=spec.mu_w1)


def _lv(base, fine):
    """Node count at refinement level ``fine`` (True = 1, False = 2/3, or a float factor)."""
    f = 1.0 if fine is True else (2 / 3 if fine is False else float(fine))
    return max(4, int(round(base * f)))


def _rules_single_layer(spec, fine=True):
    dim = spec.d_in + 1
    return _lv({2: 96, 3: 36}.get(dim, 14), fine)


def _hidden_nodes_single_layer(spec, X, fine=True):
    """GH nodes over (W0, b0): H (Q, V) = act(W0.x_v + b0)."""
    d = spec.d_in
    A = np.concatenate([spec.sigma_w * X / np.sqrt(d), np.full((len(X), 1), spec.sigma_b)], axis=1)
    mu = spec.mu_w0 * X.sum(1) + spec.mu_b0
    U, W = _tensor_gh(d + 1, _rules_single_layer(spec, fine))
    Z = U @ A.T + mu
    if isinstance(spec, GaussNet):
        norm = spec.sigma_b ** 2 + spec.sigma_w ** 2 * (X ** 2).sum(1) / d
        return np.exp(Z - norm), W
    act = compile_activation(spec.activation_expr, np)
    return act(Z), W


def _relu_polar_nodes(spec, X, fine=True):
    """ReLU, d_in = 1, zero means: u = R (cos t, sin t), h = R max(a.(cos t, sin t), 0)."""
    A = np.concatenate([spec.sigma_w * X, np.full((len(X), 1), spec.sigma_b)], axis=1)
    kinks = []
    for a in A:
        if np.any(a != 0):
            t0 = math.atan2(-a[0], a[1])
            kinks += [t0 % (2 * np.pi), (t0 + np.pi) % (2 * np.pi)]
    edges = np.unique(np.round(np.concatenate([[0.0, 2 * np.pi], kinks]), 14))
    gx, gw = np.polynomial.legendre.leggauss(_lv(24, fine))
    T, Wt = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo < 1e-14:
            continue
        T.append(0.5 * (hi - lo) * (gx + 1) + lo)
        Wt.append(0.5 * (hi - lo) * gw / (2 * np.pi))
    t, w = np.concatenate(T), np.concatenate(Wt)
    H = np.maximum(np.stack([np.cos(t), np.sin(t)], 1) @ A.T, 0.0)
    n = np.arange(MAX_ORDER + 1)
    radial = 2 ** (n / 2) * special.gamma(1 + n / 2)  # E[R^n], R^2 ~ chi^2_2
    return H, w, radial


def _phase_rule(M):
    c = -np.pi + 2 * np.pi * (np.arange(M) + 0.5) / M
    return c, np.full(M, 1.0 / M)


def _cos_nodes(freqs, fw, X, M):
    """Nodes (w, c): H = cos(w.x + c), weights fw (Q_w, J) x phase weights."""
    c, cw = _phase_rule(M)
    theta = freqs @ X.T  # (Qw, V)
    H = np.cos(theta[:, None, :] + c[None, :, None]).reshape(-1, X.shape[0])
    w = (fw[:, None, :] * cw[None, :, None]).reshape(-1, fw.shape[1])
    return H, w


def _cos_law(amplitude, D, scale2):
    """Amplitude law with E a^2 = scale2 per component."""
    if amplitude == "gaussian":
        return _Law("gauss", D, var=scale2, mean=0.0)
    if D == 1:
        return _Law("fixed", 1, radius=math.sqrt(scale2))
    return _Law("sphere", D, radius=math.sqrt(scale2 * D))


def _lattice_G(lattice, m2):
    from nnft.lattice import free_propagator_momentum

    Gt = np.asarray(free_propagator_momentum(lattice, m2, np)).ravel()
    return Gt / Gt.sum(), float(Gt.mean())


def _build(spec: Spec, geometry, *, fine=True, order=8) -> _Model | None:
    """The neuron model of ``spec`` on ``geometry`` (None when no exact theory is implemented)."""
    from . import specs as C

    X = _positions(geometry)
    V = X.shape[0]
    D = spec.n_components
    M_phase = max(order, 2) + 1  # exact for trigonometric polynomials of degree <= order
    if isinstance(spec, C.MassMixtureCosNet):
        P = []
        laws = []
        for m2 in spec.masses:
            p, G0 = _lattice_G(geometry, m2)
            P.append(p)
            laws.append(_cos_law(spec.amplitude, D, 2 * G0 / spec.width))
        k = np.asarray(geometry.momenta(np)).reshape(V, -1)
        H, w = _cos_nodes(k, np.stack(P, 1), X, M_phase)
        return _Model(spec.width, V, D, laws, np.asarray(spec.probs, float), H=H, w=w,
                      note="exact sums over lattice momenta and phases, per mass")
    if isinstance(spec, LatticeCosNet):
        p, G0 = _lattice_G(geometry, spec.m2)
        k = np.asarray(geometry.momenta(np)).reshape(V, -1)
        H, w = _cos_nodes(k, p[:, None], X, M_phase)
        return _Model(spec.width, V, D, [_cos_law(spec.amplitude, D, 2 * G0 / spec.width)],
                      np.ones(1), H=H, w=w, note="exact sums over lattice momenta and phases")
    if isinstance(spec, GaussianCosNet):
        n = _lv({1: 64, 2: 24}.get(spec.d_in, 12), fine)
        U, W = _tensor_gh(spec.d_in, n)
        H, w = _cos_nodes(U * spec.sigma_w / math.sqrt(spec.d_in), W[:, None], X, M_phase)
        return _Model(spec.width, V, D, [_cos_law(spec.amplitude, D, spec.s ** 2 / spec.width)],
                      np.ones(1), H=H, w=w, exact=False, note="Gauss-Hermite over frequencies")
    if isinstance(spec, ContinuumCosNet):
        if spec.d_in != 1:
            return None
        from .params import continuum_norm

        lam, m2 = spec.cutoff, spec.m2
        panels = _lv(64, fine)
        x, gw = np.polynomial.legendre.leggauss(16)
        edges = np.linspace(-lam, lam, panels + 1)
        half = 0.5 * np.diff(edges)
        mid = 0.5 * (edges[1:] + edges[:-1])
        wq = (mid[:, None] + half[:, None] * x).ravel()
        ww = (half[:, None] * gw).ravel()
        norm = continuum_norm(spec)
        if spec.form == "amplitude":
            fw = ww / (2 * lam)
            amp = norm / np.sqrt(wq ** 2 + m2)
        else:
            dens = ww / (wq ** 2 + m2)
            fw = dens / dens.sum()
            amp = np.full_like(wq, norm)
        H, w = _cos_nodes(wq[:, None], fw[:, None], X, M_phase)
        H = H * np.repeat(amp, M_phase)[:, None]
        return _Model(spec.width, V, D, [_cos_law(spec.amplitude, D, 1.0 / spec.width)],
                      np.ones(1), H=H, w=w, exact=False,
                      note="Gauss-Legendre over frequencies")
    if isinstance(spec, _SingleLayer):
        N = spec.width
        bias = dict(bias_mean=spec.mu_b1, bias_var=spec.sigma_b ** 2)
        if isinstance(spec, C.ScaleMixtureNet):
            # s^2 ~ Gamma(k, 1/k): generalized Gauss-Laguerre in x = k s^2 is exact for the
            # conditional moments (polynomials in s^2)
            k = spec.shape
            x, wl = special.roots_genlaguerre(_lv(24, fine), k - 1)
            lat_w = wl / special.gamma(k)
            laws = [_Law("gauss", D, var=(xi / k) * spec.sigma_w ** 2 / N, mean=spec.mu_w1)
                    for xi in x]
        elif isinstance(spec, CorrelatedNet):
            if D > 3:
                return None
            # exact for moments (polynomials of degree <= 16 in eta need >= 9 nodes); W[J] is not
            # a polynomial: its latent rule is refined with the others
            U, W = _tensor_gh(D, max(9, _lv({1: 24, 2: 12}.get(D, 9), fine)))
            lat_w = W
            sh = spec.sigma_w * math.sqrt(spec.rho / N)
            laws = [_Law("gauss", D, var=spec.sigma_w ** 2 * (1 - spec.rho) / N,
                         mean=spec.mu_w1 + sh * u) for u in U]
        else:
            lat_w = np.ones(1)
            laws = [_single_layer_law(spec)]
        act = spec.activation_expr
        if isinstance(spec, GaussNet):
            d = spec.d_in
            A = np.concatenate([spec.sigma_w * X / np.sqrt(d), np.full((V, 1), spec.sigma_b)], 1)
            mu = spec.mu_w0 * X.sum(1) + spec.mu_b0
            norm = spec.sigma_b ** 2 + spec.sigma_w ** 2 * (X ** 2).sum(1) / d
            H, w = _hidden_nodes_single_layer(spec, X, fine)

            def closed(pos):
                s = A[pos].sum(1)
                return np.exp(mu[pos].sum(1) + 0.5 * (s * s).sum(1) - norm[pos].sum(1))

            return _Model(N, V, D, laws, lat_w, H=H, w=w[:, None], closed=closed,
                          note="closed form (Gaussian integrals)", **bias)
        if act == "relu" and spec.d_in == 1 and spec.mu_w0 == 0 and spec.mu_b0 == 0:
            H, w, radial = _relu_polar_nodes(spec, X, fine)
            return _Model(N, V, D, laws, lat_w, H=H, w=w[:, None], radial=radial, exact=False,
                          note="polar reduction, Gauss-Legendre between kinks", **bias)
        H, w = _hidden_nodes_single_layer(spec, X, fine)
        # W[J] by quadrature only for bounded units (E exp(c h^2) may diverge otherwise)
        bounded = act.strip() in _BOUNDED or act.strip() in [_NAMED.get(k) for k in _BOUNDED]
        return _Model(N, V, D, laws, lat_w, H=H, w=w[:, None], exact=False,
                      note="Gauss-Hermite over (W0, b0)", extra={"W_ok": bounded}, **bias)
    return None


# ---------------------------------------------------------------------------------------------
# moments of one neuron over all sub-tuples
# ---------------------------------------------------------------------------------------------
def _canonical(groups_sizes):
    """For tuples sorted so equal sites are adjacent with group sizes g: per mask, the canonical
    mask with the same count per group (prefix of each group)."""
    r = sum(groups_sizes)
    starts = np.cumsum([0] + list(groups_sizes))[:-1]
    canon = np.zeros(2 ** r, dtype=np.int64)
    for m in range(2 ** r):
        c = 0
        for s, g in zip(starts, groups_sizes):
            k = bin((m >> s) & ((1 << g) - 1)).count("1")
            c |= ((1 << k) - 1) << s
        canon[m] = c
    return canon


def _node_moments(H, w, pos, canon_set):
    """P[T, mask, J] = sum_q w[q, j] prod_{k in mask} H[q, pos[:, k]] for canonical masks (DFS)."""
    T, r = pos.shape
    Q, J = w.shape
    out = np.zeros((T, 2 ** r, J))
    out[:, 0, :] = w.sum(0)
    tb = max(1, _BLOCK // max(Q, 1))
    for t0 in range(0, T, tb):
        sl = slice(t0, min(T, t0 + tb))
        Hs = [H[:, pos[sl, k]].T for k in range(r)]  # (Tb, Q)

        def rec(mask, Z, start):
            for b in range(start, r):
                m2 = mask | (1 << b)
                if m2 not in canon_set:
                    continue
                Z2 = Hs[b] if Z is None else Z * Hs[b]
                out[sl, m2, :] = Z2 @ w
                rec(m2, Z2, b + 1)

        rec(0, None, 0)
    return out


def _tuple_batches(tuples, V, D):
    """Sort each tuple (equal sites adjacent), split by group pattern -> list of (index, sorted)."""
    t = np.sort(np.asarray(tuples, dtype=np.int64), axis=1)
    pats = {}
    for i, row in enumerate(t):
        _, cnt = np.unique(row, return_counts=True)
        pats.setdefault(tuple(cnt), []).append(i)
    return [(np.asarray(ix), t[ix], pat) for pat, ix in pats.items()]


def _neuron_set_moments(model: _Model, srt, pat):
    """Moments of t over every sub-tuple: (T, 2^r, J) for latent index j."""
    T, r = srt.shape
    pos, comp = srt % model.V, srt // model.V
    canon = _canonical(pat)
    cset = set(np.unique(canon).tolist())
    masks = np.arange(2 ** r)
    bits = ((masks[:, None] >> np.arange(r)) & 1).astype(np.int64)  # (2^r, r)
    if model.closed is not None:
        P = np.zeros((T, 2 ** r, 1))
        P[:, 0, 0] = 1.0
        for m in cset:
            if m == 0:
                continue
            sel = np.flatnonzero(bits[m])
            P[:, m, 0] = model.closed(pos[:, sel])
    else:
        P = _node_moments(model.H, model.w, pos, cset)
    P = P[:, canon, :]
    pc = bits.sum(1)
    if model.radial is not None:
        P = P * model.radial[pc][None, :, None]
    counts = np.stack([(bits[None, :, :] * (comp[:, None, :] == a)).sum(-1)
                       for a in range(model.D)], -1)  # (T, 2^r, D)
    J = len(model.laws)
    out = np.empty((T, 2 ** r, J))
    for j, law in enumerate(model.laws):
        out[:, :, j] = P[:, :, min(j, P.shape[2] - 1)] * law.moment(counts)
    return out


def _bias_cumulants(model: _Model, srt):
    """kappa_b over every sub-tuple: mean on singletons, variance on equal-component pairs."""
    T, r = srt.shape
    comp = srt // model.V
    K = np.zeros((T, 2 ** r))
    for a in range(r):
        K[:, 1 << a] = model.bias_mean
        for b in range(a + 1, r):
            K[:, (1 << a) | (1 << b)] = np.where(comp[:, a] == comp[:, b], model.bias_var, 0.0)
    return K


def _ring_state(model, srt, pat):
    """(log Fhat of f per latent node: (T, J, 2^r, r+1) ..) helper returning the total Fhat of f."""
    r = srt.shape[1]
    Mt = _neuron_set_moments(model, srt, pat)  # (T, 2^r, J)
    Lt = _series_log(_zeta(np.moveaxis(Mt, 2, 1), r))  # (T, J, 2^r, r+1)
    Lb = _zeta(_bias_cumulants(model, srt), r)[:, None]  # (T, 1, 2^r, r+1)
    return Lt, Lb


def _cumulants_full(model, srt, pat):
    """Joint cumulant of f over each full tuple (T,)."""
    r = srt.shape[1]
    Lt, Lb = _ring_state(model, srt, pat)
    if len(model.laws) == 1:
        return model.N * _moebius_full(Lt[:, 0], r) + _moebius_full(Lb[:, 0], r)
    Ff = np.einsum("j,tj...->t...", model.latent_w, _series_exp(model.N * Lt + Lb))
    return _moebius_full(_series_log(Ff), r)


def _moments_all(model, srt, pat):
    """Raw moments of f over every sub-tuple (T, 2^r)."""
    r = srt.shape[1]
    Lt, Lb = _ring_state(model, srt, pat)
    Ff = np.einsum("j,tj...->t...", model.latent_w, _series_exp(model.N * Lt + Lb))
    return _moebius(Ff, r), Ff


def _check_tuples(tuples, n_sites):
    if isinstance(tuples, np.ndarray) and tuples.ndim == 2:
        arr = tuples.astype(np.int64)
    else:
        rows = [tuple(int(v) for v in t) for t in tuples]
        lens = {len(t) for t in rows}
        if len(lens) != 1:
            raise ValueError("tuples: all tuples must have the same order (group them by order)")
        arr = np.asarray(rows, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"tuples: expected an int array (n_tuples, r), got shape {arr.shape}")
    if arr.shape[1] > MAX_ORDER:
        raise ValueError(f"tuples: order r <= {MAX_ORDER}, got {arr.shape[1]}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_sites):
        raise ValueError(f"tuples: site indices must lie in [0, {n_sites}), got range "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def _check_spec_geometry(spec, geometry):
    if not isinstance(spec, Spec):
        raise ValueError(f"spec: must be an nnft.ensembles spec, got {spec!r}")
    if hasattr(geometry, "kind"):
        spec.check_geometry(geometry)
    elif getattr(spec, "d_in", None) is not None and _positions(geometry).shape[1] != spec.d_in:
        raise ValueError(f"geometry: dimension does not match {type(spec).__name__}.d_in")


def _apply(fn, spec, geometry, tuples, fine=True):
    _check_spec_geometry(spec, geometry)
    V = _positions(geometry).shape[0]
    arr = _check_tuples(tuples, V * spec.n_components)
    model = _build(spec, geometry, fine=fine, order=max(arr.shape[1], 2))
    if model is None:
        return None, None
    out = None
    r = arr.shape[1]
    step = max(1, 2 ** 24 // (len(model.laws) * 2 ** r * (r + 1)))
    for ix, srt, pat in _tuple_batches(arr, V, spec.n_components):
        for s0 in range(0, len(ix), step):
            res = np.asarray(fn(model, srt[s0:s0 + step], pat))
            if out is None:
                out = np.empty((len(arr),) + res.shape[1:])
            out[ix[s0:s0 + step]] = res
    return out, model


def _with_error(fn, spec, geometry, tuples):
    vals, model = _apply(fn, spec, geometry, tuples, fine=True)
    if model is None:
        return None, None, None
    if model.exact:
        return vals, model, 0.0
    coarse, _ = _apply(fn, spec, geometry, tuples, fine=False)
    # the difference to the coarser rule, plus a rounding floor (64 ulp of the largest value)
    floor = 64 * np.finfo(float).eps * float(np.max(np.abs(vals), initial=0.0))
    return vals, model, float(np.max(np.abs(vals - coarse), initial=0.0)) + floor


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def _describe(model, err):
    if model.exact:
        return "closed form"
    return f"quadrature (err <= {max(err, 1e-16):.1e})"


def _by_order(fn):
    """Let ``fn(spec, geometry, tuples)`` take tuples of mixed orders (grouped internally; the
    method is the least accurate of the groups)."""
    import functools

    @functools.wraps(fn)
    def wrapper(spec, geometry, tuples):
        if isinstance(tuples, np.ndarray) or not len(tuples):
            return fn(spec, geometry, tuples)
        rows = [tuple(int(v) for v in t) for t in tuples]
        orders = sorted({len(t) for t in rows})
        if len(orders) == 1:
            return fn(spec, geometry, rows)
        out = np.empty(len(rows))
        methods = []
        for n in orders:
            ix = [i for i, t in enumerate(rows) if len(t) == n]
            v, m = fn(spec, geometry, [rows[i] for i in ix])
            if v is None:
                return None, None
            out[ix] = v
            methods.append(m)
        errs = [float(m.split("<= ")[1].rstrip(")")) for m in methods if "<= " in m]
        if not errs:
            return out, methods[0]
        return out, f"quadrature (err <= {max(errs):.1e})"

    return wrapper


@_by_order
def exact_connected(spec: Spec, geometry, tuples):
    """Exact connected correlators (joint cumulants) of ``spec`` at point tuples, at its width.

    Parameters
    ----------
    spec : Spec
        A single-hidden-layer net (GaussNet, ErfNet, ReLUNet, TanhNet, ActivationNet), a cos-net
        (LatticeCosNet, GaussianCosNet, ContinuumCosNet with d_in = 1) or a correlated family
        (CorrelatedNet, ScaleMixtureNet, MassMixtureCosNet). Its ``width`` is the N used.
    geometry : Lattice, PointSet or array (V, d)
        Sites, in C order (LatticeCosNet families need a periodic Lattice).
    tuples : int array (n_tuples, r) or list of sequences (mixed orders allowed in a list)
        Flat site indices (component-major, ``a * V + v``, when the spec has D components);
        order 1 gives the mean, 2 the covariance, r >= 3 the connected r-point function.

    Returns
    -------
    values : ndarray (n_tuples,) or None
    method : str or None
        ``"closed form"`` (exact up to rounding: Gaussian integrals, sums over lattice momenta),
        ``"quadrature (err <= e)"`` with ``e`` the largest difference to a coarser rule, or
        None when no exact theory is implemented for the spec (deep nonlinear nets, continuum
        cos-nets in d_in > 1, CorrelatedNet with D > 3).
    """
    vals, model, err = _with_error(_cumulants_full, spec, geometry, tuples)
    if model is None:
        theory = CONNECTED_THEORIES.get(type(spec))
        return theory(spec, geometry, tuples) if theory is not None else (None, None)
    return vals, _describe(model, err)


# Exact theories of further architectures, registered by their own modules (ensembles/deep.py
# registers DeepMLP): spec class -> fn(spec, geometry, tuples) -> (values, method)
CONNECTED_THEORIES: dict = {}


def exact_two_point(spec: Spec, geometry) -> np.ndarray:
    """(V, V) two-point matrix ``E[f(x) f(x')]`` per component from the exact theory (zero means)."""
    V = _positions(geometry).shape[0]
    iu = np.triu_indices(V)
    vals, _ = exact_moments(spec, geometry, np.stack(iu, 1))
    if vals is None:
        raise ValueError(f"exact_two_point: no exact theory for {type(spec).__name__}")
    K = np.empty((V, V))
    K[iu] = vals
    K[(iu[1], iu[0])] = vals
    return K


@_by_order
def exact_moments(spec: Spec, geometry, tuples):
    """Exact full (not connected) moments ``E[f(x_1) .. f(x_r)]`` at point tuples.

    Same arguments and ``(values, method)`` return as :func:`exact_connected`.
    """
    def full(model, srt, pat):
        M, _ = _moments_all(model, srt, pat)
        return M[:, -1]

    vals, model, err = _with_error(full, spec, geometry, tuples)
    if model is None:
        return None, None
    return vals, _describe(model, err)


def neuron_moments(spec: Spec, geometry, tuples):
    """Exact single-neuron hidden moments ``E[h(x_1) .. h(x_r)]`` (r <= 16) at point tuples.

    ``h`` is one hidden unit of a single-layer net (``sigma(W0.x + b0)``, Gauss-net normalised) or
    ``cos(w.x + c)`` for cos-nets (amplitude laws excluded; the continuum "amplitude" form
    includes its factor ``A/sqrt(w^2 + m^2)``). Tuples are site indices (no components).
    Returns ``(values, method)`` as :func:`exact_connected`; ReLU and Gauss moments agree with
    :func:`nnft.ensembles.kernels.neuron_moment`.
    """
    def fn(model, srt, pat):
        pos = srt % model.V
        r = srt.shape[1]
        canon = _canonical(pat)
        cset = set(np.unique(canon).tolist())
        if model.closed is not None:
            return model.closed(pos)
        P = _node_moments(model.H, model.w[:, :1], pos, cset)
        v = P[:, 2 ** r - 1, 0]
        if model.radial is not None:
            v = v * model.radial[r]
        return v

    _check_spec_geometry(spec, geometry)
    V = _positions(geometry).shape[0]
    _check_tuples(tuples, V)
    vals, model, err = _with_error(fn, spec, geometry, tuples)
    if model is None:
        return None, None
    return vals, _describe(model, err)


def gp_connected(spec: Spec, geometry, tuples):
    """Full n-point function of the Gaussian process with the spec's exact two-point function
    (Wick sums; odd orders zero): the "GP" reference of the deviation measure ``m_n``."""
    V = _positions(geometry).shape[0] * spec.n_components
    arr = _check_tuples(tuples, V)
    r = arr.shape[1]
    if r % 2:
        return np.zeros(len(arr))
    pairs = [(a, b) for a in range(r) for b in range(a + 1, r)]
    uniq = sorted({(min(t[a], t[b]), max(t[a], t[b])) for t in arr for a, b in pairs})
    G2, _ = exact_connected(spec, geometry, np.asarray(uniq))
    table = dict(zip(uniq, G2))
    out = np.zeros(len(arr))
    for i, t in enumerate(arr):
        for p in _pairings(r):
            term = 1.0
            for a, b in p:
                term *= table[(min(t[a], t[b]), max(t[a], t[b]))]
            out[i] += term
    return out


def _pairings(n):
    if n == 0:
        return [[]]
    out = []
    for j in range(1, n):
        rest = [i for i in range(1, n) if i != j]
        for p in _pairings(n - 2):
            out.append([(0, j)] + [(rest[a], rest[b]) for a, b in p])
    return out


def deviation_exact(spec: Spec, geometry, tuples):
    """Exact ``Delta G_n = G_n - G_n^GP`` per tuple and the papers' ``m_n = mean_t |Delta G_n| /
    |G_n^GP|`` at the spec's width (full n-point functions; the GP has the exact two-point
    function). Returns ``(delta (n_tuples,), m_n, method)``."""
    G, method = exact_moments(spec, geometry, tuples)
    if G is None:
        return None, None, None
    gp = gp_connected(spec, geometry, tuples)
    delta = G - gp
    with np.errstate(divide="ignore", invalid="ignore"):
        m = float(np.mean(np.abs(delta) / np.abs(gp)))
    return delta, m, method


# ---------------------------------------------------------------------------------------------
# W[J]
# ---------------------------------------------------------------------------------------------
def _source_Y(model, J):
    """Y[s, q, a] = sum_v J[s, a, v] H[q, v] over the hidden nodes."""
    return np.einsum("sav,qv->sqa", J, model.H)


def _check_sources(J, V, D):
    J = np.asarray(J, dtype=float)
    if J.ndim == 1:
        J = J[None]
    if J.ndim == 2 and J.shape[1] == V * D:
        J = J.reshape(J.shape[0], D, V)
    elif J.ndim == 2 and D == 1 and J.shape[1] == V:
        J = J[:, None, :]
    if J.ndim != 3 or J.shape[1:] != (D, V):
        raise ValueError(f"J: expected sources of shape (n_sources, {D * V}) (flat sites), got "
                         f"{np.shape(J)}")
    return J


def _W_given(model, J, j):
    """log E exp(J.t) for latent node j: (n_sources,); inf where it diverges; NaN unknown."""
    law = model.laws[j]
    wq = model.w[:, min(j, model.w.shape[1] - 1)]
    Y = _source_Y(model, J)  # (S, Q, D)
    if model.closed is not None:  # Gauss-net: log-normal hidden units
        if law.var > 0:
            return np.where(np.abs(J).sum((1, 2)) > 0, np.inf, 0.0)
    if model.radial is not None:  # ReLU polar: R^2 ~ chi^2_2 scales Y
        if law.kind != "gauss" or np.any(np.asarray(law.mean) != 0):
            return np.full(J.shape[0], np.nan)
        y2 = (Y * Y).sum(-1)
        c = law.var * y2
        with np.errstate(divide="ignore"):
            val = np.where(c < 1, 1.0 / (1.0 - np.minimum(c, 1 - 1e-300)), np.inf) @ wq
        return np.log(val)
    if not model.extra.get("W_ok", True):
        return np.full(J.shape[0], np.nan)
    g = law.mgf_given(Y)
    return np.log(g @ wq)


def exact_W(spec: Spec, geometry, J):
    """Exact generating functional ``W[J] = log E exp(sum_x J(x) f(x))`` at the spec's width.

    Parameters
    ----------
    J : array (n_sources, D*V) or (n_sources, D, V) or (V,)
        Sources on the flat sites (component-major).

    Returns
    -------
    W : ndarray (n_sources,) or None
        ``+inf`` where the expectation diverges (e.g. the Gauss-net at any J != 0: its hidden
        units are log-normal and ``E exp(c h^2)`` is infinite; ReLU when ``sigma_w^2 Y^2/N``
        reaches 1).
    method : str or None
    """
    _check_spec_geometry(spec, geometry)

    def compute(fine):
        X = _positions(geometry)
        model = _build(spec, geometry, fine=fine, order=32 if fine else 22)
        if model is None:
            return None, None
        Js = _check_sources(J, X.shape[0], spec.n_components)
        tot = Js.sum(2)  # (S, D)
        Wb = tot.sum(1) * model.bias_mean + 0.5 * model.bias_var * (tot * tot).sum(1)
        per = np.stack([model.N * _W_given(model, Js, j) for j in range(len(model.laws))], 1)
        lw = np.log(np.asarray(model.latent_w, float))
        with np.errstate(invalid="ignore"):
            Wt = special.logsumexp(per + lw[None], axis=1)
        return Wt + Wb, model

    W, model = compute(True)
    if model is None:
        return None, None
    if np.any(np.isnan(W)):
        return None, None
    c, _ = compute(False)
    fin = np.isfinite(W) & np.isfinite(c)
    err = float(np.max(np.abs(W[fin] - c[fin]), initial=0.0))
    note = "" if np.all(np.isfinite(W)) else " (+inf: E exp(J.f) diverges)"
    # W needs exp of the units: a quadrature even where the moments are exact sums
    meth = "closed form" if model.closed is not None else \
        f"quadrature (err <= {max(err, 1e-16):.1e})"
    return W, meth + note


def W_cumulant_series(spec: Spec, geometry, J, n_max: int = 6):
    """Cumulants ``kappa_n(X)``, ``X = sum_x J(x) f(x)``, n = 1..n_max, and the partial sums of
    ``W[J] = sum_n kappa_n(X)/n!`` (exact, at the spec's width).

    ``kappa_n(X) = sum J(x_1)..J(x_n) G_c^(n)(x_1..x_n)``: for i.i.d. neurons
    ``N kappa_n(J.t) + kappa_n(J.b)``, falling like ``N^(1 - n/2)`` at fixed J.

    Returns
    -------
    kappa : ndarray (n_sources, n_max)
    partial : ndarray (n_sources, n_max), partial[:, n-1] = sum_{k <= n} kappa_k / k!
    method : str
    """
    if not isinstance(n_max, (int, np.integer)) or not 1 <= n_max <= 24:
        raise ValueError(f"n_max: must be an int in [1, 24], got {n_max!r}")
    _check_spec_geometry(spec, geometry)

    def compute(fine):
        X = _positions(geometry)
        model = _build(spec, geometry, fine=fine, order=n_max)
        if model is None:
            return None, None
        Js = _check_sources(J, X.shape[0], spec.n_components)
        Y = _source_Y(model, Js)
        tot = Js.sum(2)
        kb = np.zeros((Js.shape[0], n_max + 1))
        kb[:, 1] = tot.sum(1) * model.bias_mean
        if n_max >= 2:
            kb[:, 2] = model.bias_var * (tot * tot).sum(1)
        mom = 0.0
        for j, law in enumerate(model.laws):
            wq = model.w[:, min(j, model.w.shape[1] - 1)]
            pm = law.power_moments_given(Y, n_max)  # (S, Q, n+1)
            if model.radial is not None:
                pm = pm * model.radial[: n_max + 1]
            mt = np.einsum("sqn,q->sn", pm, wq)  # moments of J.t
            kt = _cumulants_from_moments(mt[:, 1:])
            kf = model.N * kt + kb[:, 1:]
            mf = _moments_from_cumulants(kf)
            mom = mom + model.latent_w[j] * mf
        return _cumulants_from_moments(mom), model

    kap, model = compute(True)
    if model is None:
        return None, None, None
    fact = np.array([math.factorial(n) for n in range(1, n_max + 1)])
    partial = np.cumsum(kap / fact, axis=1)
    if model.exact:
        meth = "closed form"
    else:
        c, _ = compute(False)
        meth = f"quadrature (err <= {max(float(np.max(np.abs(kap - c))), 1e-16):.1e})"
    return kap, partial, meth


def _cumulants_from_moments(m):
    m = np.asarray(m, float)
    n = m.shape[-1]
    k = np.zeros_like(m)
    for j in range(1, n + 1):
        acc = m[..., j - 1].copy()
        for i in range(1, j):
            acc -= math.comb(j - 1, i - 1) * k[..., i - 1] * m[..., j - i - 1]
        k[..., j - 1] = acc
    return k


def _moments_from_cumulants(k):
    k = np.asarray(k, float)
    n = k.shape[-1]
    m = np.zeros_like(k)
    for j in range(1, n + 1):
        acc = k[..., j - 1].copy()
        for i in range(1, j):
            acc += math.comb(j - 1, i - 1) * k[..., i - 1] * m[..., j - i - 1]
        m[..., j - 1] = acc
    return m


__all__ = ["exact_connected", "exact_moments", "exact_two_point", "neuron_moments", "gp_connected",
           "deviation_exact", "exact_W", "W_cumulant_series", "MAX_ORDER"]


# ---------------------------------------------------------------------------------------------
# estimator variances and the sample planner
# ---------------------------------------------------------------------------------------------
def _set_partitions_masks(r):
    """All set partitions of range(r), each a list of block bitmasks."""
    def rec(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for p in rec(rest):
            for i in range(len(p)):
                yield p[:i] + [p[i] | (1 << first)] + p[i + 1:]
            yield [1 << first] + p
    return list(rec(list(range(r))))


def _doubling_maps(srt):
    """For sorted tuples (T, r): the sorted doubled tuple (T, 2r) and where copy 1 / copy 2 of
    each position sits in it (equal sites are exchangeable, so any consistent choice works)."""
    T, r = srt.shape
    d = np.sort(np.concatenate([srt, srt], 1), axis=1)
    i1 = np.empty((T, r), dtype=np.int64)
    i2 = np.empty((T, r), dtype=np.int64)
    for t in range(T):
        used = {}
        for k, v in enumerate(srt[t]):
            lo = int(np.searchsorted(d[t], v))
            cnt = int(np.sum(srt[t] == v))
            j = used.get(v, 0)
            i1[t, k] = lo + j
            i2[t, k] = lo + cnt + j
            used[v] = j + 1
    return d, i1, i2


def _gp_wick(K, tuples):
    """Wick sum of a zero-mean Gaussian with covariance K over tuples (T, n)."""
    T, n = tuples.shape
    if n % 2:
        return np.zeros(T)
    out = np.zeros(T)
    for p in _pairings(n):
        term = np.ones(T)
        for a, b in p:
            term = term * K[tuples[:, a], tuples[:, b]]
        out += term
    return out


def estimator_variance(spec: Spec, geometry, tuples):
    """Exact per-sample variances of the moment and connected-correlator estimators.

    For the plug-in estimator of the connected r-point function from M independent networks,
    ``Var = sigma_c^2 / M + O(1/M^2)`` with ``sigma_c^2 = Var(IF)``, the variance of the
    influence function ``IF = sum_B c_B (f_B - E f_B)``, ``f_B = prod_{i in B} f(x_i)``,
    ``c_B = d kappa / d E[f_B]``: it needs the moments of order up to 2r (8th for the 4-point,
    12th for the 6-point), computed exactly here. For the full moment ``E[f_1..f_r]`` (the
    quantity behind the deviation measure m_n) the per-sample variance is
    ``E[f_1^2..f_r^2] - E[f_1..f_r]^2``.

    Returns
    -------
    dict with arrays (n_tuples,): ``connected``, ``connected_var`` (sigma_c^2), ``full``,
    ``full_var``, ``gp_full_var`` (the same variance for the Gaussian process with the exact
    two-point function: the reference for rare-event flags), and ``method``.
    """
    _check_spec_geometry(spec, geometry)
    V = _positions(geometry).shape[0] * spec.n_components
    arr = np.sort(_check_tuples(tuples, V), axis=1)
    T, r = arr.shape
    if 2 * r > MAX_ORDER:
        raise ValueError(f"tuples: estimator variances need moments of order 2r <= {MAX_ORDER}, "
                         f"got r = {r}")
    d, i1, i2 = _doubling_maps(arr)

    def allm(model, srt, pat):
        return _moments_all(model, srt, pat)[0]

    M, model = _apply(allm, spec, geometry, d)
    if model is None:
        return None
    sub = np.arange(2 ** r)
    bits = ((sub[:, None] >> np.arange(r)) & 1).astype(bool)
    m1 = np.stack([np.bitwise_or.reduce(np.where(bits, 1 << i1[t][None, :], 0), axis=1)
                   for t in range(T)])  # (T, 2^r)
    m2 = np.stack([np.bitwise_or.reduce(np.where(bits, 1 << i2[t][None, :], 0), axis=1)
                   for t in range(T)])
    rows = np.arange(T)[:, None]
    Eb = M[rows, m1]  # E[f_B], B subset of the tuple
    Ebb = M[rows[:, :, None], m1[:, :, None] | m2[:, None, :]]  # E[f_B f_B']
    C = Ebb - Eb[:, :, None] * Eb[:, None, :]
    c = np.zeros((T, 2 ** r))
    kappa = np.zeros(T)
    for p in _set_partitions_masks(r):
        k = len(p)
        coef = (-1) ** (k - 1) * math.factorial(k - 1)
        prod = np.ones(T)
        for b in p:
            prod = prod * Eb[:, b]
        kappa += coef * prod
        for i, b in enumerate(p):
            others = np.ones(T)
            for j, b2 in enumerate(p):
                if j != i:
                    others = others * Eb[:, b2]
            c[:, b] += coef * others
    var_c = np.einsum("tb,tbc,tc->t", c, C, c)
    full = Eb[:, -1]
    var_full = C[:, -1, -1]
    K = exact_two_point(spec, geometry) if spec.n_components == 1 else None
    gp_var = (_gp_wick(K, d) - _gp_wick(K, arr) ** 2) if K is not None else np.full(T, np.nan)
    return {"connected": kappa, "connected_var": var_c, "full": full, "full_var": var_full,
            "gp_full_var": gp_var, "method": "closed form" if model.exact else "quadrature"}


#: most tuples plan_samples forms by itself (all sorted tuples of the sites) when none are given
MAX_AUTO_TUPLES = 5000
#: flag threshold: the variance of a product estimator exceeds its Gaussian-process value by this
RARE_EVENT_RATIO = 100.0


def _all_multisets(V, r):
    import itertools

    return np.array(list(itertools.combinations_with_replacement(range(V), r)), dtype=np.int64)


def plan_samples(spec: Spec, geometry, tuples=None, target_rel_error: float = 0.01,
                 orders=(4, 6), widths=None):
    """Samples needed, before any sampling, for a target relative error of m_n and G_c^(n).

    Parameters
    ----------
    spec : Spec
        Architecture; its width is used unless ``widths`` is given.
    geometry : Lattice, PointSet or array (V, d)
    tuples : None, dict {order: int array (n_t, order)} or list of tuples
        Point tuples (flat site indices). None: all sorted tuples of the sites (with repetition).
        A list is split by length.
    target_rel_error : float
        Target relative standard error (e.g. 0.01 for 1 %).
    orders : tuple of int
        Orders n of the n-point functions to plan (even, 2 <= n <= 8).
    widths : sequence of int, optional

    Returns
    -------
    list of dict, one per (width, order), with keys ``width``, ``order``, ``n_tuples``,
    ``m_n`` (the exact deviation measure mean_t |G_n - G_n^GP| / |G_n^GP|), ``rel_se_m_n_1``
    (relative standard error of m_n for one sample; conservative: tuple errors taken as fully
    correlated), ``samples_m_n`` (samples for ``target_rel_error`` on m_n),
    ``samples_connected_median`` / ``samples_connected_max`` (the same for the connected
    correlator at the median / worst tuple), ``variance_ratio_gp`` (largest ratio of the
    product-estimator variance to its Gaussian-process value), ``flags`` (list of str:
    "infinite variance", "rare-event dominated ..."), ``method``.
    """
    if not (isinstance(target_rel_error, (int, float)) and 0 < target_rel_error < 1):
        raise ValueError(f"target_rel_error: must be a number in (0, 1), got {target_rel_error!r}")
    for n in orders:
        if not isinstance(n, (int, np.integer)) or n < 2 or n > 8 or n % 2:
            raise ValueError(f"orders: each order must be an even int in [2, 8], got {n!r}")
    V = _positions(geometry).shape[0] * spec.n_components
    if tuples is None:
        if any(math.comb(V + n - 1, n) > MAX_AUTO_TUPLES for n in orders):
            raise ValueError(f"tuples: {V} sites give more than {MAX_AUTO_TUPLES} tuples of order "
                             f"{max(orders)}; pass the tuples to plan (e.g. cluster configurations)")
        by_order = {n: _all_multisets(V, n) for n in orders}
    elif isinstance(tuples, dict):
        by_order = {n: np.asarray(tuples[n], dtype=np.int64) for n in orders if n in tuples}
    else:
        rows = [tuple(int(v) for v in t) for t in tuples]
        by_order = {n: np.asarray([t for t in rows if len(t) == n], dtype=np.int64)
                    for n in orders if any(len(t) == n for t in rows)}
    widths = [spec.width] if widths is None else [int(w) for w in widths]
    out = []
    for N in widths:
        d = spec.to_dict()
        d.pop("arch")
        d["width"] = N
        sN = type(spec)(**d)
        for n, tup in by_order.items():
            ev = estimator_variance(sN, geometry, tup)
            if ev is None:
                out.append({"width": N, "order": n, "n_tuples": len(tup), "method": None,
                            "flags": ["no exact theory (Monte Carlo only)"]})
                continue
            gp = _gp_wick(exact_two_point(sN, geometry), np.sort(tup, axis=1)) \
                if spec.n_components == 1 else None
            flags = []
            finite = np.isfinite(ev["full_var"]) & np.isfinite(ev["connected_var"])
            if not np.all(finite):
                flags.append("infinite variance")
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = ev["full_var"] / ev["gp_full_var"]
            rmax = float(np.nanmax(ratio)) if np.any(np.isfinite(ratio)) else float("nan")
            if rmax > RARE_EVENT_RATIO:
                flags.append(f"rare-event dominated: estimator variance up to {rmax:.3g} x its "
                             "Gaussian value (heavy tails; sample errors are unreliable)")
            row = {"width": N, "order": n, "n_tuples": len(tup), "method": ev["method"],
                   "variance_ratio_gp": rmax, "flags": flags}
            if gp is not None and np.all(gp != 0):
                m_n = float(np.mean(np.abs(ev["full"] - gp) / np.abs(gp)))
                se1 = float(np.mean(np.sqrt(np.maximum(ev["full_var"], 0)) / np.abs(gp)))
                row.update(m_n=m_n, rel_se_m_n_1=se1 / m_n if m_n > 0 else float("inf"))
                row["samples_m_n"] = _samples(row["rel_se_m_n_1"], target_rel_error)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_c = np.sqrt(np.maximum(ev["connected_var"], 0)) / np.abs(ev["connected"])
            rel_c = rel_c[np.isfinite(rel_c)]
            if rel_c.size:
                row["samples_connected_median"] = _samples(float(np.median(rel_c)),
                                                           target_rel_error)
                row["samples_connected_max"] = _samples(float(np.max(rel_c)), target_rel_error)
            out.append(row)
    return out


def _samples(rel1, target):
    if not np.isfinite(rel1):
        return float("inf")
    return int(math.ceil((rel1 / target) ** 2))


__all__ += ["estimator_variance", "plan_samples", "RARE_EVENT_RATIO"]
