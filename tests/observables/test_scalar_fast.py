"""The row-dot ScalarObservables kernel against a direct np.roll computation of its definitions."""
import numpy as np
import pytest

from nnft.observables import ScalarObservables

CASES = [((40, 8, 8), 2, True), ((30, 3, 4, 5, 6), 3, (True, False, True)),
         ((30, 3, 4, 5, 6), 3, (True, True, False)), ((40, 2, 6, 4), 2, False),
         ((30, 7), 1, True), ((30, 7), 1, False), ((30, 2, 1, 5), 2, True),
         ((30, 3, 2), 2, (False, True)), ((30, 2, 5, 1), 2, True)]


def direct(phi, ndim, periodic):
    """Per-sample (|M|, M^2, M^4, phi2, e, M_0..) from the definitions, with rolled copies."""
    n = phi.shape[0]
    per = [periodic] * ndim if np.ndim(periodic) == 0 else list(periodic)
    axes = tuple(range(phi.ndim - ndim, phi.ndim))
    V = int(np.prod(phi.shape[-ndim:]))
    M = phi.mean(axis=axes).reshape(n, -1)
    M2 = (M ** 2).sum(axis=1)
    e = np.zeros(n)
    for mu, ax in enumerate(axes):
        L = phi.shape[ax]
        prod = phi * np.roll(phi, -1, axis=ax)
        if per[mu]:
            e += prod.reshape(n, -1).sum(axis=1) / V
        elif L >= 2:  # drop the wrapped link x_{L-1} x_0
            inner = np.take(prod, np.arange(L - 1), axis=ax)
            e += inner.reshape(n, -1).sum(axis=1) / (V * (L - 1) / L)
    return np.column_stack([np.sqrt(M2), M2, M2 ** 2, (phi ** 2).reshape(n, -1).sum(1) / V,
                            e / ndim, M])


@pytest.mark.parametrize("shape,ndim,periodic", CASES)
def test_fast_kernel_equals_definitions(shape, ndim, periodic):
    phi = np.random.default_rng(3).standard_normal(shape) + 0.2
    acc = ScalarObservables(ndim, periodic=periodic)
    np.testing.assert_allclose(acc._compute(phi, np), direct(phi, ndim, periodic),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(acc._compute_reference(phi, np), direct(phi, ndim, periodic),
                               rtol=1e-12, atol=1e-13)


def test_fast_kernel_sees_the_boundary():
    """Companion: the same data with the other boundary on one axis gives another energy, so the
    comparison above would catch a kernel that ignored the boundary."""
    phi = np.random.default_rng(4).standard_normal((30, 5, 6)) + 0.2
    e_per = ScalarObservables(2, periodic=True)._compute(phi, np)[:, 4]
    wrong = direct(phi, 2, (True, False))[:, 4]
    assert np.max(np.abs(e_per - wrong)) > 1e-3


def test_sub_blocks_do_not_change_the_pass():
    """A chunk larger than one cache-sized sub-block gives the per-sample values of the whole."""
    phi = np.random.default_rng(5).standard_normal((700, 16, 16))
    acc = ScalarObservables(2)
    np.testing.assert_allclose(acc._values(phi, np), direct(phi, 2, True), rtol=1e-12,
                               atol=1e-13)


def _direct_fourier(phi, ndim, shift, w=None):
    axes = tuple(range(phi.ndim - ndim, phi.ndim))
    V = int(np.prod(phi.shape[-ndim:]))
    d = phi - shift.reshape(shift.shape + (1,) * ndim)
    P = np.abs(np.fft.fftn(d, axes=axes)) ** 2 / V
    half = P[..., : phi.shape[-1] // 2 + 1]
    ww = np.ones(phi.shape[0]) if w is None else w
    return np.tensordot(ww, half, axes=(0, 0)), ww @ d.mean(axis=axes)


@pytest.mark.parametrize("shape,ndim", [((600, 8, 8), 2), ((300, 2, 6, 4), 2), ((200, 4, 5, 6), 3)])
def test_fourier_two_point_sums_equal_direct_fft(shape, ndim):
    """FourierTwoPoint's per-chunk sums (|phit(p)|^2 / V over samples, from the (re, im) pairs,
    and M from the p = 0 mode) against numpy.fft.fftn of each sample, weighted and not."""
    from nnft.observables import FourierTwoPoint

    rng = np.random.default_rng(6)
    phi = rng.standard_normal(shape) + 0.3
    acc = FourierTwoPoint(ndim).update(phi[:50])
    for w in (None, rng.random(shape[0])):
        got = acc._chunk_sums(phi, w, np)
        pk, m = _direct_fourier(phi, ndim, acc.shift, w)
        np.testing.assert_allclose(got["pk"], pk, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(got["m"], m, rtol=1e-12, atol=1e-12)
    # companion: one changed sample moves the sums far beyond that tolerance
    phi2 = phi.copy()
    phi2[0] += 0.5
    pk2, _ = _direct_fourier(phi2, ndim, acc.shift)
    assert np.max(np.abs(acc._chunk_sums(phi, None, np)["pk"] - pk2)) > 1e-3
