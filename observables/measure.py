"""One streaming pass over a field ensemble feeding any number of accumulators.

``measure(store, accumulators)`` reads every complete chunk of a FieldStore once (serially or
as one dask task per chunk with a tree merge) and updates all accumulators with it. It keeps
one accumulator set per *block* of consecutive chunks (for jackknife / Gamma-method errors)
and returns a :class:`Measurement`. Memory: ``n_blocks`` accumulator sets plus one chunk.

Sources: a :class:`nnft.lattice.FieldStore`, a path to one, or an in-memory NumPy/CuPy
array ``(n_samples, *field_shape)`` (wrapped by :class:`ArraySource`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from nnft.lattice import FieldStore, progress_bar

from .accumulators import Series, clear_feature_cache
from .errors import ErrorEstimate, _tree_zip, estimate, tree_map, tree_merge_copy

__all__ = ["measure", "Measurement", "ArraySource", "StreamingMeasurement", "open_source",
           "block_assignment", "equal_sample_edges"]


class ArraySource:
    """An in-memory ensemble that looks like a FieldStore to :func:`measure`.

    Parameters
    ----------
    phi : array (n_samples, *field_shape)
    log_weight : array (n_samples,) or None
    chunk : int
        Samples per chunk.
    lattice : Lattice, PointSet or None
        Geometry (needed by propagator tools); None: unknown.
    components : int or None
    n_replicas : int
    """

    def __init__(self, phi, log_weight=None, *, chunk: int = 1024, lattice=None,
                 components=None, n_replicas: int = 1):
        if not hasattr(phi, "shape") or phi.ndim < 2:
            raise ValueError("phi must be an array of shape (n_samples, *field_shape)")
        if not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        self.phi = phi
        self.log_weight = None if log_weight is None else np.asarray(log_weight, dtype=float)
        if self.log_weight is not None and self.log_weight.shape != (phi.shape[0],):
            raise ValueError(f"log_weight must have shape ({phi.shape[0]},)")
        self.chunk = int(chunk)
        self.n_samples = int(phi.shape[0])
        self.lattice = lattice
        self.components = components
        self.n_replicas = n_replicas
        self.weighted = log_weight is not None
        self.source = "array"
        self.spec = None
        self.extra = {}
        self.path = None
        self.attrs = {"source": "array"}

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk)

    def chunk_range(self, k):
        s = k * self.chunk
        return s, min(s + self.chunk, self.n_samples)

    def complete_chunks(self):
        return list(range(self.n_chunks))

    def read_chunk(self, k):
        s, e = self.chunk_range(k)
        return self.phi[s:e], None if self.log_weight is None else self.log_weight[s:e]


def open_source(store):
    """A FieldStore-like object from a FieldStore, a path, an array or an ArraySource."""
    if hasattr(store, "read_chunk") and hasattr(store, "chunk_range"):
        return store
    if isinstance(store, (str, Path)):
        return FieldStore.open(store)
    if hasattr(store, "shape"):
        return ArraySource(store)
    raise ValueError(f"store must be a FieldStore, a path or an array, got {type(store).__name__}")


def block_assignment(chunks, n_blocks):
    """Split the (ordered) chunk (or piece) list into ``min(n_blocks, len(chunks))`` contiguous
    blocks."""
    chunks = list(chunks)
    nc = len(chunks)
    if n_blocks is None or n_blocks == "chunks":
        B = nc
    else:
        if not isinstance(n_blocks, (int, np.integer)) or n_blocks < 1:
            raise ValueError(f"blocks must be a positive int, 'chunks' or None, got {n_blocks!r}")
        B = min(int(n_blocks), nc)
    return [chunks[(b * nc) // B:((b + 1) * nc) // B] for b in range(B)]


def equal_sample_edges(n_samples: int, n_blocks: int, n_replicas: int = 1) -> np.ndarray:
    """Edges ``(n_blocks + 1,)`` of ``n_blocks`` contiguous blocks of (nearly) equal size.

    Block sizes are multiples of ``n_replicas`` (whole time slices of interleaved Markov chains)
    and differ by at most one slice: ``edges = round(linspace(0, n / R, B + 1)) * R``.
    """
    if not isinstance(n_blocks, (int, np.integer)) or n_blocks < 2:
        raise ValueError(f"n_blocks: need at least 2 jackknife blocks, got {n_blocks!r}")
    n_units = int(n_samples) // int(n_replicas)
    if n_units < n_blocks:
        raise ValueError(f"n_blocks: {n_blocks} blocks but only {n_units} samples "
                         f"(in units of n_replicas={n_replicas})")
    edges = (np.linspace(0, n_units, n_blocks + 1).round().astype(np.int64)) * int(n_replicas)
    edges[-1] = int(n_samples)
    return edges


def _pieces_at_edges(src, ks, edges):
    """Block groups of pieces ``(k, lo, hi)``: the chunks cut at the given sample edges."""
    edges = np.asarray(edges, dtype=np.int64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges: need an increasing 1-d array of at least 2 sample indices")
    groups = [[] for _ in range(edges.size - 1)]
    for k in ks:
        a, b = src.chunk_range(k)
        cuts = sorted({a, b} | {int(e) for e in edges if a < e < b})
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            blk = int(np.searchsorted(edges, lo, side="right") - 1)
            if not 0 <= blk < len(groups) or hi > edges[blk + 1]:
                raise ValueError(f"edges: samples [{lo}, {hi}) of chunk {k} lie outside "
                                 f"[{edges[0]}, {edges[-1]})")
            groups[blk].append((k, lo - a, hi - a))
    if any(not g for g in groups):
        raise ValueError("edges: a block holds no samples of the measured chunks")
    return groups


class Measurement:
    """Result of :func:`measure`: total and per-block accumulators plus provenance.

    Attributes
    ----------
    total : same structure as the ``accumulators`` argument
        Accumulators over all samples.
    blocks : list
        Per-block accumulator structures, in sample order.
    block_ranges : list of (start, stop)
        Sample range covered by each block (contiguous chunks).
    source : the store (or ArraySource) that was read
    lattice : geometry of the store (or None)
    n_samples : int
    """

    def __init__(self, total, blocks, block_ranges, source, chunks):
        self.total = total
        self.blocks = blocks
        self.block_ranges = block_ranges
        self.source = source
        self.chunks = chunks
        self.lattice = getattr(source, "lattice", None)
        self.n_replicas = int(getattr(source, "n_replicas", 1) or 1)
        vals = []
        tree_map(lambda a: vals.append(a.n_samples), total)
        self.n_samples = max(vals) if vals else 0

    def __getitem__(self, key):
        return self.total[key]

    def estimate(self, estimator: Callable, method: str = "jackknife", **options) -> ErrorEstimate:
        """Value and error of ``estimator(accumulators)`` (structure like ``total``)."""
        return estimate(self.total, self.blocks, estimator, method=method,
                        block_ranges=self.block_ranges, n_replicas=self.n_replicas, **options)

    def namespace(self, prefix: str) -> "Measurement":
        """The part of a merged measurement whose (dict) keys start with ``prefix + "/"``,
        with the prefix stripped (what :meth:`MeasurementPlan.finalize` reads). When
        ``plan_edges`` (set by ``run_plans``) names block edges for ``prefix``, the blocks are
        merged into those (:meth:`regroup`)."""
        if not isinstance(self.total, dict):
            raise ValueError("namespace: the measurement's accumulators are not a dict")
        head = f"{prefix}/"
        pick = lambda tree: {k[len(head):]: v for k, v in tree.items()  # noqa: E731
                             if k.startswith(head)}
        if not pick(self.total):
            raise KeyError(f"no accumulator keys under {head!r} in this measurement")
        view = Measurement.__new__(Measurement)
        view.__dict__.update(self.__dict__)
        view.plan_edges = {}
        view.total = pick(self.total)
        view.blocks = [pick(b) for b in self.blocks]
        edges = getattr(self, "plan_edges", {}).get(prefix)
        return view if edges is None else view.regroup(edges)

    def regroup(self, edges) -> "Measurement":
        """The same measurement with its blocks merged into coarser blocks ``[e_i, e_{i+1})``.

        ``edges`` (sample indices) must be a subset of the current block boundaries; blocks
        that already match are shared, not copied.
        """
        edges = [int(e) for e in edges]
        cur = [r[0] for r in self.block_ranges] + [self.block_ranges[-1][1]]
        if edges == cur:
            return self
        if not set(edges) <= set(cur) or edges[0] != cur[0] or edges[-1] != cur[-1]:
            raise ValueError("edges: not a coarsening of this measurement's blocks")
        blocks, ranges = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            idx = [i for i, (a, _) in enumerate(self.block_ranges) if lo <= a < hi]
            parts = [self.blocks[i] for i in idx]
            blocks.append(parts[0] if len(parts) == 1 else tree_merge_copy(parts))
            ranges.append((lo, hi))
        view = Measurement.__new__(Measurement)
        view.__dict__.update(self.__dict__)
        view.blocks, view.block_ranges = blocks, ranges
        return view

    def find(self, cls, predicate=None):
        """Key (or index) of the first total accumulator that is an instance of ``cls``."""
        items = (self.total.items() if isinstance(self.total, dict)
                 else enumerate(self.total) if isinstance(self.total, (list, tuple))
                 else [(None, self.total)])
        for k, a in items:
            if isinstance(a, cls) and (predicate is None or predicate(a)):
                return k
        raise KeyError(f"no {cls.__name__} accumulator in this measurement")

    def attrs(self) -> dict:
        """Provenance attrs for result Datasets."""
        src = self.source
        out = {"n_samples": int(self.n_samples), "n_blocks": len(self.blocks),
               "source": str(getattr(src, "source", "")),
               "store": "" if getattr(src, "path", None) is None else str(src.path)}
        if getattr(src, "spec", None):
            out["spec"] = json.dumps(src.spec, sort_keys=True)
        if getattr(src, "weighted", False):
            ess = []
            tree_map(lambda a: ess.append(getattr(a, "ess", np.nan)), self.total)
            out["weighted"] = 1
            out["ess"] = float(ess[0]) if ess else float("nan")
        return out


def _update_all(tree, phi, lw, start):
    def up(a):
        if isinstance(a, Series):
            a.update(phi, log_weight=lw, start=start)
        else:
            a.update(phi, log_weight=lw)
        return a

    return tree_map(up, tree)


def _chunk_task(src_ref, k, proto, lo=0, hi=None):
    """dask task: read samples [lo, hi) of chunk k into fresh copies of the prototypes."""
    src = src_ref
    if isinstance(src_ref, (str, Path)):
        src = FieldStore.open(src_ref)
    phi, lw = src.read_chunk(k)
    start = src.chunk_range(k)[0]
    accs = tree_map(lambda a: a.empty(), proto)
    return _update_all(accs, phi[lo:hi], None if lw is None else lw[lo:hi], start + lo)


def _prefetched(src, order):
    """Yield ``(k, phi, log_weight)`` for the chunks ``order`` in turn. For a store on disk the
    next chunk is read (file read, checksum, decode) in a background thread while the caller
    computes on the current one, so at most two chunks are held; other sources read inline."""
    if getattr(src, "path", None) is None or len(order) < 2:
        for k in order:
            yield (k, *src.read_chunk(k))
        return
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnft-read") as pool:
        fut = pool.submit(src.read_chunk, order[0])
        for i, k in enumerate(order):
            phi, lw = fut.result()
            fut = pool.submit(src.read_chunk, order[i + 1]) if i + 1 < len(order) else None
            yield k, phi, lw
            del phi, lw


def _pieces(src, ks, n_blocks):
    """Work pieces ``(k, lo, hi)``: whole chunks, or, when there are fewer chunks than error
    blocks, each chunk cut into contiguous slices (whole time slices of Markov chains), so that
    the error estimate always has about ``n_blocks`` blocks."""
    per = 1
    if isinstance(n_blocks, (int, np.integer)) and n_blocks > len(ks):
        per = -(-int(n_blocks) // len(ks))
    R = int(getattr(src, "n_replicas", 1) or 1)
    out = []
    for k in ks:
        a, b = src.chunk_range(k)
        steps = (b - a) // R
        cuts = sorted({R * ((i * steps) // per) for i in range(per)} | {b - a})
        out.extend((k, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo)
    return out


def _merge2(a, b):
    _tree_zip(lambda x, y: x.merge(y), a, b)
    return a


def measure(store, accumulators, *, blocks=20, chunks=None, executor: str = "serial",
            scheduler=None, chunk: int = 1024, lattice=None, log_weight=None,
            progress: bool = False, edges=None) -> Measurement:
    """Run all ``accumulators`` over the ensemble in one streaming pass.

    Parameters
    ----------
    store : FieldStore, path, array (n, *field_shape) or ArraySource
        The ensemble; only complete chunks of a store are read.
    accumulators : Accumulator, or list / dict of them
        Updated with every chunk (several accumulators share each read). They are used as
        prototypes: their shifts are fixed from the first chunk, then per-block copies are
        filled; the objects passed in are left unchanged.
    blocks : int, "chunks" or None
        Number of contiguous chunk blocks kept for error estimates (None / "chunks": one
        block per chunk). Default 20.
    chunks : list of int or None
        Restrict to these chunks (default: all complete chunks).
    executor : {"serial", "dask"}
        "dask": one ``dask.delayed`` task per chunk, tree-merged within each block; the
        result equals the serial pass to float64 rounding (all tasks share one shift).
    scheduler : dask scheduler or Client, optional
        Passed to ``dask.compute`` (e.g. "threads", "processes", "synchronous", a Client).
    chunk, lattice, log_weight :
        For array input only: samples per chunk, geometry, per-sample log weights.
    progress : bool
        Show a progress bar (serial executor).
    edges : int array (B + 1,), optional
        Explicit block edges in sample indices (e.g. :func:`equal_sample_edges`), overriding
        ``blocks``: chunks are cut at the edges, so blocks need not follow chunk boundaries.

    Returns
    -------
    Measurement
    """
    if hasattr(store, "shape") and not hasattr(store, "read_chunk"):
        src = ArraySource(store, log_weight, chunk=chunk, lattice=lattice)
    else:
        src = open_source(store)
    if executor not in ("serial", "dask"):
        raise ValueError(f"executor must be 'serial' or 'dask', got {executor!r}")
    if not isinstance(accumulators, (dict, list, tuple)) and not hasattr(accumulators, "update"):
        raise ValueError("accumulators must be an accumulator or a list/dict of accumulators")
    ks = src.complete_chunks() if chunks is None else sorted(int(k) for k in chunks)
    if not ks:
        raise ValueError("store has no complete chunks to measure")
    if edges is None:
        groups = block_assignment(_pieces(src, ks, blocks), blocks)
    else:
        groups = _pieces_at_edges(src, ks, edges)
    ranges = [(src.chunk_range(g[0][0])[0] + g[0][1], src.chunk_range(g[-1][0])[0] + g[-1][2])
              for g in groups]

    # prototypes with the shift fixed from the first chunk
    proto = tree_map(lambda a: a.empty(), accumulators)
    phi0, lw0 = src.read_chunk(ks[0])
    tree_map(lambda a: a.prepare(phi0, log_weight=lw0), proto)

    if executor == "serial":
        block_accs = []
        cached = (ks[0], phi0, lw0)
        order = [k for g in groups for k, _, _ in g]
        order = [k for i, k in enumerate(order) if k != (order[i - 1] if i else ks[0])]
        reads = _prefetched(src, order)
        with progress_bar(len(ks), "measuring", progress) as advance:
            for g in groups:
                accs = tree_map(lambda a: a.empty(), proto)
                for k, lo, hi in g:
                    if cached[0] != k:
                        cached = next(reads)
                        advance()
                    _, phi, lw = cached
                    _update_all(accs, phi[lo:hi], None if lw is None else lw[lo:hi],
                                src.chunk_range(k)[0] + lo)
                block_accs.append(accs)
            advance()
    else:
        import dask  # noqa: PLC0415

        del phi0
        ref = str(src.path) if getattr(src, "path", None) is not None else src
        task = dask.delayed(_chunk_task, pure=False)
        merge = dask.delayed(_merge2, pure=False)
        outs = []
        for g in groups:
            level = [task(ref, k, proto, lo, hi) for k, lo, hi in g]
            while len(level) > 1:
                nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            outs.append(level[0])
        kw = {} if scheduler is None else {"scheduler": scheduler}
        block_accs = list(dask.compute(*outs, **kw))
    clear_feature_cache()
    total = tree_merge_copy(block_accs)
    return Measurement(total, block_accs, ranges, src, ks)


class _StreamSource:
    """Stands in for a store when chunks are measured as they are generated (nothing stored)."""

    weighted = False
    path = None
    n_replicas = 1

    def __init__(self, n_samples, chunk, lattice=None, spec=None, source="stream"):
        self.n_samples, self.chunk = int(n_samples), int(chunk)
        self.lattice, self.spec, self.source = lattice, spec, source
        self.attrs = {"source": source}

    def chunk_range(self, k):
        start = k * self.chunk
        return start, min(start + self.chunk, self.n_samples)


class StreamingMeasurement:
    """One-pass measurement of chunks handed over as they are generated, without a store.

    Use it as the ``callback`` of ``generate``/``sample_free_field``; chunks may come in any
    order. :meth:`result` gives the same :class:`Measurement` that :func:`measure` would give
    on a store holding the same chunks (blocks of contiguous samples for the errors).

    Parameters
    ----------
    accumulators : Accumulator, or list / dict of them (prototypes, left unchanged)
    n_samples, chunk : int
        Size of the ensemble and samples per chunk (as given to the generator).
    blocks : int
        Number of error blocks (chunks are cut into slices when there are fewer chunks).
    lattice, spec : optional provenance for the result's attrs.
    edges : int array, optional
        Explicit block edges in sample indices (as for :func:`measure`).
    """

    def __init__(self, accumulators, n_samples: int, chunk: int, *, blocks: int = 20,
                 lattice=None, spec=None, edges=None):
        self._src = _StreamSource(n_samples, chunk, lattice, spec)
        n_chunks = -(-int(n_samples) // int(chunk))
        self._ks = list(range(n_chunks))
        if edges is None:
            self._groups = block_assignment(_pieces(self._src, self._ks, blocks), blocks)
        else:
            self._groups = _pieces_at_edges(self._src, self._ks, edges)
        self._where = {}  # chunk -> list of (block, lo, hi)
        for b, g in enumerate(self._groups):
            for k, lo, hi in g:
                self._where.setdefault(k, []).append((b, lo, hi))
        self._proto = accumulators
        self._blocks = None
        self._seen = set()

    def __call__(self, k, phi, log_weight=None):
        self.update(k, phi, log_weight)

    def update(self, k, phi, log_weight=None):
        """Add chunk ``k`` (NumPy or CuPy, shape ``(stop - start, *field_shape)``)."""
        if k in self._seen:
            raise ValueError(f"chunk {k} was already measured")
        if self._blocks is None:
            proto = tree_map(lambda a: a.empty(), self._proto)
            tree_map(lambda a: a.prepare(phi, log_weight=log_weight), proto)
            self._proto = proto
            self._blocks = [tree_map(lambda a: a.empty(), proto) for _ in self._groups]
        start = self._src.chunk_range(k)[0]
        for b, lo, hi in self._where[k]:
            _update_all(self._blocks[b], phi[lo:hi],
                        None if log_weight is None else log_weight[lo:hi], start + lo)
        self._seen.add(k)

    def result(self) -> "Measurement":
        missing = [k for k in self._ks if k not in self._seen]
        if missing:
            raise ValueError(f"{len(missing)} chunk(s) were never measured (first: {missing[0]})")
        ranges = [(self._src.chunk_range(g[0][0])[0] + g[0][1],
                   self._src.chunk_range(g[-1][0])[0] + g[-1][2]) for g in self._groups]
        clear_feature_cache()
        total = tree_merge_copy(self._blocks)
        return Measurement(total, self._blocks, ranges, self._src, self._ks)
