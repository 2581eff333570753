"""Deformed network theories: a lattice cos-net whose parameter density is multiplied by exp(-Delta S).

A free network ensemble with parameters theta ~ P(theta) defines fields phi_theta(x). Deforming the
parameter density,

    P(theta)  ->  P_Delta(theta) = P(theta) exp(-Delta S[phi_theta]) / Z,

defines a new ensemble: the *deformed width-N network theory*. Its fields are not distributed with
the lattice action S_free + Delta S at finite width N, because the free cos-net itself is not
Gaussian at finite N (its connected four-point function falls as 1/N). As N -> infinity the base
ensemble becomes the Gaussian field with propagator 1/(phat^2 + m^2) and the deformed theory
becomes the lattice theory with action S_free(m^2) + Delta S. Every object here therefore names
both: :attr:`DeformedCosNet.name` (the theory actually sampled) and :meth:`DeformedCosNet.limit`
(the lattice action it approaches).

Conventions
-----------
- Base network: :class:`nnft.ensembles.LatticeCosNet` (width N, base mass^2 ``m2``), fields
  ``phi(x) = sum_i a_i cos(p_i . x + c_i)`` with lattice momenta p_i drawn with probability
  ``Gt(p)/sum_q Gt(q)``, ``Gt(p) = 1/(phat^2 + m2)``, phases ``c_i ~ U[-pi, pi]`` and amplitudes
  ``a_i ~ N(0, sigma_a^2)``, ``sigma_a^2 = 2 G(0)/N`` (Gaussian law) or ``a_i = sqrt(2 G(0)/N)``
  (constant law). The two-point function is the lattice propagator at every N.
- Fields are in convention C of :mod:`nnft.lattice.actions`:
  ``S_C = sum_x [1/2 sum_mu (d_mu phi)^2 + 1/2 m^2 phi^2 + (g/4!) phi^4]``.
- Deformation: a polynomial site potential
  ``Delta S[phi] = sum_x sum_k c_k phi_x^k`` (:class:`LatticePotential`), e.g. phi^4 with
  ``c_4 = g/24``, a mass shift ``c_2 = (m^2 - m2_base)/2``, odd terms (k = 1, 3, 5), phi^6.
  In the N -> infinity limit the deformed theory has action
  ``S_free(m2_base) + Delta S = sum_x [1/2 (d phi)^2 + (m2_base/2 + c_2) phi^2 + sum_{k != 2} c_k phi^k]``,
  i.e. bare mass^2 ``m2_base + 2 c_2`` and, when only c_2 and c_4 are present, the phi^4 coupling
  ``g = 24 c_4`` of convention C.
- Derivative term (optional): ``Delta S_kin[phi] = (c_kin/2) sum_x sum_mu (phi(x+mu) - phi(x))^2``
  (nearest-neighbour forward differences, periodic, spacing 1), i.e. the kinetic term of
  convention C multiplied by ``c_kin``. The N -> infinity limit then has kinetic term
  ``(1 + c_kin)/2 sum_mu (d_mu phi)^2`` and, for a quadratic Delta S, propagator
  ``1/((1 + c_kin) phat^2 + m2_base + 2 c_2)``. With ``1 + c_kin > 0`` the rescaled field
  ``phi' = sqrt(1 + c_kin) phi`` has the ordinary kinetic term and phi^4 couplings
  ``m'^2 = m^2/(1 + c_kin)``, ``g' = g/(1 + c_kin)^2``.
- Log density on parameter space (up to a theta-independent constant):
  ``log P_Delta(theta) = sum_i [log P(p_i) - a_i^2/(2 sigma_a^2)] - Delta S[phi_theta]``
  (Gaussian amplitude law; the constant law has no amplitude term and the phases are flat).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..lattice.backend import xp_of
from .params import draw_params, momentum_alias
from .specs import LatticeCosNet
from .spectral import lattice_cos_spectral

__all__ = ["LatticePotential", "DeformedCosNet", "width_extrapolation",
           "reweighting_nongaussianity", "gradient_energy", "minus_laplacian"]


def _coef_items(coefficients, what="coefficients"):
    if not isinstance(coefficients, dict) or not coefficients:
        raise ValueError(f"{what} must be a non-empty dict {{power: coefficient}}, got {coefficients!r}")
    out = {}
    for k, v in coefficients.items():
        try:
            ki = int(k)
            if isinstance(k, (float, np.floating)) and not float(k).is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{what}: powers must be integers 1..12, got {k!r}") from None
        if not 1 <= ki <= 12:
            raise ValueError(f"{what}: powers must be integers 1..12, got {k!r}")
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{what}[{ki}] must be a real number, got {v!r}") from None
        if not math.isfinite(fv):
            raise ValueError(f"{what}[{ki}] must be finite, got {v!r}")
        if fv != 0.0:
            out[ki] = out.get(ki, 0.0) + fv
    return dict(sorted(out.items()))


@dataclass(frozen=True, init=False)
class LatticePotential:
    """Polynomial site potential ``Delta S[phi] = sum_x sum_k c_k phi_x^k`` (field in convention C).

    Parameters
    ----------
    coefficients : dict {int: float}
        Power k (1..12) -> coefficient c_k. Zero coefficients are dropped.

    Notes
    -----
    The deformed density must be normalisable against the Gaussian amplitude prior: the highest
    power must be even with a positive coefficient when it exceeds 2 (a bounded-below potential).
    Powers 1 and 2 alone are allowed (a linear source; a mass shift with ``c_2 > -m2_base/2`` is
    checked by :class:`DeformedCosNet`).
    """

    coefficients: dict

    def __init__(self, coefficients):
        c = _coef_items(coefficients)
        if c:
            top = max(c)
            if top > 2 and (top % 2 or c[top] <= 0):
                raise ValueError(f"coefficients: the highest power ({top}) must be even with a "
                                 f"positive coefficient (bounded-below potential), got c_{top}={c[top]}")
        object.__setattr__(self, "coefficients", c)

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def phi4(cls, g, dm2=0.0):
        """``(g/4!) phi^4 + (dm2/2) phi^2`` (convention C; g >= 0)."""
        g = float(g)
        if not (math.isfinite(g) and g >= 0):
            raise ValueError(f"g must be a finite number >= 0, got {g!r}")
        return cls({4: g / 24.0, 2: 0.5 * float(dm2)})

    @classmethod
    def zero(cls):
        """No site term (``Delta S`` = 0, or only a derivative term of :class:`DeformedCosNet`)."""
        return cls({2: 0.0})

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "coefficients" not in d:
            raise ValueError(f"LatticePotential.from_dict: expected {{'coefficients': {{...}}}}, got {d!r}")
        return cls({int(k): v for k, v in d["coefficients"].items()})

    def to_dict(self):
        return {"coefficients": {str(k): v for k, v in self.coefficients.items()}}

    @property
    def degree(self):
        return max(self.coefficients) if self.coefficients else 0

    def c(self, k):
        """Coefficient of phi^k (0 if absent)."""
        return self.coefficients.get(int(k), 0.0)

    def describe(self, var="phi"):
        """``sum_x [c_1 phi + c_2 phi^2 + ...]`` as text."""
        if not self.coefficients:
            return "0"
        terms = " + ".join(f"{v:.6g} {var}^{k}" if k > 1 else f"{v:.6g} {var}"
                           for k, v in self.coefficients.items())
        return f"sum_x [{terms}]"

    # -- evaluation ----------------------------------------------------------------------
    def density(self, phi):
        """Site potential V(phi_x) elementwise (Horner), same shape as phi."""
        out = 0.0 * phi
        for k in range(self.degree, 0, -1):
            out = (out + self.c(k)) * phi
        return out

    def derivative(self, phi):
        """dV/dphi elementwise."""
        out = 0.0 * phi
        for k in range(self.degree, 0, -1):
            out = out * phi + k * self.c(k)
        return out

    def action(self, phi, n_lattice_axes):
        """``Delta S`` per configuration: sum of :meth:`density` over the trailing lattice axes."""
        axes = tuple(range(phi.ndim - n_lattice_axes, phi.ndim))
        return self.density(phi).sum(axis=axes)


def _kinetic_value(kinetic):
    if isinstance(kinetic, bool):
        raise ValueError(f"kinetic must be a real number, got {kinetic!r}")
    try:
        kinetic = float(kinetic)
    except (TypeError, ValueError):
        raise ValueError(f"kinetic must be a real number, got {kinetic!r}") from None
    if not math.isfinite(kinetic):
        raise ValueError(f"kinetic must be finite, got {kinetic!r}")
    return kinetic


def gradient_energy(phi, n_lattice_axes):
    """``sum_x sum_mu (phi(x+mu) - phi(x))^2`` per configuration (periodic, spacing 1).

    Parameters
    ----------
    phi : array (..., *shape)
        Fields; the trailing ``n_lattice_axes`` axes are the lattice.
    """
    xp = xp_of(phi)
    axes = tuple(range(phi.ndim - n_lattice_axes, phi.ndim))
    out = 0.0
    for ax in axes:
        d = xp.roll(phi, -1, axis=ax) - phi
        out = out + (d * d).sum(axis=axes)
    return out


def minus_laplacian(phi, n_lattice_axes):
    """``sum_mu (2 phi(x) - phi(x+mu) - phi(x-mu))``: half the gradient of :func:`gradient_energy`."""
    xp = xp_of(phi)
    out = 2.0 * n_lattice_axes * phi
    for ax in range(phi.ndim - n_lattice_axes, phi.ndim):
        out = out - xp.roll(phi, -1, axis=ax) - xp.roll(phi, 1, axis=ax)
    return out


class DeformedCosNet:
    """The deformed width-N lattice cos-net: ``P(theta) exp(-Delta S[phi_theta])``.

    Parameters
    ----------
    spec : LatticeCosNet
        Base network (scalar, ``components`` None or 1). Its ``m2`` is the base mass^2.
    lattice : Lattice
        Periodic lattice with spacing 1 (lattice units, as the actions).
    potential : LatticePotential, dict or None
        Site part of the deformation Delta S (convention C field); None for no site term.
    kinetic : float, optional
        Coefficient ``c_kin`` of the nearest-neighbour derivative term
        ``(c_kin/2) sum_x sum_mu (phi(x+mu) - phi(x))^2`` added to Delta S (default 0). The
        limit's kinetic term is ``(1 + c_kin)`` times that of convention C.

    Attributes
    ----------
    name : str
        The theory actually sampled ("deformed width-N lattice cos-net ...").
    sigma_a : float
        Standard deviation of the amplitudes under P (Gaussian law) or their value (constant law).

    See Also
    --------
    from_action : build the deformation whose N -> infinity limit is a given Phi4Action.
    """

    def __init__(self, spec, lattice, potential, kinetic=0.0):
        if not isinstance(spec, LatticeCosNet):
            raise ValueError(f"spec must be a LatticeCosNet, got {type(spec).__name__}")
        if spec.n_components != 1:
            raise ValueError(f"spec.components must be None or 1 (scalar field), got {spec.components}")
        spec.check_geometry(lattice)
        if float(lattice.spacing) != 1.0:
            raise ValueError(f"lattice.spacing must be 1 (lattice units), got {lattice.spacing}")
        if potential is None:
            potential = LatticePotential.zero()
        if isinstance(potential, dict):
            potential = LatticePotential.from_dict(potential) if "coefficients" in potential \
                else LatticePotential(potential)
        if not isinstance(potential, LatticePotential):
            raise ValueError(f"potential must be a LatticePotential or dict, got {potential!r}")
        kinetic = _kinetic_value(kinetic)
        self.spec, self.lattice, self.potential = spec, lattice, potential
        self.kinetic = kinetic
        self.width = spec.width
        self.volume = int(lattice.volume)
        self.dim = int(lattice.dim)
        self.shape = tuple(lattice.shape)
        acc, alias, G0 = momentum_alias(lattice, spec.m2, np)
        self.G0 = float(G0)
        self.sigma_a = math.sqrt(2.0 * self.G0 / spec.width)
        from nnft.lattice import free_propagator_momentum

        Gt = np.asarray(free_propagator_momentum(lattice, spec.m2, np), dtype=np.float64).ravel()
        if potential.degree <= 2:
            self._check_quadratic(np.asarray(lattice.phat2(np), dtype=np.float64).ravel(), Gt)
        self.momentum_prob = Gt / Gt.sum()
        self._log_pk = np.log(self.momentum_prob)
        self._cdf = np.cumsum(self.momentum_prob)
        # p . (n + origin) phases of the momenta, for the forces
        self._origin_phase = (np.asarray(lattice.momenta(np)).reshape(self.volume, self.dim)
                              @ np.broadcast_to(np.asarray(lattice.origin, dtype=np.float64),
                                                (self.dim,)))

    def _check_quadratic(self, phat2, Gt):
        """Normalisability of a quadratic Delta S (no power above 2).

        With ``lambda(p) = c_2 + (c_kin/2) phat^2``, Delta S's quadratic part is
        ``sum_p lambda(p) |phi_p|^2 / V``. The limit needs ``phat^2 + m2_base + 2 lambda(p) > 0``
        at every momentum. The finite-N density with Gaussian amplitudes needs more: since
        ``sum_x phi_x^2 <= V N |a|^2`` and the prior is ``exp(-N |a|^2/(4 G0))``, it is
        normalisable when ``min_p lambda(p) > -1/(4 V G0)``, and not normalisable below that
        when the minimum sits at p = 0 or p = (pi, ..., pi) (all neurons on that mode).
        """
        lam = self.potential.c(2) + 0.5 * self.kinetic * phat2
        what = ("c_2" if self.kinetic == 0.0 else
                f"c_2 + (kinetic/2) phat^2 (c_2={self.potential.c(2)}, kinetic={self.kinetic})")
        if not np.all(phat2 + self.spec.m2 + 2.0 * lam > 0):
            if self.kinetic == 0.0:
                raise ValueError(f"potential: with no higher power, c_2 must exceed -m2/2 = "
                                 f"{-self.spec.m2 / 2} (normalisable density), got c_2="
                                 f"{self.potential.c(2)}")
            raise ValueError(f"kinetic: with no power above 2 in the potential, the limit's "
                             f"quadratic form (1 + kinetic) phat^2 + m2 + 2 c_2 must be > 0 at every "
                             f"momentum; got kinetic={self.kinetic}, c_2={self.potential.c(2)}, "
                             f"m2={self.spec.m2}")
        bound = -1.0 / (4.0 * float(Gt.sum()))
        if self.spec.amplitude == "gaussian" and not float(lam.min()) > bound:
            raise ValueError(f"potential: with Gaussian amplitudes and no power above 2, {what} "
                             f"must exceed -1/(4 V G0) = {bound:.6g} at every momentum (finite-N "
                             f"normalisable density), got minimum {float(lam.min()):.6g}; add a "
                             f"positive phi^4 term or use constant amplitudes")

    # -- construction from a target action -------------------------------------------------
    @classmethod
    def from_action(cls, target, width, lattice=None, *, base_m2=None, amplitude="gaussian",
                    extra=None, kinetic=0.0):
        """Deformation whose N -> infinity limit is the phi^4 action ``target`` (any convention).

        Parameters
        ----------
        target : nnft.lattice.Phi4Action
            Lattice phi^4 in convention C, B, A or H (converted to C; the sampled field is in C).
        width : int
            Network width N.
        lattice : Lattice, optional
            Default ``Lattice(target.shape)``.
        base_m2 : float, optional
            Mass^2 of the free base network. Default: the target's bare m^2 when positive, else the
            self-consistent Hartree mass ``m_H^2 = m^2 + (g/2) G0(m_H^2)`` (best overlap).
        amplitude : {"gaussian", "constant"}
            Amplitude law of the base network.
        extra : dict {int: float}, optional
            Further terms added to Delta S (e.g. ``{6: c6}``, ``{3: c3}``).
        kinetic : float, optional
            Relative change ``c_kin > -1`` of the kinetic term: the limit is ``target`` with its
            kinetic term multiplied by ``1 + c_kin`` (the same factor in every convention), and
            Delta S gains ``(c_kin/2) sum_x sum_mu (phi(x+mu) - phi(x))^2`` (convention C). The
            default base mass is then taken from the rescaled field ``sqrt(1 + c_kin) phi``
            (bare ``m^2/(1 + c_kin)`` or its Hartree mass at ``g/(1 + c_kin)^2``), whose propagator
            has the shape of the base network's.
        """
        from nnft.lattice import Lattice, Phi4Action

        if not isinstance(target, Phi4Action):
            raise ValueError(f"target must be a Phi4Action, got {target!r}")
        tC = target if target.convention == "C" else target.to("C")
        if lattice is None:
            lattice = Lattice(tC.shape)
        if tuple(lattice.shape) != tC.shape:
            raise ValueError(f"lattice.shape {lattice.shape} differs from target.shape {tC.shape}")
        kin = _kinetic_value(kinetic)
        if not 1.0 + kin > 0:
            raise ValueError(f"kinetic must exceed -1 (positive kinetic term of the limit), got {kinetic!r}")
        if base_m2 is None:
            m2s, gs = tC.m2 / (1.0 + kin), tC.g / (1.0 + kin) ** 2
            base_m2 = m2s if m2s > 0 else hartree_mass(m2s, gs, lattice)
        coeffs = {2: 0.5 * (tC.m2 - float(base_m2)), 4: tC.g / 24.0}
        for k, v in (extra or {}).items():
            coeffs[int(k)] = coeffs.get(int(k), 0.0) + float(v)
        spec = LatticeCosNet(width=width, m2=float(base_m2), amplitude=amplitude)
        return cls(spec, lattice, LatticePotential(coeffs), kinetic=kin)

    # -- naming --------------------------------------------------------------------------
    @property
    def name(self):
        s = self.spec
        return (f"deformed width-{s.width} lattice cos-net (base m2={s.m2:.6g}, {s.amplitude} "
                f"amplitudes, lattice {'x'.join(map(str, self.shape))}) with density "
                f"P(theta) exp(-Delta S), Delta S = {self.describe_deformation()}")

    def describe_deformation(self):
        """Delta S as text (site polynomial, plus the derivative term when present)."""
        if self.kinetic == 0.0:
            return self.potential.describe()
        kin = f"sum_x ({self.kinetic:.6g}/2) sum_mu (phi(x+mu) - phi(x))^2"
        return kin if not self.potential.coefficients else f"{kin} + {self.potential.describe()}"

    def limit(self):
        """The lattice theory approached as N -> infinity.

        Returns
        -------
        dict
            ``description`` (text), ``m2`` (bare mass^2, convention C), ``potential`` (the non-quadratic
            site terms {k: c_k}), ``kinetic_factor`` (``1 + c_kin``: the limit's kinetic term is
            ``kinetic_factor/2 sum_mu (d_mu phi)^2``), ``action``: a :class:`nnft.lattice.Phi4Action`
            in convention C when Delta S has only phi^2 and phi^4 terms and no derivative term (else
            None), ``rescaled_action`` and ``field_scale`` (with a derivative term, 1 + c_kin > 0
            and only phi^2, phi^4: the Phi4Action of ``phi' = field_scale * phi``,
            ``field_scale = sqrt(1 + c_kin)``; else None and 1.0 without a derivative term), and
            ``convention`` = "C".
        """
        from nnft.lattice import Phi4Action

        m2 = self.spec.m2 + 2.0 * self.potential.c(2)
        rest = {k: v for k, v in self.potential.coefficients.items() if k != 2}
        kf = 1.0 + self.kinetic
        act = rescaled = None
        scale = 1.0 if self.kinetic == 0.0 else (math.sqrt(kf) if kf > 0 else None)
        if set(rest) <= {4}:
            if self.kinetic == 0.0:
                act = Phi4Action(self.shape, "C", m2=m2, g=24.0 * rest.get(4, 0.0))
            elif kf > 0:
                rescaled = Phi4Action(self.shape, "C", m2=m2 / kf, g=24.0 * rest.get(4, 0.0) / kf ** 2)
        terms = "".join(f" + {v:.6g} phi^{k}" for k, v in rest.items())
        lat = "x".join(map(str, self.shape))
        if self.kinetic == 0.0:
            desc = (f"lattice action S = sum_x [1/2 sum_mu (d_mu phi)^2 + 1/2 ({m2:.6g}) phi^2{terms}] "
                    f"(convention C) on {lat}, reached as N -> infinity")
        else:
            desc = (f"lattice action S = sum_x [({kf:.6g}/2) sum_mu (d_mu phi)^2 + 1/2 ({m2:.6g}) "
                    f"phi^2{terms}] with d_mu phi = phi(x+mu) - phi(x) (convention C with its kinetic "
                    f"term times 1 + c_kin = {kf:.6g}) on {lat}, reached as N -> infinity")
        if act is not None:
            A = act.to("A")
            desc += (f"; phi^4 with m^2={m2:.6g}, g={act.g:.6g} (C) = lambda_A={A.lam:.6g} (convention "
                     "A, field phi_A = phi_C/sqrt(2))")
        if rescaled is not None:
            A = rescaled.to("A")
            desc += (f"; equivalently phi' = sqrt({kf:.6g}) phi is phi^4 with m'^2={rescaled.m2:.6g}, "
                     f"g'={rescaled.g:.6g} (C) = lambda_A={A.lam:.6g} (convention A, phi'_A = "
                     "phi'/sqrt(2))")
        return {"description": desc, "m2": m2, "potential": rest, "kinetic_factor": kf,
                "action": act, "rescaled_action": rescaled, "field_scale": scale,
                "convention": "C"}

    def to_dict(self):
        return {"theory": "DeformedCosNet", "name": self.name, "spec": self.spec.to_dict(),
                "lattice": self.lattice.to_dict(), "potential": self.potential.to_dict(),
                "kinetic": self.kinetic, "limit": self.limit()["description"]}

    # -- parameters, fields, densities ---------------------------------------------------
    def draw(self, n, rng):
        """``n`` parameter sets from the base density P: dict k (n, N), c (n, N), a (n, 1, N)."""
        return draw_params(self.spec, self.lattice, int(n), rng, np)

    def draw_momenta(self, shape, rng):
        """Flat momentum indices with probability Gt(p)/sum Gt, array of ``shape``."""
        u = rng.random(shape)
        return np.minimum(np.searchsorted(self._cdf, u, side="right"), self.volume - 1)

    def fields(self, params):
        """Fields (n, *shape) of parameter sets (spectral evaluation, O(N + V log V) each)."""
        return lattice_cos_spectral(params, self.lattice, np)[:, 0]

    def delta_S(self, phi):
        """Delta S per configuration of fields (n, *shape): site polynomial plus, when
        ``kinetic`` is not 0, ``(c_kin/2) sum_x sum_mu (phi(x+mu) - phi(x))^2``."""
        out = self.potential.action(phi, self.dim)
        if self.kinetic != 0.0:
            out = out + 0.5 * self.kinetic * gradient_energy(phi, self.dim)
        return out

    def log_prior(self, params):
        """log P(theta) per parameter set, up to a theta-independent constant."""
        lp = self._log_pk[params["k"]].sum(axis=-1)
        if self.spec.amplitude == "gaussian":
            a = params["a"][:, 0, :]
            lp = lp - 0.5 * (a * a).sum(axis=-1) / self.sigma_a ** 2
        return lp

    def log_density(self, params, phi=None):
        """``log P(theta) - Delta S[phi_theta]`` per parameter set (up to a constant)."""
        if phi is None:
            phi = self.fields(params)
        return self.log_prior(params) - self.delta_S(phi)

    def site_force(self, phi):
        """dDelta S/dphi_x, shape of phi (with a derivative term:
        ``V'(phi_x) + c_kin sum_mu (2 phi(x) - phi(x+mu) - phi(x-mu))``)."""
        f = self.potential.derivative(phi)
        if self.kinetic != 0.0:
            f = f + self.kinetic * minus_laplacian(phi, self.dim)
        return f

    def param_gradient(self, params, phi):
        """Gradients of Delta S with respect to the amplitudes and phases.

        With ``Z_i = e^{i c_i} sum_x f_x e^{i p_i . x}``, ``f = dDelta S/dphi``:
        ``dDelta S/da_i = Re Z_i`` and ``dDelta S/dc_i = -a_i Im Z_i`` (one FFT per configuration).

        Returns
        -------
        (dS_da, dS_dc) : arrays (n, N)
        """
        f = self.site_force(phi)
        n = f.shape[0]
        axes = tuple(range(1, 1 + self.dim))
        # sum_x f_x e^{+i p.n} = conj(fftn(f)) for real f
        F = np.conj(np.fft.fftn(f, axes=axes).reshape(n, self.volume))
        k, c = params["k"], params["c"]
        Fk = np.take_along_axis(F, k, axis=1)
        Z = Fk * np.exp(1j * (c + self._origin_phase[k]))
        return Z.real, -params["a"][:, 0, :] * Z.imag


def hartree_mass(m2, g, lattice):
    """Self-consistent Hartree mass^2 (convention C): ``m_H^2 = m^2 + (g/2) G0(m_H^2) > 0``."""
    from scipy.optimize import brentq

    from nnft.lattice import free_propagator_momentum

    from nnft.lattice import Lattice

    if not hasattr(lattice, "phat2"):
        lattice = Lattice(tuple(lattice))
    m2, g = float(m2), float(g)
    if g <= 0:
        if m2 <= 0:
            raise ValueError(f"a free base needs m2 > 0, got m2={m2} with g={g}")
        return m2

    def f(x):
        return x - m2 - 0.5 * g * float(np.mean(free_propagator_momentum(lattice, x, np)))

    hi = max(abs(m2), 1.0)
    while f(hi) < 0:
        hi *= 2.0
    return float(brentq(f, 1e-12, hi, xtol=1e-14, rtol=1e-13))


def width_extrapolation(widths, values, errors, order=1, alpha=0.01):
    """Weighted least-squares extrapolation of ``O(N) = O_inf + b_1/N (+ b_2/N^2)`` to N -> infinity.

    Parameters
    ----------
    widths : array_like of int
        Widths N (at least ``order + 2`` distinct values for a goodness-of-fit test).
    values, errors : array_like
        Observable and its standard error (independent between widths).
    order : {1, 2}
        Degree of the polynomial in 1/N.
    alpha : float
        Significance level of the goodness-of-fit test of the 1/N form.

    Returns
    -------
    dict
        ``value`` and ``error`` (the N -> infinity intercept), ``slope`` (b_1), ``chi2``, ``dof``,
        ``p_value`` (of the fit; a small value says the 1/N form does not describe the data),
        ``covariance`` of the coefficients, and ``fit_verdict``: "consistent" (p >= alpha),
        "inconsistent" (p < alpha: do not trust ``value``) or "inconclusive" (no degree of freedom
        left to test the form).
    """
    from scipy.stats import chi2 as chi2_dist

    N = np.asarray(widths, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if not (N.shape == y.shape == e.shape and N.ndim == 1):
        raise ValueError("widths, values and errors must be 1-D arrays of equal length")
    if np.unique(N).size < order + 1:
        raise ValueError(f"need at least {order + 1} distinct widths for order {order}, got {N.tolist()}")
    if np.any(N <= 0) or np.any(e <= 0) or not np.all(np.isfinite(y)):
        raise ValueError("widths and errors must be > 0 and values finite")
    X = np.stack([N ** -j for j in range(order + 1)], axis=1)
    W = 1.0 / e ** 2
    A = X.T @ (W[:, None] * X)
    cov = np.linalg.inv(A)
    beta = cov @ (X.T @ (W * y))
    r = (y - X @ beta) / e
    chi2 = float(r @ r)
    dof = int(N.size - order - 1)
    p = float(chi2_dist.sf(chi2, dof)) if dof > 0 else float("nan")
    if dof == 0:
        verdict = "inconclusive"
    else:
        verdict = "consistent" if p >= alpha else "inconsistent"
    return {"value": float(beta[0]), "error": float(math.sqrt(cov[0, 0])),
            "slope": float(beta[1]), "chi2": chi2, "dof": dof, "p_value": p, "covariance": cov,
            "fit_verdict": verdict}


def _weighted_mean_err(v, lw):
    w = np.exp(lw - lw.max())
    w /= w.sum()
    m = float((w * v).sum())
    return m, float(np.sqrt((w * w * (v - m) ** 2).sum())), float(1.0 / (w * w).sum())


def reweighting_nongaussianity(base_phi, potential, observable, *, m2, seed=None, n_gauss=None):
    """Finite-N non-Gaussianity of a free base ensemble and its effect on a reweighted observable.

    Reweighting a free ensemble with ``w = exp(-Delta S)`` gives the *deformed* base theory, which is
    the lattice theory ``S_free + Delta S`` only when the base is exactly Gaussian. This function
    (1) measures the connected four-point function of the base at coincident points,
    ``u4 = <phi^4> - 3 <phi^2>^2`` averaged over sites (0 for a Gaussian; ``(3 G(0)^2/N)(k/2 - 1)``
    for the lattice cos-net of width N with amplitude kurtosis k), against 0, and (2) reweights both the base and an exact Gaussian ensemble with the
    same propagator (the N = infinity base, drawn by the exact Fourier sampler) with the same
    Delta S, and compares the two reweighted values of ``observable``.

    Parameters
    ----------
    base_phi : ndarray (n, *shape)
        Unweighted free ensemble (convention C) of mass^2 ``m2``, independent samples.
    potential : LatticePotential
        Delta S (convention C).
    observable : callable(phi) -> (n,)
        Per-configuration observable.
    m2 : float
        Mass^2 of the base propagator.
    seed : int, optional
        Seed of the Gaussian comparison ensemble.
    n_gauss : int, optional
        Size of the Gaussian ensemble (default: as the base).

    Returns
    -------
    dict
        ``u4`` and ``u4_error`` (connected 4-point at coincident points and its error),
        ``value``/``error`` (reweighted on the base: the deformed width-N theory),
        ``value_gaussian``/``error_gaussian`` (reweighted on the exact Gaussian: the lattice theory),
        ``shift`` = value - value_gaussian, ``shift_error``, ``z`` = shift/shift_error,
        ``ess_fraction`` (base), ``warning`` (text or None: the non-Gaussian shift exceeds the
        statistical error of the reweighted value, ``|shift| > error``, with z > 2).
    """
    from nnft.lattice import Lattice, chunk_rng, free_field_chunk, resolve_seed

    phi = np.asarray(base_phi, dtype=np.float64)
    if phi.ndim < 2:
        raise ValueError(f"base_phi must have shape (n, *lattice_shape), got {phi.shape}")
    n = phi.shape[0]
    d = phi.ndim - 1
    axes = tuple(range(1, phi.ndim))
    p2 = (phi ** 2).mean(axis=axes)
    p4 = (phi ** 4).mean(axis=axes)
    m2_, m4_ = p2.mean(), p4.mean()
    u4 = float(m4_ - 3 * m2_ ** 2)
    # delta method on (p4, p2)
    g = np.stack([p4 - m4_, -6 * m2_ * (p2 - m2_)], axis=1).sum(axis=1)
    u4_err = float(g.std(ddof=1) / math.sqrt(n))
    lat = Lattice(phi.shape[1:])
    ng = int(n_gauss or n)
    gphi = np.asarray(free_field_chunk(lat, m2, ng, chunk_rng(resolve_seed(seed), 0, np), np))
    lw_b = -np.asarray(potential.action(phi, d))
    lw_g = -np.asarray(potential.action(gphi, d))
    vb, eb, essb = _weighted_mean_err(np.asarray(observable(phi), dtype=np.float64), lw_b)
    vg, eg, essg = _weighted_mean_err(np.asarray(observable(gphi), dtype=np.float64), lw_g)
    shift, se = vb - vg, math.hypot(eb, eg)
    z = shift / se if se > 0 else float("inf")
    warn = None
    if abs(shift) > eb and abs(z) > 2.0:
        warn = (f"the reweighted value {vb:.6g} +- {eb:.2g} belongs to the deformed finite-width "
                f"network theory: the base's non-Gaussianity (u4 = {u4:.3g} +- {u4_err:.2g}) shifts it "
                f"by {shift:.3g} +- {se:.2g} ({z:.1f} sigma) from the lattice theory (Gaussian base: "
                f"{vg:.6g} +- {eg:.2g}); use a wider network or the exact Gaussian base")
    return {"u4": u4, "u4_error": u4_err, "value": vb, "error": eb, "value_gaussian": vg,
            "error_gaussian": eg, "shift": shift, "shift_error": se, "z": z,
            "ess_fraction": essb / n, "ess_fraction_gaussian": essg / ng, "warning": warn}
