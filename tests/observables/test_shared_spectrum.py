"""ScalarObservables taking its per-sample values from the FFT of a linked FourierTwoPoint
(share_spectrum) against the plain NumPy reference, with companions that must fail."""
import copy
import pickle

import numpy as np
import pytest
import scipy.fft

import nnft.observables.accumulators as A
from nnft.lattice import Lattice
from nnft.observables import measure
from nnft.observables.accumulators import FourierTwoPoint, ScalarObservables, share_spectrum
from nnft.observables.propagator import standard_accumulators

# (shape of the chunk, ndim): even and odd lengths (the real-FFT multiplicity of k = L/2),
# components, d = 1, 2, 3
CASES = [((300, 8, 6), 2), ((300, 7, 5), 2), ((200, 2, 5, 4), 2), ((200, 7), 1),
         ((200, 8), 1), ((100, 4, 3, 5), 3), ((150, 3, 6, 6), 2)]


def _pair(ndim, phi, prep=50):
    f, s = share_spectrum(FourierTwoPoint(ndim), ScalarObservables(ndim))
    f.prepare(phi[:prep])
    s.prepare(phi[:prep])
    return f, s


def _rel_err(q, ref):
    """Largest difference per column over the column's scale (M and e may be near zero)."""
    return float(np.max(np.max(np.abs(q - ref), axis=0) / np.max(np.abs(ref), axis=0)))


def _shared_values(ndim, phi):
    f, s = _pair(ndim, phi)
    f.update(phi)
    assert s._share.entry is not None and s._share.entry[0] is phi
    return s._values(phi, np)


@pytest.mark.parametrize("shape,ndim", CASES)
def test_shared_values_equal_reference(shape, ndim):
    phi = np.random.default_rng(11).standard_normal(shape) * 0.8 + 0.3
    ref = ScalarObservables(ndim)._compute_reference(phi, np)
    assert _rel_err(_shared_values(ndim, phi), ref) < 1e-12


def test_large_mean_keeps_precision():
    """The shift brings the fields near zero before the FFT: a mean 50x the spread still
    gives the reference to rounding."""
    phi = np.random.default_rng(12).standard_normal((200, 8, 8)) + 50.0
    ref = ScalarObservables(2)._compute_reference(phi, np)
    assert _rel_err(_shared_values(2, phi), ref) < 1e-12


@pytest.mark.parametrize("wrong", ["cos(2p)", "no multiplicity", "shifted momenta"])
def test_companion_wrong_weights_fail(monkeypatch, wrong):
    """Companion: with a wrong cos(p_mu) weight, multiplicity or momentum grid the same
    comparison fails, so the test above can catch a wrong weight table."""
    phi = np.random.default_rng(13).standard_normal((200, 8, 6)) * 0.8 + 0.3
    ref = ScalarObservables(2)._compute_reference(phi, np)
    good = FourierTwoPoint._link_weights

    def bad(self, lat, xp, interleaved):
        W = np.array(good(self, lat, xp, interleaved))
        half = tuple(lat[:-1]) + (lat[-1] // 2 + 1,)
        rep = 2 if interleaved else 1
        k = np.meshgrid(*[np.arange(h) for h in half], indexing="ij")
        k0 = np.repeat(k[0].reshape(-1), rep)
        mult = W[:, 0].copy()
        if wrong == "cos(2p)":
            W[:, 1] = mult * np.cos(4 * np.pi * k0 / lat[0])
        elif wrong == "no multiplicity":
            W = W / mult[:, None] * mult.min()
        else:  # momenta of a lattice shifted by one site: p = 2 pi (k + 1) / L
            W[:, 1] = mult * np.cos(2 * np.pi * (k0 + 1) / lat[0])
        return W

    monkeypatch.setattr(FourierTwoPoint, "_link_weights", bad)
    assert _rel_err(_shared_values(2, phi), ref) > 1e-3


def test_fourier_sums_unchanged_by_sharing():
    phi = np.random.default_rng(14).standard_normal((700, 2, 6, 8)) + 0.1
    w = np.exp(np.random.default_rng(15).normal(size=700) * 0.3)
    f, _ = _pair(2, phi)
    g = FourierTwoPoint(2)
    g.prepare(phi[:50])
    f.update(phi, weights=w)
    g.update(phi, weights=w)
    for k in ("pk", "m"):
        np.testing.assert_allclose(f._sums[k], g._sums[k], rtol=1e-12, atol=0)


def test_other_chunk_object_is_computed_directly():
    """The hand-over is tied to the chunk object: a copy (or another chunk) is measured by the
    scalars themselves, so a mismatched order can never mix samples."""
    rng = np.random.default_rng(16)
    phi, other = rng.standard_normal((100, 6, 6)), rng.standard_normal((100, 6, 6))
    f, s = _pair(2, phi)
    f.update(phi)
    ref = ScalarObservables(2)._compute_reference(other, np)
    assert _rel_err(s._values(other, np), ref) < 1e-12
    assert s._share.entry is not None  # not consumed by the wrong chunk


@pytest.mark.parametrize("weighted", [False, True])
def test_measure_shared_equals_separate(weighted):
    lat = Lattice((8, 8))
    rng = np.random.default_rng(17)
    phi = rng.standard_normal((3000, 8, 8)) * 0.7 + 0.2
    lw = rng.normal(size=3000) * 0.3 if weighted else None
    calls = []
    orig = ScalarObservables._compute

    def counting(self, p, xp):
        calls.append(p.shape[0])
        return orig(self, p, xp)

    ScalarObservables._compute = counting
    try:
        a = measure(phi, standard_accumulators(lat), lattice=lat, chunk=512, blocks=7,
                    log_weight=lw)
    finally:
        ScalarObservables._compute = orig
    assert sum(calls) == 512  # only the prepare chunk: every update used the shared FFT
    b = measure(phi, standard_accumulators(lat, shared=False), lattice=lat, chunk=512,
                blocks=7, log_weight=lw)
    for k in ("scalars", "fourier"):
        ra, rb = a.total[k].result(), b.total[k].result()
        for key, v in rb.items():
            x, y = np.asarray(ra[key], float), np.asarray(v, float)
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12 * np.max(np.abs(y)))
        for ba, bb in zip(a.blocks, b.blocks):
            for kk, v in bb[k]._sums.items():
                np.testing.assert_allclose(ba[k]._sums[kk], v, rtol=1e-11,
                                           atol=1e-12 * np.max(np.abs(v)))


def test_copies_link_to_a_new_empty_slot():
    f, s = share_spectrum(FourierTwoPoint(2), ScalarObservables(2))
    f._share.entry = ("x",)
    for pair in (copy.deepcopy((f, s)), pickle.loads(pickle.dumps((f, s)))):
        assert pair[0]._share is pair[1]._share and pair[0]._share is not f._share
        assert pair[0]._share.entry is None


def test_share_spectrum_rejects_bad_pairs():
    with pytest.raises(ValueError, match="ndim"):
        share_spectrum(FourierTwoPoint(2), ScalarObservables(1))
    with pytest.raises(ValueError, match="periodic"):
        share_spectrum(FourierTwoPoint(2), ScalarObservables(2, periodic=(True, False)))
    with pytest.raises(ValueError, match="FourierTwoPoint"):
        share_spectrum(ScalarObservables(2), FourierTwoPoint(2))


def test_fft_into_buffer_equals_scipy():
    d = np.random.default_rng(18).standard_normal((64, 3, 10, 6))
    out = np.empty((64, 3, 10, 4), np.complex128)
    got = A._rfftn_into(d, (2, 3), out)
    np.testing.assert_array_equal(got, scipy.fft.rfftn(d, axes=(2, 3)))
    # the buffer was used where SciPy's (private) FFT entry point takes out=; on a SciPy
    # without it the function falls back to a new array, with the same values
    if A._R2C:
        assert np.shares_memory(got, out)
    else:
        assert not np.shares_memory(got, out)


def test_fft_fallback_without_the_private_entry_point(monkeypatch):
    """Companion: with SciPy's private r2c unavailable the values are still rfftn's."""
    monkeypatch.setattr(A, "_R2C", False)
    d = np.random.default_rng(19).standard_normal((8, 6, 4))
    out = np.empty((8, 6, 3), np.complex128)
    got = A._rfftn_into(d, (1, 2), out)
    np.testing.assert_array_equal(got, scipy.fft.rfftn(d, axes=(1, 2)))
    assert not np.shares_memory(got, out)
