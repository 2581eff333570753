"""The measurement registry: every measurement of `nnft run` and `nnft measure` declared once.

A measurement is one module in ``nnft/measurements/`` that ends with a call to
:func:`register`::

    register(Measurement(
        name="four_point",
        summary="connected 4-point function, m_4 and its background",
        options=(Option("n_tuples_4", int, 12, "number of random 4-point tuples", minimum=1),),
        requires=("spec",),
        tuples=lambda ctx: ...,          # point tuples measured in the shared pass (optional)
        run=four_point,                  # Context -> dict (scalars, "summary" rows, datasets)
    ))

Everything else is generated from these declarations: the names `nnft run` accepts in
``measure = [...]``, the options it accepts in ``options = {...}`` (type, default, allowed
values, documentation; checked when the config is loaded), `nnft measure --what` and its
``--help``, and docs/measurements.md.

One pass: the measurements that declare ``tuples`` (point tuples whose moments they need) are
served by a single :class:`nnft.observables.PointMoments` accumulator filled in ONE pass over
the stored ensemble, or over the generator stream when nothing is stored; their ``run`` then
receives a :class:`Context` whose ``store`` is that :class:`nnft.observables.Measurement`. The
others (``tuples = None``) still read the stored ensemble themselves.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..lattice import UserError

__all__ = ["Context", "Option", "Measurement", "OptionError", "REGISTRY", "register", "get",
           "names", "check_options", "resolve_options", "shared_plans", "finalize_shared", "streamable",
           "registry_markdown"]


class OptionError(UserError):
    """A bad measurement option (unknown key, wrong type, value not allowed)."""


@dataclass
class Context:
    """One ensemble at one width, as handed to a measurement's ``run``.

    Attributes
    ----------
    name : str
        The ensemble's name in the config.
    spec : architecture spec or None
        The network that made the ensemble (None for a store without a network spec).
    lattice : Lattice or PointSet
    store : FieldStore or Measurement
        The ensemble, or (for measurements that declare ``tuples``) the one-pass
        :class:`nnft.observables.Measurement` holding its point moments.
    width : int or None
    options : dict
        The ensemble's ``options`` table with every default filled in.
    seed : int
        The config's seed (fixes the random point tuples, the same at every width).
    plan_results : dict
        The finalized Datasets of the measurement's own plans (``plans``) from the shared
        pass, by the keys its ``plans`` returned; empty when ``run`` is called directly.
    """

    name: str
    spec: object
    lattice: object
    store: object
    width: int | None
    options: dict = field(default_factory=dict)
    seed: int = 0
    _kernel: object = None
    plan_results: dict = field(default_factory=dict)

    @property
    def kernel(self):
        """GP kernel matrix over the sites (None when the architecture has no closed form)."""
        if self._kernel is None:
            from ..ensembles import gp_kernel

            try:
                self._kernel = gp_kernel(self.spec, self.lattice) if self.spec is not None else False
            except ValueError:
                self._kernel = False
        return self._kernel if self._kernel is not False else None

    def opt(self, key, default=None):
        """Option ``key`` (the registry has filled in the declared defaults)."""
        return self.options.get(key, default)


_TYPES = {int: "an integer", float: "a number", bool: "true/false", str: "a string",
          list: "a list"}


@dataclass(frozen=True)
class Option:
    """One key of a measurement's ``options`` table.

    Parameters
    ----------
    name : str
    type : type
        int, float, bool, str or list (a list of numbers).
    default : Any
        The value used when the key is absent (None: no default, the measurement decides;
        ``required=True``: the key must be given).
    doc : str
        One line for the documentation and ``--help``.
    choices : tuple, optional
        Allowed values.
    minimum : number, optional
        Smallest allowed value (numbers; for lists, each element).
    required : bool
    """

    name: str
    type: type
    default: Any
    doc: str
    choices: tuple | None = None
    minimum: float | None = None
    required: bool = False

    def check(self, where: str, value):
        """``value`` converted to the option's type; :class:`OptionError` (one line) if bad."""
        t = self.type
        bad = OptionError(f"{where}: must be {_TYPES.get(t, t.__name__)}"
                          f"{'' if self.minimum is None else f' >= {self.minimum:g}'}"
                          f"{'' if not self.choices else f' in {list(self.choices)}'}, got {value!r}")
        if t is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if t is list:
            if not isinstance(value, list) or not value or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in value):
                raise bad
            if self.minimum is not None and min(value) < self.minimum:
                raise bad
            return list(value)
        if isinstance(value, bool):
            raise bad
        if t is int and not isinstance(value, int):
            raise bad
        if t is float:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad
            value = float(value)
        if t is str and not isinstance(value, str):
            raise bad
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.minimum is not None and value < self.minimum:
            raise bad
        return value


@dataclass(frozen=True)
class Measurement:
    """A registered measurement (see the module docstring for the protocol).

    Parameters
    ----------
    name : str
        The name used in ``measure = [...]`` and ``nnft measure --what``.
    summary : str
        One line: what it measures and what it compares with.
    run : callable
        ``run(ctx: Context) -> dict``: scalars for results.json, ``"summary"`` rows
        ``(label, value, error_or_None)`` for the report, optional ``"data"`` (arrays for
        plots) and ``"dataset"`` / ``"datasets"`` (xarray, written by `nnft measure`).
    options : tuple of Option
    requires : tuple of str
        What the ensemble must have: "spec" (a network spec), "kernel" (a closed-form GP
        kernel), "lattice" (a Lattice, not a point set), "periodic" (a periodic lattice),
        "stored" (a stored ensemble: cannot run on the fly).
    tuples : callable, optional
        ``tuples(ctx) -> int array (n, order)``: point tuples whose moments (to order 6) the
        measurement needs; they are filled in the shared one-pass accumulator (key "moments").
    accumulators : callable, optional
        ``accumulators(ctx) -> dict[str, Accumulator]``: further accumulators for the shared
        pass (keys must be unique across measurements: prefix them with the name).
    plans : callable, optional
        ``plans(ctx) -> dict[str, MeasurementPlan]`` (:mod:`nnft.observables.plan`): plans
        filled in the shared pass (each with its own jackknife blocks) and finalized before
        ``run``, which finds their Datasets in ``ctx.plan_results``.
    """

    name: str
    summary: str
    run: Callable[[Context], dict]
    options: tuple = ()
    requires: tuple = ()
    tuples: Callable | None = None
    accumulators: Callable | None = None
    plans: Callable | None = None

    @property
    def shares_pass(self) -> bool:
        return (self.tuples is not None or self.accumulators is not None
                or self.plans is not None)

    @property
    def streamable(self) -> bool:
        return self.shares_pass and "stored" not in self.requires

    def option(self, key) -> Option | None:
        return next((o for o in self.options if o.name == key), None)


REGISTRY: dict[str, Measurement] = {}


def register(m: Measurement) -> Measurement:
    """Add ``m`` to the registry (one call at the bottom of each measurement module)."""
    if m.name in REGISTRY:
        raise ValueError(f"measurement {m.name!r} is registered twice")
    REGISTRY[m.name] = m
    return m


def get(name: str) -> Measurement:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown measurement {name!r}; known: {names()}") from None


def names() -> list[str]:
    return list(REGISTRY)


def streamable() -> list[str]:
    return [n for n, m in REGISTRY.items() if m.streamable]


def check_options(where: str, measures, options: dict) -> dict:
    """Validate an ensemble's ``options`` table against the measurements it lists.

    Every key must be declared by at least one of ``measures``; its value is checked against
    each declaration (type, choices, minimum). Required options must be present. Returns the
    table with values converted (ints stay ints, numbers become floats). Raises
    :class:`OptionError` in one line naming ``where`` + the key.
    """
    declared: dict[str, list[Option]] = {}
    for name in measures:
        for o in get(name).options:
            declared.setdefault(o.name, []).append(o)
    out = {}
    for key, value in options.items():
        if key not in declared:
            allowed = sorted(declared) or ["(none: the listed measurements take no options)"]
            raise OptionError(f"{where}{key}: unknown option for measurements {list(measures)}; "
                              f"allowed: {', '.join(allowed)}")
        for o in declared[key]:
            value = o.check(f"{where}{key}", value)
        out[key] = value
    for name in measures:
        for o in get(name).options:
            if o.required and o.name not in out:
                raise OptionError(f"{where}{o.name}: required by measurement {name!r} ({o.doc})")
    return out


def resolve_options(m: Measurement, options: dict) -> dict:
    """``options`` with the declared defaults of ``m`` filled in (other keys kept)."""
    out = dict(options)
    for o in m.options:
        if o.name not in out and o.default is not None:
            out[o.name] = o.default
    return out


SHARED = "shared"


def shared_plans(ctx: Context, measures) -> dict:
    """The plans of the one shared pass over an ensemble (empty when no measurement in
    ``measures`` shares it).

    ``"shared"``: a PointMoments over every tuple the measurements declare (key "moments")
    plus the accumulators they add, with :func:`pass_blocks` chunk blocks; and each
    measurement's own plans as ``"<measurement>.<key>"``.
    """
    from ..observables import PointMoments
    from ..observables.plan import accumulator_plan

    tuples, accs, plans = [], {}, {}
    for name in measures:
        m = get(name)
        sub = dataclasses.replace(ctx, options=resolve_options(m, ctx.options))
        if m.tuples is not None:
            tuples.extend(map(tuple, m.tuples(sub)))
        if m.accumulators is not None:
            for key, acc in m.accumulators(sub).items():
                if key in accs or key == "moments":
                    raise ValueError(f"measurement {name!r}: accumulator key {key!r} is taken")
                accs[key] = acc
        if m.plans is not None:
            for key, plan in m.plans(sub).items():
                plans[f"{name}.{key}"] = plan
    if tuples:
        accs["moments"] = PointMoments(sorted(set(tuples)), max_order=6)
    if accs:
        plans[SHARED] = accumulator_plan(accs, n_blocks=pass_blocks(ctx.options))
    return plans


def finalize_shared(plans: dict, meas) -> tuple:
    """(shared Measurement or None, {plan name: Dataset}) from the merged pass ``meas``."""
    data = meas.namespace(SHARED) if SHARED in plans else None
    done = {n: p.finalize(meas.namespace(n)) for n, p in plans.items() if n != SHARED}
    return data, done


def run_one(name: str, ctx: Context, data=None, plan_results=None) -> dict:
    """Run measurement ``name`` on ``ctx``; ``data``: the shared-pass Measurement and
    ``plan_results``: the finalized plans (``"<measurement>.<key>"``), if any."""
    m = get(name)
    sub = dataclasses.replace(ctx, options=resolve_options(m, ctx.options))
    if m.shares_pass and data is not None:
        sub.store = data
    head = f"{name}."
    sub.plan_results = {k[len(head):]: v for k, v in (plan_results or {}).items()
                        if k.startswith(head)}
    out = m.run(sub)
    ctx._kernel = sub._kernel  # share the kernel between measurements
    return out


def pass_blocks(options: dict) -> int:
    """Error blocks of the shared pass (at least 20; more when ``n_sub`` asks for more)."""
    return max(20, int(options.get("n_sub", 10)))


def _type_doc(o: Option) -> str:
    t = {int: "integer", float: "number", bool: "true/false", str: "string",
         list: "list of numbers"}[o.type]
    if o.choices:
        t += " in " + ", ".join(f"`{c}`" for c in o.choices)
    if o.minimum is not None:
        t += f", >= {o.minimum:g}"
    return t


def registry_markdown() -> str:
    """docs/measurements.md: every registered measurement with its options (generated)."""
    lines = ["# Measurements", "",
             "Generated from the measurement registry (`nnft/measurements/`) by "
             "`python -m nnft.measurements`; do not edit by hand.", "",
             "A run config lists measurements per ensemble in `measure = [...]` and sets their "
             "options in `options = { ... }`; every option key is checked when the config is "
             "loaded. `nnft measure STORE --what NAME` runs the same code on a stored ensemble "
             "(store-level measurements `scalars`, `propagator` (momentum space), `two_point`, "
             "`effective_mass`, `xi` and `correlators` keep their `nnft measure` meaning there).",
             "",
             "Requirements: *spec* a network ensemble; *kernel* an architecture with a "
             "closed-form GP kernel; *lattice* / *periodic* a (periodic) lattice, not a point "
             "set; *stored* reads the stored ensemble (cannot run with `keep_stores = false`). "
             "Measurements marked *one pass* share a single pass over the ensemble.", ""]
    for name, m in REGISTRY.items():
        req = ", ".join(m.requires) or "none"
        lines += [f"## `{name}`", "", m.summary + ".", "",
                  f"Requires: {req}. {'One pass (runs on the fly too).' if m.streamable else ''}"
                  .rstrip(), ""]
        if m.options:
            lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
            for o in m.options:
                d = "required" if o.required else ("-" if o.default is None else f"`{o.default!r}`"
                                                   .replace("True", "true").replace("False", "false"))
                lines.append(f"| `{o.name}` | {_type_doc(o)} | {d} | {o.doc} |")
            lines.append("")
    return "\n".join(lines)


def jsonable(obj):
    """``obj`` with arrays and datasets removed / converted, non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()
                if k not in ("data", "dataset", "datasets")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
