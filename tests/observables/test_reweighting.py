"""Reweighting free ensembles to other actions (docs/conventions.md)."""
import math
import warnings

import numpy as np
import pytest

from nnft.lattice import Lattice, free_field_exact, sample_free_field
from nnft.lattice.actions import Phi4Action, free_action
from nnft.observables.reweighting import (ReweightingWarning, base_mass, hartree_mass, kish_ess,
                                          log_weights, reweight, reweighted_mean,
                                          reweighted_observables)

OBS = ("chi", "G0", "E", "abs_M")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """Exact free-field sampler at m1^2 = 0.30 on an 8 x 8 lattice."""
    path = tmp_path_factory.mktemp("rw") / "base.zarr"
    return sample_free_field(Lattice((8, 8)), 0.30, 40000, path, chunk=8000, seed=21)


def test_gaussian_mass_shift_is_exact(base_store):
    lat = Lattice((8, 8))
    m2 = 0.255252
    target = free_action(lat, m2)
    ds = reweighted_observables(base_store, target)
    assert ds.attrs["base_m2"] == pytest.approx(0.30)  # read from the store's spec
    assert 0.3 < ds.attrs["ess_fraction"] < 1.0
    exact = free_field_exact(lat, m2)
    for o in OBS:
        v = ds.sel(observable=o)
        z = float((v.value - exact[o]) / v.error)
        assert abs(z) < 4, (o, float(v.value), float(v.error), exact[o])
    # companion: the unreweighted base values are rejected by the same comparison
    wrong = free_field_exact(lat, 0.30)
    z = [float((ds.sel(observable=o).value - wrong[o]) / ds.sel(observable=o).error) for o in OBS]
    assert max(abs(x) for x in z) > 5


def test_target_convention_does_not_matter(base_store):
    phi, _ = base_store.read_chunk(0)
    C = Phi4Action((8, 8), "C", m2=0.2, g=0.3)
    for conv in ("A", "B", "H"):
        np.testing.assert_allclose(log_weights(phi, C.to(conv), 0.3), log_weights(phi, C, 0.3),
                                   rtol=1e-10)


def test_kish_ess():
    assert kish_ess(np.zeros(100)) == pytest.approx(100)
    assert kish_ess(np.array([0.0, -50.0, -60.0])) == pytest.approx(1.0, rel=1e-6)
    lw = np.log(np.array([1.0, 2.0, 3.0]))
    assert kish_ess(lw) == pytest.approx(36 / 14)
    with pytest.raises(ValueError, match="non-finite"):
        kish_ess(np.array([0.0, np.inf]))


def test_reweighted_mean_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000)
    m, e = reweighted_mean(x, np.zeros_like(x))
    assert m == pytest.approx(x.mean())
    assert e == pytest.approx(x.std() / math.sqrt(x.size), rel=1e-3)
    # N(0,1) reweighted to N(0.3, 1): w = exp(0.3 x)
    m, e = reweighted_mean(x, 0.3 * x)
    assert abs(m - 0.3) < 4 * e


def test_collapse_warns():
    rng = np.random.default_rng(1)
    lat = Lattice((16, 16))
    phi = rng.standard_normal((500, 16, 16))
    with pytest.warns(ReweightingWarning, match="collapsed"):
        rw = reweight(phi, Phi4Action(lat.shape, "C", m2=1.0, g=24.0), base_m2=1.0)
    assert rw.ess < 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReweightingWarning)
        reweight(phi, Phi4Action(lat.shape, "C", m2=1.0, g=1e-4), base_m2=1.0)


def test_hartree_and_base_mass():
    lat = Lattice((8, 8))
    mH = hartree_mass(-4.0, 36.048, lat)
    G = free_field_exact(lat, mH)["G0"]
    assert mH == pytest.approx(-4.0 + 0.5 * 36.048 * G, rel=1e-10)
    assert hartree_mass(0.5, 0.0, lat) == 0.5
    t = Phi4Action(lat.shape, "A", m2=-4.0, lam=6.008)  # g = 6 lambda_A = 36.048
    assert base_mass(t, "hartree") == pytest.approx(mH)
    with pytest.raises(ValueError, match="bare"):
        base_mass(t, "bare")
    with pytest.raises(ValueError, match="match"):
        base_mass(t, "other")
