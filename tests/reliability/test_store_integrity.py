"""Non-finite values, damaged metadata, old-format stores, disk full, read-only folders,
overwrite safety, stale temporary files. Each test names the protection it guards."""
import errno
import json
import os

import numpy as np
import pytest
import zarr
import zarr.storage._local as zlocal

import nnft.ensembles as E
from nnft.lattice import (CorruptChunkError, CorruptStoreError, FieldStore, Lattice,
                          NonFiniteError, StoreError, StoreWriteError, sample_free_field)

LAT = Lattice((4, 4))


def new_store(path, **kw):
    return FieldStore.create(path, LAT, 30, 10, seed=1, **kw)


def data(k, n=10):
    return np.random.default_rng(k).normal(size=(n, 4, 4))


# -- non-finite values ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_write_refused(tmp_path, bad):
    # guards: write_chunk's finiteness check (the chunk is never marked complete)
    s = new_store(tmp_path / "s")
    x = data(1)
    x[3, 1, 2] = bad
    x[7, 0, 0] = bad
    word = "nan" if np.isnan(bad) else "inf"
    with pytest.raises(NonFiniteError) as e:
        s.write_chunk(1, x)
    assert str(e.value) == (f"chunk 1 of store {str(tmp_path / 's')!r}: phi holds a non-finite "
                            f"value ({word}) at sample 13 (sample 3 of the chunk, after "
                            "conversion to float64); nothing was written")
    assert not s.chunk_file(1).exists() and s.missing_chunks() == [0, 1, 2]


def test_float32_overflow_refused(tmp_path):
    # guards: the check runs after conversion to the store's dtype (1e39 -> inf in float32)
    s = new_store(tmp_path / "s", dtype="float32")
    x = data(0)
    x[4, 0, 0] = 1e39
    with pytest.raises(NonFiniteError, match=r"\(inf\) at sample 4 .*float32"):
        s.write_chunk(0, x)


def test_nonfinite_log_weight_refused(tmp_path):
    s = FieldStore.create(tmp_path / "w", LAT, 20, 10, seed=1, weighted=True)
    lw = np.zeros(10)
    lw[6] = np.nan
    with pytest.raises(NonFiniteError, match=r"chunk 0 .*log_weight .*\(nan\) at sample 6"):
        s.write_chunk(0, data(0), lw)
    assert s.missing_chunks() == [0, 1]


def test_huge_finite_values_accepted(tmp_path):
    # the fast path (a sum) overflows; the exact check must still accept finite data
    s = new_store(tmp_path / "s")
    x = np.full((10, 4, 4), 1e308)
    s.write_chunk(0, x)
    np.testing.assert_array_equal(s.read_chunk(0)[0], x)


def test_nonfinite_read_is_reported_not_propagated(tmp_path):
    # guards: read_chunk's finiteness check; NaN in a store once gave ZeroDivisionError
    from nnft.observables import SiteMoments, measure

    p = tmp_path / "s"
    s = new_store(p)
    for k in range(3):
        s.write_chunk(k, data(k))
    g = zarr.open_group(p, mode="r+")  # as an external tool or an old nnft could have written
    block = g["phi"][10:20]
    block[5, 2, 2] = np.nan
    g["phi"][10:20] = block
    s = FieldStore.open(p)
    msg = (f"store {str(p)!r} is damaged: chunk 1 (samples 10..19): {s.chunk_file(1)}: "
           "non-finite value (nan) at sample 15;")
    with pytest.raises(CorruptChunkError) as e:
        s.read_chunk(1)
    assert str(e.value).startswith(msg)
    with pytest.raises(CorruptChunkError, match=r"non-finite value \(nan\) at sample 15"):
        measure(s, [SiteMoments()])
    assert s.verify().to_regenerate == [1]


# -- damaged metadata ----------------------------------------------------------------------
@pytest.mark.parametrize("which", ["phi", "group", "complete"])
def test_corrupt_metadata_named_in_one_line(tmp_path, which):
    # guards: open() parses every zarr.json itself and names the damaged file
    p = tmp_path / "s"
    new_store(p)
    f = {"phi": p / "phi" / "zarr.json", "group": p / "zarr.json",
         "complete": p / "complete" / "zarr.json"}[which]
    f.write_bytes(f.read_bytes()[:37])
    with pytest.raises(CorruptStoreError) as e:
        FieldStore.open(p)
    assert str(e.value).startswith(f"damaged metadata file {f}: not valid JSON (")
    assert "\n" not in str(e.value)


def test_missing_array_metadata_named(tmp_path):
    p = tmp_path / "s"
    new_store(p)
    (p / "phi" / "zarr.json").unlink()
    f = p / "phi" / "zarr.json"
    with pytest.raises(CorruptStoreError, match=f"is damaged: {f} is missing"):
        FieldStore.open(p)


def test_inconsistent_array_metadata_named(tmp_path):
    # guards: phi's shape/chunks checked against the store attributes
    p = tmp_path / "s"
    new_store(p)
    f = p / "phi" / "zarr.json"
    meta = json.loads(f.read_text())
    meta["shape"][0] = 20
    f.write_text(json.dumps(meta))
    with pytest.raises(CorruptStoreError, match=r"phi/zarr.json gives shape \(20, 4, 4\)"):
        FieldStore.open(p)


# -- stores written before checksums ---------------------------------------------------------
def write_legacy_store(path, lattice, n_samples, chunk, seed):
    """The store format written by nnft before checksums (Blosc/LZ4, no crc32c), by hand."""
    attrs = {"schema": "nnft.fieldstore", "schema_version": 1, "source": "exact_free",
             "spec": {"arch": "ExactFreeField", "m2": 0.5, "convention": "C"},
             "lattice": lattice.to_dict(), "n_samples": n_samples, "chunk": chunk,
             "n_chunks": -(-n_samples // chunk), "components": None, "seed": str(seed),
             "backend": "numpy", "bit_generator": "PCG64", "weighted": False,
             "dtype": "float64", "n_replicas": 1, "extra": {}, "versions": {},
             "created": "2026-11-01T00:00:00+00:00"}
    g = zarr.open_group(path, mode="w", zarr_format=3, attributes=attrs)
    blosc = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
    g.create_array("phi", shape=(n_samples,) + lattice.shape, dtype="float64",
                   chunks=(chunk,) + lattice.shape, compressors=blosc,
                   dimension_names=("sample", "x0", "x1"), fill_value=np.nan)
    for mu in range(lattice.dim):
        g.create_array(f"x{mu}", shape=(lattice.shape[mu],), dtype="float64",
                       dimension_names=(f"x{mu}",))[:] = lattice.axis_coords(mu)
    g.create_array("complete", shape=(attrs["n_chunks"],), dtype="uint8", chunks=(1,),
                   compressors=None, dimension_names=("chunk",), fill_value=0)
    from nnft.lattice import chunk_rng, free_field_chunk

    for k in range(attrs["n_chunks"] - 1):  # the last chunk left unwritten
        a, b = k * chunk, min((k + 1) * chunk, n_samples)
        g["phi"][a:b] = free_field_chunk(lattice, 0.5, b - a, chunk_rng(seed, k))
        g["complete"][k] = 1


def test_legacy_store_opens_reads_resumes(tmp_path):
    # guards: stores written before checksums keep opening, reading and resuming
    lat = Lattice((8, 8))
    p = tmp_path / "old"
    write_legacy_store(p, lat, 50, 10, seed=4)
    s = FieldStore.open(p)
    assert not s.checksums and s.missing_chunks() == [4] and s.damaged_chunks() == []
    ref = sample_free_field(lat, 0.5, 50, tmp_path / "new", chunk=10, seed=4)
    assert ref.checksums
    for k in range(4):
        assert s.read_chunk(k)[0].tobytes() == ref.read_chunk(k)[0].tobytes()
    sample_free_field(lat, 0.5, 50, p, chunk=10)  # resume in the old format
    s = FieldStore.open(p)
    assert s.is_complete and s.read_chunk(4)[0].tobytes() == ref.read_chunk(4)[0].tobytes()
    rep = s.verify()
    assert rep.clean and not rep.checksums and "no checksums" in str(rep)


def test_legacy_store_garbage_chunk_named(tmp_path):
    # guards: a Blosc decoding failure is caught at the chunk (no 79-line traceback)
    p = tmp_path / "old"
    write_legacy_store(p, Lattice((8, 8)), 50, 10, seed=4)
    f = FieldStore.open(p).chunk_file(1)
    f.write_bytes(b"\x02\x01" + os.urandom(300))
    with pytest.raises(CorruptChunkError, match=r"chunk 1 \(samples 10\.\.19\): .*phi/c/1/0/0: "
                                                r"cannot be decoded \("):
        FieldStore.open(p).read_chunk(1)


@pytest.mark.parametrize("codec", ["crc32c", "lz4+crc32c", "lz4", "raw"])
def test_every_codec_round_trips(tmp_path, codec):
    s = new_store(tmp_path / codec, codec=codec)
    s.write_chunk(0, data(0))
    assert s.read_chunk(0)[0].tobytes() == data(0).tobytes()
    assert s.checksums == ("crc32c" in codec)


def test_unknown_codec_one_line(tmp_path):
    with pytest.raises(StoreError, match=r"^codec must be one of \('crc32c', 'lz4\+crc32c', "):
        new_store(tmp_path / "s", codec="gzip")


# -- disk full, read-only ------------------------------------------------------------------
def _fail_on(monkeypatch, fragment, err):
    real = zlocal._put

    def put(path, value, exclusive=False):
        if fragment in str(path):
            raise OSError(err, os.strerror(err))
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(zlocal, "_put", put)


@pytest.mark.parametrize("err,words", [(errno.ENOSPC, "no space left on device"),
                                       (errno.EROFS, "read-only file system"),
                                       (errno.EACCES, "permission denied")])
def test_write_failure_leaves_chunk_incomplete(tmp_path, monkeypatch, err, words):
    # guards: the completion entry is written only after the data succeeded
    p = tmp_path / "s"
    s = new_store(p)
    s.write_chunk(0, data(0))
    with monkeypatch.context() as m:
        _fail_on(m, "/phi/c/1/", err)
        with pytest.raises(StoreWriteError) as e:
            s.write_chunk(1, data(1))
    assert str(e.value) == (f"cannot write chunk 1 of store {str(p)!r}: {words}; the chunk is "
                            "not marked complete (re-run to resume)")
    assert e.value.errno == err
    s = FieldStore.open(p)
    assert s.complete_chunks() == [0] and s.damaged_chunks() == [] and not s.partial_files()
    s = FieldStore.open(p, mode="r+")
    s.write_chunk(1, data(1))  # space freed: resume
    assert s.read_chunk(1)[0].tobytes() == data(1).tobytes()


def test_disk_full_during_generate_then_resume(tmp_path, monkeypatch):
    spec, lat = E.GaussNet(10, d_in=2), Lattice((4, 4))
    kw = dict(chunk=5, seed=3, threads=1)
    ref = E.generate(spec, lat, 20, tmp_path / "ref", **kw)
    p = tmp_path / "s"
    with monkeypatch.context() as m:
        _fail_on(m, "/phi/c/2/", errno.ENOSPC)
        with pytest.raises(StoreWriteError, match="chunk 2 .*no space left on device"):
            E.generate(spec, lat, 20, p, **kw)
    assert FieldStore.open(p).complete_chunks() == [0, 1]
    s = E.generate(spec, lat, 20, p, **kw)
    assert all(s.read_chunk(k)[0].tobytes() == ref.read_chunk(k)[0].tobytes() for k in range(4))


def test_create_in_unwritable_folder_one_line(tmp_path, monkeypatch):
    # simulated (tests may run as root, for whom permissions do not apply)
    _fail_on(monkeypatch, "zarr.json", errno.EACCES)
    with pytest.raises(StoreWriteError, match=r"^cannot create store .*: Permission denied$"):
        new_store(tmp_path / "s")
    assert os.listdir(tmp_path) == []  # no temporary directory left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_real_read_only_folder(tmp_path):
    p = tmp_path / "s"
    s = new_store(p)
    s.write_chunk(0, data(0))
    for d, dirs, files in os.walk(p):
        os.chmod(d, 0o555)
    try:
        assert FieldStore.open(p).read_chunk(0)[0].tobytes() == data(0).tobytes()
        with pytest.raises(StoreWriteError, match="chunk 1 .*permission denied"):
            FieldStore.open(p, mode="r+").write_chunk(1, data(1))
    finally:
        for d, dirs, files in os.walk(p):
            os.chmod(d, 0o755)


# -- never delete what nnft did not create ----------------------------------------------------
def test_overwrite_refuses_foreign_directories(tmp_path):
    # guards: _check_removable (overwrite=True replaced any directory holding a zarr.json)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "thesis.tex").write_text("months of work")
    with pytest.raises(StoreError,
                       match=r"^refusing to overwrite .*plain': it is not a Zarr store$"):
        new_store(plain, overwrite=True)
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").attrs["x"] = 1
    with pytest.raises(StoreError, match="it is not an nnft FieldStore$"):
        new_store(other, overwrite=True)
    mixed = tmp_path / "mixed"
    new_store(mixed)
    (mixed / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"it holds files nnft did not write \(notes.txt\)$"):
        new_store(mixed, overwrite=True)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="not a Zarr store"):
        new_store(a_file, overwrite=True)
    assert (plain / "thesis.tex").read_text() == "months of work"
    assert (mixed / "notes.txt").read_text() == "mine" and a_file.read_text() == "x"
    assert zarr.open_group(other, mode="r").attrs["x"] == 1


def test_overwrite_of_own_store_is_a_swap(tmp_path):
    p = tmp_path / "s"
    s = new_store(p)
    s.write_chunk(0, data(0))
    s2 = FieldStore.create(p, LAT, 8, 4, seed=2, overwrite=True)
    assert s2.n_samples == 8 and s2.complete_chunks() == []
    assert sorted(os.listdir(tmp_path)) == ["s"]  # no temporary or old copy left


# -- stale temporary files -----------------------------------------------------------------
def test_generate_removes_stale_partial_files(tmp_path):
    # guards: resume removes the "*.partial" files a killed Zarr write leaves in the store
    spec, lat = E.GaussNet(10, d_in=2), Lattice((4, 4))
    kw = dict(chunk=5, seed=3, threads=1)
    p = tmp_path / "s"
    E.generate(spec, lat, 20, p, chunks=[0], **kw)
    stale = [p / "phi" / "c" / "1" / "0" / ("0." + "a" * 32 + ".partial"),
             p / "complete" / "c" / ("1." + "b" * 32 + ".partial")]
    stale[0].parent.mkdir(parents=True)
    for f in stale:
        f.write_bytes(b"half a chunk")
    keep = p / "phi" / "c" / "notes.partial"  # not Zarr's pattern: not ours to delete
    keep.write_text("x")
    assert FieldStore.open(p).partial_files() == sorted(stale)
    E.generate(spec, lat, 20, p, **kw)
    assert not any(f.exists() for f in stale) and keep.exists()
    assert FieldStore.open(p).is_complete
