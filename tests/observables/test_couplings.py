"""Effective couplings (docs/conventions.md) on a free field reweighted by exp(-lambda sum phi^4)."""
import numpy as np
import pytest

from nnft.lattice import Lattice, free_propagator, sample_free_field
from nnft.observables.couplings import (amputated_vertex, ball_quadrature, fit_quartic,
                                        gauss_kernel_fn, local_tuples, plot_coupling_flow,
                                        predict_delta_g6, quartic_coupling, running_quartic,
                                        six_point_check, tree_g6c, vertex_integral, vertex_models,
                                        vertex_sum)

LAM = 5e-4


@pytest.fixture(scope="module")
def reweighted():
    """Exact free field, L = 8 (d = 1), m^2 = 1, with log-weights -lambda sum_x phi_x^4.

    To first order in lambda its connected 4-point function is exactly -24 lambda sum_y prod G;
    lambda is small (24 lambda G0^2 ~ 2e-3) so O(lambda^2) is far below the statistical error,
    and the measured unweighted reference on the same samples removes the O(1) noise."""
    lat = Lattice((8,))
    out = []
    sample_free_field(lat, 1.0, 100000, seed=21, chunk=5000,
                      callback=lambda k, p, lw: out.append(p))
    phi = np.concatenate(out)
    return lat, phi, free_propagator(lat, 1.0)


def _lw(phi, lam):
    return -lam * np.sum(phi.reshape(len(phi), -1) ** 4, axis=1)


def test_vertex_templates():
    lat = Lattice((4, 4))
    G = free_propagator(lat, 1.0)
    t = np.array([[0, 0, 0, 0], [0, 1, 4, 5]])
    Gm = np.array([[G[np.unravel_index(j, (4, 4))[0] - np.unravel_index(i, (4, 4))[0],
                      np.unravel_index(j, (4, 4))[1] - np.unravel_index(i, (4, 4))[1]]
                    for j in range(16)] for i in range(16)])
    np.testing.assert_allclose(vertex_sum(G, t, lattice=lat), vertex_sum(Gm, t), rtol=1e-12)
    assert vertex_sum(G, t[:1], lattice=lat)[0] == pytest.approx(np.sum(G ** 4))
    # continuum: Gaussian kernel, large cutoff -> closed-form Gaussian integral
    K = gauss_kernel_fn(1.0, 1.0, 1)
    pts = np.array([[-0.2], [0.1], [0.3]])
    v = vertex_integral(K, pts, np.array([[0, 1, 2, 2]]), 12.0, offset=1.0, n_radial=200)[0]
    x = pts[[0, 1, 2, 2], 0]
    exact = np.sqrt(2 * np.pi / 4) * np.exp(-0.5 * (np.sum(x ** 2) - np.sum(x) ** 2 / 4))
    assert v == pytest.approx(exact, rel=1e-8)
    y, w = ball_quadrature(2, 1.5)
    assert w.sum() == pytest.approx(np.pi * 1.5 ** 2, rel=1e-10)
    y, w = ball_quadrature(3, 1.0)
    assert w.sum() == pytest.approx(4 / 3 * np.pi, rel=1e-8)
    with pytest.raises(ValueError, match="d"):
        ball_quadrature(4, 1.0)
    # running: an exact template at cutoff 1 is recovered there
    t4 = np.array([[0, 1, 2, 2], [0, 0, 1, 1], [1, 2, 2, 2]])
    dg = -24 * 0.02 * vertex_integral(K, pts, t4, 1.0, offset=1.0)
    run = running_quartic(dg, 1e-3 * np.ones(3), pts, t4, K, [0.5, 1.0, 2.0], offset=1.0)
    assert run["lam"].sel(cutoff=1.0).item() == pytest.approx(0.02, rel=1e-10)
    assert run["lam"].sel(cutoff=0.5).item() > 0.02  # smaller region, larger coupling


def test_lambda_recovered_and_wrong_coupling_rejected(reweighted, tmp_path):
    lat, phi, G = reweighted
    ds = quartic_coupling(phi, lat, G, log_weight=_lw(phi, LAM), reference="unweighted",
                          n_tuples=16, n_blocks=32)
    z = (ds.attrs["lam"] - LAM) / ds.attrs["lam_error"]
    assert abs(z) < 5, ds.attrs
    assert ds.attrs["lam_error"] < 0.1 * LAM
    # an ensemble with twice the coupling is not accepted as lambda = LAM
    ds2 = quartic_coupling(phi, lat, G, log_weight=_lw(phi, 2 * LAM), reference="unweighted",
                           n_tuples=16, n_blocks=32)
    assert abs((ds2.attrs["lam"] - LAM) / ds2.attrs["lam_error"]) > 5
    flow = ds.expand_dims(cutoff=[1.0])
    flow = flow.assign(lam=("cutoff", [ds.attrs["lam"]]), lam_error=("cutoff", [ds.attrs["lam_error"]]))
    plot_coupling_flow(flow, tmp_path / "flow.png", expected=LAM)
    assert (tmp_path / "flow.png").stat().st_size > 0


def test_six_point_prediction(reweighted):
    lat, phi, G = reweighted
    lam = 0.01  # Delta G6 is noisier than Delta G4: a larger coupling, O(lambda^2) still small
    t4 = local_tuples(lat, 4, 12)
    t6 = local_tuples(lat, 6, 8, seed=1)
    ok = six_point_check(phi, lat, G, tuples4=t4, tuples6=t6, log_weight=_lw(phi, lam),
                         n_blocks=32)
    assert ok.attrs["verdict"] == "consistent", ok.attrs
    bad = six_point_check(phi, lat, G, tuples4=t4, tuples6=t6, log_weight=_lw(phi, lam),
                          n_blocks=32, lam=3 * ok.attrs["lam_fitted"])
    assert bad.attrs["verdict"] == "inconsistent"
    # tree connected 6-point is second order and small here
    assert np.max(np.abs(tree_g6c(lam, G, t6, lattice=lat))) < 0.1 * np.max(
        np.abs(predict_delta_g6(lam, G, t6, lattice=lat)))


def test_amputated_vertex_is_local(reweighted):
    lat, phi, G = reweighted
    from nnft.lattice import free_propagator_momentum
    Gt = free_propagator_momentum(lat, 1.0)
    ds = amputated_vertex(phi, lat, n_momenta=10, Gt=Gt, log_weight=_lw(phi, LAM), n_blocks=32,
                          reference="unweighted")
    m = vertex_models(ds)
    assert abs(m["local"]["lam"] - LAM) < 5 * m["local"]["lam_error"]
    assert m["local"]["lam_error"] < 0.2 * LAM
    assert m["p_linear_needed"] > 1e-3  # no momentum dependence needed: a local coupling
    bad = vertex_models(amputated_vertex(phi, lat, n_momenta=10, Gt=1.1 * Gt,
                                         log_weight=_lw(phi, LAM), n_blocks=32,
                                         reference="unweighted"))
    assert abs(bad["local"]["lam"] - LAM) > 5 * bad["local"]["lam_error"]
    with pytest.raises(ValueError, match="periodic"):
        amputated_vertex(phi, Lattice((8,), boundary="open"))
    f = fit_quartic(np.array([-24.0, -48.0]), np.array([1.0, 1.0]), np.array([1.0, 2.0]))
    assert f["lam"] == pytest.approx(1.0)
