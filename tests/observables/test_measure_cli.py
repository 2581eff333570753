"""nnft measure: Dataset on disk (Zarr and NetCDF) and PNG plots."""
import argparse

import numpy as np
import pytest
import xarray as xr

from nnft import measure_cli
from nnft.lattice import Lattice, sample_free_field


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    measure_cli.add_parser(sub)
    args = parser.parse_args(["measure"] + argv)
    return args.func(args)


def test_measure_cli_writes_zarr_netcdf_and_plots(tmp_path, capsys):
    st = sample_free_field(Lattice((6, 6)), 0.5, 2000, tmp_path / "s", chunk=200, seed=2)
    out = tmp_path / "m.zarr"
    assert _run([str(st.path), "--out", str(out), "--what",
                 "scalars,propagator,two_point,effective_mass,xi,correlators"]) == 0
    ds = xr.open_zarr(out, consolidated=False)
    for v in ("scalars", "Gt", "Gt_error", "G", "m_eff", "xi2", "connected", "connected_error"):
        assert v in ds
    assert 0.3 < ds.attrs["Gt:chi2_dof"] < 3
    pngs = sorted(p.name for p in (tmp_path / "m_plots").glob("*.png"))
    assert pngs == ["connected_correlators.png", "effective_mass.png", "momentum_propagator.png",
                    "two_point.png"]
    assert "chi_2" in capsys.readouterr().out
    nc = tmp_path / "m.nc"
    assert _run([str(st.path), "--out", str(nc), "--what", "scalars", "--no-plots",
                 "--quiet"]) == 0
    assert np.isfinite(xr.open_dataset(nc)["scalars"].values).all()


def test_measure_cli_rejects_bad_what(tmp_path):
    st = sample_free_field(Lattice((4, 4)), 0.5, 100, tmp_path / "s", chunk=50, seed=2)
    with pytest.raises(ValueError, match="--what"):
        _run([str(st.path), "--what", "nonsense"])
    with pytest.raises(ValueError, match="--points"):
        _run([str(st.path), "--what", "correlators", "--points", "a,b"])
