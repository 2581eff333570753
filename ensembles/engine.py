"""The generation engine: specs -> chunks of field configurations -> FieldStore or callback.

Chunk ``k`` of an ensemble is made from ``chunk_rng(seed, k, xp)`` only: all parameters of the
chunk are drawn first in a fixed order (``params.draw_params``), then evaluated in blocks
(``evaluate``; CuPy: ``cuda``). The same seed therefore gives the same ensemble, bit for bit, for
any split of the work into calls, after an interruption and resume (the store's complete-chunk
record), for any number of dask workers, and for any evaluation ``block``. CPU (PCG64) and GPU
(Philox) streams differ; the store records backend and bit generator.

``method="fused"`` (single-layer GaussNet/ErfNet/ReLUNet/TanhNet): chunk ``k`` is instead defined by
the Philox4x32-10 key ``fused_key(seed, k)`` and the counter-based stream of ``ensembles.philox``;
on CuPy the parameters are generated inside the evaluation kernel (never stored), on NumPy the same
parameters are generated with the vectorised Philox and evaluated in float64. The two backends
then draw the same parameters (float32 values, up to a few ulp of Box-Muller rounding); the store
records bit generator "Philox4x32-10 (in-kernel)" and ``extra["method"] = "fused"``.

``generator="fast"`` (NumPy; single-layer nets and LatticeCosNet): chunk ``k`` still comes from
``chunk_rng(seed, k)`` only, but its parameters are drawn in float32 from the generator's raw
64-bit words (``params.draw_params_fast``: Box-Muller normals, integer alias draws) and evaluated
in float32 (``evaluate.evaluate_fast``; fields returned in float64). Same law, a different
random stream, 2-7x faster on a CPU core (benchmarks/results/generation-*.md); the store records
``extra["generator"] = "fast"``, and resuming or repairing it uses the same generator.
"""
from __future__ import annotations

import collections
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .evaluate import _check_block, evaluate, evaluate_fast
from .params import draw_params, draw_params_fast, fast_supported
from .specs import LatticeCosNet, Spec, spec_from_dict

ENGINE_VERSION = 1
METHODS = ("auto", "dense", "spectral", "cuda", "fused")
#: parameter stream and evaluation precision: "reference" (float64, the default) or "fast"
GENERATORS = ("reference", "fast")
FUSED_BIT_GENERATOR = "Philox4x32-10 (in-kernel)"


def _lattice_api():
    import nnft.lattice as L

    return L


def _check_spec(spec):
    if isinstance(spec, dict):
        spec = spec_from_dict(spec)
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be an nnft.ensembles spec (or its dict), got {spec!r}")
    return spec


def _check_geometry(spec, lattice):
    L = _lattice_api()
    if not isinstance(lattice, (L.Lattice, L.PointSet)):
        raise ValueError(f"lattice must be an nnft.lattice.Lattice or PointSet, got {lattice!r}")
    spec.check_geometry(lattice)


def _fused_chunk(spec, lattice, n, key, xp, block, out_dtype):
    from .cuda import fused_supported

    if not fused_supported(spec):
        raise ValueError(f"method='fused' supports GaussNet, ErfNet, ReLUNet and TanhNet, not "
                         f"{type(spec).__name__}")
    if isinstance(key, np.random.SeedSequence):
        key = tuple(int(v) for v in key.generate_state(2, dtype=np.uint32))
    if not (isinstance(key, (tuple, list, np.ndarray)) and len(key) == 2):
        raise ValueError("rng: method='fused' needs the chunk's Philox key (2 ints, see "
                         f"philox.fused_key) or its SeedSequence, got {key!r}")
    L = _lattice_api()
    if L.backend_name(xp) == "cupy":
        from .cuda import fused_single_layer_cuda

        return fused_single_layer_cuda(spec, lattice, key, n, out_dtype=out_dtype or "float64")
    from .philox import fused_params

    return evaluate(spec, fused_params(spec, n, key), lattice, np, block=block, method="dense")


def check_generator(generator, spec=None, method="auto", xp=np):
    """``generator`` validated against the spec, method and backend (ValueError otherwise)."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    if generator == "fast":
        if spec is not None and not fast_supported(spec):
            raise ValueError(f"generator='fast' supports the single-layer nets and "
                             f"LatticeCosNet/MassMixtureCosNet, not {type(spec).__name__}")
        if method in ("cuda", "fused"):
            raise ValueError(f"generator='fast' is a CPU path: use method 'auto', 'dense' or "
                             f"'spectral', not {method!r}")
        if xp is not np:
            raise ValueError("generator='fast' runs on the NumPy backend only (on a GPU use "
                             "method='fused')")
    return generator


def chunk_fields(spec: Spec, lattice, n: int, rng, xp=np, *, block=None, method="auto",
                 out_dtype=None, generator="reference"):
    """Draw ``n`` networks from ``rng`` and return their fields ``(n, [D], *lattice.shape)``.

    ``method``: "auto" (CuPy fused kernels on the GPU, spectral for LatticeCosNet), "dense",
    "spectral", "cuda" or "fused" (then ``rng`` is the chunk's Philox key ``(k0, k1)``, see
    ``philox.fused_key``, or its SeedSequence; ``out_dtype`` lets the CuPy kernel write float32
    directly). ``generator="fast"``: float32 parameters and evaluation (module docstring).
    """
    shape = (n,) + (() if spec.components is None else (spec.n_components,)) + tuple(lattice.shape)
    if generator == "fast":
        check_generator(generator, spec, method, xp)
        params = draw_params_fast(spec, lattice, n, rng, xp)
        return evaluate_fast(spec, params, lattice, block=block, method=method).reshape(shape)
    if method == "fused":
        return _fused_chunk(spec, lattice, n, rng, xp, block, out_dtype).reshape(shape)
    params = draw_params(spec, lattice, n, rng, xp)
    L = _lattice_api()
    use_cuda = method == "cuda" or (method == "auto" and L.backend_name(xp) == "cupy")
    if use_cuda and not isinstance(spec, LatticeCosNet):
        from .cuda import evaluate_cuda

        phi = evaluate_cuda(spec, params, lattice, block=block)
    else:
        phi = evaluate(spec, params, lattice, xp, block=block,
                       method="auto" if method in ("auto", "cuda") else method)
    return phi.reshape(shape)


def make_chunk_function(spec: Spec, lattice, seed: int, xp=np, *, block=None, method="auto",
                        dtype="float64", generator="reference"):
    """``make_chunk(k, start, stop)`` for ``fill_store``/``run_chunks`` (chunk k from its own stream)."""
    L = _lattice_api()
    if block is not None:  # None: each evaluator picks its backend's default
        _check_block(block)

    def make_chunk(k, start, stop):
        if method == "fused":
            from .philox import fused_key

            rng = fused_key(seed, k)
        else:
            rng = L.chunk_rng(seed, k, xp)
        phi = chunk_fields(spec, lattice, stop - start, rng, xp, block=block, method=method,
                           out_dtype=str(np.dtype(dtype)), generator=generator)
        return phi.astype(dtype, copy=False)

    return make_chunk


def _open_store(store, spec, lattice, n_samples, chunk, seed, xp, dtype, method="auto",
                generator="reference"):
    L = _lattice_api()
    extra = {"engine": "nnft.ensembles", "engine_version": ENGINE_VERSION}
    bitgen = L.bit_generator_name(xp)
    if method == "fused":
        extra["method"] = "fused"
        bitgen = FUSED_BIT_GENERATOR
    if generator != "reference":
        extra["generator"] = generator
    kw = dict(components=spec.components, source="network", spec=spec.to_dict(), seed=seed,
              backend=L.backend_name(xp), bit_generator=bitgen, dtype=dtype, extra=extra)
    if isinstance(store, L.FieldStore):
        diffs = []
        if store.lattice != lattice:
            diffs.append(f"lattice: store has {store.lattice!r}, expected {lattice!r}")
        if store.spec != kw["spec"]:
            diffs.append(f"spec: store has {store.spec}, expected {kw['spec']}")
        if store.n_samples != n_samples or store.chunk != chunk:
            diffs.append(f"n_samples/chunk: store has {store.n_samples}/{store.chunk}, expected "
                         f"{n_samples}/{chunk}")
        if seed is not None and store.seed != seed:
            diffs.append(f"seed: store has {store.seed}, expected {seed}")
        if store.source != "network":
            diffs.append(f"source: store has {store.source!r}, expected 'network'")
        if store.bit_generator is not None and store.bit_generator != bitgen:
            diffs.append(f"bit_generator: store has {store.bit_generator!r}, expected {bitgen!r}")
        if store_generator(store) != generator:
            diffs.append(f"generator: store has {store_generator(store)!r}, expected "
                         f"{generator!r}")
        if diffs:
            raise L.StoreMismatchError(f"store {str(store.path)!r} does not match: " + "; ".join(diffs))
    else:
        store = L.FieldStore.open_or_create(store, lattice, n_samples, chunk, **kw)
        if store_generator(store) != generator:  # an existing store made by the other generator
            raise L.StoreMismatchError(
                f"store {str(store.path)!r} was generated with generator="
                f"{store_generator(store)!r}; resuming with {generator!r} would mix random "
                f"streams (pass generator={store_generator(store)!r})")
    if store.backend is not None and store.backend != kw["backend"]:
        raise L.StoreMismatchError(
            f"store {str(store.path)!r} was generated with backend {store.backend!r}; resuming with "
            f"{kw['backend']!r} would mix random streams (pass backend={store.backend!r})")
    if store.seed is None:
        raise L.StoreError(f"store {str(store.path)!r} records no seed; cannot regenerate chunks")
    return store


def store_generator(store) -> str:
    """The generator that made a network store: ``"fast"`` or ``"reference"`` (older stores)."""
    return (getattr(store, "extra", None) or {}).get("generator", "reference")


class StoreRepairWarning(UserWarning):
    """A resumed store had damaged chunks; they are regenerated."""


def _prepare_resume(store, chunks=None):
    """Cross-check a resumed store's completion record with its files and clean up.

    Chunks recorded complete whose files are missing or of the wrong size (the cheap check; a
    full read is ``FieldStore.verify``) are marked incomplete, with a warning, so that they are
    regenerated (bit for bit: chunk k depends only on (seed, k)). Temporary ``*.partial`` files
    left by a killed writer are removed: all of them when this call owns the whole store
    (``chunks`` None), else those of ``chunks``.
    """
    damaged, _ = store.prepare_resume(chunks)
    if damaged:
        import warnings

        ks = sorted({p.chunk for p in damaged})
        warnings.warn(f"store {str(store.path)!r}: regenerating {len(ks)} damaged chunk(s) "
                      f"{ks}: " + "; ".join(map(str, damaged[:3])), StoreRepairWarning,
                      stacklevel=3)


def generate(spec, lattice, n_samples: int, store=None, *, chunk: int = 4096, seed=None,
             backend=None, callback=None, block=None, progress: bool = False, client=None,
             chunks=None, dtype="float64", method="auto", threads=None, writer_threads=None,
             generator="reference"):
    """Generate ``n_samples`` field configurations of the network ensemble ``spec`` on ``lattice``.

    Parameters
    ----------
    spec : Spec or dict
        Architecture (``to_dict`` form accepted).
    lattice : Lattice or PointSet
        Where the networks are evaluated; ``spec.d_in`` must equal ``lattice.dim``.
    n_samples : int
        Number of networks = configurations.
    store : str, os.PathLike, FieldStore or None
        Target store (source "network"); an existing matching store is resumed, filling only the
        chunks its complete-chunk record lacks. On resume the record is cross-checked with the
        chunk files: chunks whose file is missing or of the wrong size are regenerated (with a
        :class:`StoreRepairWarning`), and temporary files of a killed writer are removed.
        None streams to ``callback`` only.
    chunk : int
        Networks per chunk; chunk ``k`` comes from ``chunk_rng(seed, k)`` only.
    seed : int or None
        Seed entropy; None reuses a resumed store's seed or draws a fresh one.
    backend : {"numpy", "cupy", "auto"} or None
        Array backend (None: env NNFT_BACKEND, default numpy). CuPy draws parameters on the device
        and evaluates with fused kernels.
    callback : callable(k, phi, log_weight), optional
        Sees every new chunk (phi of shape ``(n, [D], *lattice.shape)`` on the backend's device;
        log_weight is None).
    block : int, optional
        Bound on the elements of the evaluation temporaries (default 2**22); never changes results.
    progress : bool
        Show a rich progress bar over chunks.
    client : dask.distributed.Client, optional
        Spread the missing chunks over the cluster's workers; each task writes its own chunks into
        the preallocated store (a path-backed store is required; no callback).
    chunks : iterable of int, optional
        Only make these chunks (the rest stay missing); for splitting work by hand.
    dtype : {"float64", "float32"}
        Storage dtype (computation in float64, or float32 with ``generator="fast"``; a float32
        store holds the fields rounded to float32, measurements accumulate in float64).
    method : {"auto", "dense", "spectral", "cuda", "fused"}
        Evaluation path (see :func:`chunk_fields`). "fused" (GaussNet, ErfNet, ReLUNet, TanhNet):
        parameters from the counter-based Philox stream, generated inside the GPU kernel with
        CuPy (float32 arithmetic), or with vectorised NumPy Philox and float64 evaluation.
    threads : int or None
        Chunks computed concurrently in threads (None: min(cores, 4) with NumPy, 1 with CuPy).
        Never changes results.
    writer_threads : int or None
        Background threads that copy finished chunks to the host, compress and write them (and
        call ``callback``) while the next chunks are computed (None: 1 with CuPy, 0 = in the
        calling thread with NumPy). With more than one, sinks may run out of order. Never changes
        results.
    generator : {"reference", "fast"}
        "reference" (default): float64 parameters and evaluation, the stream of every store
        written before. "fast" (NumPy; single-layer nets, LatticeCosNet, MassMixtureCosNet):
        float32 parameters drawn from the raw words of the chunk's generator (Box-Muller
        normals, integer alias momenta) and float32 evaluation (rational erf, BLAS sums,
        float32 phasors); the same law to float32 rounding, a different stream, 2-7x faster
        per core. Recorded in the store (``extra["generator"]``); see docs/generation.md.

    Returns
    -------
    FieldStore or None
    """
    L = _lattice_api()
    spec = _check_spec(spec)
    _check_geometry(spec, lattice)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    xp = L.get_xp(backend)
    check_generator(generator, spec, method, xp)
    if method == "fused":
        from .cuda import fused_supported

        if not fused_supported(spec):
            raise ValueError(f"method='fused' supports GaussNet, ErfNet, ReLUNet and TanhNet, "
                             f"not {type(spec).__name__}")
    if block is not None:  # None: each evaluator picks its backend's default
        _check_block(block)
    if seed is not None:
        seed = L.resolve_seed(seed)
    xp = L.get_xp(backend)
    if store is None and callback is None:
        raise ValueError("give a store to write to, a callback to stream to, or both")
    n_chunks = -(-int(n_samples) // int(chunk))
    if chunks is not None:
        chunks = [int(k) for k in chunks]
        bad = [k for k in chunks if not 0 <= k < n_chunks]
        if bad:
            raise ValueError(f"chunks: indices {bad} out of range 0..{n_chunks - 1}")
    if store is not None:
        store = _open_store(store, spec, lattice, int(n_samples), int(chunk), seed, xp, dtype,
                            method, generator)
        seed = store.seed
        _prepare_resume(store, chunks)
    seed = L.resolve_seed(seed)
    if client is not None:
        if store is None or callback is not None:
            raise ValueError("client: distributed generation needs a store and no callback")
        return _generate_distributed(spec, lattice, store, seed, client, backend=L.backend_name(xp),
                                     block=block, method=method, dtype=dtype, chunks=chunks,
                                     progress=progress, generator=generator)
    make_chunk = make_chunk_function(spec, lattice, seed, xp, block=block, method=method,
                                     dtype=dtype, generator=generator)
    desc = f"{type(spec).__name__} N={getattr(spec, 'width', '?')}"
    threads = _check_threads(threads, xp)
    writer_threads = _check_writer_threads(writer_threads, xp)
    if chunks is None:
        todo = store.missing_chunks() if store is not None else list(range(n_chunks))
    else:
        todo = chunks
        if store is not None:
            todo = [k for k in todo if not store.is_chunk_complete(k)]

    on_gpu = L.backend_name(xp) == "cupy"
    if writer_threads > 0 and on_gpu:
        make_chunk = _with_event(make_chunk)

    def sink(k, phi):
        dev = phi
        if isinstance(phi, tuple):  # (device chunk, event): copy on a side stream after the event
            dev, ev = phi
            # only a store needs the host copy; a callback gets the device array
            phi = _to_host_after(dev, ev) if store is not None else None
        if store is not None:
            store.write_chunk(k, phi)
        if callback is not None:
            callback(k, dev, None)

    run_pipeline(todo, lambda k: L.chunk_bounds(int(n_samples), int(chunk), k), make_chunk, sink,
                 threads=threads, progress=progress, description=desc,
                 writer_threads=writer_threads)
    return store


def _with_event(make_chunk):
    """Wrap a CuPy chunk producer to also return a CUDA event recorded after the chunk."""
    def wrapped(k, start, stop):
        import cupy

        phi = make_chunk(k, start, stop)
        ev = cupy.cuda.Event(block=False, disable_timing=True)
        ev.record()
        return phi, ev

    return wrapped


_SIDE_STREAMS = {}


def _to_host_after(phi, ev):
    """Device-to-host copy of ``phi`` on a non-blocking per-thread stream once ``ev`` completed."""
    import threading

    import cupy

    key = threading.get_ident()
    s = _SIDE_STREAMS.get(key)
    if s is None:
        s = _SIDE_STREAMS[key] = cupy.cuda.Stream(non_blocking=True)
    s.wait_event(ev)
    out = phi.get(stream=s)
    s.synchronize()
    return out


def _check_writer_threads(writer_threads, xp):
    L = _lattice_api()
    if writer_threads is None:
        return 1 if L.backend_name(xp) == "cupy" else 0
    if (isinstance(writer_threads, bool) or not isinstance(writer_threads, (int, np.integer))
            or writer_threads < 0):
        raise ValueError(f"writer_threads must be a non-negative integer or None, got "
                         f"{writer_threads!r}")
    return int(writer_threads)


def _check_threads(threads, xp):
    L = _lattice_api()
    if threads is None:
        return 1 if L.backend_name(xp) == "cupy" else max(1, min(os.cpu_count() or 1, 4))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def run_pipeline(todo, bounds, make_chunk, sink, *, threads=1, progress=False,
                 description="generating", writer_threads=0):
    """Make the chunks ``todo`` (in order) and hand each to ``sink(k, phi)`` in that order.

    With ``threads > 1`` up to ``threads`` chunks are computed at once in a thread pool (NumPy,
    SciPy and the random generators release the GIL), while the calling thread writes finished
    chunks; every chunk still comes only from its own stream, so results do not depend on it.
    Memory: at most ``threads + 1`` chunks in flight.

    With ``writer_threads > 0`` the sinks run in that many background threads (in order for one
    thread) while the calling thread goes on producing chunks: computation overlaps the
    host copy, compression and writing. At most ``writer_threads + 1`` finished chunks wait; the
    first sink error is raised after the submitted sinks have finished.
    """
    if writer_threads and writer_threads > 0 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=int(writer_threads)) as wx:
            pending = collections.deque()

            def drain(limit):
                while len(pending) > limit:
                    pending.popleft().result()

            def async_sink(k, phi):
                drain(int(writer_threads))
                pending.append(wx.submit(sink, k, phi))

            try:
                run_pipeline(todo, bounds, make_chunk, async_sink, threads=threads,
                             progress=progress, description=description, writer_threads=0)
                drain(0)
            finally:
                for fut in pending:  # let submitted sinks finish before leaving
                    fut.exception()
        return
    L = _lattice_api()
    with L.progress_bar(len(todo), description, progress) as advance:
        if threads <= 1 or len(todo) <= 1:
            for k in todo:
                sink(k, make_chunk(k, *bounds(k)))
                advance()
            return
        with ThreadPoolExecutor(max_workers=threads) as ex:
            it = iter(todo)
            pending = collections.deque(
                (k, ex.submit(make_chunk, k, *bounds(k))) for k in itertools.islice(it, threads))
            while pending:
                k, fut = pending.popleft()
                phi = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, ex.submit(make_chunk, nxt, *bounds(nxt))))
                sink(k, phi)
                advance()


def _write_chunks_task(spec_dict, lattice_dict, path, seed, chunks, backend, block, method, dtype,
                      generator="reference"):
    """Dask task: open the store and write the given chunks (runs on a worker)."""
    L = _lattice_api()
    spec = spec_from_dict(spec_dict)
    lattice = L.geometry_from_dict(lattice_dict)
    store = L.FieldStore.open(path, mode="r+", check=False)  # the client checked the files
    xp = L.get_xp(backend)
    make_chunk = make_chunk_function(spec, lattice, seed, xp, block=block, method=method,
                                     dtype=dtype, generator=generator)
    todo = [k for k in chunks if not store.is_chunk_complete(k)]
    run_pipeline(todo, store.chunk_range, make_chunk, store.write_chunk, threads=1)
    return list(chunks)


def _generate_distributed(spec, lattice, store, seed, client, *, backend, block, method, dtype,
                          chunks=None, progress=False, chunks_per_task=1, generator="reference"):
    L = _lattice_api()
    todo = store.missing_chunks() if chunks is None else [
        k for k in chunks if not store.is_chunk_complete(k)]
    groups = [todo[i:i + chunks_per_task] for i in range(0, len(todo), chunks_per_task)]
    futures = [client.submit(_write_chunks_task, spec.to_dict(), lattice.to_dict(), str(store.path),
                             seed, g, backend, block, method, dtype, generator, pure=False)
               for g in groups]
    from distributed import as_completed

    with L.progress_bar(len(todo), "generating (distributed)", progress) as advance:
        for fut in as_completed(futures):
            done = fut.result()
            advance(len(done))
    return L.FieldStore.open(store.path, mode="r+")


def generate_distributed(spec, lattice, n_samples: int, store, client, *, chunk: int = 4096,
                         seed=None, backend=None, block=None, progress: bool = False, chunks=None,
                         dtype="float64", method="auto", generator="reference"):
    """:func:`generate` on a dask.distributed ``client``: one task per missing chunk.

    Each task opens the preallocated store and writes whole chunks (Zarr chunk = sample chunk), so
    no two tasks touch the same file; the result is bit-identical to single-process generation.
    """
    return generate(spec, lattice, n_samples, store, chunk=chunk, seed=seed, backend=backend,
                    block=block, progress=progress, client=client, chunks=chunks, dtype=dtype,
                    method=method, generator=generator)
