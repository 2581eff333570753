"""``nnft verify STORE [--repair]``: exit codes, the lines printed, bit-identical repair."""
import argparse
import json

import numpy as np
import pytest

import nnft.ensembles as E
from nnft import cli, verify_cli
from nnft.lattice import CorruptChunkError, FieldStore, Lattice, sample_free_field

SPEC, LAT = E.TanhNet(16, d_in=2), Lattice((6, 6))
KW = dict(chunk=5, seed=8, threads=1)


def ns(store, repair=False):
    return argparse.Namespace(store=str(store), repair=repair, quiet=True)


def all_bytes(store):
    return b"".join(store.read_chunk(k)[0].tobytes() for k in range(store.n_chunks))


def flip(f, at=100):
    b = bytearray(f.read_bytes())
    b[at] ^= 0x01
    f.write_bytes(bytes(b))


@pytest.fixture()
def damaged(tmp_path):
    ref = E.generate(SPEC, LAT, 30, tmp_path / "ref", **KW)
    p = tmp_path / "s.zarr"
    s = E.generate(SPEC, LAT, 30, p, **KW)
    flip(s.chunk_file(2))
    s.chunk_file(4).unlink()
    return p, all_bytes(ref)


def test_clean_store_exit_0(tmp_path, capsys):
    p = tmp_path / "s.zarr"
    E.generate(SPEC, LAT, 30, p, **KW)
    assert verify_cli.main(ns(p)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"store {str(p)!r}: 6 chunks, 6 ok, 0 damaged, 0 never written "
                   "(crc32c checksums)", "no damaged chunk"]


def test_damage_listed_exit_1(damaged, capsys):
    # guards: verify's full read (the flipped bit is invisible to the cheap check)
    p, _ = damaged
    assert verify_cli.main(ns(p)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"store {str(p)!r}: 6 chunks, 4 ok, 2 damaged, 0 never written "
                      "(crc32c checksums)")
    assert out[1] == (f"  chunk 2 (samples 10..14): {p / 'phi/c/2/0/0'}: checksum mismatch "
                      "(the file was changed after it was written)")
    assert out[2] == f"  chunk 4 (samples 20..24): {p / 'phi/c/4/0/0'}: file missing"
    assert out[3:] == ["chunks to regenerate: 2, 4",
                       f"regenerate them with: nnft verify {p} --repair"]
    assert FieldStore.open(p).complete_chunks() == list(range(6))  # plain verify changes nothing


def test_repair_is_bit_identical(damaged, capsys):
    p, ref = damaged
    assert verify_cli.main(ns(p, repair=True)) == 0
    out = capsys.readouterr().out
    assert "check: intact chunk 0 regenerates bit for bit" in out
    assert "regenerated chunk(s) 2, 4" in out and f"store {str(p)!r} repaired: 6 chunks ok" in out
    assert all_bytes(FieldStore.open(p)) == ref
    assert verify_cli.main(ns(p)) == 0


def test_repair_refuses_a_store_it_cannot_reproduce(damaged):
    # guards: the reproducibility check before regenerating (never mix two ensembles)
    p, _ = damaged
    f = p / "zarr.json"
    meta = json.loads(f.read_text())
    meta["attributes"]["spec"]["width"] = 17  # as if another nnft made it differently
    f.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="regenerating intact chunk 0 does not reproduce"):
        verify_cli.main(ns(p, repair=True))
    assert FieldStore.open(p).complete_chunks() == list(range(6))  # untouched


def test_repair_exact_free_store(tmp_path, capsys):
    ref = sample_free_field(LAT, 0.3, 40, tmp_path / "ref", chunk=10, seed=3)
    p = tmp_path / "free"
    s = sample_free_field(LAT, 0.3, 40, p, chunk=10, seed=3)
    flip(s.chunk_file(1), 50)
    assert verify_cli.main(ns(p, repair=True)) == 0
    assert all_bytes(FieldStore.open(p)) == all_bytes(ref)


def test_source_that_cannot_be_regenerated(tmp_path, capsys):
    p = tmp_path / "ext"
    s = FieldStore.create(p, LAT, 10, 5, source="external", seed=1)
    s.write_chunk(0, np.ones((5, 6, 6)))
    s.write_chunk(1, np.ones((5, 6, 6)))
    s.chunk_file(1).unlink()
    with pytest.raises(CorruptChunkError, match=r"\(this store cannot be regenerated chunk by "
                                                r"chunk: re-run what made it\)$"):
        FieldStore.open(p).read_chunk(1)
    assert verify_cli.main(ns(p)) == 1
    assert ("source 'external' cannot be regenerated chunk by chunk: re-run the command that "
            "made the store into a new store") in capsys.readouterr().out
    with pytest.raises(ValueError, match="source 'external': its chunks cannot be regenerated"):
        verify_cli.main(ns(p, repair=True))


def test_damaged_metadata_exit_1(tmp_path, capsys):
    p = tmp_path / "s.zarr"
    E.generate(SPEC, LAT, 30, p, **KW)
    (p / "phi" / "zarr.json").write_text("{not json")
    assert verify_cli.main(ns(p)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"nnft verify: damaged metadata file {p / 'phi' / 'zarr.json'}: "
                             "not valid JSON")


def test_unfinished_store_is_not_damage(tmp_path, capsys):
    p = tmp_path / "s.zarr"
    E.generate(SPEC, LAT, 30, p, chunks=[0, 1], **KW)
    assert verify_cli.main(ns(p)) == 0
    assert "chunks never written: 2-5" in capsys.readouterr().out


def test_registered_in_nnft_command(damaged, capsys):
    p, _ = damaged
    assert cli.main(["verify", str(p), "--quiet"]) == 1
    assert cli.main(["verify", str(p.parent / "nothing")]) == 2
    assert "nnft: error: no store at" in capsys.readouterr().err
