"""PNG plots of measured observables (matplotlib, Agg backend; no display needed).

Each function takes the Dataset returned by the corresponding observable function and a
path, draws value +- error (and the expected curve when given) and returns the path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_momentum_propagator", "plot_two_point", "plot_effective_mass",
           "plot_correlators"]


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    return path


def plot_momentum_propagator(ds, path, expected=None, title=None):
    """Gt(p) against phat^2 (log scale), with ``expected`` (array like ``ds.value``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    v = ds["value"].values
    e = ds["error"].values
    ph = np.broadcast_to(ds["phat2"].values, v.shape)
    ax.errorbar(ph.ravel(), v.ravel(), yerr=e.ravel(), fmt="o", ms=3, label="measured")
    if expected is not None:
        ex = np.broadcast_to(np.asarray(expected), v.shape).ravel()
        o = np.argsort(ph.ravel())
        ax.plot(ph.ravel()[o], ex[o], "-", color="k", lw=1, label="expected")
    ax.set_xlabel(r"$\hat p^2$")
    ax.set_ylabel(r"$\tilde G(p)$")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title or "momentum-space propagator")
    return _save(fig, path)


def plot_two_point(ds, path, expected=None, title=None):
    """G(r) along axis 0 (other displacements 0), with ``expected`` (array like ds.value)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    v, e = ds["value"].values, ds["error"].values
    lead = v.ndim - len([d for d in ds["value"].dims if d.startswith("x")])
    idx = (0,) * lead + (slice(None),) + (0,) * (v.ndim - lead - 1)
    r = np.arange(v[idx].shape[0])
    ax.errorbar(r, v[idx], yerr=e[idx], fmt="o", ms=3, label="measured")
    if expected is not None:
        ex = np.broadcast_to(np.asarray(expected), v.shape)
        ax.plot(r, ex[idx], "-", color="k", lw=1, label="expected")
    ax.set_xlabel("r (axis 0)")
    ax.set_ylabel("G(r)")
    ax.legend()
    ax.set_title(title or "two-point function")
    return _save(fig, path)


def plot_effective_mass(ds, path, exact=None, title=None):
    """m_eff(t) with errors; a horizontal line at ``exact``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(ds["t"].values, ds["value"].values, yerr=ds["error"].values, fmt="o", ms=4,
                label="measured")
    if exact is not None:
        ax.axhline(exact, color="k", lw=1, label=f"exact {exact:.4f}")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$m_\mathrm{eff}(t)$")
    ax.legend()
    ax.set_title(title or "arccosh effective mass")
    return _save(fig, path)


def plot_correlators(ds, path, formula=None, title=None):
    """Connected correlators per point tuple, with ``formula`` values when given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    i = np.arange(ds.sizes["tuple"])
    ax.errorbar(i, ds["value"].values, yerr=ds["error"].values, fmt="o", ms=4,
                label="measured")
    if formula is not None:
        ax.plot(i, np.asarray(formula), "x", color="k", ms=7, label="formula")
    labels = [",".join(str(p) for p in row if p >= 0) for row in ds["points"].values]
    ax.set_xticks(i)
    ax.set_xticklabels(labels, rotation=60, fontsize=7)
    ax.set_ylabel("connected correlator")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend()
    ax.set_title(title or "connected correlators")
    return _save(fig, path)
