"""FieldStore's direct chunk read (file + CRC32C, no Zarr pipeline) equals the Zarr read."""
import numpy as np
import pytest

from nnft.lattice import FieldStore, Lattice
from nnft.lattice.store import CODECS, CorruptChunkError


def _store(tmp_path, codec, weighted):
    rng = np.random.default_rng(3)
    s = FieldStore.create(tmp_path / f"{codec}-{weighted}.zarr", Lattice((4, 6)), 500, 128,
                          source="exact_free", seed=1, codec=codec, weighted=weighted,
                          spec={"arch": "ExactFreeField", "m2": 0.25})
    for k in range(s.n_chunks):
        a, b = s.chunk_range(k)
        phi = rng.normal(size=(b - a, 4, 6))
        s.write_chunk(k, phi, rng.normal(size=b - a) if weighted else None)
    return FieldStore.open(s.path)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("weighted", [False, True])
def test_direct_read_equals_zarr(tmp_path, codec, weighted):
    s = _store(tmp_path, codec, weighted)
    plain = codec in ("crc32c", "raw")  # plain bytes (+ checksum): read directly
    for k in range(s.n_chunks):  # the last chunk is partial (500 = 3 * 128 + 116)
        a, b = s.chunk_range(k)
        for name in ("phi", "log_weight") if weighted else ("phi",):
            direct = s._read_direct(name, a, b)
            ref = s._arr(name)[a:b]
            assert (direct is not None) == plain
            if plain:
                assert direct.dtype == ref.dtype and direct.shape == ref.shape
                assert np.array_equal(direct, ref) and direct.flags.writeable
        phi, lw = s.read_chunk(k)
        assert np.array_equal(phi, s._arr("phi")[a:b])


def test_direct_read_rejects_a_flipped_bit(tmp_path):
    s = _store(tmp_path, "crc32c", False)
    f = s.chunk_file(1)
    data = bytearray(f.read_bytes())
    data[40] ^= 1
    f.write_bytes(bytes(data))
    s = FieldStore.open(s.path)
    a, b = s.chunk_range(1)
    assert s._read_direct("phi", a, b) is None  # checksum mismatch: left to Zarr
    with pytest.raises(CorruptChunkError, match="checksum"):
        s.read_chunk(1)
    assert s._read_direct("phi", *s.chunk_range(0)) is not None  # the others still direct
