"""RG coarse-graining of a stored lattice cos-net: the propagator follows Gt(p) theta(Lambda-|p|)."""
import numpy as np
import pytest

from nnft.ensembles import GaussNet, LatticeCosNet, generate
from nnft.lattice import Lattice, free_propagator_momentum
from nnft.observables.rg import (CoarseGrainedSource, coarse_grained_propagator,
                                 fisher_to_momentum, plot_rg_flow, rg_flow, shell_propagator)


@pytest.fixture(scope="module")
def cos_store(tmp_path_factory):
    lat = Lattice((8, 8))
    path = tmp_path_factory.mktemp("rg") / "cos.zarr"
    return generate(LatticeCosNet(width=10, m2=0.5), lat, 16000, path, chunk=2000, seed=5)


def test_regeneration_reproduces_the_store(cos_store):
    src = CoarseGrainedSource(cos_store, 100.0)  # verify=True: chunk 0 re-evaluated == stored
    phi, _ = src.read_chunk(3)
    ref, _ = cos_store.read_chunk(3)
    np.testing.assert_allclose(phi, ref, atol=1e-10)
    assert src.kept_fraction == 1.0


def test_shell_flow_at_three_cutoffs(cos_store, tmp_path):
    ds = rg_flow(cos_store, [1.0, 2.0, 3.0], n_blocks=20, quartic=True, n_tuples=6)
    assert ds.attrs["verdict"] == "matches the momentum-shell flow"
    assert np.all(ds["max_abs_z"] < 5)
    kept = ds["kept_fraction"].values
    assert np.all(np.diff(kept) > 0) and kept[-1] < 1
    assert np.all(np.isfinite(ds["lam"])) and np.all(ds["lam_error"] > 0)
    plot_rg_flow(ds, tmp_path / "rg.png")
    assert (tmp_path / "rg.png").stat().st_size > 0


def test_wrong_flow_is_rejected(cos_store):
    # the coarse-grained ensemble at Lambda = 2 is not the shell flow at Lambda = 1.5, nor the
    # uncut propagator
    src = CoarseGrainedSource(cos_store, 2.0, verify=False)
    val, err, _ = coarse_grained_propagator(src, n_blocks=20)
    lat = cos_store.lattice
    for wrong in (shell_propagator(lat, 0.5, 1.5), free_propagator_momentum(lat, 0.5)):
        z = np.abs(val - wrong) / np.sqrt(err ** 2 + 1e-18)
        assert z.max() > 5


def test_fisher_shell_is_a_momentum_shell(cos_store):
    m2 = 0.5
    I_c = 1 / (2.0 ** 2 + m2)
    assert fisher_to_momentum(I_c, m2) == pytest.approx(2.0)
    a = CoarseGrainedSource(cos_store, I_c, mode="fisher", metric="pmag", verify=False)
    b = CoarseGrainedSource(cos_store, 2.0, mode="momentum", metric="pmag", verify=False)
    np.testing.assert_allclose(a.read_chunk(1)[0], b.read_chunk(1)[0], atol=1e-12)


def test_bad_inputs(cos_store, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        CoarseGrainedSource(cos_store, 1.0, mode="bogus")
    with pytest.raises(ValueError, match="cutoff"):
        CoarseGrainedSource(cos_store, -1.0)
    st = generate(GaussNet(width=2, d_in=1), Lattice((4,)), 100, tmp_path / "g.zarr", chunk=50,
                  seed=1)
    with pytest.raises(ValueError, match="cos-net"):
        CoarseGrainedSource(st, 1.0)


def test_measure_cli_runs_registered_measurements(cos_store, tmp_path):
    """`nnft measure --what symmetry,cluster,couplings,rg` runs the registry's measurements
    (the code `nnft run` uses) on a store and writes one Dataset per result."""
    from nnft.cli import main

    out = tmp_path / "m.zarr"
    rc = main(["measure", str(cos_store.path), "--out", str(out), "--blocks", "8", "--quiet",
               "--what", "symmetry,cluster,couplings,rg"])
    assert rc == 0
    made = sorted(p.name for p in tmp_path.glob("m_*.zarr"))
    assert "m_rg.zarr" in made and "m_cluster.zarr" in made, made
    assert any(n.startswith("m_symmetry_") for n in made) and "m_couplings.zarr" in made, made
