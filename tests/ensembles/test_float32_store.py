"""Float32 stores of network ensembles (``dtype="float32"``): the same physics as the float64
store of the same seed to float32 rounding, accumulators in float64, checksums verified."""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.lattice import CorruptChunkError, FieldStore, Lattice
from nnft.observables import two_point

LAT = Lattice((8, 8))
SPEC = E.LatticeCosNet(16, m2=0.5)


@pytest.mark.parametrize("generator", ["reference", "fast"])
def test_float32_store_same_physics(tmp_path, generator):
    kw = dict(chunk=100, seed=5, generator=generator)
    s64 = E.generate(SPEC, LAT, 600, tmp_path / "d", **kw)
    s32 = E.generate(SPEC, LAT, 600, tmp_path / "f", dtype="float32", **kw)
    assert s32.dtype == np.float32 and s64.dtype == np.float64
    # the float32 file holds the float64 fields rounded to float32 (same stream)
    for k in range(s64.n_chunks):
        a, b = s64.read_chunk(k)[0], s32.read_chunk(k)[0]
        assert b.dtype == np.float32
        np.testing.assert_array_equal(b, a.astype(np.float32))
    g64, g32 = two_point(s64, blocks=6), two_point(s32, blocks=6)
    assert g32["value"].dtype == np.float64  # accumulated in float64
    scale = float(np.abs(g64["value"]).max())
    np.testing.assert_allclose(g32["value"], g64["value"], rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(g32["error"], g64["error"], rtol=1e-4)
    # companion: another seed's float32 store differs by far more than float32 rounding
    other = E.generate(SPEC, LAT, 600, tmp_path / "o", dtype="float32", chunk=100, seed=6,
                       generator=generator)
    assert np.abs(two_point(other, blocks=6)["value"] - g64["value"]).max() > 1e-3 * scale


def test_float32_store_checksum_and_size(tmp_path):
    s32 = E.generate(SPEC, LAT, 300, tmp_path / "f", chunk=100, seed=2, dtype="float32",
                     generator="fast")
    s64 = E.generate(SPEC, LAT, 300, tmp_path / "d", chunk=100, seed=2, generator="fast")
    size = s32.chunk_file(1).stat().st_size
    assert size == 100 * 64 * 4 + 4  # raw float32 bytes + CRC32C: half the float64 file
    assert s64.chunk_file(1).stat().st_size == 100 * 64 * 8 + 4
    f = s32.chunk_file(1)
    raw = bytearray(f.read_bytes())
    raw[1000] ^= 0x10  # one flipped bit
    f.write_bytes(bytes(raw))
    s = FieldStore.open(tmp_path / "f")
    with pytest.raises(CorruptChunkError, match="chunk 1"):
        s.read_chunk(1)
    assert s.verify().to_regenerate == [1]
    # the repair regenerates it bit for bit from the recorded (fast) generator
    from nnft.verify_cli import chunk_maker

    ref = chunk_maker(s)(1, 100, 200)
    np.testing.assert_array_equal(ref, s64.read_chunk(1)[0].astype(np.float32))
