"""Feynman diagrams of a polynomial interaction: Wick contractions, topologies, evaluation.

Conventions
-----------
The interaction is ``Delta S = sum_k c_k int phi^k`` (a sum over sites on a lattice, an
integral over a domain in the continuum). Two conventions for the couplings:

* ``"plain"`` (the network-field-theory papers): ``c_3 = g``, ``c_4 = lambda``, ``c_5 = alpha``,
  ``c_6 = kappa`` with no factorials, ``Delta S = int [g phi^3 + lambda phi^4 + alpha phi^5 +
  kappa phi^6]``;
* ``"factorial"``: ``c_k = coupling_k / k!``, e.g. ``(g/4!) phi^4`` (convention C of lattice
  phi^4: ``lambda_plain = g_factorial / 24``).

A mass shift ``delta phi^2`` (valence 2) is allowed too: with ``S = 1/2 m^2 phi^2 + delta phi^2``
the exact propagator is the free one at ``m^2 + 2 delta`` (plain convention).

The n-point function ``G_n(x_1..x_n) = <phi(x_1)..phi(x_n)>`` to order r in the couplings is
``sum over vertex multisets {n_k} with sum n_k <= r`` of
``prod_k (-c_k)^{n_k} / n_k!`` times the sum over Wick contractions of the n external legs and the
``k n_k`` vertex legs, each contraction giving a product of free propagators with the vertex
positions summed (integrated). Dividing by Z removes every contraction that has a component
without external points (vacuum bubbles); those are dropped.

A :class:`Diagram` is a class of contractions that give the same multigraph once the internal
vertices are unlabelled; the external points stay labelled, so a diagram has a definite value at
``(x_1..x_n)``. Its ``contractions`` is the number of Wick contractions (vertices and legs
labelled) in the class, computed from the multigraph as
``prod_v deg_v! / (prod_v 2^{s_v} s_v! prod_{u<v} e_uv!)`` summed over the vertex labellings,
and checked by brute-force enumeration in the tests. A :class:`Topology` forgets the external
labels as well; its ``multiplicity`` sums ``contractions`` over the diagrams it contains. In the
plain convention the first-order 4-point function reads
``G4 = 3 (free) - lambda [72 (loop on a line) + 24 (cross)] - kappa [540 + 360]``.

Evaluation
----------
A :class:`PropagatorContext` supplies the free propagator between external points and
integration nodes: :meth:`PropagatorContext.lattice` (the free lattice propagator or any
``(V, V)`` matrix, vertex sums over all sites, internal lines by FFT convolution on periodic
lattices) or :meth:`PropagatorContext.continuum` (any kernel callable ``K(x, y)`` over a ball or
box of radius ``cutoff``: tensor Gauss-Legendre quadrature for d <= 3, Monte Carlo integration
with a standard error for any d).

This module imports only NumPy (and nnft.lattice); it never imports ensembles or observables.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = [
    "COUPLING_NAMES",
    "Interaction",
    "Diagram",
    "Topology",
    "diagrams",
    "topologies",
    "wick_contractions_bruteforce",
    "PropagatorContext",
    "evaluate_diagram",
    "perturbative_correlator",
]

#: Names of the couplings of the plain convention, by valence.
COUPLING_NAMES = {2: "delta", 3: "g", 4: "lambda", 5: "alpha", 6: "kappa"}
_NAME_TO_VALENCE = {v: k for k, v in COUPLING_NAMES.items()}
_NAME_TO_VALENCE["lam"] = 4


# --------------------------------------------------------------------------------------------
# interaction
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interaction:
    """Polynomial interaction ``Delta S = sum_k c_k int phi^k``.

    Parameters
    ----------
    couplings : dict
        Valence (int 2..8) or name (``delta``, ``g``, ``lambda``/``lam``, ``alpha``, ``kappa``)
        -> coupling value.
    convention : {"plain", "factorial"}
        ``"plain"``: ``c_k`` is the coupling (no factorials, the papers' convention);
        ``"factorial"``: ``c_k = coupling / k!``.
    """

    couplings: dict = field(default_factory=dict)
    convention: str = "plain"

    def __post_init__(self):
        if self.convention not in ("plain", "factorial"):
            raise ValueError(f"convention: must be 'plain' or 'factorial', got {self.convention!r}")
        out = {}
        for k, v in dict(self.couplings).items():
            if isinstance(k, str):
                if k not in _NAME_TO_VALENCE:
                    raise ValueError(f"couplings: unknown name {k!r}; allowed "
                                     f"{sorted(_NAME_TO_VALENCE)} or a valence 2..8")
                k = _NAME_TO_VALENCE[k]
            if not isinstance(k, (int, np.integer)) or not 2 <= int(k) <= 8:
                raise ValueError(f"couplings: valence must be an int in 2..8, got {k!r}")
            out[int(k)] = float(v)
        object.__setattr__(self, "couplings", dict(sorted(out.items())))

    @property
    def valences(self) -> tuple:
        return tuple(k for k, v in self.couplings.items() if v != 0.0)

    def vertex_factor(self, k: int) -> float:
        """``c_k``: the coefficient of ``phi^k`` in Delta S."""
        c = self.couplings.get(k, 0.0)
        return c / math.factorial(k) if self.convention == "factorial" else c

    def weight(self, valences) -> float:
        """``prod_v (-c_{k_v}) / prod_k n_k!`` for the vertex multiset ``valences``."""
        w = 1.0
        for k in valences:
            w *= -self.vertex_factor(k)
        for k in set(valences):
            w /= math.factorial(list(valences).count(k))
        return w


# --------------------------------------------------------------------------------------------
# multigraph enumeration
# --------------------------------------------------------------------------------------------
def _multigraphs(deg):
    """All symmetric non-negative adjacency matrices with row sums (self-loops count 2) = deg.

    Vertices with ``deg == 1`` are external legs (no self-loops possible).
    """
    N = len(deg)
    rem = list(deg)
    adj = [[0] * N for _ in range(N)]

    def distribute(u, v, left):
        if left == 0:
            yield
            return
        if v >= N:
            return
        cap = min(left, rem[v])
        # capacity of the remaining vertices must be enough
        if sum(rem[w] for w in range(v, N)) < left:
            return
        for e in range(cap, -1, -1):
            adj[u][v] = adj[v][u] = e
            rem[v] -= e
            yield from distribute(u, v + 1, left - e)
            rem[v] += e
            adj[u][v] = adj[v][u] = 0

    def rec(u):
        if u == N:
            yield tuple(tuple(r) for r in adj)
            return
        r0 = rem[u]
        for s in range(r0 // 2, -1, -1):
            adj[u][u] = s
            rem[u] = 0
            for _ in distribute(u, u + 1, r0 - 2 * s):
                yield from rec(u + 1)
            rem[u] = r0
            adj[u][u] = 0

    yield from rec(0)


def _labelled_count(adj, deg):
    """Number of leg matchings realising the labelled multigraph ``adj``."""
    num = 1
    for d in deg:
        num *= math.factorial(d)
    den = 1
    N = len(deg)
    for u in range(N):
        s = adj[u][u]
        den *= 2 ** s * math.factorial(s)
        for v in range(u + 1, N):
            den *= math.factorial(adj[u][v])
    return num // den


def _permute(adj, perm):
    N = len(adj)
    return tuple(tuple(adj[perm[i]][perm[j]] for j in range(N)) for i in range(N))


def _internal_perms(n, valences):
    """Permutations of internal vertices (indices n..) that keep each valence class in place."""
    groups = {}
    for i, k in enumerate(valences):
        groups.setdefault(k, []).append(n + i)
    blocks = list(groups.values())
    for choice in itertools.product(*[itertools.permutations(b) for b in blocks]):
        perm = list(range(n + len(valences)))
        for b, c in zip(blocks, choice):
            for src, dst in zip(b, c):
                perm[src] = dst
        yield perm


def _canonical(adj, n, valences, external_perms=False):
    best = None
    ext = itertools.permutations(range(n)) if external_perms else [tuple(range(n))]
    ints = list(_internal_perms(n, valences))
    for pe in ext:
        for pi in ints:
            perm = list(pi)
            perm[:n] = pe
            cand = _permute(adj, perm)
            if best is None or cand < best:
                best = cand
    return best


def _components(adj):
    N = len(adj)
    seen = [-1] * N
    c = 0
    for s in range(N):
        if seen[s] >= 0:
            continue
        stack = [s]
        seen[s] = c
        while stack:
            u = stack.pop()
            for v in range(N):
                if adj[u][v] and seen[v] < 0:
                    seen[v] = c
                    stack.append(v)
        c += 1
    return seen, c


@dataclass(frozen=True)
class Diagram:
    """One diagram of the n-point function: a multigraph with labelled external points.

    Attributes
    ----------
    n_external : int
        Number of external points (vertices ``0..n-1`` of the adjacency matrix).
    valences : tuple of int
        Valences of the internal vertices (vertices ``n..``), sorted.
    adjacency : tuple of tuples
        Symmetric multigraph; off-diagonal entries count propagators, diagonal entries count
        self-loops (tadpoles, each a factor ``K(y, y)``).
    contractions : int
        Number of Wick contractions (legs and vertices labelled) giving this diagram.
    """

    n_external: int
    valences: tuple
    adjacency: tuple
    contractions: int

    @property
    def order(self) -> int:
        return len(self.valences)

    @property
    def connected(self) -> bool:
        return _components(self.adjacency)[1] == 1

    @property
    def vacuum_free(self) -> bool:
        lab, nc = _components(self.adjacency)
        return all(any(lab[i] == c for i in range(self.n_external)) for c in range(nc))

    @property
    def amputable(self) -> bool:
        """True when every external point attaches to an internal vertex."""
        n = self.n_external
        return self.order > 0 and all(sum(self.adjacency[i][:n]) == 0 for i in range(n))

    def coefficient(self, convention="plain") -> Fraction:
        """``(-1)^r contractions / prod_k n_k!`` (times ``prod 1/k!`` in the factorial
        convention): the number multiplying ``prod_v coupling_v`` times the diagram's value."""
        c = Fraction((-1) ** self.order * self.contractions)
        for k in set(self.valences):
            c /= math.factorial(self.valences.count(k))
        if convention == "factorial":
            for k in self.valences:
                c /= math.factorial(k)
        elif convention != "plain":
            raise ValueError(f"convention: must be 'plain' or 'factorial', got {convention!r}")
        return c

    def topology_key(self):
        return (self.n_external, self.valences,
                _canonical(self.adjacency, self.n_external, self.valences, external_perms=True))

    def describe(self) -> str:
        """Human-readable edge list, externals x1.., internal vertices y1.. ."""
        n = self.n_external
        names = [f"x{i + 1}" for i in range(n)] + [f"y{j + 1}" for j in range(self.order)]
        parts = []
        N = len(self.adjacency)
        for u in range(N):
            if self.adjacency[u][u]:
                parts.append(f"{names[u]}-loop^{self.adjacency[u][u]}")
            for v in range(u + 1, N):
                e = self.adjacency[u][v]
                if e:
                    parts.append(f"{names[u]}-{names[v]}" + (f"^{e}" if e > 1 else ""))
        return " ".join(parts) or "(empty)"


@dataclass(frozen=True)
class Topology:
    """A diagram with its external labels forgotten.

    ``multiplicity`` sums the Wick contractions of every labelled diagram in the class (the
    numbers 72, 24, 540, 360 of the papers' first-order 4-point function).
    """

    n_external: int
    valences: tuple
    diagrams: tuple
    multiplicity: int

    @property
    def order(self):
        return len(self.valences)

    @property
    def connected(self):
        return self.diagrams[0].connected

    def coefficient(self, convention="plain") -> Fraction:
        """Signed coefficient of the class (see :meth:`Diagram.coefficient`)."""
        return sum((d.coefficient(convention) for d in self.diagrams), Fraction(0))

    def describe(self):
        return self.diagrams[0].describe()


def _vertex_multisets(valences, order, exact=False):
    orders = [order] if exact else range(order + 1)
    for r in orders:
        yield from itertools.combinations_with_replacement(sorted(valences), r)


@lru_cache(maxsize=256)
def _diagrams_for(n, valences):
    deg = (1,) * n + tuple(valences)
    classes = {}
    for adj in _multigraphs(deg):
        cnt = _labelled_count(adj, deg)
        key = _canonical(adj, n, valences)
        classes[key] = classes.get(key, 0) + cnt
    return tuple(Diagram(n, tuple(valences), k, c) for k, c in sorted(classes.items()))


def diagrams(n, valences=(4,), order=1, *, connected=False, amputated=False, vacuum=False,
             exact_order=False):
    """All diagrams of the n-point function up to ``order`` vertices.

    Parameters
    ----------
    n : int
        Number of external points (0..8).
    valences : int, sequence of int, or Interaction
        Vertex valences that may appear (an Interaction contributes its non-zero couplings).
    order : int
        Maximal number of vertices r (0..4).
    connected : bool
        Keep only connected diagrams.
    amputated : bool
        Keep only diagrams whose external points all attach to internal vertices (those have an
        amputated value; implies ``order >= 1``).
    vacuum : bool
        Keep diagrams with vacuum components too (they cancel against Z; for counting checks).
    exact_order : bool
        Only diagrams with exactly ``order`` vertices.

    Returns
    -------
    list of Diagram, sorted by order then valences.
    """
    if isinstance(valences, Interaction):
        valences = valences.valences
    if isinstance(valences, (int, np.integer)):
        valences = (int(valences),)
    valences = tuple(sorted(set(int(k) for k in valences)))
    if not isinstance(n, (int, np.integer)) or not 0 <= n <= 8:
        raise ValueError(f"n: number of external points must be an int in 0..8, got {n!r}")
    if not isinstance(order, (int, np.integer)) or not 0 <= order <= 4:
        raise ValueError(f"order: must be an int in 0..4, got {order!r}")
    if any(not 2 <= k <= 8 for k in valences):
        raise ValueError(f"valences: each must be in 2..8, got {valences}")
    out = []
    for vs in _vertex_multisets(valences, order, exact_order):
        if (n + sum(vs)) % 2:
            continue
        for d in _diagrams_for(int(n), vs):
            if not vacuum and not d.vacuum_free:
                continue
            if connected and not d.connected:
                continue
            if amputated and not d.amputable:
                continue
            out.append(d)
    return out


def topologies(n, valences=(4,), order=1, **kwargs):
    """Group :func:`diagrams` into topologies (external labels forgotten).

    Returns
    -------
    list of Topology, with ``multiplicity`` the summed Wick-contraction count.
    """
    groups = {}
    for d in diagrams(n, valences, order, **kwargs):
        groups.setdefault(d.topology_key(), []).append(d)
    out = [Topology(k[0], k[1], tuple(ds), sum(d.contractions for d in ds))
           for k, ds in groups.items()]
    return sorted(out, key=lambda t: (t.order, t.valences, -t.multiplicity))


def wick_contractions_bruteforce(n, valences):
    """Count Wick contractions by enumerating every perfect matching of the legs.

    Independent of the multigraph formula used by :func:`diagrams` (for tests): returns a dict
    ``canonical adjacency -> number of matchings`` over all contractions (vacuum ones included).
    Cost ``(n + sum valences - 1)!!``; use for up to ~14 legs.
    """
    valences = tuple(sorted(valences))
    owner = list(range(n))
    for j, k in enumerate(valences):
        owner += [n + j] * k
    L = len(owner)
    N = n + len(valences)
    counts = {}
    if L % 2:
        return counts
    adj = [0] * (N * N)
    raw = {}

    def rec(free):
        if not free:
            key = tuple(adj)
            raw[key] = raw.get(key, 0) + 1
            return
        a = free[0]
        rest = free[1:]
        for i, b in enumerate(rest):
            u, v = owner[a], owner[b]
            adj[u * N + v] += 1
            if u != v:
                adj[v * N + u] += 1
            rec(rest[:i] + rest[i + 1:])
            adj[u * N + v] -= 1
            if u != v:
                adj[v * N + u] -= 1

    rec(list(range(L)))
    for flat, c in raw.items():
        m = tuple(tuple(flat[u * N:(u + 1) * N]) for u in range(N))
        key = _canonical(m, n, valences)
        counts[key] = counts.get(key, 0) + c
    return counts


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
class PropagatorContext:
    """Free propagator between external points and integration nodes of the internal vertices.

    Build with :meth:`lattice` or :meth:`continuum`. External points are indices into
    ``points``; tuples of them are evaluated at once.
    """

    def __init__(self, *, ext_node, node_node, node_diag, weights, ext_ext, n_points,
                 mc_batches=None, circulant=None, shape=None, node_of_point=None, kind="matrix",
                 info=None, nodes=None):
        self._ext_node = ext_node        # callable(batch) -> (P, Q)
        self._node_node = node_node      # callable(batch, batch2) -> (Q, Q)
        self._node_diag = node_diag      # callable(batch) -> (Q,)
        self._weights = weights          # callable(batch) -> (Q,)
        self.ext_ext = ext_ext           # (P, P)
        self.n_points = n_points
        self.mc_batches = mc_batches     # None: deterministic, else number of batches
        self.circulant = circulant       # displacement function (lattice shape) for FFT lines
        self.shape = shape
        self.node_of_point = node_of_point  # lattice: the node index of each point (amputation)
        self.kind = kind
        self.info = info or {}
        self._nodes = nodes              # callable(batch) -> (Q, d) node positions, or None

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def lattice(cls, lattice, propagator):
        """Lattice sums over all sites with propagator ``G``.

        Parameters
        ----------
        lattice : Lattice or PointSet
            Geometry; points and nodes are its flat sites.
        propagator : array
            ``G`` as a function of displacement (shape ``lattice.shape``, periodic lattices; e.g.
            ``free_propagator(lattice, m2)``), used with FFT convolutions for internal lines, or
            a ``(V, V)`` matrix over flat sites (any geometry).
        """
        shape = tuple(getattr(lattice, "shape", ()))
        V = int(np.prod(shape)) if shape else int(getattr(lattice, "n_points"))
        G = np.asarray(propagator, dtype=float)
        circ = None
        if G.shape == shape and not (len(shape) == 2 and shape[0] == shape[1] == V):
            if not getattr(lattice, "periodic", False):
                raise ValueError("propagator: a displacement function needs a periodic Lattice; "
                                 "pass a (V, V) matrix otherwise")
            circ = G
            idx = np.stack(np.unravel_index(np.arange(V), shape), axis=-1)
            disp = (idx[None, :, :] - idx[:, None, :]) % np.asarray(shape)
            M = G[tuple(np.moveaxis(disp, -1, 0))]
        elif G.shape == (V, V):
            M = G
        else:
            raise ValueError(f"propagator: expected shape {shape} (displacement function) or "
                             f"({V}, {V}) (matrix), got {G.shape}")
        w = np.ones(V)
        pos = None
        if hasattr(lattice, "positions"):
            P = np.asarray(lattice.positions(), dtype=float).reshape(V, -1)
            pos = lambda b=0: P  # noqa: E731
        return cls(ext_node=lambda b=0: M, node_node=lambda b=0, c=0: M, nodes=pos,
                   node_diag=lambda b=0: np.diag(M).copy(), weights=lambda b=0: w, ext_ext=M,
                   n_points=V, circulant=circ, shape=shape, node_of_point=np.arange(V),
                   kind="lattice", info={"integration": "lattice sum", "n_nodes": V})

    @classmethod
    def continuum(cls, kernel, points, cutoff, *, domain="ball", center=None, method="auto",
                  n_nodes=24, n_mc=1024, n_batches=16, seed=0):
        """Continuum vertices integrated over ``|y - center| < cutoff`` (ball) or a cube.

        Parameters
        ----------
        kernel : callable ``K(x, y)``
            Free propagator (e.g. a network's GP kernel) on arrays ``(..., d)`` broadcasting
            against each other.
        points : array (P, d)
            External points.
        cutoff : float
            Radius of the ball, or half-edge of the cube ``|y_mu - center_mu| < cutoff``.
        domain : {"ball", "box"}
        method : {"auto", "quadrature", "montecarlo"}
            ``"quadrature"``: tensor Gauss-Legendre with ``n_nodes`` per axis (d <= 3, the ball
            in polar coordinates); ``"montecarlo"``: ``n_batches`` independent batches of
            ``n_mc`` uniform nodes, each internal vertex with its own batch stream (value = batch
            mean, error = batch standard error). ``"auto"``: quadrature for d <= 3.
        """
        P = np.asarray(points, dtype=float)
        if P.ndim == 1:
            P = P[:, None]
        d = P.shape[1]
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff: must be a positive number, got {cutoff!r}")
        if domain not in ("ball", "box"):
            raise ValueError(f"domain: must be 'ball' or 'box', got {domain!r}")
        if method not in ("auto", "quadrature", "montecarlo"):
            raise ValueError(f"method: must be 'auto', 'quadrature' or 'montecarlo', "
                             f"got {method!r}")
        c = np.zeros(d) if center is None else np.asarray(center, dtype=float)
        if method == "auto":
            method = "quadrature" if d <= 3 else "montecarlo"
        if method == "quadrature" and d > 3:
            raise ValueError(f"method: quadrature is implemented for d <= 3, got d = {d}")
        Kee = np.asarray(kernel(P[:, None, :], P[None, :, :]), dtype=float)
        if method == "quadrature":
            y, w = _quadrature(d, cutoff, domain, n_nodes)
            y = y + c
            Kpy = np.asarray(kernel(P[:, None, :], y[None, :, :]), dtype=float)
            kdiag = np.asarray(kernel(y, y), dtype=float)

            @lru_cache(maxsize=1)
            def kyy():  # (Q, Q): built only when a diagram has an internal line
                return np.asarray(kernel(y[:, None, :], y[None, :, :]), dtype=float)

            return cls(ext_node=lambda b=0: Kpy, node_node=lambda b=0, b2=0: kyy(),
                       nodes=lambda b=0: y,
                       node_diag=lambda b=0: kdiag, weights=lambda b=0: w,
                       ext_ext=Kee, n_points=len(P), kind="continuum",
                       info={"integration": "quadrature", "n_nodes": len(w), "domain": domain,
                             "cutoff": float(cutoff)})
        vol = (math.pi ** (d / 2) / math.gamma(d / 2 + 1) if domain == "ball" else 2.0 ** d) \
            * cutoff ** d

        @lru_cache(maxsize=64)
        def nodes(b):
            rng = np.random.default_rng([int(seed), int(b)])
            if domain == "box":
                y = rng.uniform(-cutoff, cutoff, size=(n_mc, d))
            else:
                g = rng.standard_normal((n_mc, d))
                g /= np.linalg.norm(g, axis=1, keepdims=True)
                y = g * cutoff * rng.uniform(size=(n_mc, 1)) ** (1.0 / d)
            return y + c

        w = np.full(n_mc, vol / n_mc)
        return cls(ext_node=lambda b: np.asarray(kernel(P[:, None, :], nodes(b)[None]), float),
                   node_node=lambda b, b2: np.asarray(kernel(nodes(b)[:, None], nodes(b2)[None]),
                                                      float),
                   node_diag=lambda b: np.asarray(kernel(nodes(b), nodes(b)), float),
                   weights=lambda b: w, ext_ext=Kee, n_points=len(P), mc_batches=int(n_batches),
                   nodes=nodes,
                   kind="continuum", info={"integration": "montecarlo", "n_nodes": n_mc,
                                           "n_batches": int(n_batches), "domain": domain,
                                           "cutoff": float(cutoff)})


def _quadrature(d, cutoff, domain, n):
    x, wx = np.polynomial.legendre.leggauss(n)
    if domain == "box" or d == 1:
        grids = np.meshgrid(*([cutoff * x] * d), indexing="ij")
        W = np.ones(())
        for _ in range(d):
            W = np.multiply.outer(W, cutoff * wx)
        return np.stack([g.ravel() for g in grids], -1), W.ravel()
    r = cutoff * (x + 1) / 2
    wr = cutoff / 2 * wx
    if d == 2:
        th = 2 * np.pi * np.arange(2 * n) / (2 * n)
        R, T = np.meshgrid(r, th, indexing="ij")
        W = (wr * r)[:, None] * np.full(2 * n, 2 * np.pi / (2 * n))[None]
        return np.stack([R * np.cos(T), R * np.sin(T)], -1).reshape(-1, 2), W.ravel()
    ct, wct = x, wx
    ph = 2 * np.pi * np.arange(2 * n) / (2 * n)
    R, C, Ph = np.meshgrid(r, ct, ph, indexing="ij")
    S = np.sqrt(1 - C ** 2)
    W = (wr * r ** 2)[:, None, None] * wct[None, :, None] * (2 * np.pi / (2 * n))
    pts = np.stack([R * S * np.cos(Ph), R * S * np.sin(Ph), R * C], -1).reshape(-1, 3)
    return pts, np.broadcast_to(W, R.shape).ravel()


_LETTERS = "abcdefghijklmnopqrsuvwxyz"  # 't' is the tuple axis


def _circulant_apply(circ_e, B, shape):
    """``(K^{e} B)(y) = sum_z K(y - z)^e B(z)`` for each row of B (n_t, V) by FFT."""
    nt = B.shape[0]
    Bf = np.fft.fftn(B.reshape((nt,) + shape), axes=tuple(range(1, len(shape) + 1)))
    Kf = np.fft.fftn(circ_e)
    out = np.fft.ifftn(Bf * Kf[None], axes=tuple(range(1, len(shape) + 1))).real
    return out.reshape(nt, -1)


def _evaluate_once(diagram, tuples, ctx, amputated, batch, vertex_weight=None):
    n = diagram.n_external
    r = diagram.order
    adj = diagram.adjacency
    t = tuples
    nt = t.shape[0]
    val = np.ones(nt)
    for i in range(n):
        for j in range(i + 1, n):
            e = adj[i][j]
            if e:
                val = val * ctx.ext_ext[t[:, i], t[:, j]] ** e
    if r == 0:
        return val
    bidx = [batch * r + v if ctx.mc_batches else 0 for v in range(r)]
    factors = []
    for v in range(r):
        node = n + v
        w = ctx._weights(bidx[v])
        if vertex_weight is not None:
            if ctx._nodes is None:
                raise ValueError("vertex_weight: this context has no node positions")
            w = w * np.asarray(vertex_weight(ctx._nodes(bidx[v])), dtype=float)
        a = np.broadcast_to(w, (nt, w.size)).copy()
        s = adj[node][node]
        if s:
            a *= ctx._node_diag(bidx[v])[None] ** s
        Kpn = None
        for i in range(n):
            e = adj[i][node]
            if not e:
                continue
            if amputated:
                if ctx.node_of_point is None:
                    raise ValueError("amputated: needs a lattice context (externals on nodes)")
                delta = np.zeros((nt, w.size))
                at = ctx.node_of_point[t[:, i]]
                delta[np.arange(nt), at] = 1.0 / w[at]
                a *= delta ** e
            else:
                if Kpn is None:
                    Kpn = ctx._ext_node(bidx[v])
                a *= Kpn[t[:, i]] ** e
        factors.append(a)
    if r == 1:
        return val * factors[0].sum(axis=1)
    edges = [(u, v, adj[n + u][n + v]) for u in range(r) for v in range(u + 1, r)
             if adj[n + u][n + v]]
    if r == 2 and ctx.circulant is not None:
        if not edges:
            return val * factors[0].sum(1) * factors[1].sum(1)
        e = edges[0][2]
        KB = _circulant_apply(ctx.circulant ** e, factors[1], ctx.shape)
        return val * np.einsum("ty,ty->t", factors[0], KB)
    ops = []
    subs = []
    for v in range(r):
        ops.append(factors[v])
        subs.append("t" + _LETTERS[v])
    for u, v, e in edges:
        ops.append(ctx._node_node(bidx[u], bidx[v]) ** e)
        subs.append(_LETTERS[u] + _LETTERS[v])
    return val * np.einsum(",".join(subs) + "->t", *ops, optimize=True)


def evaluate_diagram(diagram, tuples, ctx, *, amputated=False, vertex_weight=None):
    """Value of ``diagram`` at each tuple of external points (without its coefficient).

    Parameters
    ----------
    diagram : Diagram
    tuples : int array (n_t, n)
        Indices of the external points into the context's points (flat sites on a lattice).
    ctx : PropagatorContext
    amputated : bool
        Replace each external leg by a delta function (the vertex sits at the external point);
        lattice contexts only; the diagram must be :attr:`Diagram.amputable`.
    vertex_weight : callable(y (Q, d)) -> (Q,), optional
        Position-dependent coupling profile multiplying every internal vertex (for
        x-dependent couplings ``c(y) = c f(y)``); positions are ``lattice.positions()`` on a
        lattice and the integration nodes in the continuum.

    Returns
    -------
    (value, error) : arrays (n_t,); error is zero except for Monte Carlo integration.
    """
    t = np.asarray(tuples, dtype=np.int64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != diagram.n_external:
        raise ValueError(f"tuples: expected an int array (n_tuples, {diagram.n_external})")
    if t.size and (t.min() < 0 or t.max() >= ctx.n_points):
        raise ValueError(f"tuples: point index out of range 0..{ctx.n_points - 1}")
    if amputated and not diagram.amputable:
        raise ValueError("amputated: the diagram has an external point joined directly to "
                         "another (no amputated value)")
    vals = _evaluate_batches(diagram, t, ctx, amputated, vertex_weight)
    if vals.shape[0] == 1:
        return vals[0], np.zeros(t.shape[0])
    return vals.mean(0), vals.std(0, ddof=1) / math.sqrt(vals.shape[0])


def _evaluate_batches(diagram, t, ctx, amputated, vertex_weight=None):
    """(n_batches, n_t) values: one row for deterministic contexts."""
    if not ctx.mc_batches:
        return _evaluate_once(diagram, t, ctx, amputated, 0, vertex_weight)[None]
    if diagram.order == 0:
        v = _evaluate_once(diagram, t, ctx, amputated, 0)
        return np.broadcast_to(v, (ctx.mc_batches, v.size))
    return np.array([_evaluate_once(diagram, t, ctx, amputated, b, vertex_weight)
                     for b in range(ctx.mc_batches)])


def perturbative_correlator(n, interaction, ctx, tuples, *, order=1, connected=False,
                            amputated=False):
    """``G_n`` (or its connected / amputated part) to ``order`` in the couplings.

    Parameters
    ----------
    n : int
        Number of external points.
    interaction : Interaction
    ctx : PropagatorContext
    tuples : int array (n_t, n)
    order : int
        Maximal number of vertices.
    connected, amputated : bool
        As in :func:`diagrams`.

    Returns
    -------
    dict with ``value`` (n_t,), ``error`` (n_t,), ``by_order`` (order + 1, n_t) (the
    contribution of exactly r vertices), ``by_order_error`` and ``diagrams`` (list of
    ``(Diagram, coefficient * couplings, value)``).
    """
    if not isinstance(interaction, Interaction):
        raise ValueError("interaction: expected an nnft.lattice.diagrams.Interaction")
    t = np.asarray(tuples, dtype=np.int64)
    if t.ndim == 1:
        t = t[None]
    nb = ctx.mc_batches or 1
    by_b = np.zeros((nb, order + 1, t.shape[0]))
    rows = []
    for d in diagrams(n, interaction.valences, order, connected=connected, amputated=amputated):
        coef = (-1) ** d.order * d.contractions
        for k in set(d.valences):
            coef /= math.factorial(d.valences.count(k))
        for k in d.valences:
            coef *= interaction.vertex_factor(k)
        vb = _evaluate_batches(d, t, ctx, amputated)
        by_b[:, d.order] += coef * vb
        rows.append((d, coef, vb.mean(0)))
    by = by_b.mean(0)
    tot = by_b.sum(1)
    if nb > 1:  # batches share nodes across diagrams: errors from the per-batch totals
        err_o = by_b.std(0, ddof=1) / math.sqrt(nb)
        err = tot.std(0, ddof=1) / math.sqrt(nb)
    else:
        err_o = np.zeros_like(by)
        err = np.zeros(t.shape[0])
    return {"value": tot.mean(0), "error": err, "by_order": by,
            "by_order_error": err_o, "diagrams": rows}
