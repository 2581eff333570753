"""Heavy-tail diagnostics fire on the Gauss-net (sigma_b = 1) 4-point function, not on ReLU."""
import warnings

import numpy as np
import pytest

from nnft.ensembles import GaussNet, ReLUNet, generate
from nnft.lattice import PointSet
from nnft.observables import measure
from nnft.observables.stats import (HeavyTailWarning, TailSample, gpd_tail_shape,
                                    heavy_tail_check, hill_tail_index)

N_SAMPLES = 20000


def four_point_products(phi, xp):
    """Per-sample contributions of the 4-point estimators at (0,1,2,3) and (0,0,0,0)."""
    p = phi.reshape(phi.shape[0], -1)
    return xp.stack([p[:, 0] * p[:, 1] * p[:, 2] * p[:, 3], p[:, 0] ** 4], axis=1)


def _tail_measurement(spec, points):
    out = []
    generate(spec, PointSet(np.asarray(points)), N_SAMPLES, None, chunk=2000, seed=11,
             callback=lambda k, p, lw: out.append(np.asarray(p)))
    phi = np.concatenate(out)
    acc = TailSample(four_point_products, ["G4(0,1,2,3)", "G4(0,0,0,0)"], k=500)
    return measure(phi, {"t": acc}, blocks=10, chunk=2000)


def test_gpd_shape_and_hill_on_known_tails():
    rng = np.random.default_rng(0)
    n = 20000
    M = int(3 * np.sqrt(n))

    def top(x):
        return np.sort(np.abs(x - x.mean()))[::-1][: M + 1]

    assert abs(gpd_tail_shape(top(rng.standard_exponential(n)))) < 0.1    # xi = 0
    assert gpd_tail_shape(top(rng.pareto(1.0, n))) == pytest.approx(1.0, abs=0.2)
    x = np.sort(rng.pareto(1.5, n) + 1.0)[::-1]      # classical Pareto, index 1.5
    a, e = hill_tail_index(x[: M + 1])
    assert abs(a - 1.5) < 4 * e
    # companion: a Gaussian's tail is not a power law with index 1.5
    g = np.sort(np.abs(rng.standard_normal(n)))[::-1]
    assert hill_tail_index(g[: M + 1])[0] > 4


def test_tail_sample_keeps_the_global_largest():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 4))
    a = TailSample(lambda p, xp: p[:, :2], ["a", "b"], k=50).update(x[:1000])
    b = a.empty().update(x[1000:])
    a.merge(b)
    dev = np.abs(x[:, :2] - a.shift)
    np.testing.assert_allclose(a.top, -np.sort(-dev, axis=0)[:50])
    r = a.result()
    np.testing.assert_allclose(r["mean"], x[:, :2].mean(axis=0))
    np.testing.assert_allclose(r["var"], x[:, :2].var(axis=0), rtol=1e-10)


def test_gauss_net_four_point_warns():
    meas = _tail_measurement(GaussNet(width=50, d_in=1, sigma_w=1.0, sigma_b=1.0),
                             np.array([-1, -0.6, -0.2, 0.2]) * 0.01)
    with pytest.warns(HeavyTailWarning, match="error bar is not reliable"):
        ds = heavy_tail_check(meas, what="Gauss-net N = 50")
    assert ds.attrs["heavy_tail"] == 1
    assert np.all((ds.tail_shape.values >= 0.5) | (ds.max_share.values >= 0.3))
    assert "half_split_z" in ds and "block_chi2_dof" in ds


def test_relu_net_four_point_does_not_warn():
    meas = _tail_measurement(ReLUNet(width=50, d_in=1, sigma_w=1.0, sigma_b=0.0),
                             [0.2, 0.4, 0.6, 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyTailWarning)
        ds = heavy_tail_check(meas)
    assert ds.attrs["heavy_tail"] == 0
    assert np.all(ds.tail_shape.values < 0.5) and np.all(ds.max_share.values < 0.3)
    # the Hill estimator alone would have called this tail heavy (index < 4): see docs
    assert np.all(ds.tail_index.values < 4)


def test_cosnet_four_point_test_and_wrong_width():
    from nnft.ensembles import LatticeCosNet
    from nnft.lattice import Lattice, free_propagator
    from nnft.observables import cosnet_connected_4pt
    from nnft.observables.accumulators import PointMoments
    from nnft.observables.stats import _tuple_products, correlator_test

    lat, m2, N = Lattice((8, 8)), 0.255252, 3
    out = []
    generate(LatticeCosNet(width=N, m2=m2), lat, 20000, None, chunk=1000, seed=7,
             callback=lambda k, p, lw: out.append(np.asarray(p).reshape(len(p), -1)))
    phi = np.concatenate(out)
    tuples = [(0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 8, 9), (0, 0, 0, 1), (0, 2, 16, 18)]
    keys = [tuple(sorted(t)) for t in tuples]
    meas = measure(phi, {"moments": PointMoments(keys, max_order=6),
                         "tail": TailSample(_tuple_products(keys), [str(k) for k in keys])},
                   blocks=20, chunk=1000)
    G = free_propagator(lat, m2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeavyTailWarning)
        ok = correlator_test(meas, tuples, cosnet_connected_4pt(G, tuples, N))
        bad = correlator_test(meas, tuples, cosnet_connected_4pt(G, tuples, N + 1))
    assert ok.attrs["outcome"] != "inconsistent" and ok.attrs["p_value"] > 0.01
    assert "Hotelling" in ok.attrs["null_distribution"]
    assert bad.attrs["outcome"] == "inconsistent"
    assert ok.attrs["error_check_flag"] == 0
