"""Drive chunk producers into a FieldStore or a callback.

A *chunk producer* is ``make_chunk(k, start, stop)`` returning the configurations of samples
``start..stop-1`` (``phi``, or ``(phi, log_weight)``) drawn from the stream of chunk ``k``.
Everything that makes ensembles (networks, the exact sampler) goes through these functions,
so resume, progress and streaming behave the same everywhere.
"""
from __future__ import annotations


from .progress import progress_bar  # noqa: F401  (re-exported)
from .store import FieldStore


def _split(out):
    if isinstance(out, tuple):
        phi, log_weight = out
        return phi, log_weight
    return out, None


def chunk_bounds(n_samples: int, chunk: int, k: int) -> tuple[int, int]:
    """Sample range ``[start, stop)`` of chunk ``k``."""
    start = k * chunk
    return start, min(start + chunk, n_samples)


def fill_store(store: FieldStore, make_chunk, *, chunks=None, progress: bool = False,
               description: str = "generating", callback=None) -> FieldStore:
    """Write every missing chunk (or the given ``chunks``) of ``store``.

    Chunks already recorded complete are skipped, so re-running after a crash fills exactly
    what is missing. ``callback(k, phi, log_weight)``, if given, also sees each new chunk.
    """
    todo = store.missing_chunks() if chunks is None else [k for k in chunks if not store.is_chunk_complete(k)]
    with progress_bar(len(todo), description, progress) as advance:
        for k in todo:
            start, stop = store.chunk_range(k)
            phi, log_weight = _split(make_chunk(k, start, stop))
            store.write_chunk(k, phi, log_weight)
            if callback is not None:
                callback(k, phi, log_weight)
            advance()
    return store


def stream_chunks(n_samples: int, chunk: int, make_chunk, callback, *, progress: bool = False,
                  description: str = "generating") -> None:
    """Produce every chunk and hand it to ``callback(k, phi, log_weight)`` without storing."""
    if n_samples < 1 or chunk < 1:
        raise ValueError(f"n_samples and chunk must be >= 1, got {n_samples}, {chunk}")
    n_chunks = -(-n_samples // chunk)
    with progress_bar(n_chunks, description, progress) as advance:
        for k in range(n_chunks):
            start, stop = chunk_bounds(n_samples, chunk, k)
            phi, log_weight = _split(make_chunk(k, start, stop))
            callback(k, phi, log_weight)
            advance()


def run_chunks(n_samples: int, chunk: int, make_chunk, store: FieldStore | None = None,
               callback=None, *, progress: bool = False, description: str = "generating"):
    """Store the chunks (and pass them to ``callback``), or only stream them to ``callback``."""
    if store is None and callback is None:
        raise ValueError("give a store to write to, a callback to stream to, or both")
    if store is not None:
        if store.n_samples != n_samples or store.chunk != chunk:
            raise ValueError(f"store holds n_samples={store.n_samples}, chunk={store.chunk}; "
                             f"asked for n_samples={n_samples}, chunk={chunk}")
        return fill_store(store, make_chunk, progress=progress, description=description,
                          callback=callback)
    stream_chunks(n_samples, chunk, make_chunk, callback, progress=progress, description=description)
    return None
