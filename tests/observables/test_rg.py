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


# --- information-shell (Bayesian RG) coarse-graining from the computed Fisher metric -----------
from nnft.ensembles import ContinuumCosNet, DeepMLP, ReLUNet  # noqa: E402
from nnft.observables.fisher import prior_scales  # noqa: E402
from nnft.observables.rg import (InformationShellSource, cosnet_information_scale,  # noqa: E402
                                 information_flow, information_to_momentum,
                                 plot_information_flow)

AMP_COS = ContinuumCosNet(width=32, d_in=2, m2=0.3, cutoff=3.0, form="amplitude")


@pytest.fixture(scope="module")
def amp_cos_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("brg") / "amp.zarr"
    return generate(AMP_COS, Lattice((8, 8)), 8000, path, chunk=1000, seed=3)


def _info_cuts(lat, lams=(1.0, 2.0)):
    S = cosnet_information_scale(AMP_COS, lat)
    return [S / (L ** 2 + AMP_COS.m2) for L in lams]


def test_information_cutoff_is_momentum_cutoff(amp_cos_store):
    lat = amp_cos_store.lattice
    cuts = _info_cuts(lat)
    assert information_to_momentum(cuts[0], AMP_COS, lat) == pytest.approx(1.0)
    ds = information_flow(amp_cos_store, cuts)
    assert ds.attrs["verdict"] == "matches the momentum-shell flow", ds.attrs
    np.testing.assert_allclose(ds["momentum_cutoff"], [2.0, 1.0])
    assert np.all(np.diff(ds["kept_fraction"].values) < 0)  # uv -> ir: fewer neurons


def test_wrong_metric_fails_the_momentum_shell_identity(amp_cos_store):
    """The same flow with the amplitude factor 1/sqrt(w^2 + m^2) dropped from the metric."""
    def no_amplitude_factor(spec, params, lattice):
        sc = prior_scales(spec, params, lattice)
        sc[("W1", None)] = np.full_like(params["W1"], sc[("W1", None)].max())
        return sc
    ds = information_flow(amp_cos_store, _info_cuts(amp_cos_store.lattice),
                          scales=no_amplitude_factor, verify=False)
    assert ds.attrs["verdict"] == "does not match the momentum-shell flow"


@pytest.fixture(scope="module")
def deep_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("brg") / "deep.zarr"
    return generate(DeepMLP(width=8, depth=2, d_in=2, activation="relu"), Lattice((6, 6)), 2000,
                    path, chunk=400, seed=11)


def test_deep_relu_flow_reproducible_and_invertible(deep_store, tmp_path):
    info = InformationShellSource(deep_store, 0.0).chunk_parameters(0)[2]
    cuts = list(np.quantile(info, [0.25, 0.5, 0.75]))
    a = information_flow(deep_store, cuts)
    b = information_flow(deep_store, cuts)
    assert a.identical(b)
    up = information_flow(deep_store, cuts, direction="ir_to_uv")
    assert up.attrs["restores_original"] == 1
    np.testing.assert_array_equal(up["G2"].values[::-1], a["G2"].values)  # same ensembles
    kept = a["kept_fraction"].values
    assert np.all(np.diff(kept) < 0) and 0.1 < kept[-1] < 0.4
    assert np.all(a["G2_error"] > 0) and np.all(np.isfinite(a["G4c"]))
    # removing three quarters of the last-layer neurons lowers the variance at x0
    z = (a["G2"][0, 0] - a["G2"][-1, 0]) / np.hypot(a["G2_error"][0, 0], a["G2_error"][-1, 0])
    assert z > 3
    plot_information_flow(a, tmp_path / "flow.png")
    assert (tmp_path / "flow.png").stat().st_size > 0


def test_redraw_shell_and_restore(tmp_path):
    st = generate(ReLUNet(width=6, d_in=1), Lattice((8,)), 800, tmp_path / "r.zarr", chunk=200,
                  seed=2)
    src = InformationShellSource(st, 0.0, shell="redraw")
    parts = src.chunk_parameters(1)
    cut = float(np.median(parts[2]))
    coarse = src.coarse_chunk(1, cut, parts=parts)
    assert not np.array_equal(coarse, st.read_chunk(1)[0])
    up = information_flow(st, [cut, 2 * cut], shell="redraw", direction="ir_to_uv")
    assert up.attrs["restores_original"] == 1


def test_information_shell_bad_inputs(amp_cos_store):
    with pytest.raises(ValueError, match="shell"):
        InformationShellSource(amp_cos_store, 1.0, shell="bogus")
    with pytest.raises(ValueError, match="kind"):
        InformationShellSource(amp_cos_store, 1.0, kind="bogus")
    with pytest.raises(ValueError, match="direction"):
        information_flow(amp_cos_store, [1.0], direction="sideways")


def _stored_fields(store):
    return np.concatenate([np.asarray(phi).reshape(phi.shape[0], -1)
                           for _, phi, _ in store.iter_chunks()])


def test_momentum_shell_beside_information_flow_and_quartic(deep_store):
    """The momentum-shell companion of a deep ReLU flow and the flow's quartic coupling,
    against a direct computation on the stored fields: at I_c = 0 (all neurons kept, all modes
    kept) the two flows coincide; at the median cutoff the momentum-shell G2 is that of the
    stored fields with the modes |p| > Lambda_p removed (companion: the next-lower mode
    threshold gives a different G2); lambda at I_c = 0 is the weighted fit of G4c(0, 0, r, r)
    with the lattice vertex of the measured G2 matrix."""
    info = InformationShellSource(deep_store, 0.0).chunk_parameters(0)[2]
    cut = float(np.quantile(info, 0.5))
    ds = information_flow(deep_store, [0.0, cut], n_blocks=8)
    np.testing.assert_allclose(ds["G2_momentum_shell"][0], ds["G2"][0], rtol=1e-10)
    phi = _stored_fields(deep_store)
    shape = deep_store.lattice.shape
    pm = np.sqrt(sum(np.meshgrid(*[(2 * np.pi * np.fft.fftfreq(L)) ** 2 for L in shape],
                                 indexing="ij")))
    lam_p = float(ds["momentum_shell_cutoff"][1])
    r_idx = np.array([np.ravel_multi_index((r, 0), shape) for r in ds["r"].values])

    def g2_filtered(mask):
        f = np.fft.ifftn(np.fft.fftn(phi.reshape((-1,) + shape), axes=(1, 2)) * mask,
                         axes=(1, 2)).real.reshape(phi.shape)
        return (f[:, :1] * f[:, r_idx]).mean(0)

    np.testing.assert_allclose(ds["G2_momentum_shell"][1], g2_filtered(pm <= lam_p + 1e-12),
                               rtol=1e-9)
    lower = np.max(pm[pm < lam_p - 1e-9])
    assert np.max(np.abs(g2_filtered(pm <= lower + 1e-12) - ds["G2_momentum_shell"][1])) > 1e-6
    # the quartic coupling at I_c = 0
    K = phi.T @ phi / phi.shape[0]
    a, b = phi[:, :1], phi[:, r_idx]
    g4 = (a * a * b * b).mean(0) - (a * a).mean(0) * (b * b).mean(0) - 2 * (a * b).mean(0) ** 2
    T = -24 * (K[0] ** 2 * K[r_idx] ** 2).sum(-1)
    w = 1 / ds["G4c_error"][0].values ** 2
    assert float(ds["lam"][0]) == pytest.approx((w * T * g4).sum() / (w * T * T).sum(),
                                                rel=1e-9)
    assert np.all(ds["lam_error"] > 0)
