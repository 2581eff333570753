"""The measurements of `nnft run` and `nnft measure`, one module each, in one registry.

See :mod:`nnft.measurements.base` for the protocol. To add a measurement, copy
``two_point.py`` (the smallest), change the function and its ``register`` call, and add the
module's name to ``_MODULES`` below; nothing else needs editing: configs, ``--help``, the
option checks and docs/measurements.md follow from the registry.
"""
from __future__ import annotations

import importlib

import numpy as np

from .base import (REGISTRY, Context, Measurement, Option, OptionError, check_options,
                   finalize_shared, get, jsonable, names, pass_blocks, register,
                   registry_markdown, resolve_options, run_one, shared_plans, streamable)

_MODULES = ("two_point", "npoint", "cluster", "symmetry", "couplings", "rg", "reweight",
            "generating", "qft", "eft", "running")
for _m in _MODULES:
    importlib.import_module(f"{__name__}.{_m}")

from .couplings import continuum_kernel_fn, couplings  # noqa: E402
from .generating import generating  # noqa: E402
from .npoint import four_point, npoint, six_point  # noqa: E402
from .reweight import reweight  # noqa: E402
from .rg import rg  # noqa: E402
from .cluster import cluster  # noqa: E402
from .symmetry import symmetry  # noqa: E402
from .two_point import two_point  # noqa: E402

propagator = two_point
MEASURE = {name: m.run for name, m in REGISTRY.items()}

__all__ = ["REGISTRY", "Context", "Measurement", "Option", "OptionError", "check_options", "get",
           "jsonable", "names", "pass_blocks", "register", "registry_markdown", "resolve_options",
           "run_one", "shared_plans", "finalize_shared", "streamable", "width_scan_summary", "MEASURE",
           "two_point", "propagator", "four_point", "six_point", "npoint", "cluster", "symmetry",
           "couplings", "rg", "reweight", "generating", "continuum_kernel_fn"]


def width_scan_summary(widths, per_width: dict) -> dict:
    """1/N scaling fits of m_4, m_6 across the widths of one ensemble, and (key ``eft``, three
    widths or more) the eft measurement's couplings and 6-point residual against N."""
    from ..observables import scaling_fit

    out = {}
    for key, order in (("four_point", 4), ("six_point", 6)):
        rows = [per_width[w].get(key) for w in widths]
        if not rows or any(r is None or "m_n" not in r for r in rows):
            continue
        m = np.array([r["m_n"] for r in rows])
        e = np.array([r["m_n_error"] for r in rows])
        bg = np.array([r.get("background", np.nan) for r in rows])
        # fit only widths whose signal stands clear of the background (3 errors above it)
        use = m > np.nan_to_num(bg, nan=0.0) + 3 * e
        entry = {"widths": list(widths), "m_n": m.tolist(), "m_n_error": e.tolist(),
                 "background": bg.tolist(), "fitted_widths": [int(w) for w, u in zip(widths, use) if u]}
        if use.sum() >= 2:
            fit = scaling_fit(np.asarray(widths)[use], m[use], e[use])
            entry.update(slope=float(fit["slope"]), slope_error=float(fit["slope_error_scaled"]),
                         chi2=float(fit["chi2"]), dof=int(fit["dof"]))
        out[f"m_{order}"] = entry
    eft_rows = [per_width[w].get("eft") for w in widths]
    if len(set(widths)) >= 3 and all(isinstance(r, dict) and "g6_residual" in r
                                     for r in eft_rows):
        from .eft import eft_width_scan

        out["eft"] = eft_width_scan(widths, eft_rows)
    return out
