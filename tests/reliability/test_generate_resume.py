"""generate's resume bookkeeping: chunk lists, bad input before any file is written."""
import pytest

import nnft.ensembles as E
from nnft.lattice import FieldStore, Lattice

SPEC, LAT = E.GaussNet(8, d_in=2), Lattice((4, 4))


def test_chunks_as_iterator_and_partial_cleanup_of_those_chunks(tmp_path):
    p = tmp_path / "s"
    E.generate(SPEC, LAT, 20, p, chunk=5, seed=1, chunks=[0], threads=1)
    stale = p / "phi" / "c" / "2" / "0" / ("0." + "c" * 32 + ".partial")
    other = p / "phi" / "c" / "3" / "0" / ("0." + "d" * 32 + ".partial")
    for f in (stale, other):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
    s = E.generate(SPEC, LAT, 20, p, chunk=5, seed=1, chunks=iter([1, 2]), threads=1)
    assert s.complete_chunks() == [0, 1, 2]
    # only the chunks this call owns are cleaned (another writer may be filling chunk 3)
    assert not stale.exists() and other.exists()


def test_bad_chunk_index_refused_before_any_file(tmp_path):
    p = tmp_path / "s"
    with pytest.raises(ValueError, match=r"^chunks: indices \[9\] out of range 0\.\.3$"):
        E.generate(SPEC, LAT, 20, p, chunk=5, seed=1, chunks=[0, 9])
    assert not p.exists()
