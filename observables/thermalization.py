"""Markov-chain diagnostics: automatic thermalisation cut, split R-hat, split-half consistency.

Series are time-major like the stores of :func:`nnft.lattice.run_chain`: sample
``s = t * n_chains + r`` (``n_chains`` = the store's ``n_replicas``); a ``(T, R)`` array is
the same series reshaped.

* :func:`mser_cut` -- MSER-5 (White 1997): discard the first ``d`` measurements that minimise the
  squared standard error of the remaining mean, ``sum_{t>d} (x_t - mean_d)^2 / (T - d)^2``,
  over batch means of 5 and ``d <= T/2``; computed on the average over chains.
* :func:`geweke_z` -- first 10 % vs last 50 % of every chain, errors by the Gamma method.
* :func:`split_rhat` -- rank-normalised split R-hat (Vehtari, Gelman, Simpson, Carpenter &
  Buerkner 2021), max of the bulk and folded versions; stationary chains give ~1 (its spread
  shrinks as 1/N_eff per chain), long chains should reach 1.01, short ones 1.1.
* :func:`split_half_consistency` -- first vs second half of all chains, Gamma-method errors;
  ``z`` and a two-sided p-value.
* :func:`thermalization_check` -- all of them for the standard observables of a store, with a
  :class:`~.stats.Verdict` (Holm-combined over observables and tests) and the recommended cut.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .gamma import PRIMARY, chain_series, gamma_error, primary_series
from .stats import attach_verdict, combine_verdicts, verdict_from_z

__all__ = ["mser_cut", "geweke_z", "split_rhat", "split_half_consistency",
           "thermalization_check", "as_chains"]


def as_chains(values, n_chains: int = 1) -> np.ndarray:
    """A time-major series ``(T * R,)`` (or an array ``(T, R)``) as an array ``(T, R)``."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 2:
        return v
    if v.ndim != 1:
        raise ValueError(f"values must be (n_samples,) time-major or (T, n_chains), got {v.shape}")
    R = int(n_chains)
    if R < 1 or v.size % R:
        raise ValueError(f"n_chains must be a positive divisor of {v.size}, got {n_chains!r}")
    return v.reshape(-1, R)


def mser_cut(values, n_chains: int = 1, batch: int = 5) -> int:
    """MSER-``batch`` truncation point (number of leading measurements per chain to discard)."""
    x = as_chains(values, n_chains).mean(axis=1)
    T = x.size
    nb = T // batch
    if nb < 4:
        return 0
    b = x[: nb * batch].reshape(nb, batch).mean(axis=1)
    best, arg = np.inf, 0
    # suffix sums for O(nb)
    s1 = np.cumsum(b[::-1])[::-1]
    s2 = np.cumsum((b * b)[::-1])[::-1]
    for d in range(nb // 2 + 1):
        m = nb - d
        ss = s2[d] - s1[d] ** 2 / m
        val = ss / m ** 2
        if val < best:
            best, arg = val, d
    return int(arg * batch)


def _gamma(x2d):
    """Gamma-method (mean, error) of a (T, R) block of chains."""
    T, R = x2d.shape
    if T < 4:
        return float(x2d.mean()), float("nan")
    r = gamma_error(np.ascontiguousarray(x2d).ravel(), n_replicas=R)
    return r.value, r.error


def geweke_z(values, n_chains: int = 1, first: float = 0.1, last: float = 0.5) -> float:
    """Geweke statistic: (mean of the first ``first`` - mean of the last ``last``) / error."""
    x = as_chains(values, n_chains)
    T = x.shape[0]
    a = x[: max(4, int(first * T))]
    b = x[T - max(4, int(last * T)):]
    ma, ea = _gamma(a)
    mb, eb = _gamma(b)
    return float((ma - mb) / math.sqrt(ea ** 2 + eb ** 2)) if ea > 0 and eb > 0 else float("nan")


def _rhat_basic(c):
    """Split-free R-hat of chains c (T, M) (BDA3 formula)."""
    T, M = c.shape
    means = c.mean(axis=0)
    W = c.var(axis=0, ddof=1).mean()
    B = T * means.var(ddof=1)
    var = (T - 1) / T * W + B / T
    return float(math.sqrt(var / W)) if W > 0 else float("nan")


def split_rhat(values, n_chains: int = 1) -> float:
    """Rank-normalised split R-hat, max of bulk and folded (Vehtari et al. 2021)."""
    from scipy import stats  # noqa: PLC0415

    x = as_chains(values, n_chains)
    T = (x.shape[0] // 2) * 2
    if T < 8:
        return float("nan")
    h = T // 2
    s = np.concatenate([x[:h], x[h:T]], axis=1)  # (h, 2R)

    def ranknorm(a):
        r = stats.rankdata(a, method="average").reshape(a.shape)
        return stats.norm.ppf((r - 0.375) / (a.size + 0.25))

    bulk = _rhat_basic(ranknorm(s))
    folded = _rhat_basic(ranknorm(np.abs(s - np.median(s))))
    return float(max(bulk, folded))


def split_half_consistency(values, n_chains: int = 1) -> tuple[float, float]:
    """(z, two-sided p) of first-half vs second-half means, Gamma-method errors per half."""
    from scipy import stats  # noqa: PLC0415

    x = as_chains(values, n_chains)
    h = x.shape[0] // 2
    m1, e1 = _gamma(x[:h])
    m2, e2 = _gamma(x[h: 2 * h])
    if not (e1 > 0 and e2 > 0):
        return float("nan"), float("nan")
    z = (m1 - m2) / math.sqrt(e1 ** 2 + e2 ** 2)
    return float(z), float(2 * stats.norm.sf(abs(z)))


def thermalization_check(source, n_chains=None, *, observables=("phi2", "M2", "link"),
                         alpha: float = 0.05, rhat_threshold: float = 1.1) -> xr.Dataset:
    """Is a Markov-chain ensemble stationary from its first stored measurement?

    Parameters
    ----------
    source : FieldStore (scalar field; ``n_chains`` from its ``n_replicas``), or an array of
        per-sample values ``(n_samples, K)`` / ``(n_samples,)`` time-major with ``n_chains``.
    observables : names from ``M, abs_M, M2, phi2, link`` (stores only).
    alpha : family-wise level (Holm over observables x {split-half, Geweke}).
    rhat_threshold : split R-hat above this makes a non-rejected verdict "inconclusive"
        (default 1.1, the classic Gelman-Rubin level; 1.01 (Vehtari et al.) needs a few hundred
        effective samples per half-chain to be met even by stationary chains, so it is not a
        calibrated default for short runs).

    Returns
    -------
    Dataset over ``observable`` with ``split_half_z``, ``split_half_p``, ``geweke_z``,
    ``split_rhat``, ``mser_cut`` (measurements per chain), and the same tests after the cut
    (``*_after_cut``); attrs: Verdict fields (for the chains as stored), ``recommended_cut``
    (max over observables) and ``after_cut_outcome``. "inconsistent" means the chains were not
    thermalised: discard ``recommended_cut`` measurements per chain (or thermalise longer).
    """
    if hasattr(source, "read_chunk"):
        store = source
        R = int(store.n_replicas)
        d = len(store.lattice.shape)
        idx = []
        for o in observables:
            if o not in PRIMARY:
                raise ValueError(f"observables must be among {PRIMARY}, got {o!r}")
            idx.append(PRIMARY.index(o))
        series = chain_series(store, lambda phi: primary_series(phi, d))[:, idx]
        names = list(observables)
    else:
        series = np.asarray(source, dtype=float)
        if series.ndim == 1:
            series = series[:, None]
        if n_chains is None:
            raise ValueError("with an array source, give n_chains")
        R = int(n_chains)
        names = [f"q{i}" for i in range(series.shape[1])] if len(observables) != series.shape[1] \
            else list(observables)
    if series.shape[0] % R:
        raise ValueError(f"n_samples {series.shape[0]} is not a multiple of n_chains {R}")
    T = series.shape[0] // R
    rows = {k: [] for k in ("split_half_z", "split_half_p", "geweke_z", "split_rhat", "mser_cut",
                            "split_half_z_after_cut", "split_rhat_after_cut")}
    verdicts, after = [], []
    for j, nm in enumerate(names):
        x = series[:, j].reshape(T, R)
        z, p = split_half_consistency(x)
        g = geweke_z(x)
        rh = split_rhat(x)
        cut = mser_cut(x)
        xa = x[cut:]
        za, pa = split_half_consistency(xa)
        rha = split_rhat(xa)
        for k, v in zip(rows, (z, p, g, rh, cut, za, rha)):
            rows[k].append(v)
        ws = [f"{nm}: split R-hat {rh:.3f} > {rhat_threshold}"] if rh > rhat_threshold else []
        verdicts.append(verdict_from_z(z, T * R, warnings_=ws, what=f"{nm} split-half"))
        verdicts.append(verdict_from_z(g, T * R, warnings_=ws, what=f"{nm} Geweke"))
        wa = [f"{nm}: split R-hat {rha:.3f} after cut"] if rha > rhat_threshold else []
        after.append(verdict_from_z(za, (T - cut) * R, warnings_=wa,
                                    what=f"{nm} split-half after cut"))
    v = combine_verdicts(verdicts, alpha=alpha, what="thermalisation")
    va = combine_verdicts(after, alpha=alpha, what="thermalisation after the MSER cut")
    ds = xr.Dataset({k: ("observable", np.asarray(val)) for k, val in rows.items()},
                    coords={"observable": names})
    attach_verdict(ds, v)
    cut = int(max(rows["mser_cut"]))
    ds.attrs.update(recommended_cut=cut, n_chains=R, n_times=T,
                    after_cut_outcome=va.outcome, after_cut_p_value=va.p_value,
                    rhat_threshold=rhat_threshold,
                    method="split-half and Geweke (Gamma-method errors, Holm), rank-normalised "
                           "split R-hat, MSER-5 cut on the chain average")
    if v.outcome == "inconsistent":
        ds.attrs["message"] = (v.message + f". Not thermalised: discard the first {cut} "
                               f"measurements per chain (after the cut: {va.outcome}) or "
                               "thermalise longer")
    return ds
