"""Fault injection on FieldStore chunk files: detected, named, regenerated bit for bit.

Each test names the protection it guards; removing that protection makes it fail.
"""
import os
import warnings

import numpy as np
import pytest

import nnft.ensembles as E
from nnft.lattice import (CorruptChunkError, FieldStore, Lattice, StoreError, sample_free_field)
from nnft.ensembles.engine import StoreRepairWarning

LAT = Lattice((8, 8))
N, CHUNK, SEED, M2 = 60, 10, 11, 0.4  # 6 chunks of 10 samples


def free_store(path):
    return sample_free_field(LAT, M2, N, path, chunk=CHUNK, seed=SEED)


def phi_bytes(store):
    return b"".join(store.read_chunk(k)[0].tobytes() for k in range(store.n_chunks))


def inject(path, fault):
    """Damage the file of chunk 2 of ``phi`` the way ``fault`` says; returns the file path."""
    f = FieldStore.open(path).chunk_file(2)
    raw = f.read_bytes()
    if fault == "deleted":
        f.unlink()
    elif fault == "truncated":
        f.write_bytes(raw[: len(raw) // 2])
    elif fault == "garbage":  # same size, random bytes
        f.write_bytes(np.random.default_rng(0).integers(0, 256, len(raw), np.uint8).tobytes())
    elif fault == "bitflip":  # one bit of one value
        b = bytearray(raw)
        b[333] ^= 0x10
        f.write_bytes(bytes(b))
    return f


REASON = {"deleted": "file missing", "truncated": "2562 bytes, expected 5124 (truncated)",
          "garbage": "checksum mismatch", "bitflip": "checksum mismatch"}
CHEAP = {"deleted": True, "truncated": True, "garbage": False, "bitflip": False}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    p = tmp_path_factory.mktemp("ref") / "ref.zarr"
    return phi_bytes(free_store(p))


@pytest.mark.parametrize("fault", ["deleted", "truncated", "garbage", "bitflip"])
def test_damaged_chunk_named_then_regenerated(tmp_path, reference, fault):
    # guards: checksums (crc32c codec), the cheap file check on open, read_chunk's error naming
    # chunk/file/samples, verify(), mark_incomplete + resume regenerating bit for bit
    p = tmp_path / "s.zarr"
    free_store(p)
    f = inject(p, fault)
    s = FieldStore.open(p)
    assert [d.chunk for d in s.damaged_chunks()] == ([2] if CHEAP[fault] else [])
    for k in (0, 1, 3, 4, 5):  # intact chunks still read
        s.read_chunk(k)
    with pytest.raises(CorruptChunkError) as e:
        s.read_chunk(2)
    msg = str(e.value)
    assert msg.startswith(f"store {str(p)!r} is damaged: chunk 2 (samples 20..29): {f}: "
                          f"{REASON[fault]}")
    assert msg.endswith(f"chunks to regenerate: 2 (run: nnft verify {p} --repair)")
    assert "\n" not in msg and e.value.problems[0].chunk == 2
    with pytest.raises(CorruptChunkError, match="chunk 2"):  # never a silent fill value
        list(s.iter_chunks())
    rep = FieldStore.open(p).verify()
    assert rep.to_regenerate == [2] and rep.ok == [0, 1, 3, 4, 5] and rep.missing == []
    assert not rep.clean and rep.checksums
    FieldStore.open(p, mode="r+").mark_incomplete(rep.to_regenerate)
    assert FieldStore.open(p).missing_chunks() == [2]
    free_store(p)  # resume: regenerates exactly chunk 2
    s = FieldStore.open(p)
    assert s.is_complete and s.verify().clean
    assert phi_bytes(s) == reference


@pytest.mark.parametrize("fault", ["deleted", "truncated"])
def test_generate_resume_regenerates_what_the_cheap_check_finds(tmp_path, fault):
    # guards: generate's resume cross-check of the completion record with the files
    spec, lat = E.ErfNet(30, d_in=2), Lattice((6, 6))
    kw = dict(chunk=8, seed=5, threads=1)
    ref = E.generate(spec, lat, 40, tmp_path / "ref", **kw)
    p = tmp_path / "s"
    E.generate(spec, lat, 40, p, **kw)
    f = FieldStore.open(p).chunk_file(3)
    if fault == "deleted":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:100])
    with pytest.warns(StoreRepairWarning, match=r"regenerating 1 damaged chunk\(s\) \[3\]"):
        s = E.generate(spec, lat, 40, p, **kw)
    assert s.is_complete and FieldStore.open(p).verify().clean
    assert phi_bytes(s) == phi_bytes(ref)


def test_generate_regenerates_after_verify_marks_bitflip(tmp_path):
    # guards: checksum detection + mark_incomplete -> generate rewrites exactly that chunk
    spec, lat = E.ReLUNet(20, d_in=2), Lattice((6, 6))
    kw = dict(chunk=8, seed=6, threads=1)
    ref = phi_bytes(E.generate(spec, lat, 40, tmp_path / "ref", **kw))
    p = tmp_path / "s"
    E.generate(spec, lat, 40, p, **kw)
    f = FieldStore.open(p).chunk_file(1)
    b = bytearray(f.read_bytes())
    b[77] ^= 1
    f.write_bytes(bytes(b))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cheap check cannot see a flipped bit
        E.generate(spec, lat, 40, p, **kw)
    rep = FieldStore.open(p).verify()
    assert rep.to_regenerate == [1] and "checksum mismatch" in rep.bad[0].reason
    FieldStore.open(p, mode="r+").mark_incomplete(rep.to_regenerate)
    E.generate(spec, lat, 40, p, **kw)
    assert phi_bytes(FieldStore.open(p)) == ref


def test_to_xarray_refuses_damaged_store(tmp_path):
    # guards: xarray would read a deleted chunk as NaN fill values
    p = tmp_path / "s.zarr"
    free_store(p)
    inject(p, "deleted")
    with pytest.raises(CorruptChunkError, match=r"chunk 2 \(samples 20\.\.29\).*file missing"):
        FieldStore.open(p).to_xarray()


def test_chunk_deleted_after_open_is_named(tmp_path):
    # guards: read_chunk re-checks the file (damage after the store was opened)
    p = tmp_path / "s.zarr"
    s = free_store(p)
    s.chunk_file(4).unlink()
    with pytest.raises(CorruptChunkError, match=r"chunk 4 \(samples 40\.\.49\).*file missing"):
        s.read_chunk(4)


def test_measure_reports_damage_not_nan(tmp_path):
    # guards: a missing chunk used to read as NaN and give "nan +- nan" with exit 0
    from nnft.observables import SiteMoments, measure

    p = tmp_path / "s.zarr"
    free_store(p)
    inject(p, "deleted")
    with pytest.raises(CorruptChunkError, match="chunk 2"):
        measure(FieldStore.open(p), [SiteMoments()])


def test_damaged_complete_record_entry_means_regenerate(tmp_path, reference):
    # guards: an unreadable completion entry counts as "not written" (never as written)
    p = tmp_path / "s.zarr"
    free_store(p)
    (p / "complete" / "c" / "3").write_bytes(b"garbage!")
    s = FieldStore.open(p)
    assert s.missing_chunks() == [3]
    free_store(p)
    assert phi_bytes(FieldStore.open(p)) == reference


def test_unknown_store_path_is_one_line(tmp_path):
    with pytest.raises(StoreError, match="^no store at"):
        FieldStore.open(tmp_path / "nothing")
