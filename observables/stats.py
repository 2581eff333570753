"""Calibrated statistical tests with three-way verdicts, and checks of the error bars.

Everything a verdict is built on lives here (definitions and conventions: ``docs/statistics.md``):

* :class:`Verdict` -- outcome "consistent" / "inconsistent" / "inconclusive", the test statistic,
  its degrees of freedom, the p-value, the multiple-comparison correction, the smallest effect
  the test detects at this sample size with the requested power, and the samples needed to
  decide a named tolerance. :func:`verdict_from_chi2`, :func:`verdict_from_z` and
  :func:`combine_verdicts` build them; :func:`attach_verdict` writes one into Dataset attrs.
* Goodness of fit of a two-point function: :func:`momentum_space_test` (one entry per
  ``{p, -p}`` pair, per-mode variance from the sample) and :func:`position_space_test` (chosen
  separations, full covariance with Oracle-Approximating shrinkage). Both stream through the
  accumulators :class:`FourierModeMoments` and :class:`SeparationCovariance`.
* :func:`compare_error_estimates` -- two or more error estimates of the same quantities, each with
  its own uncertainty; a disagreement beyond that uncertainty is flagged.
* Heavy tails: :class:`TailSample` (mergeable: power sums plus the k largest |deviations| per
  quantity), :func:`hill_tail_index`, :func:`heavy_tail_check` with :class:`HeavyTailWarning`, and
  :func:`relative_or_absolute` for ratios with a near-zero denominator.

All p-values are one-sided upper tails of the stated null distribution; ``alpha`` is the
family-wise error rate after the correction named in ``Verdict.correction``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import xarray as xr

from .accumulators import (_FFT_BLOCK_BYTES, Accumulator, _binom_reshift_power, _power_sums,
                           _to_numpy, _wsum)

__all__ = [
    "Verdict", "OUTCOMES", "verdict_from_chi2", "verdict_from_z", "combine_verdicts",
    "attach_verdict", "detectable_noncentrality",
    "FourierModeMoments", "SeparationCovariance", "TailSample",
    "momentum_space_test", "position_space_test", "unique_half_modes", "oas_shrinkage",
    "compare_error_estimates", "HeavyTailWarning", "hill_tail_index", "gpd_tail_shape",
    "heavy_tail_check",
    "relative_or_absolute", "correlator_test", "tail_sample", "directional_z", "series_error_crosscheck",
]

OUTCOMES = ("consistent", "inconsistent", "inconclusive")
_CORRECTIONS = ("none", "bonferroni", "holm")


# ----------------------------------------------------------------------------------------------
# verdicts
@dataclass
class Verdict:
    """The outcome of one calibrated test.

    Attributes
    ----------
    outcome : {"consistent", "inconsistent", "inconclusive"}
        "inconsistent": ``p_value < alpha`` (after the correction). "inconclusive": not
        rejected, but either the effect the user asked to be able to see (``tolerance``) is
        smaller than ``detectable_effect``, or the error bars cannot be trusted (a heavy-tail or
        error-cross-check warning), or there are no degrees of freedom. "consistent": not
        rejected and none of those holds.
    statistic : float
        The test statistic (chi^2, or |z| for one-entry tests).
    dof : int
        Degrees of freedom of the null distribution.
    p_value : float
        Probability under the null of a statistic at least this large (uncorrected).
    alpha : float
        Family-wise significance level the corrected p-value is compared with.
    correction : str
        Multiple-comparison correction: "none", "bonferroni (m tests)", "holm (m tests)".
    n_tests : int
        Number of tests in the family.
    detectable_effect : float
        Smallest effect detected with probability ``power`` at level ``alpha`` at this sample
        size, in ``effect_unit``.
    effect_unit : str
        e.g. "relative deviation of all entries" or "standard errors".
    power : float
    tolerance : float or None
        The effect (same unit) the user wants to be able to detect; None: none named.
    samples_needed : float
        Samples needed for ``detectable_effect == tolerance`` (errors scaling as 1/sqrt(n));
        NaN when no tolerance is named.
    n_samples : int
    observed_effect : float
        Point estimate of the effect in ``effect_unit`` (NaN when not defined).
    warnings : list of str
    message : str
        One sentence a reader can quote.
    """

    outcome: str
    statistic: float
    dof: int
    p_value: float
    alpha: float = 0.05
    correction: str = "none"
    n_tests: int = 1
    detectable_effect: float = float("nan")
    effect_unit: str = ""
    power: float = 0.8
    tolerance: float | None = None
    samples_needed: float = float("nan")
    n_samples: int = 0
    observed_effect: float = float("nan")
    warnings: list = field(default_factory=list)
    message: str = ""

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    def to_attrs(self) -> dict:
        """Flat dict for Dataset attrs (NetCDF-safe: no None, lists joined with ' | ')."""
        out = {}
        for k, v in asdict(self).items():
            if v is None:
                v = float("nan")
            if isinstance(v, list):
                v = " | ".join(str(s) for s in v)
            if isinstance(v, (np.floating, np.integer)):
                v = v.item()
            out[k] = v
        return out


def _check_level(alpha, power):
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 < float(power) < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")


def detectable_noncentrality(dof: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Non-centrality lambda with ``P(chi^2_dof(lambda) > chi^2_{dof, 1-alpha}) = power``.

    Under an alternative where the entries are off by ``delta_i`` (standard errors ``s_i``),
    the statistic is non-central chi^2 with ``lambda = sum (delta_i/s_i)^2``.
    """
    from scipy import optimize, stats  # noqa: PLC0415

    _check_level(alpha, power)
    if dof < 1:
        return float("nan")
    crit = stats.chi2.isf(alpha, dof)

    def f(lam):
        return stats.ncx2.sf(crit, dof, lam) - power

    hi = 10.0 + 10.0 * math.sqrt(dof)
    while f(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(f, 1e-9, hi, xtol=1e-8))


def _outcome(p, alpha_eff, detectable, tolerance, untrusted, dof, errors_untrusted=False):
    if not np.isfinite(p) or dof < 1 or errors_untrusted:
        return "inconclusive"
    if p < alpha_eff:
        return "inconsistent"
    if untrusted:
        return "inconclusive"
    if tolerance is not None and np.isfinite(detectable) and tolerance < detectable:
        return "inconclusive"
    return "consistent"


def verdict_from_chi2(chi2: float, dof: int, n_samples: int, *, alpha: float = 0.05,
                      power: float = 0.8, n_tests: int = 1, correction: str = "bonferroni",
                      p_value: float | None = None, effect_scale: float | None = None,
                      effect_unit: str | None = None, tolerance: float | None = None,
                      observed_effect: float = float("nan"), warnings_: Sequence[str] = (),
                      what: str = "", errors_untrusted: bool = False) -> Verdict:
    """Verdict of a chi^2 test (chi^2 null with ``dof`` degrees of freedom unless ``p_value``).

    Power statement: the detectable non-centrality ``lambda*`` (:func:`detectable_noncentrality`
    at the corrected level). With ``effect_scale = sqrt(sum (E_i/s_i)^2)`` (expected values over
    their standard errors) an alternative "every entry off by the same fraction eps" has
    ``lambda = eps^2 effect_scale^2``, so ``detectable_effect = sqrt(lambda*)/effect_scale`` is a
    relative deviation. Without it the detectable effect is ``sqrt(lambda*/dof)``: the rms shift
    per entry in standard errors. Errors scale as 1/sqrt(n), so the samples needed to detect
    ``tolerance`` are ``n (detectable_effect/tolerance)^2``.

    Outcome: "inconclusive" if ``errors_untrusted`` (heavy tails, error estimates that disagree:
    then even a small p-value is not evidence), if ``dof < 1``, or if not rejected while
    ``warnings_`` is non-empty or ``tolerance < detectable_effect``; else "inconsistent" when
    ``p_value < alpha / n_tests`` (Bonferroni; ``correction="none"``: alpha) and "consistent"
    otherwise.
    """
    from scipy import stats  # noqa: PLC0415

    _check_level(alpha, power)
    if correction not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    if not isinstance(n_tests, (int, np.integer)) or n_tests < 1:
        raise ValueError(f"n_tests must be a positive int, got {n_tests!r}")
    dof = int(dof)
    chi2 = float(chi2)
    if p_value is None:
        p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan")
    alpha_eff = alpha / n_tests if correction != "none" else alpha
    lam = detectable_noncentrality(dof, alpha_eff, power) if dof > 0 else float("nan")
    if effect_scale is not None and effect_scale > 0:
        detectable = math.sqrt(lam) / float(effect_scale)
        unit = effect_unit or "relative deviation of every entry"
    else:
        detectable = math.sqrt(lam / dof) if dof > 0 else float("nan")
        unit = effect_unit or "rms deviation per entry, in standard errors"
    needed = float("nan")
    if tolerance is not None:
        tolerance = float(tolerance)
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        needed = float(math.ceil(n_samples * (detectable / tolerance) ** 2))
    ws = list(warnings_)
    outcome = _outcome(p_value, alpha_eff, detectable, tolerance, bool(ws), dof,
                       errors_untrusted)
    corr = "none" if correction == "none" or n_tests == 1 else f"{correction} ({n_tests} tests)"
    msg = _message(what, outcome, chi2, dof, p_value, detectable, unit, tolerance, needed,
                   n_samples, ws)
    return Verdict(outcome, chi2, dof, float(p_value), float(alpha), corr, int(n_tests),
                   float(detectable), unit, float(power), tolerance, needed, int(n_samples),
                   float(observed_effect), ws, msg)


def verdict_from_z(z: float, n_samples: int, *, error: float | None = None, alpha: float = 0.05,
                   power: float = 0.8, n_tests: int = 1, correction: str = "bonferroni",
                   tolerance: float | None = None, warnings_: Sequence[str] = (),
                   what: str = "", effect_unit: str | None = None,
                   errors_untrusted: bool = False) -> Verdict:
    """Two-sided test of one Gaussian pull ``z = (measured - expected)/error``.

    ``statistic = |z|``, ``dof = 1``. ``errors_untrusted`` as in :func:`verdict_from_chi2`. With
    ``error`` the detectable effect is an absolute
    deviation ``(z_{1-alpha/2} + z_power) * error`` (in the unit of the measured value; the
    other tail is neglected), and ``tolerance`` is absolute too; without it the unit is
    standard errors.
    """
    from scipy import stats  # noqa: PLC0415

    _check_level(alpha, power)
    alpha_eff = alpha / n_tests if correction != "none" else alpha
    p = float(2.0 * stats.norm.sf(abs(float(z)))) if np.isfinite(z) else float("nan")
    zstar = float(stats.norm.isf(alpha_eff / 2.0) + stats.norm.ppf(power))
    if error is not None and np.isfinite(error) and error > 0:
        detectable, unit = zstar * float(error), effect_unit or "absolute deviation"
        observed = abs(float(z)) * float(error)
    else:
        detectable, unit, observed = zstar, "standard errors", abs(float(z))
    needed = float("nan")
    if tolerance is not None:
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        needed = float(math.ceil(n_samples * (detectable / float(tolerance)) ** 2))
    ws = list(warnings_)
    outcome = _outcome(p, alpha_eff, detectable, tolerance, bool(ws), 1, errors_untrusted)
    corr = "none" if correction == "none" or n_tests == 1 else f"{correction} ({n_tests} tests)"
    msg = _message(what, outcome, abs(float(z)), 1, p, detectable, unit, tolerance, needed,
                   n_samples, ws, stat_name="|z|")
    return Verdict(outcome, abs(float(z)), 1, p, float(alpha), corr, int(n_tests), detectable,
                   unit, float(power), None if tolerance is None else float(tolerance), needed,
                   int(n_samples), observed, ws, msg)


def _message(what, outcome, stat, dof, p, det, unit, tol, needed, n, ws, stat_name="chi^2"):
    head = f"{what}: " if what else ""
    s = f"{head}{outcome} ({stat_name} = {stat:.4g}, dof = {dof}, p = {p:.3g}, n = {n})"
    if outcome == "inconclusive" and ws:
        s += "; error bars not trusted: " + "; ".join(ws)
    elif outcome == "inconclusive" and tol is not None:
        s += (f"; detects {det:.3g} ({unit}) but the tolerance is {tol:.3g}: "
              f"about {needed:.3g} samples needed")
    else:
        s += f"; smallest detectable effect {det:.3g} ({unit})"
    return s


def combine_verdicts(verdicts: Sequence[Verdict], *, alpha: float = 0.05,
                     correction: str = "holm", what: str = "") -> Verdict:
    """One family-wise verdict from several tests (Holm step-down or Bonferroni).

    Inconsistent if any test is rejected after the correction; otherwise inconclusive if any
    member is inconclusive; otherwise consistent. The returned statistic is the smallest
    corrected p-value's test statistic, ``p_value`` the smallest corrected p-value (capped at 1).
    """
    if correction not in ("holm", "bonferroni"):
        raise ValueError(f"correction must be 'holm' or 'bonferroni', got {correction!r}")
    vs = list(verdicts)
    if not vs:
        raise ValueError("verdicts must not be empty")
    m = len(vs)
    p = np.array([v.p_value if np.isfinite(v.p_value) else 1.0 for v in vs])
    order = np.argsort(p)
    if correction == "bonferroni":
        padj = np.minimum(1.0, p * m)
    else:
        padj = np.empty(m)
        run = 0.0
        for rank, i in enumerate(order):
            run = max(run, min(1.0, (m - rank) * p[i]))
            padj[i] = run
    best = int(np.argmin(padj))
    if np.any(padj < alpha):
        outcome = "inconsistent"
    elif any(v.outcome == "inconclusive" for v in vs):
        outcome = "inconclusive"
    else:
        outcome = "consistent"
    ws = [w for v in vs for w in v.warnings]
    needed = max((v.samples_needed for v in vs if np.isfinite(v.samples_needed)),
                 default=float("nan"))
    msg = (f"{what + ': ' if what else ''}{outcome} over {m} tests ({correction}); smallest "
           f"corrected p = {padj[best]:.3g} ({vs[best].message})")
    return Verdict(outcome, vs[best].statistic, vs[best].dof, float(padj[best]), float(alpha),
                   f"{correction} ({m} tests)", m, vs[best].detectable_effect,
                   vs[best].effect_unit, vs[best].power, vs[best].tolerance, needed,
                   max(v.n_samples for v in vs), vs[best].observed_effect, ws, msg)


def attach_verdict(ds: xr.Dataset, verdict: Verdict, prefix: str = "") -> xr.Dataset:
    """Write the verdict fields into ``ds.attrs`` (optionally prefixed); returns ``ds``."""
    for k, v in verdict.to_attrs().items():
        ds.attrs[prefix + k] = v
    return ds


# ----------------------------------------------------------------------------------------------
# accumulators
def _fft_axes(phi, ndim):
    if phi.ndim - 1 < ndim:
        raise ValueError(f"phi has {phi.ndim - 1} field axes, fewer than ndim={ndim}")
    return tuple(range(phi.ndim - ndim, phi.ndim))


def _rfft(d, axes, xp):
    if xp is np:
        import scipy.fft  # noqa: PLC0415

        return scipy.fft.rfftn(d, axes=axes, workers=-1)
    return xp.fft.rfftn(d, axes=axes)


class FourierModeMoments(Accumulator):
    """Per-mode mean and variance of ``P(p) = |phit(p)|^2 / V`` over the half spectrum.

    ``phit(p) = sum_x exp(-i p.x) phi(x)`` (real FFT over the ``ndim`` trailing axes, one
    spectrum per component). Kept: ``sum w P`` and ``sum w P^2`` for every half-spectrum mode
    p != 0, and power sums up to order 4 of ``m = M - a`` (``M`` the site mean, ``a`` the shift),
    which give the connected zero mode ``Gt_c(0) = V (<m^2> - <m>^2)`` and its variance exactly,
    whatever the shift. Memory: 2 half spectra + 4 numbers per component.

    ``result()``: ``Gt`` (connected, half spectrum ``([D], L0, ..., L_{d-1}//2 + 1)``),
    ``var`` (per-sample variance of the per-mode contribution; at p = 0 that of the influence
    function ``V (m - <m>)^2``), ``Gt_full0`` (``V <M^2>``), ``n_samples``, ``ess``.
    """

    def __init__(self, ndim: int, *, field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not isinstance(ndim, (int, np.integer)) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        self.ndim = int(ndim)

    def _config(self):
        return super()._config() + (self.ndim,)

    def _init_shift(self, phi, w, xp):
        m = phi.mean(axis=_fft_axes(phi, self.ndim))
        m = m.mean(axis=0) if w is None else _wsum(w, m, xp) / w.sum()
        self.shift = np.asarray(_to_numpy(m), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        axes = _fft_axes(phi, self.ndim)
        V = int(np.prod(phi.shape[axes[0]:]))
        a = xp.asarray(self.shift).reshape(self.shift.shape + (1,) * self.ndim)
        n = phi.shape[0]
        # sub-blocks of samples whose working set (d, its spectrum, P) stays in cache on the
        # CPU; one block on a GPU. Equal to the one-block reference to float64 rounding.
        per = max(1, int(np.prod(phi.shape[1:])) * phi.itemsize)
        step = n if xp is not np else max(1, _FFT_BLOCK_BYTES // per)
        s1 = s2 = None
        ms = []
        for s0 in range(0, n, step):
            d = phi[s0:s0 + step] - a
            wb = None if w is None else w[s0:s0 + step]
            F = _rfft(d, axes, xp)
            P = F.real ** 2
            P += F.imag ** 2
            P /= V
            t1 = _wsum(wb, P, xp)
            P *= P
            t2 = _wsum(wb, P, xp)
            s1 = t1 if s1 is None else s1 + t1
            s2 = t2 if s2 is None else s2 + t2
            ms.append(d.mean(axis=axes))
        m = ms[0] if len(ms) == 1 else xp.concatenate(ms)
        out = {"s1": s1, "s2": s2}
        out.update(_power_sums(m, w, xp, 4))
        return out

    def _reshift(self, sums, sum_w, old, new):
        # P(p != 0) does not depend on the shift; the m power sums re-centre binomially
        return _binom_reshift_power(sums, sum_w, np.asarray(old - new), 4)

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("FourierModeMoments has seen no samples")
        V = int(np.prod(self.field_shape[-self.ndim:]))
        W = self.sum_w
        mean = self._sums["s1"] / W
        var = self._sums["s2"] / W - mean ** 2
        mu = [1.0] + [self._sums[f"p{k}"] / W for k in range(1, 5)]
        c2 = mu[2] - mu[1] ** 2
        c4 = mu[4] - 4 * mu[3] * mu[1] + 6 * mu[2] * mu[1] ** 2 - 3 * mu[1] ** 4
        idx = (Ellipsis,) + (0,) * self.ndim
        mean = mean.copy()
        var = var.copy()
        mean[idx] = V * c2
        var[idx] = V * V * (c4 - c2 ** 2)
        M = self.shift + mu[1]
        return {"Gt": mean, "var": np.maximum(var, 0.0), "Gt_full0": V * (c2 + M ** 2),
                "M": M, "n_samples": self.n_samples, "ess": self.ess, "volume": V}


class SeparationCovariance(Accumulator):
    """Mean and covariance of the per-sample translation-averaged two-point function.

    For each sample ``g(r) = (1/V) sum_y d_y d_{y+r}`` with ``d = phi - a`` (``a`` the shift),
    at the chosen flat displacement indices ``separations`` (single-component fields). Kept:
    ``sum w g``, ``sum w g g^T``, ``sum w m``, ``sum w m^2`` and ``sum w g m`` (``m = M - a``),
    which make re-centring exact. ``result()``: ``G`` (connected, ``<g> - <m>^2``), ``cov``
    (per-sample covariance of the estimator's influence function ``g - 2<m> m``, independent of
    the shift), ``n_samples``, ``ess``. Memory O(K^2), K = len(separations).
    """

    def __init__(self, ndim: int, separations, *, field_shape=None, shift=None):
        super().__init__(field_shape, shift)
        if not isinstance(ndim, (int, np.integer)) or ndim < 1:
            raise ValueError(f"ndim must be a positive int, got {ndim!r}")
        self.ndim = int(ndim)
        sep = np.asarray(separations, dtype=np.int64).ravel()
        if sep.size == 0 or np.any(sep < 0):
            raise ValueError("separations must be a non-empty list of flat displacement indices")
        self.separations = sep

    def _config(self):
        return super()._config() + (self.ndim, tuple(self.separations.tolist()))

    def _init_shift(self, phi, w, xp):
        if phi.ndim - 1 != self.ndim:
            raise ValueError("SeparationCovariance needs single-component fields "
                             f"(n, *lattice_shape), got field shape {tuple(phi.shape[1:])}")
        m = phi.mean(axis=_fft_axes(phi, self.ndim))
        m = m.mean() if w is None else _wsum(w, m, xp) / w.sum()
        self.shift = np.asarray(float(_to_numpy(m)), dtype=np.float64)

    def _chunk_sums(self, phi, w, xp):
        axes = _fft_axes(phi, self.ndim)
        shape = phi.shape[1:]
        V = int(np.prod(shape))
        if self.separations.max() >= V:
            raise ValueError(f"separations must be flat indices < V = {V}")
        d = phi - float(self.shift)
        F = _rfft(d, axes, xp)
        P = (F.real ** 2 + F.imag ** 2)
        if xp is np:
            import scipy.fft  # noqa: PLC0415

            g = scipy.fft.irfftn(P, s=shape, axes=axes, workers=-1)
        else:
            g = xp.fft.irfftn(P, s=shape, axes=axes)
        g = g.reshape(phi.shape[0], V)[:, xp.asarray(self.separations)] / V
        m = d.reshape(phi.shape[0], V).mean(axis=1)
        gw = g if w is None else g * xp.asarray(w)[:, None]
        return {"g1": _wsum(w, g, xp), "gg": _to_numpy(gw.T @ g), "m1": _wsum(w, m, xp),
                "m2": _wsum(w, m * m, xp), "gm": _wsum(w, g * m[:, None], xp)}

    def _reshift(self, sums, sum_w, old, new):
        c = float(old - new)  # d_new = d_old + c
        g1, gg, m1, m2, gm = (sums[k] for k in ("g1", "gg", "m1", "m2", "gm"))
        # g_new = g + 2 c m + c^2, m_new = m + c
        g1n = g1 + 2 * c * m1 + c * c * sum_w
        s_m2 = m2
        one = np.ones_like(g1)
        # exact: sum (g + 2cm + c^2)(m + c) = gm + c g1 + 2c m2 + 2c^2 m1 + c^2 m1 + c^3 W
        gmn = gm + c * g1 + 2 * c * m2 + 3 * c * c * m1 + c ** 3 * sum_w
        u = 2 * c * gm + c * c * g1  # sum g (2cm + c^2)
        # sum (2cm + c^2)^2 = 4c^2 m2 + 4c^3 m1 + c^4 W
        ss = 4 * c * c * s_m2 + 4 * c ** 3 * m1 + c ** 4 * sum_w
        ggn = gg + np.outer(u, one) + np.outer(one, u) + ss
        return {"g1": g1n, "gg": ggn, "m1": m1 + c * sum_w,
                "m2": m2 + 2 * c * m1 + c * c * sum_w, "gm": gmn}

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("SeparationCovariance has seen no samples")
        W = self.sum_w
        g = self._sums["g1"] / W
        m = float(self._sums["m1"] / W)
        cov = self._sums["gg"] / W - np.outer(g, g)
        # influence function of <g> - <m>^2 is g - 2 <m> m: its covariance (shift-invariant)
        cgm = self._sums["gm"] / W - g * m
        vm = float(self._sums["m2"] / W) - m * m
        one = np.ones_like(g)
        cov = cov - 2 * m * (np.outer(cgm, one) + np.outer(one, cgm)) + 4 * m * m * vm
        return {"G": g - m * m, "cov": cov, "n_samples": self.n_samples, "ess": self.ess,
                "separations": self.separations}


class TailSample(Accumulator):
    """Power sums (orders 1..4) and the ``k`` largest ``|q - a|`` of per-sample quantities.

    ``fn(phi, xp) -> (n, K)`` gives the per-sample contributions (e.g. the products
    ``phi_x1 phi_x2 phi_x3 phi_x4`` a 4-point estimator averages). Merging keeps the k largest
    of the union, which equals the k largest of all samples seen. ``subtract`` (used by the
    jackknife) removes the power sums exactly but leaves the kept extremes unchanged: use the
    extremes of the total only. ``result()``: ``mean``, ``var``, ``kurtosis`` (K,), ``top``
    (k, K), descending, NaN-padded), ``n_samples``.
    """

    def __init__(self, fn: Callable, names: Sequence[str], k: int = 1000, *, field_shape=None,
                 shift=None):
        super().__init__(field_shape, shift)
        if not callable(fn):
            raise ValueError("fn must be callable fn(phi, xp) -> (n, K)")
        self.fn = fn
        self.names = tuple(str(n) for n in names)
        if not self.names:
            raise ValueError("names must not be empty")
        if not isinstance(k, (int, np.integer)) or k < 10:
            raise ValueError(f"k must be an int >= 10, got {k!r}")
        self.k = int(k)
        self.top = np.full((0, len(self.names)), np.nan)

    def _config(self):
        return super()._config() + (self.names, self.k)

    def _extra_reset(self):
        self.top = np.full((0, len(self.names)), np.nan)

    def _values(self, phi, xp):
        q = self.fn(phi, xp).reshape(phi.shape[0], -1)
        if q.shape[1] != len(self.names):
            raise ValueError(f"fn returned {q.shape[1]} quantities per sample, expected "
                             f"{len(self.names)}")
        return q.astype(xp.float64)

    def _init_shift(self, phi, w, xp):
        q = self._values(phi, xp)
        self.shift = np.asarray(_to_numpy(q.mean(axis=0)), dtype=np.float64)

    def _keep(self, new):
        allv = np.concatenate([self.top, new], axis=0) if self.top.size else new
        allv = -np.sort(-np.nan_to_num(allv, nan=-np.inf), axis=0)[: self.k]
        self.top = np.where(np.isfinite(allv), allv, np.nan)

    def _chunk_sums(self, phi, w, xp):
        q = self._values(phi, xp) - xp.asarray(self.shift)
        self._pending = np.abs(_to_numpy(q))
        return _power_sums(q, w, xp, 4)

    def update(self, phi, weights=None, *, log_weight=None):
        self._pending = None
        super().update(phi, weights, log_weight=log_weight)
        if self._pending is not None:
            self._keep(self._pending)
            self._pending = None
        return self

    def merge(self, other):
        super().merge(other)
        if other.n_samples and other.top.size:
            shift_diff = np.abs(np.asarray(other.shift) - np.asarray(self.shift))
            self._keep(other.top + shift_diff)  # upper bound when the shifts differ slightly
        return self

    def _reshift(self, sums, sum_w, old, new):
        return _binom_reshift_power(sums, sum_w, np.asarray(old - new), 4)

    def result(self) -> dict:
        if self.n_samples == 0:
            raise ValueError("TailSample has seen no samples")
        W = self.sum_w
        mu = [1.0] + [self._sums[f"p{k}"] / W for k in range(1, 5)]
        c2 = mu[2] - mu[1] ** 2
        c4 = mu[4] - 4 * mu[3] * mu[1] + 6 * mu[2] * mu[1] ** 2 - 3 * mu[1] ** 4
        with np.errstate(invalid="ignore", divide="ignore"):
            kurt = c4 / c2 ** 2
        return {"mean": self.shift + mu[1], "var": c2, "kurtosis": kurt, "top": self.top.copy(),
                "sum_sq": c2 * W, "n_samples": self.n_samples, "names": self.names}


# ----------------------------------------------------------------------------------------------
# goodness of fit of the two-point function
def unique_half_modes(shape) -> np.ndarray:
    """Boolean mask over the real-FFT half spectrum ``(L0, ..., L_{d-1}//2 + 1)``: one entry per
    class ``{k, -k mod L}`` (True = keep). Interior last-axis bins are their own class
    representatives; on the self-conjugate planes (last index 0 or L/2) the smaller flat index of
    k and -k is kept."""
    shape = tuple(int(s) for s in shape)
    Ll = shape[-1]
    half = shape[:-1] + (Ll // 2 + 1,)
    idx = np.indices(half).reshape(len(shape), -1)
    neg = (-idx) % np.asarray(shape)[:, None]
    last = idx[-1]
    selfc = (last == 0) | ((Ll % 2 == 0) & (last == Ll // 2))
    f = np.ravel_multi_index(tuple(idx), shape)
    g = np.ravel_multi_index(tuple(neg), shape)
    keep = np.where(selfc, f <= g, True)
    return keep.reshape(half)


def _measure_with(source, key, make, *, blocks, executor, measure_kw, what):
    """A Measurement holding an accumulator of type ``key`` (reused if ``source`` is one)."""
    from .measure import Measurement, measure, open_source  # noqa: PLC0415

    if isinstance(source, Measurement):
        return source, source.find(key)
    lattice = measure_kw.pop("lattice", None) or getattr(source, "lattice", None)
    if lattice is None and not hasattr(source, "shape"):
        source = open_source(source)
        lattice = source.lattice
    if lattice is None:
        raise ValueError(f"{what}: the geometry is unknown; pass lattice=")
    if getattr(lattice, "kind", "lattice") != "lattice" or \
            getattr(lattice, "boundary", "") != "periodic":
        raise ValueError(f"{what} needs a periodic Lattice, got {lattice!r}")
    meas = measure(source, {"acc": make(lattice)}, blocks=blocks, executor=executor,
                   lattice=lattice, **measure_kw)
    return meas, "acc"


def _shape_of(meas, name, ndim):
    return tuple(meas.total[name].field_shape[-ndim:])


def momentum_space_test(source, expected=None, *, m2=None, exclude_zero: bool = False,
                        alpha: float = 0.05, power: float = 0.8, tolerance=None,
                        blocks=20, executor: str = "serial", error_check: bool = True,
                        directions: bool = True, min_hits: float = 1000.0,
                        mass_tolerance=None, **measure_kw) -> xr.Dataset:
    """Chi-square test of the connected momentum-space propagator on independent modes.

    One entry per class ``{p, -p}`` (:func:`unique_half_modes`), per component. For each,
    ``Gt(p) = mean_s P_s(p)``, ``P_s(p) = |phit_s(p)|^2 / V`` with standard error
    ``sqrt(var_s P(p) / n_eff)`` from the sample itself (no Gaussian assumption), and
    ``z_p = (Gt(p) - expected(p))/error(p)``; ``chi^2 = sum z_p^2`` with ``dof`` = number of
    entries. For a translation-invariant ensemble the ``P(p)`` of different classes are
    uncorrelated (Fourier modes of a stationary field), so chi^2 has the chi^2_dof null; the
    zero mode is connected, ``V (<M^2> - <M>^2)``, with its exact influence-function variance.
    Samples must be independent (networks, exact sampler); for Markov chains use
    :func:`position_space_test` with ``covariance="blocks"``.

    Parameters
    ----------
    source : store, path, array (with ``lattice=``) or Measurement holding a
        :class:`FourierModeMoments`.
    expected : array over the lattice shape, optional
        ``Gt(p)`` at momentum indices (``np.fft.fftn(G).real`` of a position-space ``G(r)``).
    m2 : float, optional
        Use the exact lattice free propagator ``1/(phat^2 + m2)`` instead.
    exclude_zero : bool
        Leave out p = 0.
    alpha, power, tolerance :
        Significance level, power of the detectable-effect statement, and the relative deviation
        (uniform over all modes) that must be detectable for a "consistent" verdict (None: none).
    min_hits : float
        The normal approximation of a mode's mean needs many contributing samples: a mode whose
        effective count ``n_eff <P>^2 / <P^2>`` is below ``min_hits`` (sparse modes of a narrow
        cos-net: each network fills only N momenta; recognised by a per-sample variance above
        5 expected^2, far from the Gaussian 1-2) is summed with other such modes (in order of
        decreasing expected value) into groups reaching ``min_hits``; a group's variance is the
        sum of its modes' (conservative: the multinomial anti-correlation of a fixed number of
        neurons is neglected). Such entries are marked by the ``pooled`` variable.
    mass_tolerance : float, optional
        Relative shift of ``m^2`` that must be detectable (e.g. 0.04 for a mass off by 2 %):
        the mass-direction test is then "inconclusive" when its detectable shift exceeds
        ``mass_tolerance * m^2`` (``m^2`` from ``m2`` or ``1/expected(0)``), and the verdict
        carries the samples needed.
    directions : bool
        Besides the omnibus chi^2 over all modes (which spreads its power over every possible
        deviation), test the two smooth alternatives a propagator ``Z/(phat^2 + m^2)`` can
        have: an overall factor (direction ``Gt``) and a shift of the mass term (direction
        ``Gt^2``, since ``d Gt/d m^2 = -Gt^2``); the three p-values are combined by Holm's
        method, so the family keeps level alpha.
    error_check : bool
        Compare the per-sample standard errors with the spread of block means
        (:func:`compare_error_estimates`); a disagreement makes the verdict inconclusive.

    Returns
    -------
    Dataset over ``mode`` with ``value``, ``error``, ``expected``, ``pull``,
    ``effective_hits``, ``entry_of_mode`` and coordinates ``k0..k{d-1}`` (momentum indices),
    ``phat2``, ``component``; over ``entry`` (what the chi^2 sums: single modes and pooled
    groups) ``entry_value``, ``entry_error``, ``entry_expected``, ``entry_pull``, ``pooled``;
    attrs: the :class:`Verdict` fields plus ``chi2_dof``, ``n_pooled_modes``,
    ``<omnibus|normalisation|mass>_{p_value,statistic,z,...}``, ``error_check_*``.
    """
    from nnft.lattice import Lattice, free_propagator_momentum  # noqa: PLC0415

    kw = dict(measure_kw)
    meas, name = _measure_with(source, FourierModeMoments,
                               lambda lat: FourierModeMoments(len(lat.shape)), blocks=blocks,
                               executor=executor, measure_kw=kw, what="momentum_space_test")
    acc = meas.total[name]
    ndim = acc.ndim
    shape = _shape_of(meas, name, ndim)
    if expected is None:
        if m2 is None:
            raise ValueError("give expected (Gt(p) over the lattice shape) or m2")
        expected = free_propagator_momentum(Lattice(shape), float(m2))
        src = f"exact lattice free propagator 1/(phat^2 + m2), m2 = {m2}"
    else:
        src = "given"
    expected = np.asarray(expected, dtype=float)
    if expected.shape[-ndim:] != shape:
        raise ValueError(f"expected must have the lattice shape {shape} (momentum indices), "
                         f"got {expected.shape}")
    r = acc.result()
    half_exp = np.broadcast_to(expected[..., : shape[-1] // 2 + 1], r["Gt"].shape)
    se = np.sqrt(r["var"] / acc.ess)
    mask = np.broadcast_to(unique_half_modes(shape), r["Gt"].shape).copy()
    if exclude_zero:
        mask[(Ellipsis,) + (0,) * ndim] = False
    mask &= se > 0
    val_m, err_m, ex_m = r["Gt"][mask], se[mask], half_exp[mask]
    var_m = r["var"][mask]
    A, hits = _pool_sparse_modes(ex_m, var_m, acc.ess, min_hits, val=val_m)
    val, ex = A @ val_m, A @ ex_m
    err = np.sqrt(A @ err_m ** 2)
    pooled = A.sum(axis=1) > 1
    pull = (val - ex) / err
    chi2 = float(np.sum(pull ** 2))
    dof = int(val.size)
    scale = float(np.sqrt(np.sum((ex / err) ** 2)))
    observed = float(np.sum((val - ex) * ex / err ** 2) / np.sum(ex ** 2 / err ** 2))
    ws = []
    check = None
    if error_check and len(meas.blocks) >= 3:
        bvals = []
        for b in meas.blocks:
            bb = b[name]
            if bb.n_samples > 1:
                bvals.append(A @ bb.result()["Gt"][mask])
        B = len(bvals)
        if B >= 3:
            bse = np.std(np.stack(bvals), axis=0, ddof=1) / math.sqrt(B)
            rv = (A @ var_m) / np.maximum(ex, 1e-300) ** 2
            kurt = 3.0 * (1.0 + rv) + 3.0
            check = compare_error_estimates(
                {"per-sample": err, "block means": bse},
                {"per-sample": np.sqrt((kurt - 1.0) / (4.0 * acc.ess)),
                 "block means": 1.0 / math.sqrt(2.0 * (B - 1))})
            if check.attrs["flag"]:
                ws.append(check.attrs["message"])
    v = verdict_from_chi2(chi2, dof, acc.n_samples, alpha=alpha, power=power,
                          effect_scale=scale, tolerance=tolerance, observed_effect=observed,
                          warnings_=ws, errors_untrusted=bool(ws),
                          what="two-point function, momentum space (all modes)")
    parts = {"omnibus": v}
    signed = {}
    if directions:
        for dname, (u, unit) in _directions(ex_m).items():
            zd, sd = directional_z(val_m - ex_m, err_m, u, weights=u / ex_m ** 2)
            signed[dname] = zd
            tol = None
            if dname == "mass" and mass_tolerance is not None:
                m2_ref = float(m2) if m2 is not None else 1.0 / float(np.ravel(expected)[0])
                tol = float(mass_tolerance) * abs(m2_ref)
            parts[dname] = verdict_from_z(zd, acc.n_samples, error=sd, alpha=alpha, power=power,
                                          warnings_=ws, errors_untrusted=bool(ws),
                                          what=f"{dname} direction", tolerance=tol,
                                          effect_unit=unit)
        v = combine_verdicts(list(parts.values()), alpha=alpha, correction="holm",
                             what="two-point function, momentum space")
        # the headline statistic stays the omnibus chi^2; the p-value is the family's
        v.statistic, v.dof = chi2, dof
        v.detectable_effect, v.effect_unit = parts["omnibus"].detectable_effect, \
            parts["omnibus"].effect_unit
        v.observed_effect = observed
        v.tolerance = tolerance
        v.samples_needed = max((p.samples_needed for p in parts.values()
                                if np.isfinite(p.samples_needed)), default=float("nan"))
        if ws or (v.outcome == "consistent" and parts["omnibus"].outcome == "inconclusive"):
            v.outcome = "inconclusive"
        v.message = _message("two-point function, momentum space", v.outcome, chi2, dof,
                             v.p_value, v.detectable_effect, v.effect_unit, tolerance,
                             v.samples_needed, acc.n_samples, ws) + \
            " [" + "; ".join(f"{k}: p = {p.p_value:.3g}" for k, p in parts.items()) + \
            ", Holm-combined]"
        if mass_tolerance is not None and parts["mass"].outcome == "inconclusive":
            v.message += "; " + parts["mass"].message
    kidx = np.indices(r["Gt"].shape[-ndim:])
    kk = [np.broadcast_to(kidx[i], r["Gt"].shape)[mask] for i in range(ndim)]
    lat = Lattice(shape)
    ph2 = np.broadcast_to(lat.phat2()[..., : shape[-1] // 2 + 1], r["Gt"].shape)[mask]
    comp = np.broadcast_to(np.arange(int(np.prod(r["Gt"].shape[:-ndim] or (1,)))).reshape(
        r["Gt"].shape[:-ndim] + (1,) * ndim), r["Gt"].shape)[mask]
    coords = {f"k{i}": ("mode", kk[i]) for i in range(ndim)}
    coords.update(phat2=("mode", ph2), component=("mode", comp))
    ds = xr.Dataset({"value": ("mode", val_m), "error": ("mode", err_m),
                     "expected": ("mode", ex_m), "pull": ("mode", (val_m - ex_m) / err_m),
                     "effective_hits": ("mode", hits),
                     "entry_of_mode": ("mode", np.argmax(A, axis=0)),
                     "entry_value": ("entry", val), "entry_error": ("entry", err),
                     "entry_expected": ("entry", ex), "entry_pull": ("entry", pull),
                     "pooled": ("entry", pooled)}, coords=coords)
    ds.attrs.update(meas.attrs())
    attach_verdict(ds, v)
    ds.attrs["n_pooled_modes"] = int(A[pooled].sum())
    for k, z in signed.items():
        ds.attrs[f"{k}_z"] = z
    for k, p in parts.items():
        ds.attrs[f"{k}_p_value"] = p.p_value
        ds.attrs[f"{k}_statistic"] = p.statistic
        ds.attrs[f"{k}_detectable_effect"] = p.detectable_effect
        ds.attrs[f"{k}_effect_unit"] = p.effect_unit
    ds.attrs.update(space="momentum", expected_source=src, chi2_dof=chi2 / dof if dof else np.nan,
                    quantity="Gt_c(p) = <|phit(p)|^2>/V - V<M>^2 delta_p0, one entry per {p,-p}",
                    error_source="per-sample variance / effective sample size")
    if check is not None:
        for k in ("flag", "p_value", "chi2", "dof", "message", "median_ratio"):
            ds.attrs[f"error_check_{k}"] = check.attrs[k]
    return ds


def directional_z(dev, err, u, weights=None) -> tuple[float, float]:
    """Projection of independent deviations ``d`` (standard errors ``s``) on a direction ``u``.

    Amplitude ``c = sum(w d) / sum(w u)`` of ``d ~ c u`` with standard error
    ``sqrt(sum(w^2 s^2)) / sum(w u)``; returns ``(z = c/se, se)``, z ~ N(0, 1) under the null.
    ``weights=None``: least squares ``w = u/s^2``. Pass weights fixed by the model (the
    momentum-space test uses ``u/expected^2``, the Gaussian-field inverse variances): weights
    built from estimated variances correlate with the deviations when the per-mode
    distribution is skewed (sparse cos-net modes) and bias z.
    """
    u = np.asarray(u, dtype=float)
    s = np.asarray(err, dtype=float)
    w = u / s ** 2 if weights is None else np.asarray(weights, dtype=float)
    den = float(np.sum(w * u))
    c = float(np.sum(w * dev)) / den
    se = math.sqrt(float(np.sum(w * w * s * s))) / abs(den)
    return c / se, se


def _pool_sparse_modes(ex, var, ess, min_hits, val=None):
    """Aggregation matrix (entries x modes): modes whose effective number of contributing
    samples ``ess ex^2/(var + ex^2)`` is below ``min_hits`` and whose variance exceeds 5 ex^2
    (a Gaussian mode has 1 or 2) are summed in groups (in order of decreasing expected value)
    until each group reaches it; the others stay single. A mode that no sample reached (its
    measured power ``val`` below 1e-6 of the expected value: its sample variance is rounding
    noise, not a measure of its spread) is sparse too, with no effective hits."""
    ex = np.asarray(ex, dtype=float)
    var = np.asarray(var, dtype=float)
    hits = ess * ex ** 2 / (var + ex ** 2)
    # a Gaussian field has var/ex^2 = 1 (complex modes) or 2 (real ones): pool only modes far
    # from that (sparse modes), so sampling noise in var never decides the pooling
    sparse_mask = (hits < min_hits) & (var > 5.0 * ex ** 2)
    if val is not None:
        # the measured effective count ess <P>^2 / <P^2> also catches modes that few samples
        # reached with small contributions (their variance is small, not large) and modes that
        # none reached; a Gaussian mode has about ess / 2 or ess / 3
        v = np.maximum(np.asarray(val, dtype=float), 0.0)
        measured = np.where(v > 1e-6 * np.abs(ex), ess * v ** 2 / (var + v ** 2), 0.0)
        few = measured < min_hits / 3
        hits = np.where(few, measured, hits)
        sparse_mask |= few
    single = np.flatnonzero(~sparse_mask)
    sparse = [i for i in np.argsort(-ex) if sparse_mask[i]]
    # a group's effective count from its measured mean (the expected one would count modes no
    # sample reached as if they had been hit)
    mean = ex if val is None else np.asarray(val, dtype=float)
    groups, cur, sm, sv = [], [], 0.0, 0.0
    for i in sparse:
        cur.append(i)
        sm += mean[i]
        sv += var[i]
        if sm > 0 and ess * sm * sm / (sv + sm * sm) >= min_hits:
            groups.append(cur)
            cur, sm, sv = [], 0.0, 0.0
    if cur:
        if groups:
            groups[-1].extend(cur)
        else:
            groups.append(cur)
    A = np.zeros((single.size + len(groups), ex.size))
    A[np.arange(single.size), single] = 1.0
    for g, idx in enumerate(groups):
        A[single.size + g, idx] = 1.0
    return A, hits


def _directions(ex):
    return {"normalisation": (ex, "overall factor Z - 1, relative"),
            "mass": (-ex ** 2, "shift of m^2 in 1/(phat^2 + m^2), absolute")}


def oas_shrinkage(cov: np.ndarray, n: float) -> tuple[np.ndarray, float]:
    """Oracle-Approximating Shrinkage (Chen, Wiesel, Eldar & Hero 2010) of a covariance matrix
    toward its own diagonal.

    Applied to the correlation matrix ``R`` (target the identity):
    ``rho = min(1, ((1 - 2/K) tr R^2 + K^2) / ((n + 1 - 2/K)(tr R^2 - K)))``,
    ``R* = (1 - rho) R + rho I``, returned rescaled to ``cov``'s variances, with ``rho``. Needs only
    the sample covariance and the number ``n`` of samples it came from (so it works streamed).
    """
    cov = np.asarray(cov, dtype=float)
    K = cov.shape[0]
    if cov.shape != (K, K):
        raise ValueError(f"cov must be square, got {cov.shape}")
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    R = cov / np.outer(sd, sd)
    if K == 1:
        return cov.copy(), 0.0
    trR2 = float(np.sum(R * R))
    den = (n + 1.0 - 2.0 / K) * (trR2 - K)
    rho = 1.0 if den <= 0 else min(1.0, ((1.0 - 2.0 / K) * trR2 + K * K) / den)
    Rs = (1.0 - rho) * R + rho * np.eye(K)
    return Rs * np.outer(sd, sd), float(rho)


def _default_separations(shape, limit=200):
    """Flat displacement indices: one per class {r, -r} if there are at most ``limit`` of
    them, else those on the lattice axes and the main diagonal (r_mu in 0..L/2)."""
    shape = tuple(shape)
    full = np.flatnonzero(_unique_full(shape))
    if full.size <= limit:
        return full
    d = len(shape)
    out = set()
    for mu in range(d):
        for t in range(shape[mu] // 2 + 1):
            r = [0] * d
            r[mu] = t
            out.add(int(np.ravel_multi_index(tuple(r), shape)))
    for t in range(1, min(shape) // 2 + 1):
        out.add(int(np.ravel_multi_index((t,) * d, shape)))
    return np.array(sorted(out))


def _unique_full(shape):
    idx = np.indices(shape).reshape(len(shape), -1)
    neg = (-idx) % np.asarray(shape)[:, None]
    f = np.ravel_multi_index(tuple(idx), shape)
    g = np.ravel_multi_index(tuple(neg), shape)
    return (f <= g).reshape(shape)


def position_space_test(source, expected=None, *, m2=None, separations=None,
                        covariance: str = "samples", shrinkage: str = "auto",
                        alpha: float = 0.05, power: float = 0.8, tolerance=None, blocks=20,
                        executor: str = "serial", **measure_kw) -> xr.Dataset:
    """Correlated chi-square test of the connected G(r) at chosen separations.

    ``chi^2 = d^T C^{-1} d``, ``d = G(r) - expected(r)``, with ``C`` the covariance of the
    estimated means: ``covariance="samples"`` -- per-sample covariance of the translation-averaged
    ``g_s(r)`` over ``n_eff`` (independent samples); ``"blocks"`` -- covariance of the block means
    over the number of blocks (Markov chains: blocks much longer than tau_int). ``shrinkage``:
    "oas" (:func:`oas_shrinkage`, toward the diagonal), "none", or "auto" (default: "none" when
    the samples/blocks exceed the separations by ``max(10, K)``, else "oas"; shrinking strongly
    correlated separations makes the chi^2 conservative, so it is used only where needed). Null
    distribution: with no
    shrinkage Hotelling's ``T^2`` (``F(K, n - K)`` after scaling; needs n > K), with shrinkage
    chi^2_K (checked by the calibration benchmark).

    Note: with every class {r, -r} the test is the full-covariance version of
    :func:`momentum_space_test` (the map between G(r) and Gt(p) on the classes is invertible and
    chi^2 is invariant under it); restricting to a few separations is what makes it different.

    Parameters
    ----------
    separations : None, int array of flat displacement indices, or list of displacement tuples
        None: every class if there are at most 200, else the axes and the diagonal.
    expected : array over the lattice shape (G(r) at displacement indices), or ``m2``.
    """
    from nnft.lattice import Lattice, free_propagator  # noqa: PLC0415

    if covariance not in ("samples", "blocks"):
        raise ValueError(f"covariance must be 'samples' or 'blocks', got {covariance!r}")
    if shrinkage not in ("auto", "oas", "none"):
        raise ValueError(f"shrinkage must be 'auto', 'oas' or 'none', got {shrinkage!r}")
    kw = dict(measure_kw)

    def make(lat):
        return SeparationCovariance(len(lat.shape), _seps(separations, tuple(lat.shape)))

    meas, name = _measure_with(source, SeparationCovariance, make, blocks=blocks,
                               executor=executor, measure_kw=kw, what="position_space_test")
    acc = meas.total[name]
    shape = _shape_of(meas, name, acc.ndim)
    if expected is None:
        if m2 is None:
            raise ValueError("give expected (G(r) over the lattice shape) or m2")
        expected = free_propagator(Lattice(shape), float(m2))
        src = f"exact lattice free propagator, m2 = {m2}"
    else:
        src = "given"
    expected = np.asarray(expected, dtype=float)
    if expected.shape != shape:
        raise ValueError(f"expected must have the lattice shape {shape}, got {expected.shape}")
    r = acc.result()
    sep = r["separations"]
    K = sep.size
    val = r["G"]
    ex = expected.ravel()[sep]
    if covariance == "samples":
        n = acc.ess
        C = r["cov"] / n
    else:
        bm = np.stack([b[name].result()["G"] for b in meas.blocks if b[name].n_samples > 1])
        n = bm.shape[0]
        C = np.cov(bm, rowvar=False, ddof=1).reshape(K, K) / n
    rho = 0.0
    if shrinkage == "auto":
        shrinkage = "none" if n - K >= max(10, K) else "oas"
    if shrinkage == "oas":
        C, rho = oas_shrinkage(C, n)
    d = val - ex
    chi2 = float(d @ np.linalg.solve(C, d))
    from scipy import stats as st  # noqa: PLC0415

    if rho == 0.0 and shrinkage == "none":
        if n - K < 1:
            raise ValueError(f"shrinkage='none' needs more {covariance} ({n:g}) than "
                             f"separations ({K}); use shrinkage='oas'")
        p = float(st.f.sf(chi2 * (n - K) / (K * (n - 1)), K, n - K))
        null = f"Hotelling T^2 (F({K}, {n - K:.0f}))"
    else:
        p = float(st.chi2.sf(chi2, K))
        null = f"chi^2_{K} (OAS shrinkage rho = {rho:.3g})"
    se = np.sqrt(np.diag(C))
    scale = float(math.sqrt(abs(ex @ np.linalg.solve(C, ex))))
    v = verdict_from_chi2(chi2, K, acc.n_samples, alpha=alpha, power=power, p_value=p,
                          effect_scale=scale, tolerance=tolerance,
                          what="two-point function, position space")
    disp = np.array(np.unravel_index(sep, shape)).T
    coords = {f"r{i}": ("separation", disp[:, i]) for i in range(len(shape))}
    ds = xr.Dataset({"value": ("separation", val), "error": ("separation", se),
                     "expected": ("separation", ex), "pull": ("separation", d / se)},
                    coords=coords)
    ds.attrs.update(meas.attrs())
    attach_verdict(ds, v)
    ds.attrs.update(space="position", expected_source=src, covariance=covariance,
                    shrinkage=shrinkage, shrinkage_intensity=rho, null_distribution=null,
                    chi2_dof=chi2 / K)
    return ds


def _seps(separations, shape):
    if separations is None:
        return _default_separations(shape)
    a = np.asarray(separations)
    if a.ndim == 2:
        if a.shape[1] != len(shape):
            raise ValueError(f"separations: displacement tuples need {len(shape)} entries")
        return np.ravel_multi_index(tuple((a % np.asarray(shape)).T), shape)
    return a.astype(np.int64).ravel()


# ----------------------------------------------------------------------------------------------
# error estimates checked against each other
def compare_error_estimates(errors: dict, rel_uncertainty: dict, *,
                            alpha: float = 0.001) -> xr.Dataset:
    """Flag error estimates of the same quantities that disagree beyond their own uncertainty.

    Parameters
    ----------
    errors : dict name -> array
        Two or more error estimates of the same quantities (same shape).
    rel_uncertainty : dict name -> float or array
        Relative standard error of each error estimate (the standard error of ``ln error``):
        jackknife / block means over B blocks ``1/sqrt(2(B-1))``; per-sample standard error of a
        mean ``sqrt((kurtosis - 1)/(4 n))`` (``sqrt(2/n)`` for exponential-like squares);
        Gamma method ``ddvalue/dvalue`` from pyerrors.

    Every estimate is compared with the first: ``z = ln(e_j/e_0) / sqrt(u_0^2 + u_j^2)``; the
    family statistic ``sum z^2`` over all entries is referred to chi^2 (entries assumed
    independent); flag when its p-value is below ``alpha``.

    Returns
    -------
    Dataset with ``ratio`` and ``z`` (dims ``estimate``, ``entry``); attrs ``flag`` (0/1),
    ``message``, ``chi2``, ``dof``, ``p_value``, ``median_ratio``.
    """
    from scipy import stats  # noqa: PLC0415

    names = list(errors)
    if len(names) < 2:
        raise ValueError("errors must hold at least two estimates")
    base = np.asarray(errors[names[0]], dtype=float).ravel()
    ratios, zs = [], []
    u0 = np.broadcast_to(np.asarray(rel_uncertainty[names[0]], dtype=float), base.shape).ravel()
    for nm in names[1:]:
        e = np.asarray(errors[nm], dtype=float).ravel()
        if e.shape != base.shape:
            raise ValueError(f"errors[{nm!r}] has shape {e.shape}, expected {base.shape}")
        u = np.broadcast_to(np.asarray(rel_uncertainty[nm], dtype=float), base.shape).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = e / base
            z = np.log(ratio) / np.sqrt(u0 ** 2 + u ** 2)
        ratios.append(ratio)
        zs.append(z)
    Z = np.stack(zs)
    ok = np.isfinite(Z)
    chi2 = float(np.sum(Z[ok] ** 2))
    dof = int(ok.sum())
    p = float(stats.chi2.sf(chi2, dof)) if dof else float("nan")
    flag = int(bool(dof) and p < alpha)
    med = float(np.nanmedian(np.stack(ratios)))
    msg = (f"error estimates {' vs '.join(names)}: median ratio {med:.3g}, chi^2 = {chi2:.4g} for "
           f"{dof} entries (p = {p:.3g})" + (": they DISAGREE beyond their own uncertainty"
                                             if flag else ": agree"))
    ds = xr.Dataset({"ratio": (("estimate", "entry"), np.stack(ratios)),
                     "z": (("estimate", "entry"), Z)}, coords={"estimate": names[1:]})
    ds.attrs = {"flag": flag, "message": msg, "chi2": chi2, "dof": dof, "p_value": p,
                "median_ratio": med, "alpha": alpha, "reference": names[0]}
    return ds


# ----------------------------------------------------------------------------------------------
# heavy tails
class HeavyTailWarning(UserWarning):
    """The per-sample contributions of an estimator have a tail too heavy for its error bar.

    Emitted by :func:`heavy_tail_check` when the tail shape xi of the contributions (tail
    index 1/xi) makes their mean of squares -- the variance that sets the error bar -- an
    unreliable Monte Carlo estimate at this sample size: the error bar is then typically too
    small and the estimate can move when rare large samples arrive. For xi >= 1/2 (tail index
    below 2) even the mean has infinite variance and no Gaussian limit.
    """


def hill_tail_index(top, k: int | None = None) -> tuple[float, float]:
    """Hill estimator ``alpha = k / sum_{i<k} ln(X_(i) / X_(k))`` from descending order statistics.

    ``top`` holds the largest |contributions| in descending order (at least k + 1); ``k``
    defaults to all but one. Returns ``(alpha, standard error alpha/sqrt(k))``. The tail is
    ``P(|X| > x) ~ x^-alpha``: moments of order below alpha are finite.
    """
    t = np.asarray(top, dtype=float)
    t = t[np.isfinite(t) & (t > 0)]
    if k is None:
        k = t.size - 1
    if k < 2 or t.size < k + 1:
        return float("nan"), float("nan")
    logs = np.log(t[:k]) - math.log(t[k])
    s = float(np.sum(logs))
    if s <= 0:
        return float("inf"), float("nan")
    a = k / s
    return a, a / math.sqrt(k)


def gpd_tail_shape(top) -> float:
    """Shape xi of a generalized Pareto fit to the exceedances of the largest values.

    ``top``: the M + 1 largest |contributions| in descending order; the exceedances over the
    smallest of them are fitted with the empirical-Bayes estimator of Zhang & Stephens (2009)
    with the weak prior of Vehtari et al. (PSIS). Tail index ``alpha = 1/xi`` (xi <= 0: no
    power-law tail). Unlike the Hill estimator it is not fooled by light tails seen at a finite
    threshold (Hill gives alpha ~ 1.7 for Z^4 with Z Gaussian; this gives xi ~ 0.2).
    """
    t = np.asarray(top, dtype=float)
    t = t[np.isfinite(t)]
    if t.size < 12:
        return float("nan")
    x = np.sort(t[:-1] - t[-1])
    x = x[x > 0]
    n = x.size
    if n < 10:
        return float("nan")
    m = 30 + int(math.sqrt(n))
    bs = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    bs /= 3.0 * x[int(n / 4 + 0.5) - 1]
    bs += 1.0 / x[-1]
    ks = np.log1p(-bs[:, None] * x).mean(axis=1)
    L = n * (np.log(-(bs / ks)) - ks - 1.0)
    w = 1.0 / np.exp(L - L[:, None]).sum(axis=1)
    b = float(np.sum(bs * w))
    k = float(np.mean(np.log1p(-b * x)))
    return (n * k + 10 * 0.5) / (n + 10)


def heavy_tail_check(tail, blocks=None, *, xi_threshold: float = 0.5,
                     share_threshold: float = 0.3, k: int | None = None, warn: bool = True,
                     what: str = "") -> xr.Dataset:
    """Tail shape, concentration and block stability of per-sample contributions.

    Parameters
    ----------
    tail : TailSample (over all samples), a Measurement holding one, or its ``result()`` dict
    blocks : list of TailSample, optional
        The per-block accumulators (taken from the Measurement when given one).
    xi_threshold, share_threshold : float
        The error bar is declared untrustworthy (``heavy_tail = 1``, :class:`HeavyTailWarning`)
        when the generalized-Pareto tail shape of ``|contribution - mean|`` is above
        ``xi_threshold`` by more than its standard error ``(1 + xi)/sqrt(k)`` (default 1/2:
        tail index ``1/xi <= 2``, infinite variance, no Gaussian limit of the mean) or when the
        single largest contribution carries at least
        ``share_threshold`` of the sum of squared deviations (default 0.3: removing that one
        sample moves the error bar by more than 16 %, the sampling uncertainty
        ``1/sqrt(2 (B - 1))`` of a 20-block jackknife error that the rest of the analysis
        accepts; the variance is then carried by events seen about once, and rarer ones not yet
        drawn would carry as much, so the error bar is typically too small). The asymptotic
        condition for a reliable variance-based error bar,
        a finite fourth moment (``xi < 1/4``, tail index above 4), is reported as
        ``fourth_moment_finite`` but not used alone: at a finite threshold light stretched
        tails (products of Gaussians) show xi ~ 0.2-0.4 (and a Hill index below 4) although
        their error bars are fine at these sample sizes.
    k : int, optional
        Number of order statistics used (default ``min(kept - 1, 0.2 n, 3 sqrt(n))``, as PSIS).

    Returns
    -------
    Dataset over ``quantity`` with ``tail_shape`` (GPD xi) and ``tail_shape_error``,
    ``n_reliable`` (samples after which
    a mean of the squares is reliable by the PSIS rule ``10^(1/(1 - 2 xi))``),
    ``fourth_moment_finite``, ``tail_index`` (Hill, for reference), ``tail_index_error``,
    ``max_share`` (largest squared deviation over the sum of squared deviations), ``top_share``
    (same for the kept k largest), ``kurtosis``, and with blocks ``half_split_z`` (first vs
    second half of the blocks) and ``block_chi2_dof`` (spread of block means over its
    per-sample expectation); attrs ``heavy_tail`` (0/1), ``message``, ``criterion``.
    """
    from .measure import Measurement  # noqa: PLC0415

    if isinstance(tail, Measurement):
        name = tail.find(TailSample)
        blocks = [b[name] for b in tail.blocks] if blocks is None else blocks
        tail = tail.total[name]
    r = tail.result() if isinstance(tail, TailSample) else tail
    n = int(r["n_samples"])
    top = np.asarray(r["top"])
    K = top.shape[1]
    if k is None:
        k = int(min(top.shape[0] - 1, 0.2 * n, 3 * math.sqrt(n)))
    alpha = np.empty(K)
    aerr = np.empty(K)
    xi = np.empty(K)
    for j in range(K):
        alpha[j], aerr[j] = hill_tail_index(top[:, j], k)
        xi[j] = gpd_tail_shape(top[: k + 1, j])
    sumsq = np.asarray(r["var"]) * n
    with np.errstate(invalid="ignore", divide="ignore"):
        max_share = top[0] ** 2 / sumsq
        top_share = np.nansum(top ** 2, axis=0) / sumsq
    with np.errstate(over="ignore", divide="ignore"):
        n_reliable = np.where(2 * xi < 1, 10.0 ** (1.0 / (1.0 - 2 * np.minimum(xi, 0.49999))),
                              np.inf)
    data = {"tail_shape": ("quantity", xi),
            "tail_shape_error": ("quantity", (1.0 + np.abs(xi)) / math.sqrt(max(k, 1))),
            "n_reliable": ("quantity", n_reliable),
            "fourth_moment_finite": ("quantity", xi < 0.25),
            "tail_index": ("quantity", alpha), "tail_index_error": ("quantity", aerr),
            "max_share": ("quantity", max_share), "top_share": ("quantity", top_share),
            "kurtosis": ("quantity", np.asarray(r["kurtosis"], dtype=float))}
    msgs = []
    names = list(r.get("names", range(K)))
    if blocks:
        bres = [b.result() for b in blocks if b.n_samples > 1]
        if len(bres) >= 2:
            bm = np.stack([b["mean"] for b in bres])
            bn = np.array([b["n_samples"] for b in bres], dtype=float)
            var = np.asarray(r["var"])
            h = len(bres) // 2
            m1 = np.average(bm[:h], axis=0, weights=bn[:h])
            m2 = np.average(bm[h:], axis=0, weights=bn[h:])
            with np.errstate(invalid="ignore", divide="ignore"):
                hz = (m1 - m2) / np.sqrt(var / bn[:h].sum() + var / bn[h:].sum())
                mean = np.average(bm, axis=0, weights=bn)
                bchi = np.sum(bn[:, None] * (bm - mean) ** 2, axis=0) / var / (len(bres) - 1)
            data["half_split_z"] = ("quantity", hz)
            data["block_chi2_dof"] = ("quantity", bchi)
    xi_err = (1.0 + np.abs(xi)) / math.sqrt(max(k, 1))
    heavy = (np.isfinite(xi) & (xi - xi_err >= xi_threshold)) | (max_share >= share_threshold)
    for j in np.flatnonzero(heavy):
        ti = 1.0 / xi[j] if xi[j] > 0 else np.inf
        msgs.append(f"{names[j]}: tail shape xi = {xi[j]:.2f} (tail index {ti:.2f}; largest "
                    f"sample carries {max_share[j]:.1%} of the variance): the error bar is not "
                    "reliable (typically too small) and the estimate may move as rare large "
                    "samples arrive" + ("; the mean itself has no Gaussian limit"
                                        if xi[j] >= 0.5 else ""))
    ds = xr.Dataset(data, coords={"quantity": [str(x) for x in names]})
    msg = "; ".join(msgs) if msgs else (f"no heavy tail (tail shape xi < {xi_threshold:g} and "
                                        f"largest share < {share_threshold:g} for every "
                                        "quantity)")
    if what:
        msg = f"{what}: {msg}"
    ds.attrs = {"heavy_tail": int(heavy.any()), "message": msg, "hill_k": k, "n_samples": n,
                "criterion": f"generalized-Pareto tail shape xi of |contribution - mean| >= "
                             f"{xi_threshold:g} by more than its standard error (tail index <= "
                             f"{1 / xi_threshold:g}), or the "
                             f"largest contribution >= {share_threshold:g} of the sum of squared "
                             "deviations"}
    if warn and heavy.any():
        warnings.warn(msg, HeavyTailWarning, stacklevel=2)
    return ds


def relative_or_absolute(measured, expected, error, *, floor=None) -> xr.Dataset:
    """Deviation of measured from expected as a ratio where that is meaningful, else absolute.

    Where ``|expected| > floor`` (default ``3 * error``: the expected value is resolved from zero
    at this precision) the relative deviation ``(measured - expected)/expected`` is reported with
    error ``error/|expected|``; elsewhere the absolute deviation ``measured - expected`` with
    ``error``. Returns a Dataset with ``deviation``, ``error``, ``kind`` ("relative"/"absolute").
    """
    m = np.atleast_1d(np.asarray(measured, dtype=float))
    e = np.broadcast_to(np.asarray(expected, dtype=float), m.shape)
    s = np.broadcast_to(np.asarray(error, dtype=float), m.shape)
    fl = 3.0 * s if floor is None else np.broadcast_to(np.asarray(floor, dtype=float), m.shape)
    rel = np.abs(e) > fl
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(rel, (m - e) / e, m - e)
        err = np.where(rel, s / np.abs(e), s)
    dims = tuple(f"dim_{i}" for i in range(m.ndim))
    return xr.Dataset({"deviation": (dims, dev), "error": (dims, err),
                       "kind": (dims, np.where(rel, "relative", "absolute"))})


# ----------------------------------------------------------------------------------------------
# connected n-point functions at point tuples
def _tuple_products(keys):
    cols = [np.asarray(k, dtype=np.int64) for k in keys]

    def fn(phi, xp):
        p = phi.reshape(phi.shape[0], -1)
        return xp.stack([xp.prod(p[:, xp.asarray(c)], axis=1) for c in cols], axis=1)

    return fn


def tail_sample(tuples, k: int = 1000) -> "TailSample":
    """The :class:`TailSample` of the per-sample products at ``tuples`` (what a connected
    n-point estimator averages), for the heavy-tail part of :func:`correlator_test` in a shared
    pass."""
    from .accumulators import normalize_tuples  # noqa: PLC0415

    keys = [tuple(sorted(t)) for t in normalize_tuples(tuples)]
    return TailSample(_tuple_products(keys), [str(t) for t in keys], k=k)


def correlator_test(source, tuples, expected, *, blocks=20, alpha: float = 0.05,
                    power: float = 0.8, tolerance=None, heavy_tail: bool = True,
                    executor: str = "serial", tail_key: str = "tail",
                    **measure_kw) -> xr.Dataset:
    """Correlated chi-square test of connected n-point functions at point tuples.

    ``value`` = joint cumulants (set-partition formula on plug-in central moments, as
    :func:`~.cumulants.connected_correlator`, minus the jackknife bias estimate), covariance of the
    tuples from the delete-one-block
    jackknife replicates. With more blocks than tuples + 1 the p-value is Hotelling's ``T^2``
    (``F(K, B - K)``), otherwise the covariance is OAS-shrunk and chi^2_K is used.
    ``detectable_effect`` is the relative deviation of all tuples together (e.g. a width N
    off by one changes a 1/N connected 4-point function by 1/(N + 1)).

    Heavy tails: the per-sample products at the tuples go through :func:`heavy_tail_check`; a
    warning makes the verdict "inconclusive" (a small p-value is no evidence when the error bars
    are typically too small). Errors: the per-sample standard error of the
    raw products is compared with the spread of their block means
    (:func:`compare_error_estimates`).

    Parameters
    ----------
    source : store, path, array (n, *field_shape) or Measurement with ``PointMoments`` (key
        "moments") and ``TailSample`` (key ``tail_key``, made by :func:`tail_sample` for these
        tuples) from an earlier call or a shared pass (pass the same Measurement to test
        several expectations in one pass).
    tuples : (K, n) flat site indices
    expected : array (K,)
        The expected connected correlators (e.g. :func:`~.cumulants.cosnet_connected_4pt`).

    Returns
    -------
    Dataset over ``tuple`` with ``value``, ``error``, ``expected``, ``pull``; attrs: Verdict
    fields, ``heavy_tail``, ``heavy_tail_message``, ``error_check_*``, ``null_distribution``.
    """
    from scipy import stats as st  # noqa: PLC0415

    from .accumulators import PointMoments, normalize_tuples  # noqa: PLC0415
    from .cumulants import cumulant_from_central  # noqa: PLC0415
    from .measure import Measurement, measure  # noqa: PLC0415

    keys = [tuple(sorted(k)) for k in normalize_tuples(tuples)]
    K = len(keys)
    expected = np.asarray(expected, dtype=float).ravel()
    if expected.shape != (K,):
        raise ValueError(f"expected must have one value per tuple ({K}), got {expected.shape}")
    if isinstance(source, Measurement):
        meas = source
    else:
        accs = {"moments": PointMoments(keys, max_order=max(6, max(len(k) for k in keys)))}
        if heavy_tail:
            accs["tail"] = TailSample(_tuple_products(keys), [str(k) for k in keys], k=1000)
        meas = measure(source, accs, blocks=blocks, executor=executor, **measure_kw)

    def cum(a):
        acc = a["moments"]
        cen = acc.moment_table("mean")
        mean = dict(zip((int(s) for s in acc.sites), acc.mean()))
        return np.array([cumulant_from_central(k, cen, mean) for k in keys])

    est = meas.estimate(cum, method="jackknife")
    # the plug-in cumulant has an O(1/n) bias comparable to the error at small n: remove the
    # jackknife estimate of it
    val = np.asarray(est.value, dtype=float) - np.asarray(est.attrs.get("bias", 0.0))
    R = np.asarray(est.attrs.get("replicates"))
    B = R.shape[0]
    if B < 3:
        raise ValueError(f"correlator_test needs at least 3 blocks, got {B}")
    Rc = R - R.mean(axis=0)
    C = (B - 1) / B * Rc.T @ Rc
    d = val - expected
    # a degenerate ensemble (e.g. a ReLU net with sigma_b = 0 on positive inputs is a rank-one
    # field) has a singular covariance: test on its range (eigenvalues above 1e-10 of the
    # largest), with dof = rank
    w_, V_ = np.linalg.eigh(C)
    keep = w_ > 1e-10 * max(float(w_.max()), 1e-300)
    Keff = int(keep.sum())
    if Keff < K:
        P = V_[:, keep]
        C = P.T @ C @ P
        d_, e_ = P.T @ d, P.T @ expected
    else:
        P, d_, e_ = None, d, expected
    if B - 1 - Keff + 1 > 0:
        chi2 = float(d_ @ np.linalg.solve(C, d_))
        nu = B - 1
        p = float(st.f.sf(chi2 * (nu - Keff + 1) / (Keff * nu), Keff, nu - Keff + 1))
        null = f"Hotelling T^2 from {B} jackknife blocks (F({Keff}, {nu - Keff + 1}))"
    else:
        C, rho = oas_shrinkage(C, B)
        chi2 = float(d_ @ np.linalg.solve(C, d_))
        p = float(st.chi2.sf(chi2, Keff))
        null = f"chi^2_{Keff}, jackknife covariance from {B} blocks OAS-shrunk (rho = {rho:.3g})"
    if P is not None:
        null += f" on the {Keff}-dimensional range of a singular covariance ({K} tuples)"
    scale = float(math.sqrt(abs(e_ @ np.linalg.solve(C, e_))))
    C = C if P is None else P @ C @ P.T
    se = np.sqrt(np.diag(C))
    K = Keff
    ws = []
    extra = {}
    if tail_key in getattr(meas, "total", {}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", HeavyTailWarning)
            ht = heavy_tail_check(meas.total[tail_key], [b[tail_key] for b in meas.blocks],
                                  what="n-point products")
        for w in caught:
            warnings.warn(w.message, HeavyTailWarning, stacklevel=2)
        extra["heavy_tail"] = ht.attrs["heavy_tail"]
        extra["heavy_tail_message"] = ht.attrs["message"]
        extra["tail_shape_max"] = float(np.nanmax(ht.tail_shape.values))
        extra["max_share_max"] = float(np.nanmax(ht.max_share.values))
        if ht.attrs["heavy_tail"]:
            ws.append(ht.attrs["message"])
        tot = meas.total[tail_key].result()
        bm = [b[tail_key].result()["mean"] for b in meas.blocks if b[tail_key].n_samples > 1]
        if len(bm) >= 3:
            chk = compare_error_estimates(
                {"per-sample": np.sqrt(tot["var"] / tot["n_samples"]),
                 "block means": np.std(np.stack(bm), axis=0, ddof=1) / math.sqrt(len(bm))},
                {"per-sample": np.sqrt(np.clip(tot["kurtosis"] - 1, 0, None)
                                       / (4 * tot["n_samples"])),
                 "block means": 1 / math.sqrt(2 * (len(bm) - 1))})
            for k in ("flag", "p_value", "message", "median_ratio"):
                extra[f"error_check_{k}"] = chk.attrs[k]
            if chk.attrs["flag"]:
                ws.append(chk.attrs["message"])
    n = int(meas.n_samples)
    v = verdict_from_chi2(chi2, K, n, alpha=alpha, power=power, p_value=p, effect_scale=scale,
                          tolerance=tolerance, warnings_=ws, errors_untrusted=bool(ws),
                          observed_effect=float(np.sum(d * expected / se ** 2)
                                                / np.sum(expected ** 2 / se ** 2)),
                          what=f"connected {len(keys[0])}-point function")
    pts = np.array([list(k) + [-1] * (max(map(len, keys)) - len(k)) for k in keys])
    ds = xr.Dataset({"value": ("tuple", val), "error": ("tuple", se),
                     "expected": ("tuple", expected),
                     "pull": ("tuple", d / se)},
                    coords={"points": (("tuple", "position"), pts)})
    ds.attrs.update(meas.attrs())
    attach_verdict(ds, v)
    ds.attrs.update(extra)
    ds.attrs.update(null_distribution=null, chi2_dof=chi2 / K,
                    quantity="joint cumulants at point tuples (connected correlators)")
    return ds


def series_error_crosscheck(values, n_chains: int = 1, *, blocks: int = 20,
                            alpha: float = 0.001) -> xr.Dataset:
    """Three error estimates of the mean of a per-sample series, checked against each other.

    * ``per-sample``: ``sd / sqrt(n)`` (right for independent samples only);
      relative uncertainty ``sqrt((kurtosis - 1)/(4 n))``;
    * ``jackknife``: delete-one-block jackknife over ``blocks`` contiguous time blocks (all chains
      together; right when blocks are much longer than tau_int); relative uncertainty
      ``1/sqrt(2 (B - 1))``;
    * ``gamma``: Wolff's Gamma method (pyerrors, chains as replicas); relative uncertainty its
      ``ddvalue/dvalue``.

    ``values`` is time-major (``s = t * n_chains + r``). Returns a Dataset with ``error``
    (dim ``method``) and ``tau_int``; attrs ``flag`` (jackknife and Gamma disagree beyond their
    uncertainty: one of them cannot be trusted), ``autocorrelated`` (the per-sample error is
    significantly below the Gamma one: the samples are not independent), ``message``.
    """
    from .gamma import make_obs  # noqa: PLC0415

    v = np.asarray(values, dtype=float).ravel()
    R = int(n_chains)
    if R < 1 or v.size % R:
        raise ValueError(f"n_chains must be a positive divisor of {v.size}, got {n_chains!r}")
    T = v.size // R
    if not isinstance(blocks, (int, np.integer)) or not 2 <= blocks <= T:
        raise ValueError(f"blocks must be an int in 2..{T}, got {blocks!r}")
    n = v.size
    x = v.reshape(T, R)
    sd = float(v.std(ddof=1))
    c = v - v.mean()
    kurt = float(np.mean(c ** 4) / np.mean(c ** 2) ** 2) if sd > 0 else 3.0
    e_ps = sd / math.sqrt(n)
    B = int(blocks)
    edges = [(b * T) // B for b in range(B + 1)]
    sums = np.array([x[edges[b]:edges[b + 1]].sum() for b in range(B)])
    cnts = np.array([(edges[b + 1] - edges[b]) * R for b in range(B)], dtype=float)
    loo = (sums.sum() - sums) / (n - cnts)
    e_jk = float(math.sqrt((B - 1) / B * np.sum((loo - loo.mean()) ** 2)))
    obs = make_obs(v, R)
    obs.gamma_method()
    e_g = float(obs.dvalue)
    dd = float(obs.ddvalue) / e_g if e_g > 0 else float("nan")
    tau = float(np.mean(list(obs.e_tauint.values()))) if obs.e_tauint else 0.5
    errs = {"per-sample": e_ps, "jackknife": e_jk, "gamma": e_g}
    u = {"per-sample": math.sqrt(max(kurt - 1, 0) / (4 * n)),
         "jackknife": 1 / math.sqrt(2 * (B - 1)), "gamma": dd}
    chk = compare_error_estimates({"gamma": [e_g], "jackknife": [e_jk]},
                                  {"gamma": u["gamma"], "jackknife": u["jackknife"]}, alpha=alpha)
    from scipy import stats as st  # noqa: PLC0415

    za = math.log(e_ps / e_g) / math.sqrt(u["per-sample"] ** 2 + u["gamma"] ** 2) \
        if e_ps > 0 and e_g > 0 else float("nan")
    auto = int(np.isfinite(za) and st.norm.cdf(za) < alpha)
    msg = (f"errors of the mean: per-sample {e_ps:.4g}, jackknife ({B} blocks) {e_jk:.4g}, "
           f"Gamma {e_g:.4g} (tau_int {tau:.3g}); " + chk.attrs["message"])
    if auto:
        msg += (f"; the per-sample error is too small by sqrt(2 tau_int) = "
                f"{math.sqrt(2 * tau):.3g}: the samples are autocorrelated")
    ds = xr.Dataset({"error": ("method", list(errs.values())),
                     "error_rel_uncertainty": ("method", [u[k] for k in errs])},
                    coords={"method": list(errs)})
    ds.attrs = {"flag": chk.attrs["flag"], "autocorrelated": auto, "tau_int": tau,
                "message": msg, "p_value": chk.attrs["p_value"], "n_samples": n,
                "n_chains": R, "n_blocks": B}
    return ds
