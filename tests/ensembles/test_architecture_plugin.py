"""A plug-in architecture (ensembles/architectures/sine.py): one file, known everywhere.

SineNet's closed-form kernel is checked against the generic quadrature of its activation and
against Monte Carlo; its exact finite-width 4-point function (by quadrature over one neuron,
from the single-layer machinery) against Monte Carlo, with companions that must fail.
"""
import json
import tomllib

import numpy as np
import pytest

from nnft.ensembles import SineNet, exact_connected, generate, gp_kernel, spec_from_dict
from nnft.ensembles.kernels import _step, k0_matrix
from nnft.lattice import PointSet

PTS = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1])


def test_known_by_name_and_round_trips():
    import nnft.ensembles as E

    assert "SineNet" in E.architectures.__all__ and E.SineNet is SineNet
    s = SineNet(width=7, d_in=1, sigma_b=0.5)
    assert spec_from_dict(json.loads(s.to_json())) == s
    with pytest.raises(ValueError, match="SineNet.width"):
        SineNet(width=0)


def test_closed_form_kernel_equals_quadrature():
    X = np.asarray(PTS.positions())
    for sw, sb in ((1.0, 1.0), (1.5, 0.3), (0.7, 0.0)):
        s = SineNet(width=3, d_in=1, sigma_w=sw, sigma_b=sb)
        Kq = _step("sin", k0_matrix(X, X, sw, sb), sw, sb)
        assert np.max(np.abs(gp_kernel(s, PTS) - Kq)) < 1e-12
    # companion: cosh in place of sinh (the E cos(u + v) sign) is far off
    d = np.diag(k0_matrix(X, X, 1.0, 1.0))
    wrong = 1 + np.exp(-(d[:, None] + d[None, :]) / 2) * np.cosh(k0_matrix(X, X, 1.0, 1.0))
    assert np.max(np.abs(wrong - gp_kernel(SineNet(width=3, d_in=1), PTS))) > 0.1


@pytest.fixture(scope="module")
def sine_store(tmp_path_factory):
    spec = SineNet(width=1, d_in=1)  # the largest connected 4-point function: ~1/N
    path = tmp_path_factory.mktemp("sine") / "s.zarr"
    return spec, generate(spec, PTS, 200000, path, chunk=20000, seed=4)


def test_monte_carlo_two_and_four_point(sine_store):
    from nnft.observables import connected_correlator, moments

    spec, store = sine_store
    pairs = [(i, j) for i in range(6) for j in range(i, 6)]
    ds = moments(store, pairs)
    K = gp_kernel(spec, PTS)
    z2 = (ds["value"].values - np.array([K[i, j] for i, j in pairs])) / ds["error"].values
    assert np.max(np.abs(z2)) < 5
    tuples = [(0, 0, 0, 0), (0, 0, 5, 5), (0, 1, 2, 3), (1, 1, 4, 4), (2, 3, 3, 3)]
    cc = connected_correlator(store, tuples)
    exact, method = exact_connected(spec, PTS, tuples)
    assert method.startswith("quadrature")
    z4 = (cc["value"].values - exact) / cc["error"].values
    assert np.max(np.abs(z4)) < 5
    # companion: the theory at width N + 1 is rejected by the same data
    wrong, _ = exact_connected(SineNet(width=2, d_in=1), PTS, tuples)
    assert np.max(np.abs((cc["value"].values - wrong) / cc["error"].values)) > 5


def test_runs_from_a_config(tmp_path):
    """`arch = "SineNet"` in a run config: the registry tests its 4-point function against the
    exact theory (named as quadrature)."""
    from nnft.config import resolve_config
    from nnft.run import run_config

    cfg = resolve_config(tomllib.loads("""
seed = 1
[[ensemble]]
name = "sine"
arch = "SineNet"
lattice = { points = [[-1.0], [-0.6], [-0.2], [0.2], [0.6], [1.0]] }
widths = [3]
samples = 20000
chunk = 2000
params = { d_in = 1 }
measure = ["propagator", "four_point"]
"""))
    res = run_config(cfg, tmp_path / "r", quiet=True)
    fp = res["ensembles"]["sine"]["per_width"][3]["four_point"]
    assert fp["expected_method"].startswith("exact parameter-space theory (quadrature")
    assert fp["verdict"] in ("consistent", "inconclusive")
    assert res["ensembles"]["sine"]["per_width"][3]["propagator"]["max_abs_z"] < 5
