"""The report of `nnft run`: markdown and HTML with tables and PNG plots."""
from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np


def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(v):
        return "-"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _pm(v, e):
    return f"{_fmt(v)} ± {_fmt(e, 2)}" if e is not None else _fmt(v)


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _savefig(fig, path: Path):
    """Lay out ``fig`` (tight) and save it under a temporary name, then rename it (a kill
    never leaves half a PNG).

    Tick labels of log / symlog axes are set to plain text first (``0.01``, ``10``): the
    default ``$10^{-2}$`` labels go through matplotlib's mathtext parser, which cost more than
    the rest of the report."""
    from matplotlib.ticker import LogFormatter

    class PlainLog(LogFormatter):  # the default's choice of ticks, labels like 0.01, 10, 1e-05
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() in ("log", "symlog"):
                if type(axis.get_major_formatter()).__name__.startswith("LogFormatter"):
                    axis.set_major_formatter(PlainLog())
                if type(axis.get_minor_formatter()).__name__.startswith("LogFormatter"):
                    axis.set_minor_formatter(PlainLog(labelOnlyBase=False))
    fig.tight_layout()  # after the labels are plain text
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    os.replace(tmp, path)


def _errorbar(ax, x, y, err, *, fmt="o", ms=2.5, color=None, capsize=1.5, elinewidth=1.0,
              label=None):
    """``ax.errorbar`` drawn as three Line2D (markers, bars joined by NaN breaks, caps as
    markers): the same picture, but one path per kind instead of one path per bar, which
    matters on log axes with thousands of points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    err = np.broadcast_to(np.asarray(err, float), y.shape)
    (pts,) = ax.plot(x, y, fmt, ms=ms, color=color, label=label)
    c = pts.get_color()
    nan = np.full_like(x, np.nan)
    ax.plot(np.stack([x, x, nan], 1).ravel(), np.stack([y - err, y + err, nan], 1).ravel(),
            "-", lw=elinewidth, color=c)
    if capsize:
        ax.plot(np.concatenate([x, x]), np.concatenate([y - err, y + err]), "_", ls="none",
                ms=2 * capsize, mew=elinewidth, color=c)
    return pts


def _separations(ens, pairs) -> np.ndarray:
    """Distance |x_i - x_j| of each site pair (minimal image on periodic lattices)."""
    lat = ens["lattice"]
    pairs = np.asarray(pairs)
    if lat.get("kind") == "lattice":
        shape = np.asarray(lat["shape"])
        a = np.stack(np.unravel_index(pairs[:, 0], tuple(shape)), -1)
        b = np.stack(np.unravel_index(pairs[:, 1], tuple(shape)), -1)
        d = np.abs(a - b)
        if lat.get("boundary", "periodic") == "periodic":
            d = np.minimum(d, shape - d)
        return float(lat.get("spacing", 1.0)) * np.sqrt((d ** 2).sum(-1))
    pts = np.asarray(lat.get("points", []), dtype=float)
    if pts.ndim == 1:
        pts = pts[:, None]
    if len(pts) == 0:
        return np.arange(len(pairs), dtype=float)
    return np.sqrt(((pts[pairs[:, 0]] - pts[pairs[:, 1]]) ** 2).sum(-1))


def _width_ticks(ax, widths):
    """Log x axis labelled at the widths only (no overlapping minor labels)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(widths)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plots(results, out: Path) -> dict:
    """Plots (lattice units, a = 1): the propagator against |p| or |r| with the exact curve at
    every width, m_n against N (log-log) with the fit and a 1/N line, the cluster profile at
    every width with the cos-net formula."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    for name, ens in results["ensembles"].items():
        widths = ens["widths"]
        pw = ens["per_width"]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
        props = [(w, pw[w].get("propagator") or pw[w].get("two_point") or {}) for w in widths]
        if any("data_momentum" in tp for _, tp in props):
            fig, ax = plt.subplots(figsize=(6, 4.2))
            for (w, tp), c in zip(props, colors):
                d = tp.get("data_momentum")
                if d is None:
                    continue
                x = np.asarray(d["phat2"], float)
                _errorbar(ax, x, d["value"], d["error"], ms=2.5, color=c, label=f"N = {w}")
            d = next(tp["data_momentum"] for _, tp in props if "data_momentum" in tp)
            order = np.argsort(np.asarray(d["phat2"], float))
            ax.plot(np.asarray(d["phat2"], float)[order], np.asarray(d["expected"])[order], "k-",
                    lw=1, label="exact 1/(phat^2 + m^2)")
            ax.set_xscale("symlog", linthresh=0.05)
            ax.set_yscale("log")
            ax.set_xlabel("lattice momentum squared phat^2 (lattice units, a = 1)")
            ax.set_ylabel("G(p) (lattice units)")
            ax.set_title(f"{name}: propagator on independent modes")
            ax.legend(fontsize=7, ncol=2, loc="upper right")  # "best" searches every point
            p = out / "plots" / f"{name}-propagator.png"
            _savefig(fig, p)
            plt.close(fig)
            made.setdefault(name, []).append(("Propagator against phat^2 at every width, with "
                                              "the exact lattice propagator", p))
        elif any("data" in tp for _, tp in props):
            fig, ax = plt.subplots(figsize=(6, 4.2))
            for i, ((w, tp), c) in enumerate(zip(props, colors)):
                d = tp.get("data")
                if d is None:
                    continue
                r = _separations(ens, d["pairs"]) * (1 + 0.01 * (i - len(widths) / 2))
                _errorbar(ax, r, d["measured"], d["error"], ms=2.5, color=c, label=f"N = {w}")
            d = next(tp["data"] for _, tp in props if "data" in tp)
            r = _separations(ens, d["pairs"])
            order = np.argsort(r)
            ax.plot(r[order], np.asarray(d["expected"])[order], "k.", ms=3,
                    label="GP kernel (exact)")
            ax.set_xlabel("separation |x - y| (input units)")
            ax.set_ylabel("G2(x, y)")
            ax.set_title(f"{name}: two-point function")
            ax.legend(fontsize=7, ncol=2, loc="upper right")
            p = out / "plots" / f"{name}-propagator.png"
            _savefig(fig, p)
            plt.close(fig)
            made.setdefault(name, []).append(("Two-point function against separation at every "
                                              "width, with the GP kernel", p))
        for key, sc in ens.get("scaling", {}).items():
            if "m_n" not in sc:  # the eft scan has its own plot (_eft_plot)
                continue
            fig, ax = plt.subplots(figsize=(5.5, 4))
            N = np.asarray(sc["widths"], float)
            ax.errorbar(N, sc["m_n"], sc["m_n_error"], fmt="o", capsize=2, label=f"{key} measured")
            bg = np.asarray(sc["background"], float)
            if np.any(np.isfinite(bg)):
                ax.plot(N, bg, "s--", ms=3, color="gray", label="noise background")
            if "slope" in sc:
                fw = np.asarray(sc["fitted_widths"], float)
                m = np.asarray(sc["m_n"])[np.isin(N, fw)]
                c = np.exp(np.mean(np.log(m) - sc["slope"] * np.log(fw)))
                ax.plot(N, c * N ** sc["slope"], "-",
                        label=f"fit: slope {sc['slope']:.3f} ± {sc['slope_error']:.3f}")
                ax.plot(N, m[0] * fw[0] / N, ":", color="k", label="1/N")
            _width_ticks(ax, sc["widths"])
            ax.set_yscale("log")
            ax.set_xlabel("width N")
            ax.set_ylabel(f"{key} (dimensionless)")
            ax.set_title(f"{name}: {key} against N")
            ax.legend(fontsize=8)
            p = out / "plots" / f"{name}-{key}.png"
            _savefig(fig, p)
            plt.close(fig)
            made.setdefault(name, []).append((f"{key} against width (log-log) with the 1/N line",
                                              p))
        sc = ens.get("scaling", {}).get("eft")
        if sc:
            p = _eft_plot(name, sc, out / "plots" / f"{name}-eft.png", plt)
            made.setdefault(name, []).append(("EFT couplings |lambda|, |kappa| and the G6c "
                                              "residual against width (log-log) with their "
                                              "fitted power laws", p))
        cls = [(w, pw[w].get("cluster")) for w in widths if (pw[w].get("cluster") or {}).get("data")]
        if cls:
            fig, ax = plt.subplots(figsize=(6, 4.2))
            for i, ((w, cl), c) in enumerate(zip(cls, colors)):
                d = cl["data"]
                R = np.asarray(d["R"], float) + 0.06 * (i - len(cls) / 2)
                _errorbar(ax, R, d["value"], d["error"], ms=3, color=c, label=f"N = {w}")
                if "expected" in d:
                    ax.plot(d["R"], d["expected"], "-", lw=1, color=c)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel("separation R of the two clusters (lattice units)")
            ax.set_ylabel("connected 4-point function")
            ax.set_title(f"{name}: cluster decomposition (lines: cos-net formula)")
            ax.legend(fontsize=7, ncol=2)
            p = out / "plots" / f"{name}-cluster.png"
            _savefig(fig, p)
            plt.close(fig)
            made.setdefault(name, []).append(("Cluster-decomposition profile at every width", p))
        made.setdefault(name, []).extend(_running_plots(name, ens, out, plt))
        made.setdefault(name, []).extend(_information_flow_plots(name, ens, out, plt))
    made = {k: v for k, v in made.items() if v}
    return made


def _running_plots(name, ens, out: Path, plt) -> list:
    """The `running` measurement: refitted lambda(Lambda) (kappa) with errors against the
    integrated one-loop beta function, log-log, one panel per coupling, every width."""
    made = []
    for w in ens["widths"]:
        ru = (ens["per_width"][w].get("running") or {}).get("data")
        if not ru:
            continue
        fig, axes = plt.subplots(1, len(ru), figsize=(5.2 * len(ru), 4), squeeze=False)
        for ax, (coup, d) in zip(axes[0], ru.items()):
            c = np.asarray(d["cutoff"], float)
            m, e = np.abs(np.asarray(d["measured"], float)), np.asarray(d["error"], float)
            ax.errorbar(c, m, e, fmt="o", ms=4, capsize=2, label="refitted at each cutoff")
            ax.plot(c, np.abs(np.asarray(d["integrated"], float)), "-", lw=1.2,
                    label="integrated one-loop beta function")
            ax.set_xscale("log")
            if np.all(m > 0):
                ax.set_yscale("log")
            ax.set_xlabel("cutoff Lambda (radius of the vertex ball, input units)")
            ax.set_ylabel(f"|{'lambda' if coup == 'lam' else coup}|")
            ax.legend(fontsize=8)
        fig.suptitle(f"{name}, N = {w}: Wilsonian running")
        fig.tight_layout()
        p = out / "plots" / f"{name}-running-N{w}.png"
        _savefig(fig, p)
        plt.close(fig)
        made.append((f"N = {w}: lambda (kappa) refitted at each cutoff against the integrated "
                     "one-loop beta function", p))
    return made


def _flow_xscale(ax, cut):
    """Log scale for positive information cutoffs; symlog when a cutoff is zero."""
    if np.all(cut > 0):
        ax.set_xscale("log")
    elif np.any(cut > 0):
        ax.set_xscale("symlog", linthresh=float(np.min(cut[cut > 0])))


def _information_flow_plots(name, ens, out: Path, plt) -> list:
    """The `rg` measurement in information mode: G2(0, r) at every information cutoff (with the
    momentum-shell propagator where the architecture has one) and G4c(0,0,0,0) against the
    cutoff."""
    made = []
    for w in ens["widths"]:
        rg = ens["per_width"][w].get("rg") or {}
        if rg.get("mode") != "information" or "G2" not in rg:
            continue
        cut = np.asarray(rg["cutoffs"], float)
        r = np.asarray(rg["separations"], float)
        G2, E2 = np.asarray(rg["G2"], float), np.asarray(rg["G2_error"], float)
        has_lam = "lam" in rg
        fig, axes = plt.subplots(1, 3 if has_lam else 2, figsize=(15 if has_lam else 10.5, 4))
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(cut)))
        for i, c in enumerate(cut):
            axes[0].errorbar(r + 0.03 * (i - len(cut) / 2), G2[i], E2[i], fmt="o", ms=3,
                             capsize=1.5, color=colors[i], label=f"I_c = {c:.3g}")
            if "G2_expected" in rg:
                axes[0].plot(r, np.asarray(rg["G2_expected"], float)[i], "-", lw=1,
                             color=colors[i])
            if "G2_momentum_shell" in rg:
                axes[0].plot(r, np.asarray(rg["G2_momentum_shell"], float)[i], ":", lw=1.2,
                             color=colors[i])
        axes[0].set_xlabel("separation r along axis 0 (lattice units)")
        axes[0].set_ylabel("G2(0, r)")
        axes[0].set_title("propagator" + (" (solid: continuum momentum-shell flow)"
                                          if "G2_expected" in rg else "")
                          + ("; dotted: lattice momentum shell, same kept fraction"
                             if "G2_momentum_shell" in rg else ""), fontsize=8)
        axes[0].legend(fontsize=7)
        if has_lam:
            axes[2].errorbar(cut, rg["lam"], rg["lam_error"], fmt="o-", ms=4, capsize=2)
            axes[2].axhline(0, color="k", lw=0.5)
            _flow_xscale(axes[2], cut)
            axes[2].set_xlabel("information cutoff I_c")
            axes[2].set_ylabel("lambda (lattice vertex)")
            axes[2].set_title("fitted quartic coupling")
        G4, E4 = np.asarray(rg["G4c"], float), np.asarray(rg["G4c_error"], float)
        axes[1].errorbar(cut, G4[:, 0], E4[:, 0], fmt="o-", ms=4, capsize=2)
        _flow_xscale(axes[1], cut)
        axes[1].set_xlabel("information cutoff I_c")
        axes[1].set_ylabel("G4c(0, 0, 0, 0)")
        axes[1].set_title("connected 4-point function")
        fig.suptitle(f"{name}, N = {w}: information-shell flow ({rg.get('direction', '')}, "
                     f"{rg.get('shell', '')})")
        fig.tight_layout()
        p = out / "plots" / f"{name}-information-flow-N{w}.png"
        _savefig(fig, p)
        plt.close(fig)
        made.append((f"N = {w}: information-shell flow of the propagator and of the connected "
                     "4-point function", p))
    return made


def _running_table(res) -> list:
    """Markdown table of the `running` measurement (one row per cutoff)."""
    if not res or "cutoffs" not in res:
        return []
    has_k = "kappa" in res
    head = ["Lambda", "lambda refitted", "lambda from beta", "z", "beta_lambda/lambda"]
    if has_k:
        head += ["kappa refitted", "kappa from beta", "z", "beta_kappa/kappa"]
    rows = []
    for i, c in enumerate(res["cutoffs"]):
        row = [_fmt(c, 3), _pm(res["lam"][i], res["lam_error"][i]),
               _pm(res["lam_beta"][i], res["lam_beta_error"][i]), _fmt(res["lam_z"][i], 3),
               _fmt(res["beta_lam_over_lam"][i], 4)]
        if has_k:
            row += [_pm(res["kappa"][i], res["kappa_error"][i]),
                    _pm(res["kappa_beta"][i], res["kappa_beta_error"][i]),
                    _fmt(res["kappa_z"][i], 3), _fmt(res["beta_kappa_over_kappa"][i], 4)]
        rows.append(row)
    return [_table(head, rows), "",
            f"Running: {res['runs']}; refitted vs integrated (reference Lambda = "
            f"{_fmt(res['reference'], 3)}): {res['verdict']} (p = {_fmt(res['p_value'], 3)}, "
            f"largest relative discrepancy {_fmt(res['max_rel_discrepancy'], 3)}).", ""]


_FORMULAS = {
    "LatticeCosNet": "phi(x) = sum_i a_i cos(p_i . x + c_i), momenta p_i drawn with weight "
                     "1/(phat^2 + m^2) (exact lattice propagator at every width)",
    "ErfNet": "f(x) = b1 + sum_i W1_i erf(W0_i . x + b0_i)",
    "ReLUNet": "f(x) = b1 + sum_i W1_i max(0, W0_i . x + b0_i)",
    "TanhNet": "f(x) = b1 + sum_i W1_i tanh(W0_i . x + b0_i)",
    "GaussNet": "f(x) = b1 + sum_i W1_i exp(W0_i . x + b0_i) / normalisation (Gaussian kernel)",
    "DeepMLP": "deep fully connected network, W^l ~ N(0, sigma_w^2 / n_(l-1))",
}
_SYMBOLS = {"m2": "m^2", "sigma_w": "sigma_w", "sigma_b": "sigma_b", "d_in": "d_in"}


def _spec_text(arch: str, params: dict) -> str:
    """An architecture in physics notation (conventions: docs/conventions.md)."""
    ps = ", ".join(f"{_SYMBOLS.get(k, k)} = {v}" for k, v in params.items()) or "defaults"
    return f"{arch} ({ps}): {_FORMULAS.get(arch, 'see nnft.ensembles.' + arch)}"


def _geometry_text(lat: dict) -> str:
    if lat.get("kind") == "lattice":
        return (f"{' x '.join(str(n) for n in lat['shape'])} {lat.get('boundary', 'periodic')} "
                f"lattice, spacing {lat.get('spacing', 1.0)}")
    n = len(lat.get("points", [])) or lat.get("n_points", "")
    return f"point set of {n} points".replace("of  points", "")


def _holm(pvals):
    """Holm-adjusted p-values (family-wise error control over all tests of a run)."""
    order = sorted(range(len(pvals)), key=lambda i: pvals[i])
    m, out, run = len(pvals), [1.0] * len(pvals), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * pvals[i]))
        out[i] = run
    return out


def _study_verdict_rows(results) -> list:
    """Tested claims of the config-level studies: each study's result may hold
    ``verdict_rows`` (dicts with ensemble, N, check, expected, p_value, verdict, note)."""
    from .studies import STUDIES

    rows = []
    for table in STUDIES:
        res = results.get(table)
        if not isinstance(res, dict):
            continue
        for r in res.get("verdict_rows") or []:
            p = r.get("p_value")
            rows.append({"ensemble": r.get("ensemble", f"[{table}]"), "N": r.get("N", "-"),
                         "check": r["check"], "expected": r.get("expected", "-"),
                         "p_value": float(p) if isinstance(p, (int, float)) else None,
                         "verdict": r["verdict"], "note": r.get("note", "")})
    return rows


def verdict_table(results, alpha: float = 0.05) -> list:
    """Every tested claim of a run, with its verdict corrected for multiple comparisons.

    Each test is calibrated at level ``alpha`` on its own; a run makes many, so a test's
    "inconsistent" stands only when its Holm-adjusted p-value over all tests of the run is
    below ``alpha`` (otherwise the row says "consistent", noting the correction). The family
    holds the measurements' tests and the ``verdict_rows`` of the config-level studies
    (e.g. ``[param_mcmc]``: extrapolation against field HMC). Returns dicts with ensemble, N,
    check, expected, p_value, p_family, verdict, note.
    """
    rows = []
    for name, ens in results["ensembles"].items():
        for w in ens["widths"]:
            r = ens["per_width"][w]
            for what, res in r.items():
                if not isinstance(res, dict):
                    continue
                if res.get("test_outcome") is not None:
                    note = ""
                    need = res.get("test_samples_needed")
                    if isinstance(need, (int, float)) and math.isfinite(need):
                        note = f"samples needed to decide: {_fmt(need)}"
                    if res.get("test_heavy_tail"):
                        note = "heavy tails: error bars not trusted"
                    p = res.get("test_p_value")
                    rows.append({"ensemble": name, "N": w,
                                 "check": f"{what}: {res.get('test', res.get('quantity', ''))}",
                                 "expected": res.get("expected_method",
                                                     "exact lattice propagator"
                                                     if what in ("propagator", "two_point")
                                                     else "-"),
                                 "p_value": None if p is None else float(p),
                                 "verdict": res["test_outcome"], "note": note})
                for k, v in res.items():
                    if k.endswith(": verdict") and isinstance(v, str):
                        check = k[: -len(": verdict")]
                        p = res.get(f"{check}: p_value")
                        rows.append({"ensemble": name, "N": w, "check": f"{what}: {check}",
                                     "expected": "-", "p_value": p, "verdict": v, "note": ""})
                if what == "cluster" and res.get("verdict"):
                    rows.append({"ensemble": name, "N": w,
                                 "check": "cluster: connected 4-point plateau",
                                 "expected": "cos-net formula"
                                 if res.get("plateau_expected") is not None else "-",
                                 "p_value": None, "verdict": res["verdict"], "note": ""})
    rows += _study_verdict_rows(results)
    tested = [i for i, r in enumerate(rows) if isinstance(r["p_value"], float)
              and math.isfinite(r["p_value"])
              and r["verdict"] in ("consistent", "inconsistent", "inconclusive")]
    adj = _holm([rows[i]["p_value"] for i in tested])
    for i, pa in zip(tested, adj):
        rows[i]["p_family"] = pa
        if rows[i]["verdict"] == "inconsistent" and pa >= alpha:
            rows[i]["verdict"] = "consistent"
            rows[i]["note"] = (f"p = {_fmt(rows[i]['p_value'], 3)} alone; not significant "
                               f"after Holm over {len(tested)} tests")
    return rows


def render_markdown(results, plots: dict, out: Path) -> str:
    lines = [f"# {results['title']}", ""]
    if results.get("paper"):
        lines += [f"Reproduces: {results['paper']}", ""]
    if results.get("description"):
        lines += [results["description"], ""]
    if results.get("claims"):
        lines += ["## What the paper claims", ""] + [f"- {c}" for c in results["claims"]] + [""]
    rows = results.get("verdicts") or []
    if rows:
        lines += ["## Verdicts", "",
                  "Each tested claim with its p-value and verdict: *consistent* (the data agree "
                  "with the expectation at the stated power), *inconsistent* (they do not, at "
                  "level 0.05 after Holm's correction within a test), *inconclusive* (the data "
                  "cannot decide, or their error bars cannot be trusted). \"p (run)\" is the "
                  "p-value after Holm's correction over every test of the run: a verdict "
                  "*inconsistent* needs it below 0.05. Symmetry checks say *symmetric* / "
                  "*broken*. Definitions: docs/statistics.md and docs/conventions.md of nnft.",
                  "",
                  _table(["ensemble", "N", "check", "expected from", "p-value", "p (run)",
                          "verdict", "note"],
                         [[r["ensemble"], r["N"], r["check"], r["expected"],
                           _fmt(r["p_value"], 3), _fmt(r.get("p_family"), 3), r["verdict"],
                           r["note"]] for r in rows]), ""]
    lines += _eft_overview(results)
    lines += ["## What nnft measured", "",
              "m_n: mean over point tuples of |G_n - G_n^GP| / |G_n^GP| (full n-point function "
              "against the Gaussian process); its background: the same measure between "
              "independent sub-ensembles (what noise alone gives). G2 chi2/dof and max |z| "
              "are descriptive (correlated entries), not tests.", ""]
    for name, ens in results["ensembles"].items():
        lines += [f"### {name}", "", f"- network: {_spec_text(ens['arch'], ens['params'])}",
                  f"- geometry: {_geometry_text(ens['lattice'])}; {ens['samples']} networks per "
                  f"width; widths N = {', '.join(str(w) for w in ens['widths'])}", ""]
        rows = []
        for w in ens["widths"]:
            r = ens["per_width"][w]
            tp = r.get("propagator") or r.get("two_point") or {}
            fp = r.get("four_point") or {}
            sp = r.get("six_point") or {}
            rows.append([w, _fmt(r["generate_s"], 3), _fmt(tp.get("chi2_dof")), _fmt(tp.get("max_abs_z")),
                         _pm(fp.get("m_n"), fp.get("m_n_error")), _fmt(fp.get("background")),
                         _fmt(fp.get("formula_chi2_dof")), _pm(sp.get("m_n"), sp.get("m_n_error")),
                         _fmt(sp.get("background"))])
        lines += [_table(["N", "generate [s]", "G2 chi2/dof", "G2 max abs z", "m_4", "m_4 background",
                          "G4c vs formula chi2/dof", "m_6", "m_6 background"], rows), ""]
        for key, sc in ens.get("scaling", {}).items():
            if "m_n" not in sc:  # the eft scan: _eft_lines
                continue
            if "slope" in sc:
                lines.append(f"- {key} scaling: slope {sc['slope']:.3f} ± {sc['slope_error']:.3f} "
                             f"(fitted widths {sc['fitted_widths']}, chi2/dof "
                             f"{_fmt(sc['chi2'] / sc['dof']) if sc['dof'] > 0 else 'n/a (2 points)'}); expected -1 for m_4, m_6.")
            else:
                lines.append(f"- {key}: fewer than two widths stand clear of the background; no fit.")
        lines += _eft_lines(ens)
        for w in ens["widths"]:
            r = ens["per_width"][w]
            cl = r.get("cluster")
            if cl:
                txt = (f"- cluster decomposition at N={w}: {cl.get('verdict')}; plateau "
                       f"{_pm(cl.get('plateau'), cl.get('plateau_error'))}")
                if cl.get("plateau_expected") is not None:
                    txt += f" (formula {_fmt(cl['plateau_expected'])}, z = {_fmt(cl.get('plateau_expected_z'), 3)})"
                lines.append(txt)
            sy = r.get("symmetry")
            if sy:
                parts = [f"{k.split(':')[0]} {sy[k]} (max |z| {_fmt(sy.get(k.split(':')[0] + ': max |z|'), 3)})"
                         for k in sy if k.endswith("verdict")]
                lines.append(f"- symmetry at N={w}: " + "; ".join(parts))
            for what, res in r.items():
                if isinstance(res, dict) and res.get("summary"):
                    items = [f"{label} {_pm(v, e) if e is not None else _fmt(v)}"
                             for label, v, e in res["summary"]]
                    lines.append(f"- {what} at N={w}: " + "; ".join(items))
            if r.get("running"):
                lines += ["", f"Wilsonian running at N={w}:", ""] + _running_table(r["running"])
        lines.append("")
        for caption, p in plots.get(name, []):
            lines += [f"![{caption}]({os.path.relpath(p, out)})", ""]
    from .studies import STUDIES

    for table, study in STUDIES.items():
        res = results.get(table)
        if res:
            lines += (_mcmc_section(res, out) if table == "mcmc"
                      else _study_section(table, study, res, out))
    lines += ["## Provenance and timings", "",
              f"- backend: {results['backend']}; total wall time {results['timings']['total_s']:.1f} s",
              "- resolved config: config.toml; every number: results.json; ensembles: stores/", ""]
    return "\n".join(lines)


_EFT_LAWS = (("lam", "|lambda|", "o"), ("kappa", "|kappa| (from G6c)", "s"),
             ("g6_residual", "|G6c residual|", "^"))


def _eft_plot(name, sc, path: Path, plt) -> Path:
    """|lambda|, |kappa| and |G6c - lambda^2 trees| (along the contact) against N, log-log,
    with the fitted power laws C N^s (dashed where the fit exists)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    N = np.asarray(sc["widths"], float)
    for key, label, mk in _EFT_LAWS:
        v, e = np.abs(np.asarray(sc[key], float)), np.asarray(sc[f"{key}_error"], float)
        fit = sc.get(f"{key}_scaling")
        lab = label if not fit else (f"{label}: slope {fit['slope']:.2f} ± "
                                     f"{fit['slope_error']:.2f}")
        h = ax.errorbar(N, v, e, fmt=mk, ms=4, capsize=2, label=lab)
        if fit:
            ax.plot(N, np.abs(fit["amplitude"]) * N ** fit["slope"], "--", lw=1,
                    color=h[0].get_color())
    _width_ticks(ax, sc["widths"])
    ax.set_yscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel("coupling or residual (input units)")
    ax.set_title(f"{name}: EFT couplings and 6-point residual against N")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return path


def _eft_rows(ens):
    return [(w, ens["per_width"][w].get("eft")) for w in ens["widths"]
            if isinstance(ens["per_width"][w].get("eft"), dict)]


def _eft_overview(results) -> list:
    """One line per ensemble with an eft measurement: the relevant couplings."""
    rows = []
    for name, ens in results["ensembles"].items():
        ef = _eft_rows(ens)
        if not ef:
            continue
        g4 = sorted({str(r.get("chosen")) for _, r in ef})
        g6 = sorted({str(r.get("g6_model")) for _, r in ef if r.get("g6_model")})
        sc = (ens.get("scaling") or {}).get("eft") or {}
        law = sc.get("g6_residual_scaling")
        rows.append([name, ens["arch"], ", ".join(str(w) for w, _ in ef), " / ".join(g4),
                     " / ".join(g6) or "-",
                     f"{law['slope']:.2f} ± {law['slope_error']:.2f} ({sc.get('verdict')})"
                     if law else "-"])
    if not rows:
        return []
    return ["## Relevant couplings by architecture", "",
            "Minimal local effective action Delta S = int [lambda f^4 + kappa f^6] (no "
            "factorials) chosen by the information criterion at each width: for G4c (the "
            "truncations free, lambda, kappa, lambda+kappa) and for G6c (the lambda^2 trees "
            "alone, or with a kappa contact resolved three errors from zero). Last column: the "
            "log-log slope in N of the G6c residual after the lambda^2 trees (expected -2).",
            "", _table(["ensemble", "architecture", "widths N", "G4c needs", "G6c needs",
                        "G6c residual slope (verdict)"], rows), ""]


def _eft_lines(ens) -> list:
    """The eft measurement at every width (a table) and its width scan."""
    ef = _eft_rows(ens)
    if not ef:
        return []
    crit = str(ef[0][1].get("criterion", "bic")).upper()
    body = [[w, r.get("chosen"), _pm(r.get("lam"), r.get("lam_error")),
             _fmt(r.get("lam_exact")), _pm(r.get("kappa"), r.get("kappa_error")),
             r.get("g6_model", "-"), _pm(r.get("g6_residual"), r.get("g6_residual_error")),
             _fmt(r.get("g6_residual_exact")), r.get("verdict", "-")
             + (" (heavy tails)" if r.get("g6_heavy_tail") else "")] for w, r in ef]
    lines = ["", f"EFT (measurement eft; minimal action by {crit}; residual: G6c minus the "
             "lambda^2 trees of the lambda-only fit, signed rms along the local 6-point "
             "contact; 'exact': the parameter-space theory at the same width):", "",
             _table(["N", "G4c needs", "lambda", "lambda exact", "kappa (G6c)", "G6c needs",
                     "G6c residual", "residual exact", "G6c prediction"], body), ""]
    sc = (ens.get("scaling") or {}).get("eft")
    if sc:
        for key, label, _ in _EFT_LAWS:
            f = sc.get(f"{key}_scaling")
            if f:
                lines.append(f"- {label} against N: slope {f['slope']:.3f} ± "
                             f"{f['slope_error']:.3f} (expected {f['expected']:g}; "
                             f"p = {_fmt(f['p_value'], 3)} for N^{f['expected']:g}, "
                             f"p = {_fmt(f.get('alternative_p_value'), 3)} for "
                             f"N^{f.get('alternative', float('nan')):g}: {f['verdict']})")
        if "exact_slope_g6_residual" in sc:
            lines.append(f"- exact theory: slope of the G6c residual "
                         f"{sc['exact_slope_g6_residual']:.3f}")
        lines.append(f"- G6c residual falls as 1/N^2: {sc['verdict']}"
                     + (f" ({sc['note']})" if sc.get("note") else ""))
        lines.append(f"- relevant couplings: {sc['relevant_text']}")
    lines.append("")
    return lines


def _mcmc_section(cmp_, out: Path) -> list:
    """The ``[mcmc]`` comparison (network ensembles against Markov chains)."""
    lines = ["## Network ensembles against Markov chains", ""]
    if cmp_.get("rows"):
        keys = [k for k in cmp_["rows"][0] if not isinstance(cmp_["rows"][0][k], dict)]
        lines += [_table(keys, [[_fmt(row.get(k)) for k in keys] for row in cmp_["rows"]]), ""]
    for label, v, e in cmp_.get("summary", []):
        lines.append(f"- {label}: {_pm(v, e) if e is not None else _fmt(v)}")
    if cmp_.get("plot"):
        lines += ["", f"![Cost per independent sample against L]({os.path.relpath(cmp_['plot'], out)})"]
    lines.append("")
    return lines


def _study_section(table, study, res, out: Path) -> list:
    """Any other config-level study: its ``rows`` as one table (a key with a sibling
    ``<key>_error`` shows as value ± error; dict and list entries are left to results.json),
    its ``summary`` rows and its ``plot``. A ``columns`` list in ``res`` selects the row keys
    shown (default: all)."""
    lines = [f"## Study [{table}]", "", f"{study.summary[:1].upper()}{study.summary[1:]}.", ""]
    rows = res.get("rows") or []
    keys = []
    for row in rows:
        for k, v in row.items():
            if k not in keys and not isinstance(v, (dict, list, tuple)):
                keys.append(k)
    if res.get("columns"):
        keys = [k for k in res["columns"] if k in keys] + [
            f"{k}_error" for k in res["columns"] if f"{k}_error" in keys]
    shown = [k for k in keys if not (k.endswith("_error") and k[:-6] in keys)]
    if rows:
        body = [[_pm(row[k], row.get(f"{k}_error")) if f"{k}_error" in keys and k in row
                 else _fmt(row.get(k)) for k in shown] for row in rows]
        lines += [_table(shown, body), ""]
    for label, v, e in res.get("summary", []):
        lines.append(f"- {label}: {_pm(v, e) if e is not None else _fmt(v)}")
    if res.get("plot"):
        lines += ["", f"![{table}]({os.path.relpath(res['plot'], out)})"]
    lines.append("")
    return lines


def markdown_to_html(md: str, title: str) -> str:
    """The report's markdown as a standalone HTML page (Python-Markdown with tables)."""
    import markdown

    body = markdown.markdown(md, extensions=["tables"], output_format="html")
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             "table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_report(results: dict, out) -> Path:
    """Write report.md, report.html and the plots into ``out``; return the markdown path."""
    out = Path(out)
    (out / "plots").mkdir(exist_ok=True)
    plots = _plots(results, out)
    md = render_markdown(results, plots, out)
    for name, text in (("report.md", md), ("report.html", markdown_to_html(md, results["title"]))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return out / "report.md"
