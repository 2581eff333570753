"""Symmetry checks (docs/conventions.md): each has a passing and a failing ensemble."""
import numpy as np
import pytest

from nnft.ensembles import GaussNet, LatticeCosNet, generate
from nnft.lattice import Lattice
from nnft.observables import ArraySource, connected_correlator
from nnft.observables.symmetry import (assess_deviations, check_hypercubic,
                                       check_internal_rotation, check_translation,
                                       correlator_replicas, holm_adjust, hypercubic_ops,
                                       plot_symmetry_table, random_rotations, transform_tuples,
                                       translate_tuples)


def _gen(spec, lat, n, seed, chunk=5000):
    out = []
    generate(spec, lat, n, chunk=chunk, seed=seed, callback=lambda k, p, lw: out.append(p))
    return np.concatenate(out)


def _anisotropic_free(lat, m2, c, n, seed):
    """Exact Gaussian field with Gt(p) = 1/(sum_mu c_mu phat_mu^2 + m2) (anisotropic kernel)."""
    rng = np.random.default_rng(seed)
    p = lat.momenta()
    ph2 = sum(c[mu] * 4 * np.sin(p[..., mu] / 2) ** 2 for mu in range(lat.dim))
    sq = np.sqrt(1 / (ph2 + m2))
    eta = rng.standard_normal((n,) + lat.shape)
    return np.fft.ifftn(np.fft.fftn(eta, axes=(1, 2)) * sq, axes=(1, 2)).real


@pytest.fixture(scope="module")
def cosnet():
    lat = Lattice((6, 6))
    return lat, _gen(LatticeCosNet(width=5, m2=0.5), lat, 20000, 1)


def test_engine_matches_direct_and_observables_I():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6000, 4))
    x = np.stack([z[:, 0] + 0.5, z[:, 0] * z[:, 1] + 1.0, z[:, 1] ** 2, z[:, 2] + z[:, 0] ** 2], 1)
    t = np.array([[0, 1, 2, 3], [0, 0, 1, 1], [3, 3, 3, 3]])
    r = correlator_replicas(x, t, stat="connected", n_blocks=20)
    ref = connected_correlator(ArraySource(x, chunk=300), t, blocks=20)
    np.testing.assert_allclose(r.value, ref["value"].values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.error, ref["error"].values, rtol=1e-6)
    m = lambda *c: np.mean(np.prod(x[:, list(c)], axis=1))  # noqa: E731
    w = correlator_replicas(x, np.array([[0, 1, 2, 3]]), stat="wick_subtracted", n_blocks=20)
    exp = m(0, 1, 2, 3) - m(0, 1) * m(2, 3) - m(0, 2) * m(1, 3) - m(0, 3) * m(1, 2)
    np.testing.assert_allclose(w.value[0], exp, rtol=1e-10)
    lw = 0.3 * rng.standard_normal(len(x))
    r = correlator_replicas(x, t[:1], stat="moment", log_weight=lw, n_blocks=20)
    ww = np.exp(lw)
    np.testing.assert_allclose(r.value[0], np.sum(ww * np.prod(x[:, t[0]], 1)) / ww.sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="stat"):
        correlator_replicas(x, t, stat="bogus")
    with pytest.raises(ValueError, match="n_blocks"):
        correlator_replicas(x, t, n_blocks=1)


def test_verdict_statistics():
    v = assess_deviations([0.5, 1.0, -1.2], [1, 1, 1], dof=31)
    assert v["passed"] and v["max_abs_z"] == pytest.approx(1.2)
    v = assess_deviations([0.5, 1.0, 6.0], [1, 1, 1], dof=31)
    assert not v["passed"] and v["argmax"] == 2
    assert holm_adjust([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="alpha"):
        assess_deviations([1], [1], alpha=2)


def test_geometry_helpers_agree_with_lattice():
    lat = Lattice((4, 4))
    phi = np.random.default_rng(0).standard_normal((3, 4, 4))
    t = np.array([[0, 5, 7, 14]])
    # comparing G(T) with G(gT) over the whole group is convention independent, but the
    # site maps of both implementations must agree as sets of tuples
    mine = {tuple(transform_tuples(t, lat, op)[0]) for op in hypercubic_ops(lat)}
    ref = set()
    idx = np.arange(16).reshape(1, 4, 4)
    for op in lat.symmetry_ops():
        perm = lat.apply_symmetry(idx, op)[0].ravel()
        inv = np.argsort(perm)
        ref.add(tuple(inv[t[0]]))
    assert mine == ref
    new, keep = translate_tuples(t, lat, (1, 3))
    assert keep.all() and new.shape == t.shape
    lo = Lattice((4,), boundary="open")
    new, keep = translate_tuples(np.array([[0, 1], [2, 3]]), lo, (1,))
    assert keep.tolist() == [True, False] and new.tolist() == [[1, 2]]
    R = random_rotations(5, 3)
    np.testing.assert_allclose(np.einsum("rab,rcb->rac", R, R), np.broadcast_to(np.eye(5), (3, 5, 5)), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1)
    assert phi.shape == (3, 4, 4)


def test_translation_cosnet_passes(cosnet, tmp_path):
    lat, phi = cosnet
    ds = check_translation(phi, lat, n_blocks=20)
    assert ds.attrs["verdict"] == "symmetric", ds.attrs["worst"]
    assert ds.attrs["max_abs_z"] < 5
    assert set(np.unique(ds["order"])) == {2, 4}
    plot_symmetry_table({"translation": ds}, tmp_path / "sym.png")
    assert (tmp_path / "sym.png").stat().st_size > 0


def test_translation_gaussnet_four_point_fails():
    lat = Lattice((8,), spacing=0.25, origin=-0.875, boundary="open")
    phi = _gen(GaussNet(width=2, d_in=1, sigma_b=0.3), lat, 20000, 2)
    ds2 = check_translation(phi, lat, orders=(2,), n_blocks=20)
    assert ds2.attrs["verdict"] == "symmetric"  # G2 is the (translation-invariant) GP kernel
    ds4 = check_translation(phi, lat, orders=(4,), n_blocks=20)
    assert ds4.attrs["verdict"] == "broken"
    assert ds4.attrs["max_abs_z"] > 6


def test_hypercubic_isotropic_passes_anisotropic_fails(cosnet):
    lat, phi = cosnet
    ds = check_hypercubic(phi, lat, n_tuples=4, n_blocks=20)
    assert ds.attrs["verdict"] == "symmetric", ds.attrs["worst"]
    lat2 = Lattice((6, 6))
    iso = _anisotropic_free(lat2, 0.5, (1.0, 1.0), 20000, 3)
    ani = _anisotropic_free(lat2, 0.5, (1.0, 1.5), 20000, 3)
    kw = dict(orders=(2,), n_tuples=8, n_blocks=20)
    assert check_hypercubic(iso, lat2, **kw).attrs["verdict"] == "symmetric"
    bad = check_hypercubic(ani, lat2, **kw)
    assert bad.attrs["verdict"] == "broken" and bad.attrs["max_abs_z"] > 6


def test_internal_rotation_zero_mean_passes_nonzero_mean_fails():
    lat = Lattice((4,), spacing=0.3, origin=-0.45, boundary="open")
    good = _gen(GaussNet(width=3, d_in=1, components=5), lat, 20000, 3)
    ds = check_internal_rotation(good, n_blocks=20)
    assert ds.attrs["verdict"] == "symmetric", ds.attrs["worst"]
    bad = _gen(GaussNet(width=3, d_in=1, components=5, mu_w1=0.5), lat, 20000, 3)
    ds = check_internal_rotation(bad, n_blocks=20)
    assert ds.attrs["verdict"] == "broken" and ds.attrs["max_abs_z"] > 10
    with pytest.raises(ValueError, match="vector field"):
        check_internal_rotation(np.zeros((100, 4)))
