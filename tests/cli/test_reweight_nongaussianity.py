"""The finite-N non-Gaussianity check of the `reweight` measurement: a narrow cos-net base
(N = 2, strongly non-Gaussian) is flagged, a wide one (N = 4096) is not; the check reads at most
4000 samples."""
import pytest

from nnft.ensembles import LatticeCosNet, generate
from nnft.lattice import Lattice
from nnft.measurements import Context, reweight


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    lat = Lattice((4, 4))
    base = tmp_path_factory.mktemp("ng")
    out = {}
    for N in (2, 4096):
        spec = LatticeCosNet(N, 0.5)
        out[N] = (spec, lat, generate(spec, lat, 6000, base / f"c{N}.zarr", chunk=2000,
                                      seed=40 + N))
    return out


def _run(entry, N):
    spec, lat, store = entry
    return reweight(Context("t", spec, lat, store, N, {"g": 2.0}, seed=3))


def test_narrow_base_is_flagged_wide_is_not(stores):
    narrow = _run(stores[2], 2)
    assert narrow["nongaussian_subsample"] == 4000
    from nnft.lattice import free_field_exact

    # u4 = <phi^4> - 3 <phi^2>^2 = (3 G0^2 / N)(k/2 - 1), k = 3 for Gaussian amplitudes
    G0 = free_field_exact(stores[2][1], 0.5)["G0"]
    u4, du4 = narrow["nongaussian_u4"], narrow["nongaussian_u4_error"]
    assert abs(u4 - 3 * G0 ** 2 / 2 * 0.5) / du4 < 5 and u4 / du4 > 5
    assert "inconsistent" in (narrow["nongaussian_chi_verdict"], narrow["nongaussian_abs_M_verdict"])
    assert "deformed width-2 network" in narrow["nongaussian_warning"]
    assert "WARNING" in narrow["summary"][-1][1]
    assert "width-2 network theory" in narrow["theory"]
    wide = _run(stores[4096], 4096)
    assert wide["nongaussian_warning"] is None
    assert "inconsistent" not in (wide["nongaussian_chi_verdict"], wide["nongaussian_abs_M_verdict"])
    assert abs(wide["nongaussian_u4"] / wide["nongaussian_u4_error"]) < 5
