"""Lattice actions: free scalar and phi^4 in the conventions C, B, A and H.

All four conventions of docs/conventions.md (lattice spacing a = 1, periodic boundaries,
any dimension d):

=====  ==================================================================================
name   S = sum_x [...]
=====  ==================================================================================
C      1/2 sum_mu (phi_{x+mu} - phi_x)^2 + 1/2 m^2 phi_x^2 + (g/4!) phi_x^4   (canonical)
B      1/2 sum_mu (phi_{x+mu} - phi_x)^2 + 1/2 m^2 phi_x^2 + lambda_B phi_x^4
A      sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda_A phi_x^4        (arXiv:1904.12072)
H      -2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lambda_H (phi_x^2 - 1)^2  (hopping)
=====  ==================================================================================

Conversions (exact): phi_A = sqrt(kappa) phi_H, phi_B = phi_C = sqrt(2) phi_A,
m^2 = (1 - 2 lambda_H)/kappa - 2d, lambda_A = lambda_H/kappa^2, lambda_B = lambda_A/4,
g = 24 lambda_B. With these, S_C[phi_C] = S_B[phi_B] = S_A[phi_A] = S_H[phi_H] - V lambda_H:
the hopping form carries the field-independent constant lambda_H per site
(:attr:`Phi4Action.constant`).

Internally every convention is written as
``S = sum_x [ -beta sum_mu phi_x phi_{x+mu} + alpha phi_x^2 + lam phi_x^4 ] + V*const``
with (beta, alpha, lam, const) = (1, d + m^2/2, g/24, 0) in C, (1, d + m^2/2, lambda_B, 0) in B,
(2, 2d + m^2, lambda_A, 0) in A and (2 kappa, 1 - 2 lambda_H, lambda_H, lambda_H) in H.

Array code takes the array module of its input (NumPy or CuPy). Fields have shape
``(..., *lattice.shape)``: any number of leading batch axes (chains, samples) followed by the
lattice axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .backend import xp_of

__all__ = [
    "CONVENTIONS",
    "Phi4Action",
    "free_action",
    "convert_couplings",
    "field_scale",
]

CONVENTIONS = ("C", "B", "A", "H")


def _check_convention(convention, name="convention"):
    if convention not in CONVENTIONS:
        raise ValueError(f"{name} must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def _lattice_shape(lattice):
    """Shape of a Lattice-like object (or a tuple of ints); checks periodic, spacing 1."""
    if hasattr(lattice, "shape") and not isinstance(lattice, (tuple, list, np.ndarray)):
        if getattr(lattice, "kind", "lattice") != "lattice":
            raise ValueError("lattice must be a Lattice (periodic grid), not a point set")
        boundary = getattr(lattice, "boundary", "periodic")
        if boundary != "periodic":
            raise ValueError(f"lattice.boundary must be 'periodic' for lattice actions, got {boundary!r}")
        spacing = getattr(lattice, "spacing", 1.0)
        if float(spacing) != 1.0:
            raise ValueError(f"lattice.spacing must be 1 (actions are in lattice units), got {spacing!r}")
        shape = tuple(int(n) for n in lattice.shape)
    else:
        shape = tuple(int(n) for n in lattice)
    if len(shape) == 0 or any(n < 1 for n in shape):
        raise ValueError(f"lattice shape must be a non-empty tuple of positive ints, got {shape!r}")
    return shape


def _add_shift(out, phi, ax, shift):
    """out += roll(phi, shift, axis=ax) for shift = +-1, without a temporary copy."""
    n = phi.shape[ax]
    lead = (slice(None),) * ax
    if n == 1:
        out += phi
        return
    if shift == 1:  # out[x] += phi[x-1]
        out[lead + (slice(1, None),)] += phi[lead + (slice(0, n - 1),)]
        out[lead + (slice(0, 1),)] += phi[lead + (slice(n - 1, n),)]
    else:  # out[x] += phi[x+1]
        out[lead + (slice(0, n - 1),)] += phi[lead + (slice(1, None),)]
        out[lead + (slice(n - 1, n),)] += phi[lead + (slice(0, 1),)]


def convert_couplings(params, to, d):
    """Convert phi^4 couplings between conventions.

    Parameters
    ----------
    params : dict
        ``{"convention": X, ...}`` with keys ``m2`` and ``g`` (C), ``m2`` and ``lam`` (B, A: lambda_B,
        lambda_A) or ``kappa`` and ``lam`` (H: lambda_H).
    to : {"C", "B", "A", "H"}
        Target convention.
    d : int
        Euclidean dimension (enters m^2 <-> kappa).

    Returns
    -------
    dict
        Couplings in the target convention, same key scheme, including ``"convention"``.

    Notes
    -----
    m^2 is the same in A, B, C; lambda_B = lambda_A / 4; g = 24 lambda_B;
    m^2 = (1 - 2 lambda_H)/kappa - 2d; lambda_A = lambda_H / kappa^2; inversely
    kappa = [-(m^2 + 2d) + sqrt((m^2 + 2d)^2 + 8 lambda_A)] / (4 lambda_A) (kappa = 1/(m^2 + 2d)
    when lambda_A = 0) and lambda_H = lambda_A kappa^2. Converting to H needs m^2 + 2d > 0 when
    lambda_A = 0.
    """
    frm = _check_convention(params.get("convention"), "params['convention']")
    to = _check_convention(to, "to")
    # to convention A (m2, lamA)
    if frm == "C":
        m2, lamA = float(params["m2"]), float(params.get("g", 0.0)) / 6.0
    elif frm == "B":
        m2, lamA = float(params["m2"]), 4.0 * float(params.get("lam", 0.0))
    elif frm == "A":
        m2, lamA = float(params["m2"]), float(params.get("lam", 0.0))
    else:
        kappa, lamH = float(params["kappa"]), float(params.get("lam", 0.0))
        if not kappa > 0:
            raise ValueError(f"params['kappa'] must be > 0, got {kappa}")
        m2, lamA = (1.0 - 2.0 * lamH) / kappa - 2.0 * d, lamH / kappa**2
    if to == "C":
        return {"convention": "C", "m2": m2, "g": 6.0 * lamA}
    if to == "B":
        return {"convention": "B", "m2": m2, "lam": lamA / 4.0}
    if to == "A":
        return {"convention": "A", "m2": m2, "lam": lamA}
    c = m2 + 2.0 * d
    if lamA == 0.0:
        if c <= 0:
            raise ValueError(f"free theory with m^2 + 2d = {c} <= 0 has no hopping form")
        kappa = 1.0 / c
    else:
        kappa = (-c + math.sqrt(c * c + 8.0 * lamA)) / (4.0 * lamA)
    return {"convention": "H", "kappa": kappa, "lam": lamA * kappa**2}


def field_scale(frm, to, kappa):
    """Factor s with phi_to = s * phi_frm (kappa is the hopping parameter of the theory).

    phi_A = sqrt(kappa) phi_H and phi_B = phi_C = sqrt(2) phi_A.
    """
    _check_convention(frm, "frm")
    _check_convention(to, "to")
    to_A = {"A": 1.0, "B": 1.0 / math.sqrt(2.0), "C": 1.0 / math.sqrt(2.0), "H": math.sqrt(kappa)}
    return to_A[frm] / to_A[to]


@dataclass(frozen=True)
class Phi4Action:
    """Lattice phi^4 action (free scalar when the quartic coupling is zero).

    Parameters
    ----------
    shape : tuple of int
        Lattice shape (periodic, spacing 1). Use :meth:`from_lattice` to build from a ``Lattice``.
    convention : {"C", "B", "A", "H"}
        Convention of docs/conventions.md (see module docstring).
    m2 : float, optional
        Bare mass squared (conventions C, B, A). Negative values are allowed (broken phase).
    g : float, optional
        Quartic coupling g of convention C (the term g/4! phi^4).
    lam : float, optional
        lambda_B, lambda_A or lambda_H in conventions B, A, H.
    kappa : float, optional
        Hopping parameter (convention H).

    Notes
    -----
    ``action(phi)`` returns S per configuration (leading axes kept), ``grad(phi)`` = dS/dphi,
    ``force(phi)`` = -dS/dphi. Both accept NumPy or CuPy arrays of shape ``(..., *shape)``.
    """

    shape: tuple
    convention: str = "C"
    m2: float | None = None
    g: float | None = None
    lam: float | None = None
    kappa: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", _lattice_shape(self.shape))
        _check_convention(self.convention)
        c = self.convention
        if c in ("C", "B", "A"):
            if self.m2 is None:
                raise ValueError(f"m2 is required in convention {c}")
            if self.kappa is not None:
                raise ValueError(f"kappa is only used in convention H, not {c}")
        if c == "C":
            if self.lam is not None:
                raise ValueError("convention C uses g (the g/4! phi^4 coupling), not lam")
            object.__setattr__(self, "g", float(self.g or 0.0))
        else:
            if self.g is not None:
                raise ValueError(f"convention {c} uses lam, not g")
            object.__setattr__(self, "lam", float(self.lam or 0.0))
        if c == "H":
            if self.kappa is None or not float(self.kappa) > 0:
                raise ValueError(f"kappa must be a positive float in convention H, got {self.kappa!r}")
            if self.m2 is not None:
                raise ValueError("convention H uses kappa, not m2")
            object.__setattr__(self, "kappa", float(self.kappa))
        else:
            object.__setattr__(self, "m2", float(self.m2))
        for name in ("m2", "g", "lam", "kappa"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
        quartic = self.g if c == "C" else self.lam
        if quartic < 0:
            raise ValueError(f"the quartic coupling must be >= 0, got {quartic}")
        object.__setattr__(self, "_coef", self._coefficients())

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lattice(cls, lattice, convention="C", **couplings):
        """Build from a ``Lattice`` (must be periodic with spacing 1)."""
        return cls(_lattice_shape(lattice), convention, **couplings)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        kind = d.pop("action", "phi4")
        if kind not in ("phi4", "free"):
            raise ValueError(f"action must be 'phi4' or 'free', got {kind!r}")
        return cls(tuple(d.pop("shape")), **d)

    def to_dict(self):
        """JSON-able description (keys: action, shape, convention and the couplings)."""
        out = {"action": "phi4", "shape": list(self.shape), "convention": self.convention}
        for k in ("m2", "g", "lam", "kappa"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    @property
    def dim(self):
        return len(self.shape)

    @property
    def volume(self):
        return int(np.prod(self.shape))

    def couplings(self):
        """The couplings as a dict (``convert_couplings`` format)."""
        d = self.to_dict()
        d.pop("action")
        d.pop("shape")
        return d

    def to(self, convention):
        """The same theory written in another convention."""
        p = convert_couplings(self.couplings(), convention, self.dim)
        return Phi4Action(self.shape, **p)

    def _kappa(self):
        return self.kappa if self.convention == "H" else self.to("H").kappa

    def convert_field(self, phi, to):
        """Map a configuration of this convention to convention ``to`` (phi_to = s phi)."""
        frm, to = self.convention, _check_convention(to, "to")
        if {frm, to} <= {"A", "B", "C"}:
            kappa = 1.0  # unused
        else:
            kappa = self._kappa()
        return phi * field_scale(frm, to, kappa)

    @property
    def is_free(self):
        return (self.g if self.convention == "C" else self.lam) == 0.0

    @property
    def canonical(self):
        """(m2, g) of convention C."""
        p = convert_couplings(self.couplings(), "C", self.dim)
        return p["m2"], p["g"]

    @property
    def coefficients(self):
        """(beta, alpha, lam, const): S = sum_x [-beta sum_mu phi phi' + alpha phi^2 + lam phi^4 + const]."""
        return self._coef

    def _coefficients(self):
        d, c = self.dim, self.convention
        if c == "C":
            return 1.0, d + 0.5 * self.m2, self.g / 24.0, 0.0
        if c == "B":
            return 1.0, d + 0.5 * self.m2, self.lam, 0.0
        if c == "A":
            return 2.0, 2.0 * d + self.m2, self.lam, 0.0
        return 2.0 * self.kappa, 1.0 - 2.0 * self.lam, self.lam, self.lam

    @property
    def constant(self):
        """Field-independent part of S (V lambda_H in convention H, else 0)."""
        return self.volume * self.coefficients[3]

    # ------------------------------------------------------------------ evaluation
    def _check(self, phi):
        if tuple(phi.shape[phi.ndim - self.dim:]) != self.shape:
            raise ValueError(
                f"phi must have trailing axes {self.shape}, got shape {tuple(phi.shape)}")

    def neighbour_sum(self, phi):
        """sum_mu (phi_{x+mu} + phi_{x-mu}) over the trailing lattice axes (periodic)."""
        xp = xp_of(phi)
        out = xp.zeros_like(phi)
        for ax in range(phi.ndim - self.dim, phi.ndim):
            _add_shift(out, phi, ax, +1)
            _add_shift(out, phi, ax, -1)
        return out

    def action(self, phi):
        """S[phi] per configuration: shape ``phi.shape[:-dim]`` (float64)."""
        self._check(phi)
        xp = xp_of(phi)
        beta, alpha, lam, const = self.coefficients
        nd = phi.ndim
        axes = tuple(range(nd - self.dim, nd))
        hop = xp.zeros_like(phi)
        for ax in axes:
            _add_shift(hop, phi, ax, -1)
        phi2 = phi * phi
        dens = -beta * phi * hop + alpha * phi2
        if lam != 0.0:
            dens = dens + lam * phi2 * phi2
        return dens.sum(axis=axes) + self.volume * const

    def grad(self, phi):
        """dS/dphi_x, same shape as phi."""
        self._check(phi)
        beta, alpha, lam, _ = self.coefficients
        out = 2.0 * alpha * phi - beta * self.neighbour_sum(phi)
        if lam != 0.0:
            out += (4.0 * lam) * phi * phi * phi
        return out

    def force(self, phi):
        """-dS/dphi_x (the HMC force), same shape as phi."""
        return -self.grad(phi)

    def local_delta(self, phi, new, nbr):
        """S(new) - S(phi) for changing single sites with neighbour sum ``nbr`` (elementwise)."""
        beta, alpha, lam, _ = self.coefficients
        p2, n2 = phi * phi, new * new
        out = -beta * (new - phi) * nbr + alpha * (n2 - p2)
        if lam != 0.0:
            out += lam * (n2 * n2 - p2 * p2)
        return out

    def free_propagator_momentum(self, xp=np):
        """Gt(p) of the quadratic part in this convention: 1/(2 alpha - beta sum_mu 2 cos p_mu).

        Only meaningful when the quadratic form is positive (e.g. the free theory with m^2 > 0).
        In C this is 1/(phat^2 + m^2); in A it is 1/(2(phat^2 + m^2)).
        """
        beta, alpha, _, _ = self.coefficients
        grids = xp.meshgrid(*[2 * xp.pi * xp.arange(n) / n for n in self.shape], indexing="ij")
        cos = sum(xp.cos(p) for p in grids)
        return 1.0 / (2.0 * alpha - 2.0 * beta * cos)


def free_action(lattice, m2, convention="C"):
    """Free scalar of mass^2 ``m2`` (convention C unless named) as a :class:`Phi4Action`."""
    shape = _lattice_shape(lattice)
    act = Phi4Action(shape, "C", m2=m2, g=0.0)
    return act if convention == "C" else act.to(convention)
