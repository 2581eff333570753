"""Measurement plans: one shared pass, equal to the single-measurement functions, streaming and
dask; the per-block feature-moment engine against closed forms."""

import numpy as np
import pytest

from nnft.ensembles import LatticeCosNet, generate
from nnft.lattice import Lattice, sample_free_field
from nnft.observables import combinatorics as cb
from nnft.observables.cluster import cluster_plan, cluster_profile
from nnft.observables.generating import generating_functional, generating_plan
from nnft.observables.plan import (CorrelatorPlan, MeasurementPlan, correlator_plan, run_plans,
                                   stream_plans)
from nnft.observables.symmetry import (check_hypercubic, check_translation, correlator_replicas,
                                       hypercubic_plan, translation_plan)

LAT = Lattice((6, 6))
SPEC = LatticeCosNet(width=4, m2=0.5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return generate(SPEC, LAT, 1200, tmp_path_factory.mktemp("p") / "s.zarr", chunk=200, seed=7)


def _plans(n_blocks=10):
    J = 0.2 * np.random.default_rng(0).standard_normal((2, 6, 6))
    return {"t": translation_plan(LAT, n_blocks=n_blocks, seed=1),
            "h": hypercubic_plan(LAT, n_blocks=n_blocks, seed=2, n_tuples=2),
            "W": generating_plan(J, (6, 6), n_max=3, n_blocks=n_blocks),
            "c": cluster_plan(LAT, n_blocks=n_blocks),
            "g": correlator_plan(np.array([[0, 1, 2, 3], [0, 0, 7, 7]]), n_blocks=n_blocks)}, J


def _same(a, b):
    for k in a.data_vars:
        if a[k].dtype.kind in "fc":
            np.testing.assert_allclose(a[k].values, b[k].values, rtol=1e-10, atol=1e-13,
                                       err_msg=k)
        else:
            assert (a[k].values == b[k].values).all(), k
    assert set(a.attrs) == set(b.attrs)
    for k, v in a.attrs.items():
        if isinstance(v, (float, np.floating)):
            np.testing.assert_allclose(v, b.attrs[k], rtol=1e-7, atol=1e-13, err_msg=k)
        else:
            assert v == b.attrs[k], k


def test_one_pass_reads_every_chunk_once_and_equals_the_single_runs(store):
    plans, J = _plans()
    res = run_plans(store, plans, n_blocks=10)
    assert dict(res.reads) == {k: 1 for k in range(store.n_chunks)}
    assert res.n_reads == store.n_chunks == 6
    _same(res["t"], check_translation(store, LAT, n_blocks=10, seed=1))
    _same(res["h"], check_hypercubic(store, LAT, n_blocks=10, seed=2, n_tuples=2))
    _same(res["W"], generating_functional(store, J, n_max=3, n_blocks=10))
    _same(res["c"], cluster_profile(store, LAT, n_blocks=10))
    r = correlator_replicas(store, np.array([[0, 1, 2, 3], [0, 0, 7, 7]]), n_blocks=10)
    np.testing.assert_allclose(res["g"]["value"].values, r.value, rtol=1e-12)
    np.testing.assert_allclose(res["g"]["error"].values, r.error, rtol=1e-10)
    # the single runs each read the store again: the shared pass is what saves reads
    assert res.measurement.n_samples == 1200 and len(res.measurement.blocks) == 10


def test_streaming_and_dask_equal_the_store_pass(store):
    plans, _ = _plans()
    ref = run_plans(store, plans, n_blocks=10)
    sm = stream_plans(plans, 1200, 200, n_blocks=10)
    generate(SPEC, LAT, 1200, chunk=200, seed=7, callback=sm)
    got = sm.finalize()
    for name in plans:
        _same(got[name], ref[name])
    dk = run_plans(store, plans, n_blocks=10, executor="dask", scheduler="synchronous")
    for name in plans:
        _same(dk[name], ref[name])
    # plans with different blocks, streamed
    mixed = {"a": correlator_plan([[0, 1], [3, 3]], n_blocks=7),
             "c": cluster_plan(LAT, n_blocks=4)}
    sm = stream_plans(mixed, 1200, 200)
    generate(SPEC, LAT, 1200, chunk=200, seed=7, callback=sm)
    got, ref = sm.finalize(), run_plans(store, mixed)
    for name in mixed:
        _same(got[name], ref[name])


def test_block_conventions_and_bad_input(store):
    plans, _ = _plans()
    ch = run_plans(store, {"g": plans["g"]}, n_blocks=4, split="chunks")
    assert ch["g"].sizes["block"] == 4
    # plans with their own blocks in one pass: each gets exactly its standalone blocks
    plans3 = {"a": correlator_plan([[0, 1], [2, 2]], n_blocks=8),
              "b": correlator_plan([[0, 1], [2, 2]], n_blocks=5),
              "c": CorrelatorPlan([[0, 1], [2, 2]], n_blocks=4)}
    plans3["c"].split = "chunks"
    both = run_plans(store, plans3)
    assert both.n_reads == 6
    assert [both[k].sizes["block"] for k in "abc"] == [8, 5, 4]
    for k in "abc":
        _same(both[k], run_plans(store, {k: plans3[k]})[k])
    assert not np.allclose(both["a"]["error"], both["b"]["error"])
    with pytest.raises(ValueError, match="split"):
        run_plans(store, {"g": plans["g"]}, split="bogus")
    with pytest.raises(ValueError, match="MeasurementPlan"):
        run_plans(store, {"g": object()})
    with pytest.raises(ValueError, match="stat"):
        correlator_plan([[0, 1]], stat="bogus")
    with pytest.raises(NotImplementedError):
        MeasurementPlan().accumulators()


def test_engine_against_the_exact_free_field():
    """Connected 2- and 4-point functions of an exact Gaussian field: G2c = G(r), G4c = 0,
    and the moment G4 = sum of pairings (|z| < 5); a wrong propagator is rejected."""
    lat = Lattice((8,))
    m2 = 0.7
    out = []
    sample_free_field(lat, m2, 8000, seed=3, chunk=1000, callback=lambda k, p, lw: out.append(p))
    phi = np.concatenate(out)
    from nnft.lattice import free_propagator
    G = free_propagator(lat, m2)
    t2 = np.array([[0, r] for r in range(5)])
    t4 = np.array([[0, 1, 2, 3], [0, 0, 1, 1], [2, 2, 2, 2]])
    res = run_plans(phi, {"c2": correlator_plan(t2, n_blocks=20),
                          "c4": correlator_plan(t4, n_blocks=20),
                          "m4": correlator_plan(t4, stat="moment", n_blocks=20),
                          "w4": correlator_plan(t4, stat="wick_subtracted", n_blocks=20)})
    z2 = (res["c2"]["value"] - G[:5]) / res["c2"]["error"]
    assert np.all(np.abs(z2) < 5), z2.values
    assert np.all(np.abs(res["c4"]["value"] / res["c4"]["error"]) < 5)
    assert np.all(np.abs(res["w4"]["value"] / res["w4"]["error"]) < 5)
    Gm = lambda a, b: G[abs(a - b) % 8]  # noqa: E731
    exp4 = np.array([Gm(a, b) * Gm(c, d) + Gm(a, c) * Gm(b, d) + Gm(a, d) * Gm(b, c)
                     for a, b, c, d in t4])
    assert np.all(np.abs((res["m4"]["value"] - exp4) / res["m4"]["error"]) < 5)
    # companion: the propagator of another mass fails the same |z| < 5 criterion
    Gw = free_propagator(lat, 1.4)
    assert np.max(np.abs((res["c2"]["value"] - Gw[:5]) / res["c2"]["error"])) > 5


def test_weighted_complex_features_match_a_direct_estimate():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 4)) + 0.3
    lw = 0.2 * rng.standard_normal(3000)
    feats = lambda p: np.fft.fft(p, axis=1)  # noqa: E731
    plan = CorrelatorPlan(np.array([[1, 3], [0, 0]]), stat="moment", features=feats, n_blocks=6)
    ds = run_plans(x, {"f": plan}, log_weight=lw, chunk=700)["f"]
    f = np.fft.fft(x, axis=1)
    w = np.exp(lw)
    direct = np.array([np.sum(w * f[:, 1] * f[:, 3]), np.sum(w * f[:, 0] ** 2)]) / w.sum()
    np.testing.assert_allclose(ds["value"] + 1j * ds["value_imag"], direct, rtol=1e-10)
    assert ds.attrs["weighted"] == 1


def test_combinatorics_counts_and_front_end_tuples():
    assert [len(cb.set_partitions(n)) for n in range(7)] == [1, 1, 2, 5, 15, 52, 203]
    assert [len(cb.pairings(n)) for n in (2, 4, 6, 8)] == [1, 3, 15, 105]
    assert cb.pairings(3) == ()
    assert sum(c for c, _ in cb.cumulant_terms(4)) == 0  # kappa of constants vanishes
    assert len(cb.partitions_without_singletons(4)) == 4
    with pytest.raises(ValueError, match="n must"):
        cb.set_partitions(-1)
    # the front end draws its tuples with these (tests/cli/test_examples.py's baseline shows
    # the draws are the ones nnft run used before); a different seed gives other tuples
    lat = Lattice((5, 4))
    assert not np.array_equal(cb.box_multisets(lat, 4, 12, seed=12),
                              cb.box_multisets(lat, 4, 12, seed=11))
    assert cb.point_multisets(20, 4, 12, seed=11).shape == (12, 4)
    # the draw of nnft measure's former continuum couplings
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(
        cb.unique_sorted_tuples(np.random.default_rng(0), 30, 4, 24),
        np.unique(np.sort(rng.integers(0, 30, size=(24, 4)), axis=1), axis=0))
    with pytest.raises(ValueError, match="count"):
        cb.random_tuples(np.random.default_rng(0), 5, 2, 0)


def test_coupling_plans_share_one_pass_with_their_reference():
    """quartic (weighted + unweighted reference), six-point and amputated vertex in one pass
    over a reweighted free field equal the store-level functions (which need 2 + 1 + 2 passes
    of the old engine)."""
    from nnft.lattice import free_propagator
    from nnft.observables.couplings import (amputated_vertex, amputated_vertex_plan,
                                            quartic_coupling, quartic_plan, six_point_check,
                                            six_point_plan)
    lat = Lattice((8,))
    out = []
    sample_free_field(lat, 1.0, 3000, seed=2, chunk=500, callback=lambda k, p, lw: out.append(p))
    phi = np.concatenate(out)
    lw = -5e-4 * np.sum(phi ** 4, axis=1)
    G = free_propagator(lat, 1.0)
    plans = {"q": quartic_plan(lat, G, n_tuples=5, reference="unweighted", n_blocks=8),
             "s": six_point_plan(lat, G, n_tuples=3, n_blocks=8),
             "v": amputated_vertex_plan(lat, n_momenta=3, reference="unweighted", n_blocks=8)}
    res = run_plans(phi, plans, log_weight=lw, chunk=500)
    assert res.n_reads == 6
    _same(res["q"], quartic_coupling(phi, lat, G, n_tuples=5, reference="unweighted",
                                     n_blocks=8, log_weight=lw))
    _same(res["s"], six_point_check(phi, lat, G, n_tuples=3, n_blocks=8, log_weight=lw))
    _same(res["v"], amputated_vertex(phi, lat, n_momenta=3, reference="unweighted", n_blocks=8,
                                     log_weight=lw))
    assert res["q"].attrs["lam"] != quartic_coupling(phi, lat, G, n_tuples=5, n_blocks=8,
                                                     log_weight=lw).attrs["lam"]
    with pytest.raises(ValueError, match="reference"):
        quartic_plan(lat, G, reference="bogus")


def test_plans_run_on_the_array_module(xp):
    """Every plan kind on a device array (CuPy on a GPU) equals the NumPy pass."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((900, 2, 4, 4)) + 0.1
    lat = Lattice((4, 4))
    J = 0.1 * rng.standard_normal((2, 2, 4, 4))
    from nnft.observables.symmetry import internal_rotation_plan

    def plans():
        return {"t": translation_plan(lat, components=2, n_blocks=6, orders=(2,)),
                "r": internal_rotation_plan((2, 4, 4), n_blocks=6),
                "W": generating_plan(J, (2, 4, 4), n_blocks=6),
                "g": correlator_plan(np.array([[0, 17, 3, 30]]), n_blocks=6)}
    ref = run_plans(x, plans(), chunk=200)
    got = run_plans(xp.asarray(x), plans(), chunk=200)
    for name in ref:
        _same(got[name], ref[name])


def test_moment_plans_keep_their_chunk_blocks_in_a_shared_pass(store):
    """connected_correlator / moments (chunk blocks, 20) and a symmetry check (equal-sample
    blocks, 10) in one pass give exactly their standalone numbers."""
    from nnft.observables import connected_correlator, moments
    from nnft.observables.cumulants import connected_plan, moments_plan
    t = [(0, 1), (0, 0, 1, 1), (2, 3, 4, 5)]
    res = run_plans(store, {"c": connected_plan(t), "m": moments_plan(t, central=True),
                            "t": translation_plan(LAT, n_blocks=10, seed=1)})
    assert res.n_reads == store.n_chunks
    _same(res["c"], connected_correlator(store, t))
    _same(res["m"], moments(store, t, central=True))
    _same(res["t"], check_translation(store, LAT, n_blocks=10, seed=1))
    assert res["c"].attrs["n_blocks"] == 20
    with pytest.raises(ValueError, match="order"):
        connected_plan(t, order=2)
