"""Measurement plans: every measurement split into *what to accumulate* and *what to compute*.

A :class:`MeasurementPlan` declares the mergeable accumulators it needs
(:meth:`~MeasurementPlan.accumulators`) and turns the filled accumulators into an
``xarray.Dataset`` (:meth:`~MeasurementPlan.finalize`). Because a plan never reads the store
itself, any number of plans share ONE streaming pass over an ensemble (a FieldStore, an
in-memory array, or chunks handed over by a generator):

    plans = {"t": translation_plan(lattice), "W": generating_plan(J, field_shape)}
    results = run_plans(store, plans, n_blocks=32)      # one read per chunk
    results["t"].attrs["verdict"]; results.n_reads

Protocol
--------
* ``plan.accumulators() -> dict[str, Accumulator]``: fresh prototypes (unfilled). Keys are
  local to the plan; :func:`merged_accumulators` namespaces them as ``"<plan name>/<key>"``.
* ``plan.finalize(measurement) -> xarray.Dataset``: ``measurement`` is what
  :func:`nnft.observables.measure` returns for the merged accumulators, restricted to this
  plan's keys with :meth:`Measurement.namespace` (``measurement["key"]`` is the plan's total
  accumulator, ``measurement.blocks[b]["key"]`` its block b). Errors are delete-one-block
  jackknife over ``measurement.blocks``.
* Blocks: each plan has ``n_blocks`` and a convention ``split``: ``"samples"`` (default;
  ``n_blocks`` contiguous blocks of equal sample counts, :func:`equal_sample_edges`, the
  convention of the store-level functions such as ``check_translation``) or ``"chunks"``
  (whole chunks, or equal slices of them, as :func:`measure` does with ``blocks=n_blocks``).
  ``run_plans(..., n_blocks=B, split=...)`` makes all plans share the same blocks; without
  them the pass keeps the common refinement of every plan's blocks and hands each plan its own
  (merged) blocks, so a plan gives exactly what a pass of its own would give.

Streaming (no store): ``sm = stream_plans(plans, n_samples, chunk, n_blocks=32)``, pass ``sm``
as the generator's ``callback``, then ``sm.finalize()`` gives the same dict of Datasets.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import xarray as xr

from .accumulators import FeatureMoments, tuple_arrays
from .replicas import STATS, JackknifeResult, feature_replicas
from .measure import (ArraySource, Measurement, StreamingMeasurement, _pieces, _StreamSource,
                      block_assignment, equal_sample_edges, measure, open_source)

__all__ = ["MeasurementPlan", "CorrelatorPlan", "correlator_plan", "AccumulatorPlan",
           "accumulator_plan", "run_plans", "measure_plans",
           "stream_plans", "merged_accumulators", "PlanResults", "PlanStream", "open_plan_source"]


SPLITS = ("samples", "chunks")


class MeasurementPlan:
    """Base class of a measurement split into accumulation and finalisation.

    Subclasses set ``kind`` (a short name) and implement :meth:`accumulators` and
    :meth:`finalize`; they may override :meth:`check_source` to validate a source (field
    shape, components) before the pass.

    Parameters
    ----------
    n_blocks : int
        Default number of jackknife blocks (a shared pass may override it).
    split : {"samples", "chunks"}, optional
        Default block convention (class attribute ``split`` when None).
    """

    kind = "measurement"
    #: default block convention of the plan ("samples" or "chunks", module docstring)
    split = "samples"

    def __init__(self, *, n_blocks: int = 32, split: str | None = None):
        if not isinstance(n_blocks, (int, np.integer)) or n_blocks < 2:
            raise ValueError(f"n_blocks: need at least 2 jackknife blocks, got {n_blocks!r}")
        self.n_blocks = int(n_blocks)
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be 'samples' or 'chunks', got {split!r}")
            self.split = split

    def accumulators(self) -> dict:
        """Fresh accumulator prototypes, ``{local key: Accumulator}``."""
        raise NotImplementedError

    def finalize(self, measurement: Measurement) -> xr.Dataset:
        """The result Dataset from the filled accumulators (see the module docstring)."""
        raise NotImplementedError

    def check_source(self, source) -> None:
        """Validate a source before the pass (default: nothing)."""

    def __repr__(self):
        return f"<{type(self).__name__} {self.kind}>"


# --------------------------------------------------------------------------------------------
# the generic correlator plan (moments / connected correlators at feature tuples)
# --------------------------------------------------------------------------------------------
class CorrelatorPlan(MeasurementPlan):
    """Moments, connected correlators or Wick-subtracted moments at feature tuples.

    Parameters
    ----------
    tuples : int array (n_t, k) or list of such arrays (orders 1..8)
        Feature indices (flat field indices by default).
    stat : {"connected", "moment", "wick_subtracted"}
    features : callable ``features(phi) -> (n, F)``, optional
        Per-configuration features (real or complex); default the flattened field.
    groups : int array (n_tuples_total,), optional
        Average over tuples sharing a label (outputs ordered by ``np.unique(groups)``).
    ignore_weights : bool
        Measure a weighted ensemble as if unweighted (same samples and blocks).
    n_blocks : int

    ``finalize`` gives a Dataset over ``output``: ``value``, ``error`` (real parts for complex
    features, plus ``value_imag``), ``replicas`` (dims ``block``, ``output``), attrs ``stat``,
    ``n_blocks``, ``n_samples``, ``weighted``. :meth:`replicas` gives the JackknifeResult.
    """

    kind = "correlators"

    def __init__(self, tuples, *, stat="connected", features=None, groups=None,
                 ignore_weights=False, n_blocks=32):
        super().__init__(n_blocks=n_blocks)
        if stat not in STATS:
            raise ValueError(f"stat: must be one of {STATS}, got {stat!r}")
        self.tuples = tuple_arrays(tuples)
        self.stat = stat
        self.features = features
        self.ignore_weights = bool(ignore_weights)
        n_total = sum(t.shape[0] for t in self.tuples)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n_total,):
                raise ValueError(f"groups: expected shape ({n_total},), got {groups.shape}")
        self.groups = groups

    def accumulators(self) -> dict:
        return {"moments": FeatureMoments(self.tuples, self.features,
                                          ignore_weights=self.ignore_weights)}

    def replicas(self, measurement: Measurement, stat=None) -> JackknifeResult:
        """Value and delete-one-block replicas (``stat`` overrides the plan's)."""
        weighted = int(bool(getattr(measurement.source, "weighted", False))
                       and not self.ignore_weights)
        return feature_replicas(measurement["moments"], [b["moments"] for b in measurement.blocks],
                                stat=stat or self.stat, groups=self.groups,
                                attrs={"weighted": weighted,
                                       "n_samples": int(measurement.n_samples)})

    def finalize(self, measurement: Measurement) -> xr.Dataset:
        res = self.replicas(measurement)
        val, reps = res.value, res.replicas
        data = {"value": ("output", np.real(val)), "error": ("output", res.error),
                "replicas": (("block", "output"), np.real(reps))}
        if np.iscomplexobj(val):
            data["value_imag"] = ("output", np.imag(val))
            data["replicas_imag"] = (("block", "output"), np.imag(reps))
        return xr.Dataset(data, coords={"output": np.arange(val.shape[0]),
                                        "block": np.arange(reps.shape[0])},
                          attrs={k: v for k, v in res.attrs.items()})


def correlator_plan(tuples, *, stat="connected", features=None, groups=None,
                    ignore_weights=False, n_blocks=32) -> CorrelatorPlan:
    """A :class:`CorrelatorPlan` (see there for the parameters)."""
    return CorrelatorPlan(tuples, stat=stat, features=features, groups=groups,
                          ignore_weights=ignore_weights, n_blocks=n_blocks)


# --------------------------------------------------------------------------------------------
# running plans
# --------------------------------------------------------------------------------------------
class _CountingSource:
    """Proxy of a store that counts ``read_chunk`` calls per chunk."""

    def __init__(self, src):
        self._src = src
        self.reads = Counter()

    def read_chunk(self, k):
        self.reads[int(k)] += 1
        return self._src.read_chunk(k)

    def __getattr__(self, name):
        return getattr(self._src, name)


def open_plan_source(source, *, log_weight=None, chunk: int = 4096):
    """A store-like source from a FieldStore (or anything with its reading protocol), a path,
    or an array ``(n_samples, *field_shape)`` with optional per-sample ``log_weight``."""
    if hasattr(source, "read_chunk") and hasattr(source, "chunk_range"):
        if log_weight is not None:
            raise ValueError("log_weight: a FieldStore carries its own log_weight; pass None")
        return source
    if hasattr(source, "shape") or isinstance(source, (list, tuple)):
        phi = source if hasattr(source, "shape") else np.asarray(source)
        if phi.ndim < 2:
            raise ValueError("source: expected a FieldStore or an array (n_samples, [D], *shape) "
                             f"with at least 2 dimensions, got shape {phi.shape}")
        if log_weight is not None:
            log_weight = np.asarray(log_weight, dtype=float)
            if log_weight.shape != (phi.shape[0],):
                raise ValueError(f"log_weight: shape {log_weight.shape} does not match "
                                 f"n_samples={phi.shape[0]}")
        return ArraySource(phi, log_weight, chunk=chunk)
    return open_source(source)


class AccumulatorPlan(MeasurementPlan):
    """Given accumulators in a shared pass; :meth:`finalize` returns their
    :class:`Measurement` (with this plan's blocks) for functions that take a Measurement
    (``moments``, ``connected_correlator``, ``momentum_space_test``, ...).

    Default blocks: ``n_blocks`` chunk blocks (``split="chunks"``), what
    ``measure(store, accumulators, blocks=n_blocks)`` would use.
    """

    kind = "accumulators"
    split = "chunks"

    def __init__(self, accumulators: dict, *, n_blocks: int = 20, split: str | None = None):
        super().__init__(n_blocks=n_blocks, split=split)
        if not isinstance(accumulators, dict) or not accumulators:
            raise ValueError("accumulators must be a non-empty dict")
        self._accs = dict(accumulators)

    def accumulators(self) -> dict:
        return {k: a.empty() for k, a in self._accs.items()}

    def finalize(self, measurement):
        return measurement


def accumulator_plan(accumulators: dict, *, n_blocks: int = 20, split: str | None = None):
    """An :class:`AccumulatorPlan`."""
    return AccumulatorPlan(accumulators, n_blocks=n_blocks, split=split)


def merged_accumulators(plans: dict) -> dict:
    """All plans' accumulator prototypes in one dict, keys ``"<plan name>/<local key>"``."""
    _check_plans(plans)
    out = {}
    for name, plan in plans.items():
        for key, acc in plan.accumulators().items():
            out[f"{name}/{key}"] = acc
    return out


def _check_plans(plans):
    if not isinstance(plans, dict) or not plans:
        raise ValueError("plans must be a non-empty dict {name: MeasurementPlan}")
    for name, plan in plans.items():
        if not isinstance(name, str) or "/" in name or not name:
            raise ValueError(f"plans: names must be non-empty strings without '/', got {name!r}")
        if not isinstance(plan, MeasurementPlan):
            raise ValueError(f"plans[{name!r}] must be a MeasurementPlan, got "
                             f"{type(plan).__name__}")


def _conventions(plans, n_blocks, split):
    """``{plan name: (n_blocks, split)}``: the arguments when given, else each plan's own."""
    out = {}
    for name, plan in plans.items():
        B = plan.n_blocks if n_blocks is None else n_blocks
        sp = plan.split if split is None else split
        if not isinstance(B, (int, np.integer)) or B < 2:
            raise ValueError(f"n_blocks: need at least 2 jackknife blocks, got {B!r}")
        if sp not in SPLITS:
            raise ValueError(f"split must be 'samples' or 'chunks', got {sp!r}")
        out[name] = (int(B), sp)
    return out


def _block_edges(src, ks, n_blocks, split, *, check_complete=True):
    """Sample edges of the blocks of one convention (see the module docstring)."""
    if split == "samples":
        if check_complete:
            missing = (list(src.missing_chunks()) if hasattr(src, "missing_chunks") else
                       sorted(set(range(int(getattr(src, "n_chunks", 0)))) - set(ks)))
            if missing:
                raise ValueError(f"source: store {getattr(src, 'path', '') or ''} has "
                                 f"{len(missing)} incomplete chunks; fill it first")
        n_rep = int(getattr(src, "n_replicas", 1) or 1)
        return [int(e) for e in equal_sample_edges(int(src.n_samples), n_blocks, n_rep)]
    groups = block_assignment(_pieces(src, ks, n_blocks), n_blocks)
    ranges = [(src.chunk_range(g[0][0])[0] + g[0][1], src.chunk_range(g[-1][0])[0] + g[-1][2])
              for g in groups]
    return [r[0] for r in ranges] + [ranges[-1][1]]


def _plan_edges(src, ks, conv, **kw):
    """Per-plan edges and their common refinement (the blocks the pass keeps)."""
    cache = {c: _block_edges(src, ks, *c, **kw) for c in set(conv.values())}
    per_plan = {name: cache[c] for name, c in conv.items()}
    union = sorted(set().union(*map(set, cache.values())))
    return per_plan, union


class PlanResults(dict):
    """``{plan name: Dataset}`` plus the pass's bookkeeping.

    Attributes
    ----------
    measurement : Measurement of the merged accumulators
    reads : collections.Counter, chunk index -> number of ``read_chunk`` calls (serial pass)
    n_reads : int, total chunk reads
    """

    measurement: Measurement
    reads: Counter

    @property
    def n_reads(self) -> int:
        return int(sum(self.reads.values()))


def measure_plans(source, plans: dict, *, n_blocks=None, split=None, log_weight=None,
                  chunk: int = 4096, executor="serial", scheduler=None, progress=False):
    """One pass over ``source`` filling every plan's accumulators.

    Returns ``(measurement, reads)``: the merged :class:`Measurement` (use
    ``measurement.namespace(name)`` per plan: it has that plan's blocks) and a Counter of
    chunk reads. See :func:`run_plans` for the parameters.
    """
    _check_plans(plans)
    conv = _conventions(plans, n_blocks, split)
    src = _CountingSource(open_plan_source(source, log_weight=log_weight, chunk=chunk))
    for plan in plans.values():
        plan.check_source(src)
    ks = list(src.complete_chunks())
    if not ks:
        raise ValueError("source: the store has no complete chunks to measure")
    per_plan, union = _plan_edges(src, ks, conv)
    accs = merged_accumulators(plans)
    meas = measure(src, accs, edges=union, executor=executor, scheduler=scheduler,
                   progress=progress)
    meas.source = src._src
    meas.plan_edges = per_plan
    return meas, src.reads


def run_plans(source, plans: dict, *, n_blocks=None, split=None, log_weight=None,
              chunk: int = 4096, executor="serial", scheduler=None,
              progress=False) -> PlanResults:
    """Run every plan over ``source`` in ONE pass and finalize each.

    Parameters
    ----------
    source : FieldStore, path, store-like object, or array (n_samples, *field_shape)
    plans : dict name -> MeasurementPlan
    n_blocks : int, optional
        Jackknife blocks shared by all plans. Default: each plan's own ``n_blocks`` (the pass
        keeps the common refinement of all plans' blocks and merges it per plan, so every
        plan gets exactly the blocks of a pass of its own).
    split : {"samples", "chunks"}, optional
        Block convention shared by all plans (module docstring); default each plan's own.
    log_weight : array (n_samples,), optional
        Per-sample log weights of an array source (a store carries its own).
    chunk : int
        Samples per chunk for an array source.
    executor, scheduler, progress : as for :func:`nnft.observables.measure` ("dask" runs one
        task per chunk piece; its chunk reads happen in the tasks and are not counted).

    Returns
    -------
    PlanResults
        ``{name: Dataset}`` with ``.measurement``, ``.reads`` and ``.n_reads``.
    """
    meas, reads = measure_plans(source, plans, n_blocks=n_blocks, split=split,
                                log_weight=log_weight, chunk=chunk, executor=executor,
                                scheduler=scheduler, progress=progress)
    out = PlanResults({name: plan.finalize(meas.namespace(name)) for name, plan in plans.items()})
    out.measurement = meas
    out.reads = reads
    return out


class PlanStream(StreamingMeasurement):
    """A :class:`StreamingMeasurement` of several plans; :meth:`finalize` gives their Datasets."""

    def __init__(self, plans, n_samples, chunk, *, n_blocks=None, split=None, lattice=None,
                 spec=None):
        _check_plans(plans)
        conv = _conventions(plans, n_blocks, split)
        src = _StreamSource(n_samples, chunk)
        ks = list(range(-(-int(n_samples) // int(chunk))))
        self._plan_edges, union = _plan_edges(src, ks, conv, check_complete=False)
        super().__init__(merged_accumulators(plans), n_samples, chunk, lattice=lattice,
                         spec=spec, edges=union)
        self.plans = dict(plans)

    def result(self) -> Measurement:
        meas = super().result()
        meas.plan_edges = self._plan_edges
        return meas

    def finalize(self) -> dict:
        meas = self.result()
        return {name: plan.finalize(meas.namespace(name)) for name, plan in self.plans.items()}


def stream_plans(plans: dict, n_samples: int, chunk: int, *, n_blocks=None, split=None,
                 lattice=None, spec=None) -> PlanStream:
    """A generator callback ``(k, phi, log_weight)`` measuring all plans as chunks are made
    (blocks as for :func:`run_plans`)."""
    return PlanStream(plans, n_samples, chunk, n_blocks=n_blocks, split=split, lattice=lattice,
                      spec=spec)
