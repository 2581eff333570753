"""Fisher metric of network parameters: analytic Jacobians against finite differences through the
architecture's own evaluation code, and the cos-net information ordering (BRG = momentum shell)."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from nnft.ensembles import (ContinuumCosNet, DeepMLP, ErfNet, GaussianCosNet, GaussNet,
                            LatticeCosNet, ReLUNet, TanhNet, draw_params)
from nnft.ensembles.params import continuum_norm
from nnft.lattice import Lattice
from nnft.observables.fisher import (coarse_grain_params, fd_jacobian, fisher_metric, jacobian,
                                     neuron_information, prior_scales, restore_params)

LAT = Lattice((4, 4))
FAMILIES = [
    GaussNet(width=3, d_in=2), ErfNet(width=3, d_in=2), ReLUNet(width=3, d_in=2),
    TanhNet(width=3, d_in=2, components=2),
    DeepMLP(width=3, depth=2, d_in=2, activation="tanh"),
    DeepMLP(width=3, depth=3, d_in=2, activation="relu", components=2),
    GaussianCosNet(width=3, d_in=2), ContinuumCosNet(width=3, d_in=2, m2=0.5),
    LatticeCosNet(width=3, m2=0.5),
]


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: type(s).__name__ + str(s.n_components))
def test_jacobian_matches_finite_differences(spec):
    p = draw_params(spec, LAT, 3, np.random.default_rng(1), np)
    J, Jfd = jacobian(spec, p, LAT), fd_jacobian(spec, p, LAT)
    assert J.shape == Jfd.shape
    scale = np.abs(Jfd).max()
    np.testing.assert_allclose(J, Jfd, atol=1e-7 * scale)
    F = fisher_metric(spec, p, LAT, noise=0.5)
    np.testing.assert_allclose(F, np.swapaxes(Jfd, 1, 2) @ Jfd / 0.25, atol=1e-6 * scale ** 2 * 16)
    # ensemble average (the prior average) and per-neuron information are consistent with F
    np.testing.assert_allclose(fisher_metric(spec, p, LAT, noise=0.5, average=True), F.mean(0))
    I = neuron_information(spec, p, LAT, kind="neuron")
    assert I.shape == (3, spec.width) and np.all(I >= 0)


@pytest.mark.parametrize("spec", [ReLUNet(width=3, d_in=2), DeepMLP(width=3, depth=2, d_in=2)],
                         ids=["relu", "deep"])
def test_finite_difference_check_can_fail(spec):
    """The FD reference is sensitive: the Jacobian of a net with other weights does not pass."""
    p = draw_params(spec, LAT, 2, np.random.default_rng(1), np)
    q = draw_params(spec, LAT, 2, np.random.default_rng(2), np)
    J, Jfd = jacobian(spec, q, LAT), fd_jacobian(spec, p, LAT)
    assert np.abs(J - Jfd).max() > 1e-2 * np.abs(Jfd).max()


def _cos_amplitude_net():
    return ContinuumCosNet(width=64, d_in=2, m2=0.3, cutoff=3.0, form="amplitude")


def test_cosnet_amplitude_information_closed_form():
    """I_i = A^2 sum_x cos^2(w_i.x + c_i) / (N (w_i^2 + m^2) noise^2)."""
    spec = _cos_amplitude_net()
    lat = Lattice((8, 8))
    p = draw_params(spec, lat, 4, np.random.default_rng(3), np)
    I = neuron_information(spec, p, lat, noise=0.7)
    X = lat.positions()
    c2 = np.cos(np.einsum("nid,vd->niv", p["W0"], X) + p["b0"][..., None]) ** 2
    r2 = (p["W0"] ** 2).sum(-1)
    A2 = continuum_norm(spec) ** 2
    np.testing.assert_allclose(I, A2 * c2.sum(-1) / (spec.width * (r2 + spec.m2) * 0.49),
                               rtol=1e-12)


def test_cosnet_information_orders_neurons_by_momentum():
    """Computed information ordering = |w| ordering (Spearman rho ~ -1) in the amplitude form;
    with the amplitude factor 1/sqrt(w^2 + m^2) removed from the prior width it is not."""
    spec = _cos_amplitude_net()
    lat = Lattice((8, 8))
    p = draw_params(spec, lat, 20, np.random.default_rng(4), np)
    r = np.sqrt((p["W0"] ** 2).sum(-1))
    I = neuron_information(spec, p, lat)
    rho = np.mean([spearmanr(I[i], r[i])[0] for i in range(20)])
    assert rho < -0.97
    # information cutoff <-> momentum cutoff: I_c = V A^2 / (2 N (Lambda^2 + m^2))
    Lam = 1.5
    I_c = lat.volume * continuum_norm(spec) ** 2 / (2 * spec.width * (Lam ** 2 + spec.m2))
    agree = np.mean((I >= I_c) == (r <= Lam))
    assert agree > 0.97
    # failing companion: prior width without the amplitude factor (a wrong metric)
    wrong = prior_scales(spec, p, lat)
    wrong[("W1", None)] = np.full_like(p["W1"], continuum_norm(spec) / np.sqrt(spec.width))
    Iw = neuron_information(spec, p, lat, scales=wrong)
    rho_w = np.mean([spearmanr(Iw[i], r[i])[0] for i in range(20)])
    assert rho_w > -0.5


def test_density_form_information_is_flat_in_momentum():
    """LatticeCosNet draws momenta with density Gt(p) and a constant amplitude width: its computed
    amplitude information does not order the neurons by |p| (the identity needs the amplitude
    form)."""
    spec = LatticeCosNet(width=64, m2=0.3)
    lat = Lattice((8, 8))
    p = draw_params(spec, lat, 20, np.random.default_rng(5), np)
    I = neuron_information(spec, p, lat)
    p2 = lat.pmag2().ravel()[p["k"]]
    generic = (p2 > 0) & np.all(np.abs(lat.momenta().reshape(-1, 2)[p["k"]]) < np.pi - 1e-9, -1)
    np.testing.assert_allclose(I[generic], I[generic].mean(), rtol=1e-10)


@pytest.mark.parametrize("spec", FAMILIES[:1] + FAMILIES[4:5] + FAMILIES[-1:],
                         ids=["gauss", "deep", "latcos"])
@pytest.mark.parametrize("shell", ["remove", "redraw"])
def test_coarse_grain_then_restore_is_bit_identical(spec, shell):
    from nnft.ensembles import evaluate
    p = draw_params(spec, LAT, 5, np.random.default_rng(6), np)
    fresh = draw_params(spec, LAT, 5, np.random.default_rng(7), np)
    I = neuron_information(spec, p, LAT)
    keep = I >= np.median(I)
    coarse, removed = coarse_grain_params(spec, p, keep, shell=shell, redraw=fresh)
    phi0, phic = evaluate(spec, p, LAT, np), evaluate(spec, coarse, LAT, np)
    assert not np.array_equal(phi0, phic)
    back = restore_params(coarse, removed)
    assert np.array_equal(evaluate(spec, back, LAT, np), phi0)


def test_bad_inputs():
    spec = GaussNet(width=2, d_in=2)
    p = draw_params(spec, LAT, 1, np.random.default_rng(0), np)
    with pytest.raises(ValueError, match="kind"):
        neuron_information(spec, p, LAT, kind="bogus")
    with pytest.raises(ValueError, match="noise"):
        fisher_metric(spec, p, LAT, noise=0)
    with pytest.raises(ValueError, match="shell"):
        coarse_grain_params(spec, p, np.ones((1, 2), bool), shell="bogus")
