"""Lattice geometry and point sets (docs/conventions.md).

A :class:`Lattice` is a hypercubic grid of sites ``x = origin + a * n`` with
``n_mu in 0..L_mu-1``, periodic (default) or open. A :class:`PointSet` is an arbitrary list of
input points, as used by the founding papers' experiments (e.g. six points on a line). Both
expose the same small surface that generators and observables rely on:

``shape``   the array shape of one field configuration (``(L_0, ..., L_{d-1})`` or ``(n,)``),
``dim``     the Euclidean dimension of a position (the network's input dimension ``d_in``),
``volume``  the number of sites, ``positions()`` the ``(volume, dim)`` site coordinates in C order.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

BOUNDARIES = ("periodic", "open")


def _as_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of positive integers, got {shape!r}") from None
    if len(shape) == 0:
        raise ValueError("shape must have at least one dimension (d >= 1), got ()")
    out = []
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"shape must contain positive integers, got {shape!r}")
        out.append(int(s))
    return tuple(out)


@dataclass(frozen=True)
class HypercubicOp:
    """An element of the hypercubic group: an axis permutation followed by reflections.

    Acting on a field, ``(R phi)(x) = phi(R^{-1} x)``; ``perm[i]`` is the axis of the input that
    becomes axis ``i`` and ``flips[i]`` reflects output axis ``i``.
    """

    perm: tuple[int, ...]
    flips: tuple[bool, ...]

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm))) and not any(self.flips)

    def __str__(self) -> str:
        axes = ",".join(("-" if f else "+") + str(p) for p, f in zip(self.perm, self.flips))
        return f"({axes})"


class Lattice:
    """A d-dimensional hypercubic lattice.

    Parameters
    ----------
    shape : int or sequence of int
        Number of sites ``L_mu`` along each axis (d >= 1 axes, each >= 1).
    spacing : float
        Lattice spacing ``a`` > 0 (same on every axis).
    origin : float or sequence of float
        Position of site ``n = 0``; a scalar applies to every axis.
    boundary : {"periodic", "open"}
        Periodic lattices have momenta and translation symmetry; open ones are plain grids
        (e.g. input points of a network on an interval).

    Notes
    -----
    Momenta ``p_mu = 2 pi k_mu / (a L_mu)``, ``k_mu = 0..L_mu-1``, and
    ``phat^2 = sum_mu (4/a^2) sin^2(a p_mu / 2)`` (docs/conventions.md).
    """

    kind = "lattice"

    def __init__(self, shape, spacing: float = 1.0, origin=0.0, boundary: str = "periodic"):
        self.shape = _as_shape(shape)
        try:
            spacing = float(spacing)
        except (TypeError, ValueError):
            raise ValueError(f"spacing must be a positive finite number, got {spacing!r}") from None
        if not (math.isfinite(spacing) and spacing > 0):
            raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
        self.spacing = spacing
        if np.ndim(origin) == 0:
            origin = (origin,) * len(self.shape)
        try:
            origin = tuple(float(o) for o in origin)
        except (TypeError, ValueError):
            raise ValueError(f"origin must be a number or {len(self.shape)} numbers, got {origin!r}") from None
        if len(origin) != len(self.shape) or not all(math.isfinite(o) for o in origin):
            raise ValueError(
                f"origin must be a finite number or {len(self.shape)} finite numbers, got {origin!r}"
            )
        self.origin = origin
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        self.boundary = boundary

    # -- basic sizes -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Euclidean dimension d."""
        return len(self.shape)

    @property
    def volume(self) -> int:
        """Number of sites V = prod L_mu."""
        return int(np.prod(self.shape))

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    def __repr__(self) -> str:
        return (f"Lattice(shape={self.shape}, spacing={self.spacing}, origin={self.origin}, "
                f"boundary={self.boundary!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Lattice) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.shape, self.spacing, self.origin, self.boundary))

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "lattice", "shape": list(self.shape), "spacing": self.spacing,
                "origin": list(self.origin), "boundary": self.boundary}

    @staticmethod
    def from_dict(d: dict):
        """Rebuild a Lattice or PointSet from :meth:`to_dict` output."""
        kind = d.get("kind", "lattice")
        if kind == "points":
            return PointSet.from_dict(d)
        if kind != "lattice":
            raise ValueError(f"unknown geometry kind {kind!r} (expected 'lattice' or 'points')")
        return Lattice(d["shape"], d.get("spacing", 1.0), d.get("origin", 0.0),
                       d.get("boundary", "periodic"))

    # -- positions ---------------------------------------------------------------------------
    def axis_coords(self, mu: int, xp=np):
        """1-D coordinates ``origin_mu + a * n`` along axis ``mu``."""
        return self.origin[mu] + self.spacing * xp.arange(self.shape[mu], dtype=xp.float64)

    def coords(self, xp=np):
        """Site coordinates, shape ``(*shape, dim)``."""
        grids = xp.meshgrid(*[self.axis_coords(mu, xp) for mu in range(self.dim)], indexing="ij")
        return xp.stack(grids, axis=-1)

    def positions(self, xp=np):
        """Site coordinates flattened in C order, shape ``(volume, dim)``."""
        return self.coords(xp).reshape(self.volume, self.dim)

    def site_index(self, n) -> int:
        """Flat (C-order) index of integer site ``n`` (wrapped on periodic lattices)."""
        n = tuple(int(v) for v in n)
        if len(n) != self.dim:
            raise ValueError(f"site must have {self.dim} components, got {n}")
        if self.periodic:
            n = tuple(v % L for v, L in zip(n, self.shape))
        elif any(not 0 <= v < L for v, L in zip(n, self.shape)):
            raise ValueError(f"site {n} outside the open lattice {self.shape}")
        return int(np.ravel_multi_index(n, self.shape))

    def displacement(self, x, y):
        """Integer displacement ``y - x`` (minimal image on periodic lattices)."""
        x = np.asarray(x)
        y = np.asarray(y)
        r = y - x
        if self.periodic:
            L = np.asarray(self.shape)
            r = (r + L // 2) % L - L // 2
        return r

    def displacement_classes(self):
        """Group displacement indices into classes related by the lattice symmetries.

        Returns
        -------
        labels : ndarray of int, shape ``shape``
            Class label of each displacement index ``r`` (periodic lattices: minimal image).
        representatives : list of tuple
            For each label, the sorted tuple of absolute minimal-image components.
        """
        if not self.periodic:
            raise ValueError("displacement classes need boundary='periodic'")
        grids = np.meshgrid(*[np.arange(L) for L in self.shape], indexing="ij")
        comps = []
        for g, L in zip(grids, self.shape):
            comps.append(np.minimum(g, L - g))
        stacked = np.stack(comps, axis=-1).reshape(-1, self.dim)
        # axes of different length are not interchangeable: sort only within equal-length groups
        keys = []
        lengths = np.asarray(self.shape)
        for row in stacked:
            parts = []
            for L in sorted(set(self.shape)):
                parts.extend(sorted(row[lengths == L].tolist()))
            keys.append(tuple(parts))
        reps = sorted(set(keys), key=lambda t: (sum(v * v for v in t), t))
        index = {k: i for i, k in enumerate(reps)}
        labels = np.array([index[k] for k in keys]).reshape(self.shape)
        return labels, reps

    # -- momenta -----------------------------------------------------------------------------
    def _require_periodic(self, what: str):
        if not self.periodic:
            raise ValueError(f"{what} needs boundary='periodic' (this lattice is open)")

    def momenta(self, xp=np):
        """Momenta ``p_mu = 2 pi k_mu / (a L_mu)``, shape ``(*shape, dim)``, k in FFT order."""
        self._require_periodic("momenta")
        axes = [2 * np.pi * xp.arange(L, dtype=xp.float64) / (self.spacing * L) for L in self.shape]
        return xp.stack(xp.meshgrid(*axes, indexing="ij"), axis=-1)

    def phat2(self, xp=np):
        """Lattice momentum squared ``sum_mu (4/a^2) sin^2(a p_mu/2)``, shape ``shape``."""
        p = self.momenta(xp)
        a = self.spacing
        return xp.sum((4.0 / a**2) * xp.sin(a * p / 2) ** 2, axis=-1)

    def pmag2(self, xp=np):
        """Continuum ``|p|^2`` with each p_mu folded into (-pi/a, pi/a], shape ``shape``."""
        p = self.momenta(xp)
        a = self.spacing
        p = xp.where(p > np.pi / a, p - 2 * np.pi / a, p)
        return xp.sum(p * p, axis=-1)

    # -- hypercubic symmetry -----------------------------------------------------------------
    def symmetry_ops(self) -> list[HypercubicOp]:
        """All hypercubic operations that map this lattice onto itself.

        Permutations exchange only axes of equal length; every axis may be reflected.
        The identity is first.
        """
        ops = []
        for perm in itertools.permutations(range(self.dim)):
            if any(self.shape[p] != self.shape[i] for i, p in enumerate(perm)):
                continue
            for flips in itertools.product((False, True), repeat=self.dim):
                ops.append(HypercubicOp(tuple(perm), tuple(flips)))
        ops.sort(key=lambda o: (not o.is_identity,))
        return ops

    def apply_symmetry(self, phi, op: HypercubicOp, n_lead: int = 1):
        """Apply ``op`` to fields ``phi`` whose last ``dim`` axes are the lattice axes.

        Reflections map site ``n -> -n mod L`` on periodic lattices (site 0 fixed) and
        ``n -> L-1-n`` on open ones. ``n_lead`` counts the leading (sample, component) axes.
        """
        from .backend import array_module

        xp = array_module(phi)
        if phi.ndim != n_lead + self.dim:
            raise ValueError(f"phi must have {n_lead} leading axes and {self.dim} lattice axes, "
                             f"got shape {phi.shape}")
        out = xp.transpose(phi, tuple(range(n_lead)) + tuple(n_lead + p for p in op.perm))
        for i, f in enumerate(op.flips):
            if f:
                ax = n_lead + i
                out = xp.flip(out, axis=ax)
                if self.periodic:
                    out = xp.roll(out, 1, axis=ax)
        return out


class PointSet:
    """An arbitrary set of input points (open boundary, no momenta).

    Parameters
    ----------
    points : array_like, shape (n,) or (n, dim)
        The input points; a 1-D array is n points in one dimension.
    """

    kind = "points"
    boundary = "open"
    periodic = False

    def __init__(self, points):
        try:
            pts = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"points must be a numeric array of shape (n, dim), got {points!r}") from None
        if pts.ndim == 1:
            pts = pts[:, None]
        if pts.ndim != 2 or pts.shape[0] < 1 or pts.shape[1] < 1:
            raise ValueError(f"points must have shape (n, dim) with n, dim >= 1, got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points must be finite")
        self.points = pts
        self.points.setflags(write=False)

    @property
    def shape(self) -> tuple[int]:
        return (self.points.shape[0],)

    @property
    def dim(self) -> int:
        return self.points.shape[1]

    @property
    def volume(self) -> int:
        return self.points.shape[0]

    def positions(self, xp=np):
        return xp.asarray(self.points)

    def coords(self, xp=np):
        return self.positions(xp)

    def momenta(self, xp=np):
        raise ValueError("a PointSet has no momenta; use a periodic Lattice")

    phat2 = momenta

    def to_dict(self) -> dict:
        return {"kind": "points", "points": self.points.tolist()}

    @staticmethod
    def from_dict(d: dict) -> "PointSet":
        return PointSet(d["points"])

    def __eq__(self, other) -> bool:
        return isinstance(other, PointSet) and np.array_equal(self.points, other.points)

    def __hash__(self) -> int:
        return hash(self.points.tobytes())

    def __repr__(self) -> str:
        return f"PointSet({self.points.tolist()})"


def geometry_from_dict(d: dict):
    """Lattice or PointSet from its ``to_dict`` form."""
    return Lattice.from_dict(d)
