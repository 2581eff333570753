"""Accumulators, cumulants and errors on synthetic data (no store needed)."""
import numpy as np
import pytest

from nnft.observables import (FourierTwoPoint, PointMoments, ScalarObservables, Series,
                              SiteMoments, TwoPointMatrix, connected_correlator, error_methods,
                              get_error_method, measure, moments, register_error_method)
from nnft.observables.cumulants import sample_cumulant, set_partitions
from nnft.observables.errors import ErrorEstimate


def test_set_partitions_bell_numbers():
    assert [len(set_partitions(n)) for n in range(1, 8)] == [1, 2, 5, 15, 52, 203, 877]


def test_cumulants_exact_on_hand_computed_data():
    # x = 1,2,3,4 ; y = 2,1,4,3 (worked by hand: see the comments)
    x = np.array([1.0, 2, 3, 4])
    y = np.array([2.0, 1, 4, 3])
    phi = np.stack([x, y], axis=1)  # (4 samples, 2 sites)
    acc = PointMoments([(0,), (0, 1), (0, 0), (0, 0, 0, 0), (0, 0, 1, 1), (0, 0, 0, 0, 0, 0)])
    acc.update(phi[:3]).merge(PointMoments([(0,)]).update(phi[3:]) if False else
                              acc.empty().update(phi[3:]))
    r = acc.result()
    # mean 2.5; cov(x,y) = 0.75; var 1.25; k4(x) = m4 - 3 m2^2 = 2.5625 - 4.6875 = -2.125
    # k(x,x,y,y) = 0.5625 - 1.5625 - 2*0.5625 = -2.125; k6(x) = 5.703125 - 15*2.5625*1.25
    # + 30*1.25^3 = 16.25
    np.testing.assert_allclose(r["cumulants"], [2.5, 0.75, 1.25, -2.125, -2.125, 16.25],
                               rtol=1e-12, atol=1e-12)
    # raw moments: E[x] = 2.5, E[xy] = (2+2+12+12)/4 = 7, E[x^4] = (1+16+81+256)/4 = 88.5
    np.testing.assert_allclose(r["moments"][[0, 1, 3]], [2.5, 7.0, 88.5], rtol=1e-12)


def test_weighted_hand_computed():
    # weights 1,1,2 on 0,1,3: mean 7/4, variance 6.75/4
    acc = SiteMoments(2).update(np.array([[0.0], [1.0], [3.0]]), weights=np.array([1, 1, 2.0]))
    np.testing.assert_allclose(acc.result()["mean"], [1.75])
    np.testing.assert_allclose(acc.result()["variance"], [1.6875])
    # the same through log weights with a huge offset (no overflow) split over two chunks
    a = SiteMoments(2).update(np.array([[0.0], [1.0]]), log_weight=np.array([800.0, 800.0]))
    b = SiteMoments(2).update(np.array([[3.0]]), log_weight=np.array([800 + np.log(2.0)]))
    a.merge(b)
    np.testing.assert_allclose(a.result()["variance"], [1.6875], rtol=1e-12)
    assert a.ess == pytest.approx(16 / 6)


def _naive_k4(x):
    # the naive float64 power-sum estimator: raw moments, then the cumulant formula
    m1, m2, m3, m4 = (np.mean(x ** k) for k in (1, 2, 3, 4))
    return m4 - 4 * m3 * m1 - 3 * m2 ** 2 + 12 * m2 * m1 ** 2 - 6 * m1 ** 4


def test_fourth_and_sixth_order_stable_with_large_mean():
    rng = np.random.default_rng(3)
    z = rng.exponential(size=20000) - 1.0         # k4 = 6, k6 = 120 in the limit
    x = z + 1.0e5                                 # large mean
    ref4 = sample_cumulant(x[:, None].repeat(4, 1))  # two-pass (centres first)
    ref6 = sample_cumulant(x[:, None].repeat(6, 1))
    assert 3 < ref4 < 10 and ref6 > 30
    acc = PointMoments([(0, 0, 0, 0), (0, 0, 0, 0, 0, 0)])
    for s in range(0, len(x), 3000):
        acc.update(x[s:s + 3000, None])
    k4, k6 = acc.result()["cumulants"]
    assert k4 == pytest.approx(ref4, rel=1e-8)
    assert k6 == pytest.approx(ref6, rel=1e-6)
    naive = _naive_k4(x)
    assert abs(naive - ref4) > 100 * abs(ref4)    # the naive power sum visibly fails
    assert _naive_k4(z) == pytest.approx(ref4, rel=1e-6)  # ... but is fine at zero mean


def test_merge_with_different_shifts_is_exact_algebra():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 3, 3)) * 2 + 50
    t = [(0, 1, 2, 3), (4, 4, 8, 8, 1, 0), (5,), (2, 2)]
    whole = PointMoments(t).update(x)
    a = PointMoments(t).update(x[:1500])
    b = PointMoments(t).update(x[1500:] )
    assert not np.array_equal(a.shift, b.shift)
    a.merge(b)
    for key in ("moments", "central", "cumulants"):
        np.testing.assert_allclose(a.result()[key], whole.result()[key], rtol=1e-9, atol=1e-12)
    for cls, kw in ((SiteMoments, {"max_order": 6}), (TwoPointMatrix, {}),
                    (FourierTwoPoint, {"ndim": 2}), (ScalarObservables, {"ndim": 2})):
        w = cls(**kw).update(x)
        p = cls(**kw).update(x[:1000]).merge(cls(**kw).update(x[1000:]))
        rw, rp = w.result(), p.result()
        for k, v in rw.items():
            np.testing.assert_allclose(rp[k], v, rtol=1e-9, atol=1e-9 * np.max(np.abs(v)),
                                       err_msg=f"{cls.__name__}.{k}")


def test_subtract_is_inverse_of_merge():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((600, 4))
    a = TwoPointMatrix().update(x[:400])
    tot = a.copy().merge(TwoPointMatrix().update(x[400:]))
    back = tot.subtract(TwoPointMatrix(shift=tot.shift).update(x[400:]))
    np.testing.assert_allclose(back.result()["connected"], a.result()["connected"], atol=1e-12)


def test_fourier_two_point_matches_matrix_translation_average():
    rng = np.random.default_rng(6)
    phi = rng.standard_normal((500, 4, 6)).cumsum(axis=1) + 3.0
    f = FourierTwoPoint(2).update(phi).result()
    m = TwoPointMatrix().update(phi).result()
    # G_c(r) = (1/V) sum_y <phi_y phi_{y+r}> - <M>^2 from the matrix
    shape = (4, 6)
    V = 24
    second = m["second"]
    M = m["mean"].mean()
    G = np.zeros(shape)
    for y in range(V):
        yi = np.array(np.unravel_index(y, shape))
        for r in range(V):
            ri = np.array(np.unravel_index(r, shape))
            G[tuple(ri)] += second[y, np.ravel_multi_index(tuple((yi + ri) % shape), shape)] / V
    np.testing.assert_allclose(f["G"], G - M ** 2, atol=1e-10)
    np.testing.assert_allclose(f["Gt"], np.fft.fftn(f["G"]).real, atol=1e-9)


def test_scalar_observables_definitions():
    rng = np.random.default_rng(7)
    phi = rng.standard_normal((300, 4, 4)) + 0.3
    r = ScalarObservables(2).update(phi).result()
    M = phi.mean(axis=(1, 2))
    e = 0.5 * sum((phi * np.roll(phi, -1, axis=ax)).mean(axis=(1, 2)) for ax in (1, 2))
    assert r["chi_2"] == pytest.approx(16 * (np.mean(M ** 2) - M.mean() ** 2))
    assert r["abs_M"] == pytest.approx(np.abs(M).mean())
    assert r["E"] == pytest.approx(e.mean() - M.mean() ** 2)
    assert r["U4"] == pytest.approx(1 - np.mean(M ** 4) / (3 * np.mean(M ** 2) ** 2))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="tuples"):
        PointMoments([(0, 1, 2, 3, 4, 5, 6)])
    with pytest.raises(ValueError, match="max_order"):
        SiteMoments(max_order=0)
    with pytest.raises(ValueError, match="phi"):
        SiteMoments().update(np.zeros((3, 2))).update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="log_weight"):
        SiteMoments().update(np.zeros((3, 2)), log_weight=np.zeros(2))
    with pytest.raises(ValueError, match="order"):
        connected_correlator(np.zeros((10, 4)), [(0, 1)], order=4, chunk=5)
    with pytest.raises(ValueError, match="blocks"):
        measure(np.zeros((10, 4)), SiteMoments(), blocks=0, chunk=5)


def test_jackknife_error_of_mean_matches_textbook():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8000, 2))
    ds = moments(x, [(0,), (1,)], chunk=200, blocks=40)
    np.testing.assert_allclose(ds.error.values, x.std(axis=0) / np.sqrt(len(x)), rtol=0.3)
    assert ds.attrs["error_method"] == "jackknife"
    assert list(ds.order.values) == [1, 1]


def test_connected_correlator_of_gaussian_is_zero_and_companion_fails():
    rng = np.random.default_rng(9)
    C = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.5], [0.2, 0.5, 1.0]])
    g = rng.standard_normal((40000, 3)) @ np.linalg.cholesky(C).T
    t = [(0, 1, 2, 0), (0, 0, 1, 1), (0, 1, 1, 2, 2, 0)]
    ds = connected_correlator(g, t, chunk=1000)
    assert np.all(np.abs(ds.value / ds.error) < 5)
    # companion: an exponential-tailed (non-Gaussian) field has clearly non-zero cumulants
    ng = g * rng.exponential(size=(len(g), 1))
    ds2 = connected_correlator(ng, t, chunk=1000)
    assert np.any(np.abs(ds2.value / ds2.error) > 5)


def test_error_method_registry_and_series_protocol():
    assert "jackknife" in error_methods()
    with pytest.raises(ValueError, match="unknown error method"):
        get_error_method("no-such-method")

    def naive(values, n_replicas=1):
        v = np.asarray(values)
        return v.mean(), v.std(ddof=1) / np.sqrt(len(v))

    register_error_method("naive_test", naive, overwrite=True)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4000, 1))
    a = moments(x, [(0,)], chunk=100, blocks=40, error="naive_test")
    b = moments(x, [(0,)], chunk=100, blocks=40)
    assert a.attrs["error_method"] == "naive_test"
    np.testing.assert_allclose(a.error.values, b.error.values, rtol=1e-10)  # linear: identical

    def custom(total, blocks, estimator, **kw):
        return ErrorEstimate(estimator(total), 0.0, "custom", {})

    register_error_method("custom_test", custom, overwrite=True)
    c = moments(x, [(0,)], chunk=100, error="custom_test")
    assert float(c.error.values[0]) == 0.0


def test_series_accumulator_keeps_order():
    x = np.arange(50.0)[:, None, None] * np.ones((50, 2, 2))
    m = measure(x, {"s": Series(lambda p, xp: p.mean(axis=(1, 2))[:, None], ["m"])},
                chunk=7, blocks=3, executor="dask", scheduler="threads")
    r = m.total["s"].result()
    np.testing.assert_array_equal(r["index"], np.arange(50))
    np.testing.assert_array_equal(r["values"][:, 0], np.arange(50.0))
