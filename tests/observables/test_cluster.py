"""Cluster decomposition (docs/conventions.md): a free field clusters, a cos-net does not."""
import numpy as np
import pytest

from nnft.ensembles import LatticeCosNet, generate
from nnft.lattice import Lattice, effective_mass_exact, free_propagator, sample_free_field
from nnft.observables import cosnet_connected_4pt
from nnft.observables.cluster import (cluster_profile, cluster_tuples, cosnet_g4c, cosnet_g6c,
                                      fit_decay, plot_cluster_profile)


def _collect(fn, *a, **kw):
    out = []
    fn(*a, callback=lambda k, p, lw: out.append(p), **kw)
    return np.concatenate(out)


@pytest.fixture(scope="module")
def free_1d():
    lat = Lattice((32,))
    return lat, 0.15, _collect(sample_free_field, lat, 0.15, 30000, seed=11, chunk=3000)


@pytest.fixture(scope="module")
def cos_1d():
    lat = Lattice((32,))
    spec = LatticeCosNet(width=5, m2=0.25, amplitude="gaussian")
    return lat, spec, _collect(generate, spec, lat, 40000, seed=12, chunk=4000)


def test_cluster_tuples_and_fits():
    lat = Lattice((16,))
    t, g, R = cluster_tuples(lat, [[0], [1]], separations=[2, 3], average=False)
    assert t.tolist() == [[0, 1, 2, 3], [0, 1, 3, 4]] and g.tolist() == [0, 1]
    t, g, R = cluster_tuples(lat)
    assert R.max() == 4 and t.shape == (5 * 16, 4)
    Rs = np.arange(1, 10.0)
    y = 2.0 * np.exp(-0.3 * Rs)
    f = fit_decay(Rs, y, 0.01 * y, model="exp")
    assert f["params"]["rate"] == pytest.approx(0.3, rel=1e-6)
    f = fit_decay(Rs, 3 * Rs ** -1.5, 0.01 * np.ones(9), model="power")
    assert f["params"]["power"] == pytest.approx(1.5, rel=1e-6)
    with pytest.raises(ValueError, match="model"):
        fit_decay(Rs, y, y, model="bogus")
    with pytest.raises(ValueError, match="axis"):
        cluster_tuples(lat, axis=2)


def test_cosnet_closed_forms_agree():
    lat = Lattice((6, 6))
    G = free_propagator(lat, 0.5)
    rng = np.random.default_rng(0)
    t4 = rng.integers(0, 36, size=(20, 4))
    np.testing.assert_allclose(cosnet_g4c(G, t4, 7, kurtosis=3.0),
                               cosnet_connected_4pt(G, t4, 7, kurtosis=3.0), rtol=1e-10)
    # 6-point: at coincident points a constant-amplitude single neuron phi = s cos(theta)
    # has kappa_6 = s^6 (E cos^6 - 15 E cos^4 E cos^2 + 30 (E cos^2)^3) = s^6 (5/16 - 45/16 + 30/8)
    s2 = 2 * G.flat[0]
    val = cosnet_g6c(G, np.zeros((1, 6), dtype=int), 1, k4=1.0, k6=1.0)[0]
    assert val == pytest.approx(s2 ** 3 * (5 / 16 - 45 / 16 + 30 / 8), rel=1e-10)


def test_free_field_clusters_with_the_mass(free_1d, tmp_path):
    lat, m2, phi = free_1d
    mE = effective_mass_exact(m2)
    kw = dict(cluster_a=[[0], [1]], separations=np.arange(2, 11), n_blocks=20)
    trunc = cluster_profile(phi, lat, stat="truncated", expected_rate=2 * mE, **kw)
    assert trunc.attrs["verdict"] == "clusters"
    assert abs(trunc.attrs["rate_z"]) < 5, trunc.attrs
    # the same fit does not accept the wrong mass
    assert abs((trunc.attrs["rate"] - 2 * 1.2 * mE) / trunc.attrs["rate_error"]) > 5
    conn = cluster_profile(phi, lat, stat="connected", **kw)
    assert conn.attrs["verdict"] == "clusters"  # Gaussian: G4c = 0 at every R
    plot_cluster_profile(trunc, tmp_path / "cluster.png")
    assert (tmp_path / "cluster.png").stat().st_size > 0


def test_cosnet_has_the_predicted_plateau(cos_1d):
    lat, spec, phi = cos_1d
    G = free_propagator(lat, spec.m2)
    t, g, R = cluster_tuples(lat, [[0], [1]], average=False)
    exp = cosnet_g4c(G, t, spec.width, kurtosis=3.0)
    ds = cluster_profile(phi, lat, cluster_a=[[0], [1]], expected=exp, n_blocks=20)
    assert ds.attrs["verdict"] == "does not cluster"
    assert ds.attrs["plateau_z"] > 5
    assert abs(ds.attrs["plateau_expected_z"]) < 5
    assert ds.attrs["max_abs_z_expected"] < 5
    # constant amplitudes (k = 1) predict a different plateau: rejected
    wrong = cosnet_g4c(G, t, spec.width, kurtosis=1.0)
    bad = cluster_profile(phi, lat, cluster_a=[[0], [1]], expected=wrong, n_blocks=20)
    assert abs(bad.attrs["plateau_expected_z"]) > 5
