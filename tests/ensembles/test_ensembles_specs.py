"""Specs: validation naming the field, exact JSON round trip, activation whitelist."""
import json
import math

import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.activations import compile_activation, cuda_expression, expression_of

ALL_SPECS = [
    E.GaussNet(10, d_in=2, sigma_w=1.3, sigma_b=0.7, components=3, mu_w1=0.1),
    E.ErfNet(5),
    E.ReLUNet(7, sigma_b=0.0),
    E.TanhNet(3, d_in=3),
    E.ActivationNet(4, activation="x * tanh(x) + 0.1 * sin(2*x)"),
    E.ActivationNet(4, activation="gelu"),
    E.CorrelatedNet(6, rho=0.25, activation="relu", components=2),
    E.DeepMLP(3, 8, "erf", d_in=2, sigma_w=1.5, sigma_b=0.1),
    E.GaussianCosNet(9, d_in=2, sigma_w=0.5, s=2.0, amplitude="constant"),
    E.ContinuumCosNet(11, d_in=3, m2=0.25, cutoff=2.5, form="density"),
    E.LatticeCosNet(12, m2=0.1 + 0.2, amplitude="constant", components=2),
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: type(s).__name__)
def test_round_trip_exact(spec):
    d = spec.to_dict()
    assert d["arch"] == type(spec).__name__
    back = E.spec_from_dict(json.loads(json.dumps(d)))
    assert back == spec and type(back) is type(spec)
    assert back.to_dict() == d
    assert E.spec_from_json(spec.to_json()) == spec


def test_specs_frozen_and_coerced():
    s = E.ErfNet(np.int64(4), sigma_w=2)
    assert type(s.width) is int and type(s.sigma_w) is float
    with pytest.raises(Exception):
        s.width = 3


@pytest.mark.parametrize("make, field", [
    (lambda: E.ErfNet(0), "width"),
    (lambda: E.ErfNet(2.5), "width"),
    (lambda: E.ErfNet(True), "width"),
    (lambda: E.ErfNet(3, d_in=0), "d_in"),
    (lambda: E.GaussNet(3, sigma_w=0.0), "sigma_w"),
    (lambda: E.GaussNet(3, sigma_w=math.inf), "sigma_w"),
    (lambda: E.ReLUNet(3, sigma_b=-1.0), "sigma_b"),
    (lambda: E.ReLUNet(3, mu_w0=math.nan), "mu_w0"),
    (lambda: E.ErfNet(3, components=0), "components"),
    (lambda: E.ActivationNet(3, activation="nosuch"), "activation"),
    (lambda: E.ActivationNet(3, activation="__import__('os')"), "activation"),
    (lambda: E.ActivationNet(3, activation="x.real"), "activation"),
    (lambda: E.ActivationNet(3, activation="exp(x, 2)"), "activation"),
    (lambda: E.ActivationNet(3, activation="y + 1"), "activation"),
    (lambda: E.CorrelatedNet(3, rho=1.5), "rho"),
    (lambda: E.DeepMLP(0, 3), "depth"),
    (lambda: E.DeepMLP(2, 3, activation="softmax"), "activation"),
    (lambda: E.GaussianCosNet(3, s=-1.0), "s"),
    (lambda: E.GaussianCosNet(3, amplitude="uniform"), "amplitude"),
    (lambda: E.ContinuumCosNet(3, form="other"), "form"),
    (lambda: E.ContinuumCosNet(3, cutoff=0.0), "cutoff"),
    (lambda: E.LatticeCosNet(3, m2=0.0), "m2"),
])
def test_validation_names_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_spec_from_dict_errors():
    with pytest.raises(ValueError, match="arch"):
        E.spec_from_dict({"arch": "Nope", "width": 3})
    with pytest.raises(ValueError, match="bogus"):
        E.spec_from_dict({"arch": "ErfNet", "width": 3, "bogus": 1})
    with pytest.raises(ValueError, match="width"):
        E.spec_from_dict({"arch": "ErfNet", "width": -3})


def test_geometry_checks():
    from nnft.lattice import Lattice, PointSet

    with pytest.raises(ValueError, match="d_in"):
        E.ErfNet(3, d_in=2).check_geometry(PointSet([0.0, 1.0]))
    with pytest.raises(ValueError, match="periodic"):
        E.LatticeCosNet(3).check_geometry(Lattice((4,), boundary="open"))
    with pytest.raises(ValueError, match="d_in"):
        E.generate(E.ErfNet(3, d_in=2), Lattice((4,)), 10, callback=lambda *a: None)


def test_activation_expressions():
    x = np.linspace(-3, 3, 13)
    for name in E.ACTIVATIONS:
        f = compile_activation(name)
        g = compile_activation(expression_of(name))
        np.testing.assert_allclose(f(x.copy()), g(x.copy()), rtol=1e-14, atol=1e-15)
        assert "x" in cuda_expression(name)
    np.testing.assert_allclose(compile_activation("maximum(x, 0.1*x) ** 2 - pi")(x),
                               np.maximum(x, 0.1 * x) ** 2 - np.pi)
    assert cuda_expression("x**2") == "pow((double)(x), (double)(2.0))"
