"""Propagator tools on an exact free-field store against docs/conventions.md."""
import numpy as np
import pytest

from nnft.lattice import (Lattice, effective_mass_exact, free_field_exact,
                          free_propagator_momentum, sample_free_field)
from nnft.observables import (correlation_length, effective_mass, measure, momentum_propagator,
                              propagator_check, scalar_observables, susceptibility, two_point)
from nnft.observables.propagator import standard_accumulators

L, M2 = 8, 0.255252
TABLE = {"chi": 3.917698, "G0": 0.383296, "E": 0.157755, "abs_M": 0.197408, "xi2": 1.97932}


@pytest.fixture(scope="module")
def free_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "free8"
    return sample_free_field(Lattice((L, L)), M2, 20000, path, chunk=200, seed=20261122)


@pytest.fixture(scope="module")
def meas(free_store):
    return measure(free_store, standard_accumulators(free_store.lattice), blocks=100)


def z(value, error, exact):
    return (float(value) - exact) / float(error)


def test_table_values_within_5_sigma(meas):
    ex = free_field_exact(Lattice((L, L)), M2)
    assert ex["chi"] == pytest.approx(TABLE["chi"], rel=1e-5)
    s = scalar_observables(meas)
    v, e = s.value.to_series(), s.error.to_series()
    assert abs(z(v["chi_2"], e["chi_2"], TABLE["chi"])) < 5
    assert abs(z(v["E"], e["E"], TABLE["E"])) < 5
    assert abs(z(v["abs_M"], e["abs_M"], TABLE["abs_M"])) < 5
    assert abs(z(v["phi2"], e["phi2"], TABLE["G0"])) < 5
    chi = susceptibility(meas)
    assert abs(z(chi.value, chi.error, TABLE["chi"])) < 5
    xi = correlation_length(meas)
    assert abs(z(xi.value, xi.error, TABLE["xi2"])) < 5
    # companion: the same comparisons reject a wrong mass (table of L = 16)
    assert abs(z(chi.value, chi.error, 15.916926)) > 5
    assert abs(z(v["E"], e["E"], 0.259017)) > 5
    assert abs(z(xi.value, xi.error, 3.98960)) > 5


def test_momentum_propagator_chi2_and_companion(meas):
    mp = momentum_propagator(meas)
    assert mp.attrs["space"] == "momentum" and "phat2" in mp.coords
    ok = propagator_check(mp, m2=M2)
    dof = int(ok.dof)
    assert dof == 34  # classes {k, -k} of an 8 x 8 lattice
    assert abs(float(ok.chi2) - dof) < 5 * np.sqrt(2 * dof)
    bad = propagator_check(mp, free_propagator_momentum(Lattice((L, L)), M2) * 1.05)
    assert float(bad.chi2) - dof > 5 * np.sqrt(2 * dof)


def test_position_propagator_full_covariance(free_store):
    tp = two_point(free_store, blocks=100, replicates=True)
    ok = propagator_check(tp, m2=M2, cov="full")
    assert float(ok.p_value) > 1e-4
    bad = propagator_check(tp, m2=M2 * 1.1, cov="full")
    assert float(bad.p_value) < 1e-6


def test_effective_mass(meas):
    em = effective_mass(meas)
    mE = effective_mass_exact(M2)
    assert mE == pytest.approx(2 * np.arcsinh(np.sqrt(M2) / 2))
    t = [1, 2, 3]
    zs = (em.value.sel(t=t) - mE) / em.error.sel(t=t)
    assert np.all(np.abs(zs) < 5)
    wrong = 2 * np.arcsinh(np.sqrt(M2 * 1.3) / 2)
    assert np.any(np.abs((em.value.sel(t=t) - wrong) / em.error.sel(t=t)) > 5)
