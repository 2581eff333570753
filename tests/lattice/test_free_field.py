"""The free field against closed forms (docs/conventions.md)."""
import math

import numpy as np
import pytest

from nnft.lattice import (Lattice, effective_mass_exact, free_field_exact, free_propagator,
                          free_propagator_momentum, sample_free_field, to_numpy)

# docs/conventions.md table: d = 2, m_E L = 4
TABLE = {
    8: dict(m2=0.255252, chi=3.917698, G0=0.383296, E=0.157755, abs_M=0.197408, xi2=1.97932),
    16: dict(m2=0.062826, chi=15.916926, G0=0.501146, E=0.259017, abs_M=0.198953, xi2=3.98960),
}


def m2_for(L):
    return (2 * math.sinh(2.0 / L)) ** 2  # m_E = 4/L


def dense_inverse(lat, m2):
    """Inverse of (-Laplacian + m^2) built site by site, periodic."""
    V = lat.volume
    A = np.zeros((V, V))
    for i in range(V):
        n = np.unravel_index(i, lat.shape)
        A[i, i] = 2 * lat.dim + m2
        for mu in range(lat.dim):
            for step in (1, -1):
                nn = list(n)
                nn[mu] = (nn[mu] + step) % lat.shape[mu]
                A[i, lat.site_index(nn)] -= 1
    return np.linalg.inv(A)


@pytest.mark.parametrize("shape", [(7,), (4, 6), (3, 4, 5)])
def test_propagator_is_inverse_laplacian(shape):
    lat = Lattice(shape)
    m2 = 0.37
    Ginv = dense_inverse(lat, m2)
    G = free_propagator(lat, m2)
    for i in range(lat.volume):
        for j in range(0, lat.volume, 3):
            r = lat.displacement(np.unravel_index(i, shape), np.unravel_index(j, shape))
            r = tuple(int(v) % L for v, L in zip(r, shape))
            assert abs(G[r] - Ginv[i, j]) < 1e-10


def test_table_values_exact():
    for L, row in TABLE.items():
        ex = free_field_exact(Lattice((L, L)), row["m2"])
        for key in ("chi", "G0", "E", "abs_M", "xi2"):
            assert ex[key] == pytest.approx(row[key], rel=2e-5), key
    assert effective_mass_exact(m2_for(8)) * 8 == pytest.approx(4.0)


def test_exact_time_slice_effective_mass():
    L = 16
    lat = Lattice((L, L))
    m2 = m2_for(L)
    C = free_propagator(lat, m2).sum(axis=1)
    t = np.arange(1, L - 1)
    meff = np.arccosh((C[t - 1] + C[t + 1]) / (2 * C[t]))
    np.testing.assert_allclose(meff, effective_mass_exact(m2), rtol=1e-10)


def _sample_stats(phi):
    axes = (1, 2)
    M = phi.mean(axis=axes)
    per = {
        "G0": np.mean(phi * phi, axis=axes),
        "E": 0.5 * (np.mean(phi * np.roll(phi, -1, 1), axis=axes) + np.mean(phi * np.roll(phi, -1, 2), axis=axes)),
        "abs_M": np.abs(M),
        "chi": phi.shape[1] * phi.shape[2] * M * M,
    }
    return {k: (v.mean(), v.std(ddof=1) / math.sqrt(v.size)) for k, v in per.items()}


@pytest.fixture(scope="module")
def samples():
    out = {}
    for L in TABLE:
        chunks = []
        sample_free_field(Lattice((L, L)), TABLE[L]["m2"], 40000, chunk=8000, seed=1234,
                          callback=lambda k, phi, lw: chunks.append(phi))
        out[L] = np.concatenate(chunks)
    return out


@pytest.mark.parametrize("L", sorted(TABLE))
def test_exact_sampler_reproduces_table(samples, L):
    stats = _sample_stats(samples[L])
    for key in ("G0", "E", "abs_M", "chi"):
        val, err = stats[key]
        z = (val - TABLE[L][key]) / err
        assert abs(z) < 5, (key, val, TABLE[L][key], z)


def test_exact_sampler_rejects_wrong_target(samples):
    """Companion: the same comparison against the other lattice's values must fail."""
    stats = _sample_stats(samples[8])
    zs = [abs((stats[k][0] - TABLE[16][k]) / stats[k][1]) for k in ("G0", "E", "chi")]
    assert max(zs) > 5


def test_sampled_effective_mass(samples):
    L = 16
    phi = samples[L]
    slices = phi.sum(axis=2)  # zero-momentum time slices
    C = np.mean([np.mean(slices * np.roll(slices, -t, axis=1), axis=1) for t in range(L)], axis=1)
    t = 3
    meff = np.arccosh((C[t - 1] + C[t + 1]) / (2 * C[t]))
    # jackknife over 20 blocks for the error
    blocks = np.array_split(np.arange(phi.shape[0]), 20)
    vals = []
    for b in blocks:
        keep = np.setdiff1d(np.arange(phi.shape[0]), b)
        s = slices[keep]
        Cb = np.array([np.mean(s * np.roll(s, -tt, axis=1)) for tt in (t - 1, t, t + 1)])
        vals.append(np.arccosh((Cb[0] + Cb[2]) / (2 * Cb[1])))
    vals = np.array(vals)
    err = math.sqrt((len(vals) - 1) * np.var(vals))
    assert abs(meff - effective_mass_exact(m2_for(L))) < 5 * err
    assert abs(meff - effective_mass_exact(1.2 * m2_for(L))) > 5 * err  # wrong mass is rejected


def test_sampler_chunking_is_reproducible():
    lat = Lattice((8, 8))
    a, b = [], []
    sample_free_field(lat, 0.3, 100, chunk=25, seed=7, callback=lambda k, p, w: a.append((k, p)))
    sample_free_field(lat, 0.3, 100, chunk=25, seed=7, callback=lambda k, p, w: b.append((k, p)))
    for (ka, pa), (kb, pb) in zip(a, b):
        assert ka == kb and np.array_equal(pa, pb)
    assert not np.array_equal(a[0][1], a[1][1])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "x"])
def test_bad_mass(bad):
    with pytest.raises(ValueError, match="m2"):
        free_propagator_momentum(Lattice((4, 4)), bad)


def test_open_lattice_refused():
    with pytest.raises(ValueError, match="periodic"):
        free_propagator(Lattice((4, 4), boundary="open"), 1.0)


def test_sampler_on_backend(xp):
    lat = Lattice((8, 8))
    got = []
    sample_free_field(lat, 0.5, 4000, chunk=2000, seed=3, backend=xp.__name__,
                      callback=lambda k, p, w: got.append(to_numpy(p)))
    phi = np.concatenate(got)
    G0 = np.mean(phi * phi, axis=(1, 2))
    z = (G0.mean() - free_propagator(lat, 0.5)[0, 0]) / (G0.std() / math.sqrt(G0.size))
    assert abs(z) < 5
