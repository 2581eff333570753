"""FieldStore: round trip, provenance, crash safety, concurrent writers, clear errors."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
import zarr

from nnft.lattice import (FieldStore, Lattice, PointSet, StoreError, StoreMismatchError,
                          sample_free_field)

LAT = Lattice((8, 8))


def phi_array(path):
    return zarr.open_group(path, mode="r")["phi"][:]


def test_round_trip_and_provenance(tmp_path):
    p = tmp_path / "s.zarr"
    store = FieldStore.create(p, LAT, 10, 4, components=3, spec={"arch": "test", "w": 2},
                              seed=2**70 + 5, extra={"note": "x"}, weighted=True, dtype="float32")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 3, 8, 8))
    lw = rng.normal(size=10)
    for k in range(store.n_chunks):
        a, b = store.chunk_range(k)
        store.write_chunk(k, data[a:b], lw[a:b])
    s2 = FieldStore.open(p, lattice=LAT, spec={"w": 2, "arch": "test"})
    assert s2.is_complete and s2.n_chunks == 3 and s2.chunk_range(2) == (8, 10)
    assert s2.seed == 2**70 + 5 and s2.components == 3 and s2.weighted
    got = np.concatenate([c[1] for c in s2.iter_chunks()])
    np.testing.assert_array_equal(got, data.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([c[2] for c in s2.iter_chunks()]), lw)
    a = s2.attrs
    for key in ("schema", "schema_version", "source", "spec", "lattice", "seed", "chunk",
                "backend", "bit_generator", "versions", "created", "n_replicas", "dtype"):
        assert key in a, key
    assert isinstance(a["seed"], str) and a["extra"] == {"note": "x"}
    assert set(a["versions"]) >= {"nnft", "numpy", "zarr", "xarray", "python"}
    ds = s2.to_xarray()
    assert ds["phi"].dims == ("sample", "component", "x0", "x1")
    assert ds["phi"].chunks is not None  # lazy, dask-backed
    np.testing.assert_array_equal(ds["phi"].values, data.astype(np.float32))
    np.testing.assert_array_equal(ds["x1"].values, np.arange(8.0))
    assert "log_weight" in ds


def test_pointset_store_and_partial_view(tmp_path):
    pts = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1])
    s = FieldStore.create(tmp_path / "p", pts, 9, 3)
    s.write_chunk(1, np.ones((3, 6)))
    assert s.complete_chunks() == [1] and s.missing_chunks() == [0, 2] and not s.is_complete
    ds = s.to_xarray()
    assert ds.sizes["sample"] == 3 and np.all(ds["phi"].values == 1)
    np.testing.assert_allclose(ds["positions"].values[:, 0], pts.points[:, 0])
    assert FieldStore.open(tmp_path / "p").lattice == pts


def test_errors(tmp_path):
    p = tmp_path / "s"
    with pytest.raises(StoreError, match="no store"):
        FieldStore.open(p)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a Zarr"):
        FieldStore.open(tmp_path / "plain")
    zarr.open_group(tmp_path / "other", mode="w").attrs["x"] = 1
    with pytest.raises(StoreError, match="not an nnft FieldStore"):
        FieldStore.open(tmp_path / "other")
    with pytest.raises(StoreError, match="parent directory"):
        FieldStore.create(tmp_path / "missing" / "s", LAT, 4, 2)
    with pytest.raises(StoreError, match="n_samples"):
        FieldStore.create(p, LAT, 0, 2)
    with pytest.raises(StoreError, match="chunk"):
        FieldStore.create(p, LAT, 4, -1)
    with pytest.raises(StoreError, match="source"):
        FieldStore.create(p, LAT, 4, 2, source="magic")
    with pytest.raises(StoreError, match="dtype"):
        FieldStore.create(p, LAT, 4, 2, dtype="int8")
    with pytest.raises(StoreError, match="lattice"):
        FieldStore.create(p, (8, 8), 4, 2)
    s = FieldStore.create(p, LAT, 4, 2, spec={"arch": "a"}, seed=1)
    with pytest.raises(StoreError, match="already exists"):
        FieldStore.create(p, LAT, 4, 2)
    with pytest.raises(StoreError, match="shape"):
        s.write_chunk(0, np.zeros((2, 4, 4)))
    with pytest.raises(StoreError, match="unweighted"):
        s.write_chunk(0, np.zeros((2, 8, 8)), np.zeros(2))
    with pytest.raises(StoreError, match="read-only"):
        FieldStore.open(p).write_chunk(0, np.zeros((2, 8, 8)))
    with pytest.raises(StoreMismatchError, match="lattice"):
        FieldStore.open(p, lattice=Lattice((8, 9)))
    with pytest.raises(StoreMismatchError, match="spec"):
        FieldStore.open(p, spec={"arch": "b"})
    with pytest.raises(StoreMismatchError, match=r"n_samples.*seed|seed"):
        FieldStore.open_or_create(p, LAT, 4, 2, spec={"arch": "a"}, seed=2)
    with pytest.raises(StoreMismatchError, match="chunk"):
        FieldStore.open_or_create(p, LAT, 4, 4, spec={"arch": "a"})
    with pytest.raises(StoreError, match="not a Zarr store"):
        FieldStore.create(tmp_path / "plain", LAT, 4, 2, overwrite=True)
    # unknown schema version is refused
    g = zarr.open_group(p, mode="r+")
    g.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version"):
        FieldStore.open(p)


WRITER = textwrap.dedent("""
    import sys, time
    from nnft.lattice import Lattice, sample_free_field
    path, delay = sys.argv[1], float(sys.argv[2])
    def slow(k, phi, lw):
        print(k, flush=True)
        time.sleep(delay)
    sample_free_field(Lattice((16, 16)), 0.2, 60000, path, chunk=2000, seed=99, callback=slow)
""")


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    sample_free_field(Lattice((16, 16)), 0.2, 60000, ref, chunk=2000, seed=99)
    p = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p), "0.02"], stdout=subprocess.PIPE,
                            text=True)
    seen = 0
    for line in proc.stdout:
        seen += 1
        if seen == 7:
            time.sleep(0.013)  # land somewhere inside the next chunk's generation or write
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = FieldStore.open(p)
    done = partial.complete_chunks()
    assert 7 <= len(done) < partial.n_chunks
    # every chunk counted complete holds exactly the reference data
    refphi = phi_array(ref)
    for k in done:
        a, b = partial.chunk_range(k)
        np.testing.assert_array_equal(partial.read_chunk(k)[0], refphi[a:b])
    sample_free_field(Lattice((16, 16)), 0.2, 60000, p, chunk=2000)  # resume, seed from the store
    resumed = FieldStore.open(p)
    assert resumed.is_complete
    np.testing.assert_array_equal(phi_array(p), refphi)
    assert phi_array(p).tobytes() == refphi.tobytes()


CHUNK_WRITER = textwrap.dedent("""
    import sys
    from nnft.lattice import FieldStore, chunk_rng, fill_store, free_field_chunk
    path, ks = sys.argv[1], [int(k) for k in sys.argv[2].split(",")]
    store = FieldStore.open(path, mode="r+")
    def make(k, a, b):
        return free_field_chunk(store.lattice, 0.3, b - a, chunk_rng(store.seed, k))
    fill_store(store, make, chunks=ks)
""")


def test_two_writers_on_disjoint_chunks(tmp_path):
    ref = tmp_path / "ref"
    sample_free_field(LAT, 0.3, 4000, ref, chunk=250, seed=5)
    p = tmp_path / "shared"
    FieldStore.create(p, LAT, 4000, 250, source="exact_free", seed=5)
    evens = ",".join(str(k) for k in range(0, 16, 2))
    odds = ",".join(str(k) for k in range(1, 16, 2))
    procs = [subprocess.Popen([sys.executable, "-c", CHUNK_WRITER, str(p), ks]) for ks in (evens, odds)]
    assert [q.wait() for q in procs] == [0, 0]
    s = FieldStore.open(p)
    assert s.is_complete
    assert phi_array(p).tobytes() == phi_array(ref).tobytes()


def test_concurrent_create_race(tmp_path):
    p = tmp_path / "race"
    code = ("import sys; from nnft.lattice import FieldStore, Lattice; "
            "FieldStore.open_or_create(sys.argv[1], Lattice((8, 8)), 100, 10, seed=1)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p)]) for _ in range(3)]
    assert [q.wait() for q in procs] == [0, 0, 0]
    assert FieldStore.open(p).n_chunks == 10
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def _peak_bytes(tmp_path, n):
    tracemalloc.start()
    sample_free_field(Lattice((16, 16)), 0.3, n, tmp_path / f"m{n}", chunk=1000, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_flat_in_samples(tmp_path):
    sample_free_field(Lattice((16, 16)), 0.3, 1000, tmp_path / "warm", chunk=1000, seed=0)
    small = _peak_bytes(tmp_path, 2000)
    large = _peak_bytes(tmp_path, 20000)
    assert large < 1.5 * small, (small, large)
    one_chunk = 1000 * 256 * 8
    # a few chunk-sized temporaries (FFT, compression), far below the 20-chunk ensemble
    assert large < 8 * one_chunk, large / one_chunk
