"""``nnft measure STORE``: one pass over a FieldStore, results as a Dataset and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .lattice import UserError

WHAT = ("scalars", "propagator", "two_point", "effective_mass", "xi", "correlators")
DEFAULT_WHAT = "scalars,propagator,two_point,effective_mass,xi"


def _registry_what():
    """Registered measurements `nnft measure` runs on a store (those not named like the
    store-level ones above, whose names keep their `nnft measure` meaning)."""
    from . import measurements as registry

    return [n for n in registry.names() if n not in WHAT]


def add_parser(sub):
    p = sub.add_parser(
        "measure", help="measure observables of a field store (one pass) with errors",
        description="Read a FieldStore once and write observables with jackknife errors as a "
                    "Dataset (.nc: NetCDF, otherwise Zarr) plus PNG plots.")
    p.add_argument("store", help="path of the FieldStore")
    p.add_argument("--what", default=DEFAULT_WHAT,
                   help=f"comma-separated subset of {','.join(WHAT + tuple(_registry_what()))} "
                        f"(default {DEFAULT_WHAT}; see docs/measurements.md)")
    p.add_argument("--out", default=None,
                   help="output file: *.nc for NetCDF, anything else for Zarr "
                        "(default STORE.measure.zarr next to the store); a new path or an "
                        "earlier nnft measure output, never the store itself")
    p.add_argument("--plots", default=None,
                   help="directory for PNG plots (default: OUT without extension + '_plots')")
    p.add_argument("--no-plots", action="store_true", help="do not write plots")
    p.add_argument("--points", default=None,
                   help="point tuples for 'correlators': flat site indices, tuples separated by "
                        "';', points by ',' (e.g. '0,0,0,0;0,1,2,3'); default: a few 4-point tuples")
    p.add_argument("--m2", type=float, default=None,
                   help="compare with the exact free propagator of this m^2 (default: the "
                        "store spec's m2 when it has one)")
    p.add_argument("--blocks", type=int, default=20, help="jackknife blocks (default 20)")
    p.add_argument("--error", default="jackknife", help="error method (jackknife, gamma, ...)")
    p.add_argument("--executor", default="serial", choices=["serial", "dask"])
    p.add_argument("--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=main)
    return p


def _parse_points(text):
    try:
        tuples = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part.strip()]
    except ValueError:
        raise UserError(f"--points must look like '0,0,0,0;0,1,2,3', got {text!r}") from None
    if not tuples:
        raise UserError("--points is empty")
    return tuples


def _default_points(lattice):
    V = lattice.volume
    if getattr(lattice, "kind", "") == "lattice" and len(lattice.shape) >= 1:
        s1 = int(np.prod(lattice.shape[1:]))  # one step along axis 0
        cand = [(0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 2, 3), (0, 0, s1, s1), (0, 1, s1, s1 + 1)]
    else:
        cand = [(0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 2, 3)]
    return [t for t in cand if max(t) < V]


def _collect(ds, name, out):
    """Rename value/error to name/name_error (other variables prefixed) into ``out``."""
    ren = {}
    for v in ds.data_vars:
        if v == "value":
            ren[v] = name
        elif v == "error":
            ren[v] = f"{name}_error"
        else:
            ren[v] = f"{name}_{v}"
    d = ds.rename(ren)
    for c in list(d.coords):
        if c not in d.dims:
            d = d.rename({c: f"{name}_{c}"}) if c not in out.get("_coords", set()) else d
    attrs = {f"{name}:{k}": (v if isinstance(v, (int, float, str)) else str(v))
             for k, v in ds.attrs.items()}
    d.attrs = {}
    out.setdefault("datasets", []).append(d)
    out.setdefault("attrs", {}).update(attrs)


def _run_registered(names, store, out: Path, args):
    """Registered measurements (the same code as `nnft run`) on a store: each Dataset is
    written next to the output as OUT_<name>_<part>.zarr."""
    from . import measurements as registry
    from .ensembles import spec_from_dict
    from .outputs import write_dataset

    try:
        spec = spec_from_dict(dict(store.spec)) if store.spec else None
    except (ValueError, TypeError, KeyError):
        spec = None  # a store without a network spec (exact sampler, Markov chain)
    options = {"n_blocks": args.blocks}
    for name in names:
        m = registry.get(name)
        if ("spec" in m.requires or "kernel" in m.requires) and spec is None:
            raise UserError(f"--what {name}: needs a network ensemble; the store's source is "
                            f"{store.source!r}")
        ctx = registry.Context(Path(str(store.path)).stem, spec, store.lattice, store,
                               getattr(spec, "width", None),
                               {k: v for k, v in options.items() if m.option(k)}, seed=0)
        res = registry.run_one(name, ctx)
        parts = dict(res.get("datasets") or {})
        if res.get("dataset") is not None:
            parts[""] = res["dataset"]
        for part, ds in parts.items():
            tag = f"{name}_{part}".rstrip("_").replace("(", "").replace(")", "").replace(" ", "_")
            write_dataset(_clean(ds), out.with_name(f"{out.stem}_{tag}.zarr"),
                          made_by="nnft measure")
        if not args.quiet:
            print(f"{name}:")
            for row in res.get("summary", []):
                print("  " + "  ".join(str(c) for c in row))


def _clean(ds):
    """A copy of ``ds`` whose attrs Zarr can store (numbers, strings; the rest as JSON)."""
    import math

    d = ds.copy()
    attrs = {}
    for k, v in ds.attrs.items():
        if isinstance(v, (bool, np.bool_, np.integer)):
            attrs[k] = int(v)
        elif isinstance(v, (np.floating, float)):
            attrs[k] = float(v) if math.isfinite(float(v)) else str(float(v))
        elif isinstance(v, (int, str)):
            attrs[k] = v
        else:
            attrs[k] = json.dumps(v, default=str)
    d.attrs = attrs
    return d


def main(args) -> int:
    import xarray as xr

    from nnft.lattice import FieldStore, effective_mass_exact, free_propagator, \
        free_propagator_momentum
    from nnft.observables import (connected_correlator, correlation_length, effective_mass,
                                  measure, momentum_propagator, propagator_check,
                                  scalar_observables, two_point)
    from nnft.observables.accumulators import PointMoments
    from nnft.observables.cumulants import cosnet_connected_4pt
    from nnft.observables import plots
    from nnft.observables.propagator import standard_accumulators

    from nnft.observables import error_methods
    from .outputs import check_output_path, plots_dir, write_dataset

    allowed = WHAT + tuple(_registry_what())
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    bad = [w for w in what if w not in allowed]
    if bad or not what:
        raise UserError(f"--what: unknown {bad or what}; allowed: {', '.join(allowed)}")
    ext = [w for w in what if w not in WHAT]
    what = [w for w in what if w in WHAT]
    if args.blocks < 2:
        raise UserError(f"--blocks must be >= 2, got {args.blocks}")
    if args.error not in error_methods():
        raise UserError(f"--error: unknown method {args.error!r}; known: {list(error_methods())}")
    store = FieldStore.open(args.store)
    out = Path(args.out) if args.out else Path(str(store.path).rstrip("/") + ".measure.zarr")
    check_output_path(out, protect=[store.path])
    lat = store.lattice
    periodic = getattr(lat, "kind", "") == "lattice" and lat.boundary == "periodic"
    needs_fft = [w for w in what if w in ("propagator", "two_point", "effective_mass", "xi")]
    if needs_fft and not periodic:
        raise UserError(f"--what {','.join(needs_fft)} needs a periodic lattice; this store "
                         f"has {lat!r}")
    spec = store.spec or {}
    m2 = args.m2 if args.m2 is not None else spec.get("m2")
    free_like = spec.get("arch") in ("ExactFreeField", "LatticeCosNet") or args.m2 is not None

    pdir = Path(args.plots) if args.plots else out.with_name(out.stem + "_plots")
    if not args.no_plots and what:
        plots_dir(pdir, protect=[store.path])
    if ext:
        _run_registered(ext, store, out, args)
        if not what:
            return 0

    # --what scalars / correlators: no FFT of every sample; with the FFT, the scalars take
    # their per-sample values from it (one FFT and a small matrix product per sample)
    accs = standard_accumulators(lat, fourier=bool(needs_fft))
    points = None
    if "correlators" in what:
        points = _parse_points(args.points) if args.points else _default_points(lat)
        if max(max(t) for t in points) >= int(np.prod(store.field_shape)):
            raise UserError("--points: a site index exceeds the number of field entries")
        accs["moments"] = PointMoments(points)
    meas = measure(store, accs, blocks=args.blocks, executor=args.executor,
                   progress=not args.quiet)
    kw = {"error": args.error}
    col: dict = {}
    figs = []
    do_plots = not args.no_plots
    summary = []

    if "scalars" in what:
        s = scalar_observables(meas, **kw)
        _collect(s, "scalars", col)
        for o in s.observable.values:
            summary.append((str(o), float(s.value.sel(observable=o)),
                            float(s.error.sel(observable=o))))
    if "propagator" in what:
        mp = momentum_propagator(meas, **kw)
        _collect(mp, "Gt", col)
        expected = None
        if free_like and m2:
            expected = free_propagator_momentum(lat, m2)
            chk = propagator_check(mp, expected)
            col["attrs"].update({"Gt:chi2": float(chk.chi2), "Gt:dof": int(chk.dof),
                                 "Gt:chi2_dof": float(chk.chi2_dof),
                                 "Gt:p_value": float(chk.p_value), "Gt:expected_m2": float(m2)})
            summary.append(("Gt chi2/dof", float(chk.chi2_dof), float(np.sqrt(2 / int(chk.dof)))))
        if do_plots:
            figs.append(plots.plot_momentum_propagator(mp, pdir / "momentum_propagator.png",
                                                       expected))
    if "two_point" in what:
        tp = two_point(meas, **kw)
        _collect(tp, "G", col)
        if do_plots:
            figs.append(plots.plot_two_point(tp, pdir / "two_point.png",
                                             free_propagator(lat, m2) if free_like and m2
                                             else None))
    if "effective_mass" in what:
        em = effective_mass(meas, **kw)
        _collect(em.rename({"C": "C", "C_error": "C_err"}), "m_eff", col)
        exact = effective_mass_exact(m2) if free_like and m2 else None
        t = lat.shape[0] // 4 or 1
        summary.append((f"m_eff(t={t})", float(em.value.sel(t=t)), float(em.error.sel(t=t))))
        if do_plots:
            figs.append(plots.plot_effective_mass(em, pdir / "effective_mass.png", exact))
    if "xi" in what:
        xi = correlation_length(meas, **kw)
        _collect(xi, "xi2", col)
        summary.append(("xi2", float(xi.value), float(xi.error)))
    if "correlators" in what:
        cc = connected_correlator(meas, points, **kw)
        _collect(cc, "connected", col)
        formula = None
        if spec.get("arch") == "LatticeCosNet" and all(len(t) == 4 for t in points) and \
                spec.get("components") is None:
            k = 3.0 if spec.get("amplitude", "gaussian") == "gaussian" else 1.0
            formula = cosnet_connected_4pt(free_propagator(lat, spec["m2"]), points,
                                           int(spec["width"]), kurtosis=k)
            col["attrs"]["connected:formula"] = "docs/conventions.md section 6 (lattice cos-net G4c)"
        if do_plots:
            figs.append(plots.plot_correlators(cc, pdir / "connected_correlators.png", formula))

    ds = xr.merge(col["datasets"], compat="override", join="outer", combine_attrs="drop")
    attrs = {"store": str(store.path), "source": store.source, "n_samples": meas.n_samples,
             "n_blocks": len(meas.blocks), "error_method": args.error, "what": ",".join(what),
             "spec": json.dumps(spec, sort_keys=True)}
    attrs.update(col["attrs"])
    ds.attrs = attrs
    write_dataset(ds, out, made_by="nnft measure")
    if not args.quiet:
        print(f"measured {meas.n_samples} samples of {store.path} -> {out}")
        for name, v, e in summary:
            print(f"  {name:>14s} = {v:.6g} +- {e:.2g}")
        for f in figs:
            print(f"  plot: {f}")
    return 0
