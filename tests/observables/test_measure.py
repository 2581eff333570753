"""The one-pass driver on stores: dask equals serial, memory flat in M, weighted stores."""
import tracemalloc

import numpy as np
import pytest

from nnft.lattice import FieldStore, Lattice, chunk_rng, fill_store, sample_free_field
from nnft.observables import (FourierTwoPoint, PointMoments, ScalarObservables, SiteMoments,
                              TwoPointMatrix, measure, moments)


def _accs():
    return {"site": SiteMoments(4), "tp": TwoPointMatrix(), "f": FourierTwoPoint(2),
            "s": ScalarObservables(2), "pm": PointMoments([(0, 1, 2, 3), (5, 5, 9, 9, 0, 1)])}


def test_dask_pass_equals_serial(tmp_path):
    st = sample_free_field(Lattice((6, 6)), 0.5, 3000, tmp_path / "s", chunk=250, seed=5)
    a = measure(st, _accs(), blocks=4)
    b = measure(st, _accs(), blocks=4, executor="dask", scheduler="threads")
    c = measure(st, _accs(), blocks=4, executor="dask", scheduler="processes")
    for other in (b, c):
        for name in a.total:
            ra, rb = a.total[name].result(), other.total[name].result()
            for k, v in ra.items():
                np.testing.assert_allclose(rb[k], v, rtol=1e-12, atol=1e-14, err_msg=name + k)
        assert [x["site"].n_samples for x in other.blocks] == [750] * 4
    assert a.block_ranges == [(0, 750), (750, 1500), (1500, 2250), (2250, 3000)]


def _peak(path, n):
    st = sample_free_field(Lattice((8, 8)), 0.5, n, path, chunk=500, seed=1)
    tracemalloc.start()
    measure(st, {"f": FourierTwoPoint(2), "s": ScalarObservables(2),
                 "pm": PointMoments([(0, 1, 2, 3)])}, blocks=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_peak_memory_flat_in_number_of_samples(tmp_path):
    small = _peak(tmp_path / "a", 2000)
    large = _peak(tmp_path / "b", 16000)
    phi_bytes_large = 16000 * 64 * 8
    assert large < 1.5 * small + 200_000
    assert large < 0.5 * phi_bytes_large


def test_weighted_store_uses_log_weight(tmp_path):
    lat = Lattice((4,))
    st = FieldStore.create(tmp_path / "w", lat, 4000, 500, weighted=True, source="reweighted")

    def make(k, start, stop):
        rng = chunk_rng(7, k)
        phi = rng.standard_normal((stop - start, 4))
        return phi, 0.5 * phi[:, 0] + 300.0  # tilts site 0 by +0.5 in mean
    fill_store(st, make)
    ds = moments(st, [(0,), (1,)], blocks=8)
    # w = exp(0.5 x) on N(0,1): tilted mean 0.5 at site 0, 0 at site 1
    assert abs((ds.value.values[0] - 0.5) / ds.error.values[0]) < 5
    assert abs(ds.value.values[1] / ds.error.values[1]) < 5
    assert ds.attrs["weighted"] == 1 and 1000 < ds.attrs["ess"] < 4000
    # companion: ignoring the weights misses the tilt
    phi = np.concatenate([st.read_chunk(k)[0] for k in range(st.n_chunks)])
    un = moments(phi, [(0,)], chunk=500)
    assert abs((un.value.values[0] - 0.5) / un.error.values[0]) > 5


def test_measure_array_and_chunk_selection():
    x = np.arange(100.0).reshape(50, 2)
    m = measure(x, SiteMoments(), chunk=10, chunks=[0, 1], blocks=2)
    assert m.total.n_samples == 20
    np.testing.assert_allclose(m.total.result()["mean"], [19, 20])
    with pytest.raises(ValueError, match="executor"):
        measure(x, SiteMoments(), chunk=10, executor="mpi")
