"""Architecture specs: frozen, validated, JSON-serialisable descriptions of network ensembles.

Conventions are those of docs/conventions.md (arXiv:2008.08601) for the fully connected nets and
section 6 for the cos-nets:

- single hidden layer: ``f(x) = b1 + sum_i W1_i h_i(x)``, ``h_i(x) = sigma(W0_i . x + b0_i)``
  with ``W0 ~ N(mu_w0, sigma_w^2/d_in)``, ``b0 ~ N(mu_b0, sigma_b^2)``,
  ``W1 ~ N(mu_w1, sigma_w^2/N)``, ``b1 ~ N(mu_b1, sigma_b^2)``. The means are the means of each
  parameter as drawn (not rescaled by the width), as in the papers' code; non-zero means break
  symmetries on purpose.
- vector outputs (``components=D``): the hidden layer is shared, each component has its own
  output row ``W1_a`` and bias ``b1_a`` (D independent output rows).
- cos-nets: ``phi(x) = sum_i a_i cos(w_i . x + c_i)``, ``c_i ~ U[-pi, pi]``, ``E a^2 = s^2/N``.
  With D components the frequencies and phases are shared and each neuron has an amplitude
  vector: Gaussian amplitudes are iid N(0, s^2/N) per component; "constant" amplitudes are
  ``s sqrt(D/N)`` times a uniformly random unit vector (for D = 1 simply ``s/sqrt(N)``), so that
  the output SO(D) symmetry holds at every width. ``E[a_a^4]/E[a_a^2]^2`` is 3 (Gaussian) and
  ``3D/(D+2)`` (constant; 1 for D = 1).

Every spec validates itself on construction and raises ``ValueError`` naming the offending
field. ``spec.to_dict()`` gives a JSON-able dict with key ``"arch"``; :func:`spec_from_dict`
inverts it exactly.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .activations import validate_activation

AMPLITUDES = ("gaussian", "constant")
CONTINUUM_FORMS = ("amplitude", "density")

_REGISTRY: dict[str, type] = {}


def register_architecture(cls):
    """Class decorator: make a spec class known by name (configs, stores, ``spec_from_dict``).

    A plug-in architecture is one module in ``ensembles/architectures/`` (imported
    automatically) holding a frozen dataclass spec registered with this decorator. Subclassing
    ``_SingleLayer`` gives it the parameter draw, the evaluation on any array module, the exact
    parameter-space theory by quadrature and the GP kernel by quadrature of its activation; a
    method ``kernel_matrix(X) -> (V, V)`` replaces the latter by a closed form.
    """
    if cls.__name__ in _REGISTRY and _REGISTRY[cls.__name__] is not cls:
        raise ValueError(f"architecture {cls.__name__!r} is registered twice")
    _REGISTRY[cls.__name__] = cls
    return cls


_register = register_architecture


def _err(spec, name, msg, value):
    return ValueError(f"{type(spec).__name__}.{name}: {msg}, got {value!r}")


def _int(spec, name, lo=1):
    v = getattr(spec, name)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        if isinstance(v, (float, np.floating)) and float(v).is_integer() and not isinstance(v, bool):
            v = int(v)
        else:
            raise _err(spec, name, f"must be an integer >= {lo}", v)
    if v < lo:
        raise _err(spec, name, f"must be an integer >= {lo}", v)
    object.__setattr__(spec, name, int(v))


def _float(spec, name, *, positive=False, nonneg=False, lo=None, hi=None):
    v = getattr(spec, name)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise _err(spec, name, "must be a real number", v)
    f = float(v)
    if not math.isfinite(f):
        raise _err(spec, name, "must be finite", v)
    if positive and not f > 0:
        raise _err(spec, name, "must be > 0", v)
    if nonneg and not f >= 0:
        raise _err(spec, name, "must be >= 0", v)
    if lo is not None and f < lo:
        raise _err(spec, name, f"must be >= {lo}", v)
    if hi is not None and f > hi:
        raise _err(spec, name, f"must be <= {hi}", v)
    object.__setattr__(spec, name, f)


def _choice(spec, name, allowed):
    v = getattr(spec, name)
    if v not in allowed:
        raise _err(spec, name, f"must be one of {allowed}", v)


def _components(spec):
    if spec.components is not None:
        _int(spec, "components")


@dataclass(frozen=True)
class Spec:
    """Base class of all architecture specs (not instantiated directly)."""

    arch: ClassVar[str] = "Spec"

    def __post_init__(self):
        self._validate()

    def _validate(self):  # pragma: no cover - overridden
        pass

    # -- common interface ---------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """D, the number of output components (1 for a scalar field)."""
        c = getattr(self, "components", None)
        return 1 if c is None else int(c)

    def to_dict(self) -> dict:
        """JSON-serialisable dict with key ``"arch"``; :func:`spec_from_dict` inverts it."""
        d = {"arch": type(self).__name__}
        for f in dataclasses.fields(self):
            d[f.name] = getattr(self, f.name)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def check_geometry(self, lattice) -> None:
        """Raise ValueError if this spec cannot be evaluated on ``lattice``."""
        d_in = getattr(self, "d_in", None)
        if d_in is not None and d_in != lattice.dim:
            raise ValueError(f"{type(self).__name__}.d_in: is {d_in} but the lattice/point set has "
                             f"dimension {lattice.dim}")

    @property
    def n_params_per_network(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class _SingleLayer(Spec):
    """Common fields of the single-hidden-layer nets (docs/conventions.md)."""

    width: int
    d_in: int = 1
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    components: int | None = None
    mu_w0: float = 0.0
    mu_b0: float = 0.0
    mu_w1: float = 0.0
    mu_b1: float = 0.0

    #: activation name used by the engine (subclasses override)
    activation_name: ClassVar[str] = "identity"

    def _validate(self):
        _int(self, "width")
        _int(self, "d_in")
        _float(self, "sigma_w", positive=True)
        _float(self, "sigma_b", nonneg=True)
        _components(self)
        for name in ("mu_w0", "mu_b0", "mu_w1", "mu_b1"):
            _float(self, name)

    @property
    def activation_expr(self) -> str:
        return self.activation_name

    @property
    def has_means(self) -> bool:
        return any(getattr(self, n) != 0.0 for n in ("mu_w0", "mu_b0", "mu_w1", "mu_b1"))

    @property
    def n_params_per_network(self) -> int:
        N, D = self.width, self.n_components
        return N * self.d_in + N + D * N + D


@_register
@dataclass(frozen=True)
class GaussNet(_SingleLayer):
    """Gauss-net: ``h(x) = exp(W0.x + b0) / exp(sigma_b^2 + sigma_w^2 x.x/d_in)``.

    GP kernel ``sigma_b^2 + sigma_w^2 exp(-sigma_w^2 |x - x'|^2 / (2 d_in))``.
    """

    activation_name: ClassVar[str] = "gauss"


@_register
@dataclass(frozen=True)
class ErfNet(_SingleLayer):
    """Erf-net: ``h = erf(W0.x + b0)`` (arcsin kernel, docs/conventions.md)."""

    activation_name: ClassVar[str] = "erf"


@_register
@dataclass(frozen=True)
class ReLUNet(_SingleLayer):
    """ReLU-net: ``h = max(W0.x + b0, 0)`` (arc-cosine kernel). The papers use sigma_b = 0."""

    activation_name: ClassVar[str] = "relu"


@_register
@dataclass(frozen=True)
class TanhNet(_SingleLayer):
    """Tanh-net: ``h = tanh(W0.x + b0)`` (kernel by Gauss-Hermite quadrature)."""

    activation_name: ClassVar[str] = "tanh"


@_register
@dataclass(frozen=True)
class ActivationNet(_SingleLayer):
    """Single hidden layer with a user activation.

    ``activation`` is a registered name (see ``ensembles.activations.NAMED``) or an expression in
    ``x`` over whitelisted functions, e.g. ``"x * tanh(x)"``; it is stored as that string.
    """

    activation: str = "tanh"

    def _validate(self):
        super()._validate()
        object.__setattr__(self, "activation", _activation(self, "activation"))

    @property
    def activation_expr(self) -> str:
        return self.activation


def _activation(spec, name):
    v = getattr(spec, name)
    try:
        return validate_activation(v)
    except ValueError as e:
        raise ValueError(f"{type(spec).__name__}.{name}: {e}") from None


@_register
@dataclass(frozen=True)
class CorrelatedNet(_SingleLayer):
    """Single hidden layer whose output weights are correlated across neurons.

    ``W1_{a i} = mu_w1 + (sigma_w/sqrt(N)) (sqrt(1 - rho) xi_{a i} + sqrt(rho) eta_a)`` with
    ``xi, eta ~ N(0, 1)``: every pair of neurons has output-weight correlation ``rho``. The output
    is a product of Gaussians plus Gaussian noise, so the central limit theorem fails at any width
    when ``rho > 0`` (the non-perturbative regime). For odd activations the two-point function is
    the GP kernel of the uncorrelated net at every N; otherwise it gains
    ``sigma_w^2 rho (N - 1) E[h(x)] E[h(x')]``.
    """

    rho: float = 0.5
    activation: str = "erf"

    def _validate(self):
        super()._validate()
        _float(self, "rho", lo=0.0, hi=1.0)
        object.__setattr__(self, "activation", _activation(self, "activation"))

    @property
    def activation_expr(self) -> str:
        return self.activation

    @property
    def n_params_per_network(self) -> int:
        return super().n_params_per_network + self.n_components


@_register
@dataclass(frozen=True)
class ScaleMixtureNet(_SingleLayer):
    """Single hidden layer whose output weights share one random scale per network.

    ``W1_{a i} = mu_w1 + s (sigma_w/sqrt(N)) xi_{a i}``, ``xi ~ N(0, 1)``, with one
    ``s^2 ~ Gamma(shape, 1/shape)`` per network (``E s^2 = 1``, ``Var s^2 = 1/shape``) shared by
    all neurons: a scale mixture of the uncorrelated net. The two-point function is the GP
    kernel at every N; the connected 4-point tends to ``sigma_w^4 Var(s^2) sum_3 E_2 E_2`` as
    N -> infinity instead of vanishing (the 1/N law fails).
    """

    shape: float = 2.0
    activation: str = "erf"

    def _validate(self):
        super()._validate()
        _float(self, "shape", positive=True)
        object.__setattr__(self, "activation", _activation(self, "activation"))

    @property
    def activation_expr(self) -> str:
        return self.activation

    @property
    def n_params_per_network(self) -> int:
        return super().n_params_per_network + 1


@_register
@dataclass(frozen=True)
class DeepMLP(Spec):
    """Fully connected net with ``depth`` hidden layers of ``width`` neurons.

    Layer l: ``z^l = W^l h^{l-1} + b^l``, ``h^l = sigma(z^l)``, ``h^0 = x``;
    ``W^l ~ N(mu_w, sigma_w^2/n_{l-1})``, ``b^l ~ N(mu_b, sigma_b^2)``; output
    ``f = W^{L+1} h^L + b^{L+1}`` with D rows. GP kernel by the recursion
    ``K^{l+1} = sigma_b^2 + sigma_w^2 E[sigma(z) sigma(z')]``, ``K^0 = sigma_b^2 + sigma_w^2 x.x'/d_in``.
    ``depth = 1`` is the single-hidden-layer net.
    """

    depth: int
    width: int
    activation: str = "relu"
    d_in: int = 1
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    components: int | None = None
    mu_w: float = 0.0
    mu_b: float = 0.0

    def _validate(self):
        _int(self, "depth")
        _int(self, "width")
        object.__setattr__(self, "activation", _activation(self, "activation"))
        _int(self, "d_in")
        _float(self, "sigma_w", positive=True)
        _float(self, "sigma_b", nonneg=True)
        _components(self)
        _float(self, "mu_w")
        _float(self, "mu_b")

    @property
    def activation_expr(self) -> str:
        return self.activation

    @property
    def has_means(self) -> bool:
        return self.mu_w != 0.0 or self.mu_b != 0.0

    @property
    def n_params_per_network(self) -> int:
        n, L, D = self.width, self.depth, self.n_components
        return n * self.d_in + n + (L - 1) * (n * n + n) + D * n + D


def _amplitude(spec):
    _choice(spec, "amplitude", AMPLITUDES)


@_register
@dataclass(frozen=True)
class GaussianCosNet(Spec):
    """Cos-net with Gaussian frequencies ``w ~ N(0, sigma_w^2 I/d_in)``.

    Two-point function at every N: ``(s^2/2) exp(-sigma_w^2 |x - y|^2 / (2 d_in))``.
    """

    width: int
    d_in: int = 1
    sigma_w: float = 1.0
    s: float = 1.0
    amplitude: str = "gaussian"
    components: int | None = None

    def _validate(self):
        _int(self, "width")
        _int(self, "d_in")
        _float(self, "sigma_w", positive=True)
        _float(self, "s", positive=True)
        _amplitude(self)
        _components(self)

    @property
    def n_params_per_network(self) -> int:
        N, D = self.width, self.n_components
        return N * self.d_in + N + D * N


@_register
@dataclass(frozen=True)
class ContinuumCosNet(Spec):
    """Cos-net for the continuum free scalar of mass ``sqrt(m2)`` below the cutoff ``|w| < cutoff``.

    ``form="amplitude"``: w uniform in the ball, amplitude factor ``A/sqrt(w^2 + m^2)`` with
    ``A^2 = 2 vol(ball)/(2 pi)^d``; ``form="density"``: w drawn with density proportional to
    ``1/(w^2 + m^2)`` in the ball and amplitude ``s`` with ``s^2 = 2 Z/(2 pi)^d``,
    ``Z = int_ball d^dw/(w^2 + m^2)``. Both give
    ``G2(r) = int_{|p|<cutoff} d^dp/(2 pi)^d exp(i p.r)/(p^2 + m^2)`` at every N.
    ``amplitude`` chooses Gaussian or constant-modulus amplitude noise (module docstring).
    """

    width: int
    d_in: int = 1
    m2: float = 1.0
    cutoff: float = math.pi
    form: str = "amplitude"
    amplitude: str = "gaussian"
    components: int | None = None

    def _validate(self):
        _int(self, "width")
        _int(self, "d_in")
        _float(self, "m2", positive=True)
        _float(self, "cutoff", positive=True)
        _choice(self, "form", CONTINUUM_FORMS)
        _amplitude(self)
        _components(self)

    @property
    def n_params_per_network(self) -> int:
        N, D = self.width, self.n_components
        return N * self.d_in + N + D * N


@_register
@dataclass(frozen=True)
class LatticeCosNet(Spec):
    """Free lattice scalar from neurons (docs/conventions.md).

    Each neuron's frequency is a lattice momentum p drawn with probability ``Gt(p)/sum_q Gt(q)``,
    ``Gt(p) = 1/(phat^2 + m2)``, and ``s^2 = 2 G(0)``: the two-point function equals the exact
    lattice propagator at every width. Needs a periodic Lattice; evaluated spectrally in
    O(N + V log V) per configuration.
    """

    width: int
    m2: float = 1.0
    amplitude: str = "gaussian"
    components: int | None = None

    def _validate(self):
        _int(self, "width")
        _float(self, "m2", positive=True)
        _amplitude(self)
        _components(self)

    def check_geometry(self, lattice) -> None:
        if getattr(lattice, "kind", None) != "lattice" or not getattr(lattice, "periodic", False):
            raise ValueError("LatticeCosNet needs a periodic nnft.lattice.Lattice, got "
                             f"{lattice!r}")

    @property
    def n_params_per_network(self) -> int:
        N, D = self.width, self.n_components
        return N + N + D * N


@_register
@dataclass(frozen=True)
class MassMixtureCosNet(LatticeCosNet):
    """Lattice cos-net whose neurons share a random mass: momenta coupled across neurons.

    Each network draws its squared mass, ``m2`` with probability ``1 - p_alt`` or ``m2_alt``
    with probability ``p_alt``, and then every neuron's momentum from that mass's law
    (``Gt(p)/sum Gt``, amplitude scale ``s^2 = 2 G(0)`` of that mass). Given the mass it is the
    LatticeCosNet; unconditionally a mixture of two free fields, so the two-point function is
    the mixture of the propagators and the connected 4-point tends to
    ``p (1 - p) sum_3 dG dG`` (``dG = G_alt - G``) as N -> infinity instead of vanishing.
    """

    m2_alt: float = 4.0
    p_alt: float = 0.5

    def _validate(self):
        super()._validate()
        _float(self, "m2_alt", positive=True)
        _float(self, "p_alt", lo=0.0, hi=1.0)

    @property
    def masses(self) -> tuple:
        return (self.m2, self.m2_alt)

    @property
    def probs(self) -> tuple:
        return (1.0 - self.p_alt, self.p_alt)

    @property
    def n_params_per_network(self) -> int:
        return super().n_params_per_network + 1


ARCHITECTURES = tuple(_REGISTRY)


def spec_from_dict(d: dict) -> Spec:
    """Rebuild a spec from :meth:`Spec.to_dict` output (exact round trip).

    Raises
    ------
    ValueError
        Unknown ``arch``, unknown or missing fields, or invalid values (naming the field).
    """
    if not isinstance(d, dict):
        raise ValueError(f"spec_from_dict: expected a dict, got {type(d).__name__}")
    d = dict(d)
    arch = d.pop("arch", None)
    if arch not in _REGISTRY:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {sorted(_REGISTRY)}")
    cls = _REGISTRY[arch]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{arch}: unknown field(s) {unknown}; fields are {sorted(names)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ValueError(f"{arch}: {e}") from None


def spec_from_json(s: str) -> Spec:
    return spec_from_dict(json.loads(s))


__all__ = ["Spec", "GaussNet", "ErfNet", "ReLUNet", "TanhNet", "ActivationNet", "CorrelatedNet",
           "DeepMLP", "GaussianCosNet", "ContinuumCosNet", "LatticeCosNet", "ScaleMixtureNet",
           "MassMixtureCosNet", "spec_from_dict",
           "spec_from_json", "ARCHITECTURES", "AMPLITUDES", "CONTINUUM_FORMS"]
