"""FieldStore: an ensemble of field configurations in one Zarr v3 group.

Layout of a store directory::

    zarr.json              group metadata; attrs hold the provenance (see ``FieldStore.attrs``)
    phi/                   (sample, [component], x0, ..., x{k-1}), chunked along sample only
    log_weight/            (sample,) optional per-sample log weights (reweighted ensembles)
    x0/ ... / positions/   site coordinates (lattice axes, or the points of a PointSet)
    complete/              (chunk,) uint8 completion record, one Zarr chunk (file) per sample chunk

Crash safety: a chunk counts as written only once its entry in ``complete`` is 1, and that entry
is written after the chunk's data (Zarr's local store writes each file atomically by rename). Killing a writer at any moment
therefore never leaves a half-written chunk counted; re-running fills exactly the missing chunks.
The arrays are preallocated when the store is created and each sample chunk is one Zarr chunk,
so several writers (processes, dask workers) may fill disjoint chunks of one store side by side
without touching shared metadata. A store directory appears only once it is complete (it is
built under a temporary name and renamed), so two processes creating the same store race safely.

Integrity (see docs/storage.md): every chunk of ``phi`` and ``log_weight`` carries a CRC32C
checksum (Zarr's standard ``crc32c`` codec; no compression by default, since random fields do not
compress). Opening a store cross-checks the completion record with the chunk files (each file of a
complete chunk must exist with its exact size: cheap, no data read); reading a chunk verifies its
checksum and that every value is finite. A damaged chunk raises :class:`CorruptChunkError` naming
the chunk, its file and its samples; nothing reads fill values in its place.
:meth:`FieldStore.verify` reads everything, :meth:`FieldStore.mark_incomplete` hands damaged chunks
back to the generator, which regenerates them bit for bit (chunk ``k`` depends only on
``(seed, k)``). Non-finite values are refused when written.
"""
from __future__ import annotations

import dataclasses
import datetime
import errno as _errno
import json
import os
import platform
import re
import shutil
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import zarr

from .backend import to_numpy
from .errors import UserError
from .geometry import Lattice, PointSet

SCHEMA = "nnft.fieldstore"
SCHEMA_VERSION = 1
SOURCES = ("network", "exact_free", "mcmc", "reweighted", "external")


class StoreError(UserError):
    """A store path or store content that cannot be used."""


class StoreMismatchError(StoreError):
    """An existing store differs from what the caller asked for."""


class CorruptStoreError(StoreError):
    """A store whose metadata (``zarr.json`` files) is missing, unreadable or inconsistent."""


class CorruptChunkError(StoreError):
    """Chunks recorded complete whose files are missing or damaged, or whose values are not finite.

    Attributes
    ----------
    path : pathlib.Path
        The store.
    problems : list of ChunkProblem
        One entry per damaged chunk (index, file, sample range, reason).
    """

    def __init__(self, path, problems, regenerable: bool = True):
        self.path = Path(path)
        self.problems = list(problems)
        ks = sorted({p.chunk for p in self.problems})
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        how = (f"run: nnft verify {str(self.path)} --repair" if regenerable else
               "this store cannot be regenerated chunk by chunk: re-run what made it")
        super().__init__(f"store {str(self.path)!r} is damaged: {first}{more}; chunks to "
                         f"regenerate: {_ranges(ks)} ({how})")


class NonFiniteError(StoreError):
    """A chunk handed to :meth:`FieldStore.write_chunk` holds NaN or infinite values."""


class StoreWriteError(StoreError):
    """Writing a chunk failed in the file system (disk full, read-only folder, ...).

    The chunk is not marked complete; ``errno`` is the operating-system error number.
    """

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


@dataclasses.dataclass(frozen=True)
class ChunkProblem:
    """What is wrong with one chunk.

    ``chunk`` index, samples ``[start, stop)``, ``file`` (path), ``reason`` (one line).
    """

    chunk: int
    start: int
    stop: int
    file: str
    reason: str

    def __str__(self):
        return (f"chunk {self.chunk} (samples {self.start}..{self.stop - 1}): {self.file}: "
                f"{self.reason}")


@dataclasses.dataclass
class VerifyReport:
    """Result of :meth:`FieldStore.verify`.

    Attributes
    ----------
    path : pathlib.Path
    n_chunks : int
    ok : list of int
        Chunks recorded complete whose files, checksums and values are all good.
    bad : list of ChunkProblem
        Chunks recorded complete that are damaged (to regenerate).
    missing : list of int
        Chunks never written (not recorded complete): an unfinished store, not damage.
    checksums : bool
        Whether the store's chunks carry CRC32C checksums (without them a flipped bit that keeps
        the values finite cannot be detected).
    partial_files : list of pathlib.Path
        Temporary ``*.partial`` files left by an interrupted write.
    """

    path: Path
    n_chunks: int
    ok: list
    bad: list
    missing: list
    checksums: bool
    partial_files: list

    @property
    def clean(self) -> bool:
        """No damaged chunk (an unfinished store can be clean)."""
        return not self.bad

    @property
    def to_regenerate(self) -> list[int]:
        """Sorted indices of the damaged chunks."""
        return sorted({p.chunk for p in self.bad})

    def __str__(self):
        lines = [f"store {str(self.path)!r}: {self.n_chunks} chunks, {len(self.ok)} ok, "
                 f"{len(self.to_regenerate)} damaged, {len(self.missing)} never written "
                 f"({'crc32c checksums' if self.checksums else 'no checksums'})"]
        lines += [f"  {p}" for p in self.bad]
        if self.partial_files:
            lines.append(f"  {len(self.partial_files)} stale temporary file(s) from an interrupted "
                         "write (removed when generation resumes)")
        return "\n".join(lines)


def _ranges(ks) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out, ks = [], sorted(ks)
    i = 0
    while i < len(ks):
        j = i
        while j + 1 < len(ks) and ks[j + 1] == ks[j] + 1:
            j += 1
        out.append(str(ks[i]) if i == j else f"{ks[i]}-{ks[j]}")
        i = j + 1
    return ", ".join(out)


def _versions() -> dict:
    import xarray

    from importlib.metadata import PackageNotFoundError, version

    try:
        nnft_version = version("nnft")
    except PackageNotFoundError:
        nnft_version = "unknown"

    out = {"nnft": nnft_version, "numpy": np.__version__, "zarr": zarr.__version__,
           "xarray": xarray.__version__, "python": platform.python_version()}
    try:
        import cupy

        out["cupy"] = cupy.__version__
    except Exception:
        pass
    return out


# Codec chains of the sample-chunked arrays. "crc32c" (the default) was chosen by measurement
# (benchmarks/checksums.py): random float64 fields compress by only ~12%, and decoding Blosc took
# ~2x the read time. "lz4" is the format of stores written before checksums existed.
CODECS = ("crc32c", "lz4+crc32c", "lz4", "raw")
DEFAULT_CODEC = "crc32c"
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")  # Zarr's temporary name while writing a file


def _blosc():
    return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def _compressors(codec: str):
    if codec not in CODECS:
        raise StoreError(f"codec must be one of {CODECS}, got {codec!r}")
    return {"crc32c": [zarr.codecs.Crc32cCodec()],
            "lz4+crc32c": [_blosc(), zarr.codecs.Crc32cCodec()],
            "lz4": [_blosc()], "raw": None}[codec]


def _geometry_from_attrs(d):
    return Lattice.from_dict(d)


class FieldStore:
    """A Zarr-backed ensemble of field configurations.

    Create with :meth:`create`, open with :meth:`open` (validating), or
    :meth:`open_or_create` to resume. See the module docstring for the layout and guarantees.
    """

    def __init__(self, path, group, mode: str, check: bool = True):
        self.path = Path(path)
        self._group = group
        self._mode = mode
        a = dict(group.attrs)
        self.attrs = a
        self.lattice = _geometry_from_attrs(a["lattice"])
        self.n_samples = int(a["n_samples"])
        self.chunk = int(a["chunk"])
        self.components = a.get("components")
        self.spec = a.get("spec")
        self.seed = int(a["seed"]) if a.get("seed") not in (None, "") else None
        self.source = a["source"]
        self.weighted = bool(a.get("weighted", False))
        self.dtype = np.dtype(a["dtype"])
        self.n_replicas = int(a.get("n_replicas", 1))
        self.extra = a.get("extra", {}) or {}
        self.backend = a.get("backend")
        self.bit_generator = a.get("bit_generator")
        self._data_arrays = ("phi", "log_weight") if self.weighted else ("phi",)
        self._damage: dict[int, ChunkProblem] = {}
        self._arrays: dict = {}
        self._size_cache = None
        rec = self._arr("complete")
        self._plain_record = (rec.dtype == np.uint8 and rec.chunks == (1,) and
                              [type(c) for c in rec.metadata.codecs] == [zarr.codecs.BytesCodec])
        if check:
            self.check_files()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, path, lattice, n_samples: int, chunk: int, *, components=None,
               source: str = "network", spec: dict | None = None, seed: int | None = None,
               backend: str = "numpy", bit_generator: str = "PCG64", weighted: bool = False,
               dtype="float64", n_replicas: int = 1, extra: dict | None = None,
               overwrite: bool = False, codec: str | None = None) -> "FieldStore":
        """Create a new, empty (preallocated) store.

        Parameters
        ----------
        path : str or os.PathLike
            Directory of the store (must not exist unless ``overwrite``).
        lattice : Lattice or PointSet
            Geometry of one configuration.
        n_samples, chunk : int
            Number of configurations and configurations per chunk (>= 1).
        components : int or None
            Number of field components D (None: a scalar field, no component axis).
        source : {"network", "exact_free", "mcmc", "reweighted", "external"}
        spec : dict or None
            JSON-serialisable description of what made the configurations.
        seed : int or None
            Seed entropy (stored as a string: it may exceed 64 bits).
        weighted : bool
            Whether a per-sample ``log_weight`` array is kept.
        n_replicas : int
            Markov chains stored time-major (sample ``t * n_replicas + r``); 1 otherwise.
        extra : dict
            Further JSON-serialisable provenance (sampler settings, ...).
        overwrite : bool
            Replace an existing store at ``path``. Only an nnft FieldStore holding nothing but
            what nnft writes is replaced (atomically: the new store is built, then swapped in);
            any other directory or file is refused.
        codec : {"crc32c", "lz4+crc32c", "lz4", "raw"} or None
            Chunk encoding of ``phi`` and ``log_weight``: CRC32C checksum only, Blosc/LZ4
            compression then checksum, compression only (the format of stores written before
            checksums), or raw bytes. None: ``nnft.lattice.store.DEFAULT_CODEC`` ("crc32c").
            Without "crc32c" damage that keeps the
            values finite cannot be detected.
        """
        path = Path(path)
        lattice = _check_geometry(lattice)
        n_samples = _positive_int(n_samples, "n_samples")
        chunk = _positive_int(chunk, "chunk")
        if components is not None:
            components = _positive_int(components, "components")
        if source not in SOURCES:
            raise StoreError(f"source must be one of {SOURCES}, got {source!r}")
        n_replicas = _positive_int(n_replicas, "n_replicas")
        if chunk % n_replicas:
            raise StoreError(f"chunk ({chunk}) must be a multiple of n_replicas ({n_replicas})")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise StoreError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dtype not in (np.float32, np.float64):
            raise StoreError(f"dtype must be float32 or float64, got {dtype}")
        compressors = _compressors(DEFAULT_CODEC if codec is None else codec)
        try:
            json.dumps(spec)
            json.dumps(extra or {})
        except TypeError as e:
            raise StoreError(f"spec and extra must be JSON-serialisable: {e}") from None
        replace = False
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise StoreError(f"store path {str(path)!r} already exists (use overwrite=True, "
                                 "or open_or_create to resume)")
            _check_removable(path)
            replace = True
        if not path.parent.is_dir():
            raise StoreError(f"store path {str(path)!r}: parent directory does not exist")
        attrs = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "source": source, "spec": spec,
            "lattice": lattice.to_dict(), "n_samples": n_samples, "chunk": chunk,
            "n_chunks": -(-n_samples // chunk), "components": components,
            "seed": None if seed is None else str(int(seed)), "backend": backend,
            "bit_generator": bit_generator, "weighted": bool(weighted), "dtype": dtype.name,
            "n_replicas": n_replicas, "extra": extra or {}, "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            _build(tmp, attrs, lattice, components, dtype, compressors, weighted)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreWriteError(f"cannot create store {str(path)!r}: {e.strerror or e}",
                                  e.errno) from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if replace:  # swap: old store aside, new one in, then delete the old one
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if path.exists():
                    raise StoreError(f"store path {str(path)!r} was created by another process "
                                     "meanwhile; open it instead") from None
                raise
        return cls(path, zarr.open_group(path, mode="r+", zarr_format=3), "r+", check=False)

    @classmethod
    def open(cls, path, *, lattice=None, spec: dict | None = None, source: str | None = None,
             mode: str = "r", check: bool = True) -> "FieldStore":
        """Open an existing store and check it is what the caller expects.

        With ``check`` (default) the completion record is cross-checked with the chunk files
        (existence and exact size of the file of every complete chunk; no data is read): damaged
        chunks are listed by :meth:`damaged_chunks` and raise :class:`CorruptChunkError` when read.

        Raises
        ------
        StoreError
            The path does not exist or is not an nnft FieldStore of a known schema version.
        CorruptStoreError
            A metadata file (``zarr.json``) is missing, not valid JSON or inconsistent; the
            message names the file.
        StoreMismatchError
            ``lattice``, ``spec`` or ``source`` differ from the store's; the message says what.
        """
        if mode not in ("r", "r+"):
            raise StoreError(f"mode must be 'r' or 'r+', got {mode!r}")
        path = Path(path)
        if not path.exists():
            raise StoreError(f"no store at {str(path)!r}")
        if not (path / "zarr.json").exists():
            raise StoreError(f"{str(path)!r} is not a Zarr v3 group (no zarr.json)")
        meta = _read_json(path / "zarr.json")
        a = meta.get("attributes") or {}
        if not isinstance(a, dict) or a.get("schema") != SCHEMA:
            raise StoreError(f"{str(path)!r} is not an nnft FieldStore (schema attr "
                             f"{a.get('schema') if isinstance(a, dict) else None!r}, "
                             f"expected {SCHEMA!r})")
        if a.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{str(path)!r} has FieldStore schema version "
                             f"{a.get('schema_version')!r}; this nnft reads version {SCHEMA_VERSION}")
        missing = [k for k in ("lattice", "n_samples", "chunk", "source", "dtype") if k not in a]
        if missing:
            raise CorruptStoreError(f"store {str(path)!r} is damaged: {path / 'zarr.json'} lacks "
                                    f"the attributes {missing}")
        arrays = ("phi", "complete") + (("log_weight",) if a.get("weighted") else ())
        for name in arrays:
            f = path / name / "zarr.json"
            if not f.is_file():
                raise CorruptStoreError(f"store {str(path)!r} is damaged: {f} is missing")
            _read_json(f)
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
            shapes = {name: (group[name].shape, group[name].chunks) for name in arrays}
        except Exception as e:  # noqa: BLE001
            raise CorruptStoreError(f"store {str(path)!r} is damaged: its Zarr metadata cannot be "
                                    f"read ({_one_line(e)})") from None
        try:
            store = cls(path, group, mode, check=False)
        except Exception as e:  # noqa: BLE001
            raise CorruptStoreError(f"store {str(path)!r} is damaged: attributes in "
                                    f"{path / 'zarr.json'} are invalid ({_one_line(e)})") from None
        n, c = store.n_samples, store.chunk
        want = {"phi": ((n,) + store.field_shape, (c,) + store.field_shape),
                "complete": ((store.n_chunks,), (1,)), "log_weight": ((n,), (c,))}
        for name in arrays:
            if tuple(shapes[name][0]) != want[name][0] or tuple(shapes[name][1]) != want[name][1]:
                raise CorruptStoreError(
                    f"store {str(path)!r} is damaged: {path / name / 'zarr.json'} gives shape "
                    f"{shapes[name][0]} and chunks {shapes[name][1]}, the store attributes "
                    f"{want[name][0]} and {want[name][1]}")
        diffs = []
        if lattice is not None and _check_geometry(lattice) != store.lattice:
            diffs.append(f"lattice: store has {store.lattice!r}, expected {lattice!r}")
        if spec is not None and _canon(spec) != _canon(store.spec):
            diffs.append(f"spec: store has {store.spec}, expected {spec}")
        if source is not None and source != store.source:
            diffs.append(f"source: store has {store.source!r}, expected {source!r}")
        if diffs:
            raise StoreMismatchError(f"store {str(path)!r} does not match: " + "; ".join(diffs))
        if check:
            store.check_files()
        return store

    @classmethod
    def open_or_create(cls, path, lattice, n_samples: int, chunk: int, **kwargs) -> "FieldStore":
        """Resume a matching store at ``path``, or create it.

        All arguments of :meth:`create` that describe the ensemble (lattice, spec, source,
        n_samples, chunk, components, dtype, weighted, n_replicas, and seed when given) must match
        an existing store; otherwise :class:`StoreMismatchError` says what differs. Chunks whose
        files fail the cheap check are listed in :meth:`missing_chunks` (so resuming rewrites
        them).
        """
        path = Path(path)
        if path.exists():
            store = cls.open(path, mode="r+")
            _compare(store, lattice, n_samples, chunk, kwargs)
            return store
        try:
            return cls.create(path, lattice, n_samples, chunk, **kwargs)
        except StoreWriteError:
            raise
        except StoreError:
            if path.exists():  # another process created it meanwhile
                store = cls.open(path, mode="r+")
                _compare(store, lattice, n_samples, chunk, kwargs)
                return store
            raise

    # -- geometry of chunks ------------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk)

    @property
    def field_shape(self) -> tuple[int, ...]:
        """Shape of one configuration: ``([D], *lattice.shape)``."""
        return (() if self.components is None else (self.components,)) + self.lattice.shape

    def chunk_range(self, k: int) -> tuple[int, int]:
        """Samples ``[start, stop)`` held by chunk ``k``."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range 0..{self.n_chunks - 1}")
        start = k * self.chunk
        return start, min(start + self.chunk, self.n_samples)

    @property
    def checksums(self) -> bool:
        """Whether the chunks of ``phi`` carry a CRC32C checksum."""
        return any(isinstance(c, zarr.codecs.Crc32cCodec)
                   for c in self._arr("phi").metadata.codecs)

    def chunk_file(self, k: int, array: str = "phi") -> Path:
        """Path of the file holding chunk ``k`` of ``array`` ("phi" or "log_weight")."""
        arr = self._arr(array)
        return self.path / array / arr.metadata.encode_chunk_key((k,) + (0,) * (arr.ndim - 1))

    # -- writing -----------------------------------------------------------------------------
    def write_chunk(self, k: int, phi, log_weight=None) -> None:
        """Write chunk ``k`` (NumPy or CuPy data) and then mark it complete.

        Raises
        ------
        NonFiniteError
            ``phi`` (after conversion to the store's dtype) or ``log_weight`` holds NaN or
            infinite values; the message names the chunk and the first bad sample. Nothing is
            written.
        StoreWriteError
            The file system refused the write (disk full, read-only, ...); the chunk stays
            incomplete and the store stays valid.
        """
        if self._mode == "r":
            raise StoreError(f"store {str(self.path)!r} was opened read-only")
        start, stop = self.chunk_range(k)
        phi = to_numpy(phi)
        want = (stop - start,) + self.field_shape
        if phi.shape != want:
            raise StoreError(f"chunk {k} must have shape {want}, got {phi.shape}")
        if self.weighted:
            if log_weight is None:
                raise StoreError("this store is weighted: write_chunk needs log_weight")
            log_weight = to_numpy(log_weight).astype(np.float64)
            if log_weight.shape != (stop - start,):
                raise StoreError(f"log_weight of chunk {k} must have shape {(stop - start,)}")
        elif log_weight is not None:
            raise StoreError("this store is unweighted: log_weight must be None")
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            phi = phi.astype(self.dtype, copy=False)
        for name, x in (("phi", phi), ("log_weight", log_weight)):
            i = None if x is None else _first_nonfinite(x)
            if i is not None:
                raise NonFiniteError(
                    f"chunk {k} of store {str(self.path)!r}: {name} holds a non-finite value "
                    f"({_bad_value(x[i])}) at sample {start + i} (sample {i} of the chunk"
                    f"{', after conversion to ' + self.dtype.name if name == 'phi' else ''}); "
                    "nothing was written")
        try:
            self._arr("phi")[start:stop] = phi
            if self.weighted:
                self._arr("log_weight")[start:stop] = log_weight
            self._arr("complete")[k] = 1
        except OSError as e:
            what = {_errno.ENOSPC: "no space left on device", _errno.EROFS: "read-only file system",
                    _errno.EACCES: "permission denied"}.get(e.errno, e.strerror or str(e))
            raise StoreWriteError(f"cannot write chunk {k} of store {str(self.path)!r}: {what}; "
                                  "the chunk is not marked complete (re-run to resume)",
                                  e.errno) from e
        self._damage.pop(k, None)

    def mark_incomplete(self, chunks) -> list[int]:
        """Clear the completion record of ``chunks`` so that the generator regenerates them.

        Returns the sorted chunk indices. Use after :meth:`verify` found damage; then re-run the
        generation (``generate``/``sample_free_field``/``nnft run`` on the same store), which
        rewrites exactly these chunks, bit for bit.
        """
        if self._mode == "r":
            raise StoreError(f"store {str(self.path)!r} was opened read-only")
        ks = sorted({int(k) for k in chunks})
        for k in ks:
            self.chunk_range(k)  # range check
        for k in ks:
            try:
                self._arr("complete")[k] = 0
            except OSError as e:
                raise StoreWriteError(f"cannot update the completion record of store "
                                      f"{str(self.path)!r}: {e.strerror or e}", e.errno) from e
            self._damage.pop(k, None)
        return ks

    # -- completeness ------------------------------------------------------------------------
    def _arr(self, name):
        """The Zarr array ``name`` (opened once: each group lookup re-reads its metadata)."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self._group[name]
        return arr

    def _sizes(self):
        if self._size_cache is None:
            self._size_cache = {name: _expected_size(self._arr(name))
                                for name in self._data_arrays}
        return self._size_cache

    def _recorded(self, k: int) -> bool:
        arr = self._arr("complete")
        if self._plain_record:  # one raw byte per file: read it directly (Zarr costs ~1 ms)
            f = self.path / "complete" / arr.metadata.encode_chunk_key((k,))
            try:
                b = f.read_bytes()
            except FileNotFoundError:
                return False  # the fill value 0
            except OSError:
                return False
            return len(b) == 1 and b != b"\0"  # anything else is unreadable: "not written"
        try:
            return bool(arr[k])
        except Exception:  # noqa: BLE001 - an unreadable record entry means "not written"
            return False

    def is_chunk_complete(self, k: int) -> bool:
        """Chunk ``k`` is recorded complete and its files passed the cheap check."""
        return k not in self._damage and self._recorded(k)

    def complete_chunks(self) -> list[int]:
        """Sorted indices of the chunks recorded complete.

        Damaged chunks (see :meth:`damaged_chunks`) are included, so that a reader iterating over
        them gets a :class:`CorruptChunkError` rather than silently fewer samples.
        """
        try:
            flags = np.asarray(self._arr("complete")[:])
        except Exception:  # noqa: BLE001 - fall back to entry-by-entry reading
            flags = np.array([self._recorded(k) for k in range(self.n_chunks)])
        return [int(k) for k in np.flatnonzero(flags)]

    def missing_chunks(self) -> list[int]:
        """Chunks to (re)write: not recorded complete, or recorded complete but damaged."""
        done = set(self.complete_chunks()) - set(self._damage)
        return [k for k in range(self.n_chunks) if k not in done]

    def damaged_chunks(self) -> list[ChunkProblem]:
        """Problems found by the last :meth:`check_files` (on open by default)."""
        return [self._damage[k] for k in sorted(self._damage)]

    def check_files(self, chunks=None) -> list[ChunkProblem]:
        """Cheap cross-check of the completion record with the chunk files.

        The file of every chunk recorded complete (of ``phi`` and ``log_weight``) must exist
        and, for uncompressed chunks, have exactly the size of its data (plus the 4-byte
        checksum). No data is read: a few microseconds per chunk. Checksums and values are
        checked by :meth:`read_chunk` and :meth:`verify`. Returns (and remembers) the problems.
        """
        ks = self.complete_chunks() if chunks is None else [int(k) for k in chunks]
        if chunks is None:
            self._damage = {}
        sizes = self._sizes()
        out = []
        for k in ks:
            p = self._file_problem(k, sizes)
            if p is None:
                self._damage.pop(k, None)
            else:
                self._damage[k] = p
                out.append(p)
        return out

    def _file_problem(self, k, sizes=None):
        if sizes is None:
            sizes = self._sizes()
        start, stop = self.chunk_range(k)
        for name in self._data_arrays:
            f = self.chunk_file(k, name)
            try:
                size = f.stat().st_size
            except FileNotFoundError:
                return ChunkProblem(k, start, stop, str(f), "file missing")
            except OSError as e:
                return ChunkProblem(k, start, stop, str(f), f"cannot stat: {e.strerror or e}")
            want = sizes[name]
            if want is not None and size != want:
                return ChunkProblem(k, start, stop, str(f), f"{size} bytes, expected {want} "
                                    f"({'truncated' if size < want else 'too long'})")
            if want is None and size == 0:
                return ChunkProblem(k, start, stop, str(f), "empty file")
        return None

    @property
    def is_complete(self) -> bool:
        return not self.missing_chunks()

    @property
    def n_complete_samples(self) -> int:
        return sum(stop - start for start, stop in map(self.chunk_range, self.complete_chunks()))

    # -- reading -----------------------------------------------------------------------------
    def read_chunk(self, k: int, *, check_finite: bool = True):
        """``(phi, log_weight)`` of complete chunk ``k`` as NumPy arrays (log_weight may be None).

        Raises
        ------
        CorruptChunkError
            The chunk's file is missing, of the wrong size, fails its checksum or cannot be
            decoded, or (with ``check_finite``) holds a NaN or infinite value; the message names
            the chunk, its file and its samples (and the first non-finite sample).
        StoreError
            The chunk is not recorded complete.
        """
        if k in self._damage:
            raise self._corrupt([self._damage[k]])
        if not self._recorded(k):
            raise StoreError(f"chunk {k} of {str(self.path)!r} is not complete")
        p = self._file_problem(k)  # deleted or truncated since the store was opened
        if p is not None:
            self._damage[k] = p
            raise self._corrupt([p])
        start, stop = self.chunk_range(k)
        out = []
        for name in self._data_arrays:
            try:
                x = self._read_block(name, start, stop)
            except Exception as e:  # noqa: BLE001 - any decoding failure of this one chunk
                p = ChunkProblem(k, start, stop, str(self.chunk_file(k, name)), _decode_reason(e))
                raise self._corrupt([p]) from None
            if check_finite:
                i = _first_nonfinite(x)
                if i is not None:
                    p = ChunkProblem(k, start, stop, str(self.chunk_file(k, name)),
                                     f"non-finite value ({_bad_value(x[i])}) at sample {start + i}")
                    raise self._corrupt([p])
            out.append(x)
        return out[0], (out[1] if self.weighted else None)

    def _corrupt(self, problems):
        return CorruptChunkError(self.path, problems,
                                 regenerable=self.source in ("network", "exact_free"))

    def _read_block(self, name, start, stop):
        x = self._read_direct(name, start, stop)
        if x is not None:
            return x
        # one chunk = one Zarr task, so a failure cannot leave sibling tasks pending
        return self._arr(name)[start:stop]

    def _direct_layout(self, name):
        """``(dtype, chunk shape, has_crc32c)`` when a chunk file of ``name`` is the plain
        little-endian bytes of the chunk (optionally followed by Zarr's CRC32C), else None."""
        cache = self.__dict__.setdefault("_direct_cache", {})
        if name not in cache:
            cache[name] = None
            try:
                arr = self._arr(name)
                codecs = list(arr.metadata.codecs)
                dt = np.dtype(arr.dtype)
                first = codecs[0] if codecs else None
                endian = getattr(getattr(first, "endian", None), "value",
                                 getattr(first, "endian", None))
                rest = codecs[1:]
                if (sys.byteorder == "little" and isinstance(first, zarr.codecs.BytesCodec)
                        and endian in (None, "little") and len(rest) <= 1
                        and all(isinstance(c, zarr.codecs.Crc32cCodec) for c in rest)
                        and dt.kind in "fciu"):
                    cache[name] = (dt.newbyteorder("<"), tuple(int(c) for c in arr.chunks),
                                   bool(rest))
            except Exception:  # noqa: BLE001 - any doubt: read through Zarr
                cache[name] = None
        return cache[name]

    def _read_direct(self, name, start, stop):
        """Chunk ``[start, stop)`` read from its file and checked (CRC32C) without the Zarr
        pipeline: the same array at storage speed. None (then Zarr reads it, and reports any
        damage) when the layout is not plain bytes, the range is not one chunk, or anything
        about the file does not match."""
        lay = self._direct_layout(name)
        if lay is None:
            return None
        dt, chunk, crc = lay
        if start % chunk[0] or stop - start > chunk[0] or stop <= start:
            return None
        nbytes = int(np.prod(chunk)) * dt.itemsize
        buf = np.empty(nbytes + 4 * crc, dtype=np.uint8)  # not zero-filled
        try:
            with open(self.chunk_file(start // chunk[0], name), "rb") as fh:
                got = fh.readinto(buf)
                if got != len(buf) or fh.read(1):
                    return None
        except OSError:
            return None
        if crc:
            import google_crc32c  # noqa: PLC0415 - a dependency of Zarr's crc32c codec

            body = buf[:nbytes].view()
            body.flags.writeable = False  # google_crc32c takes read-only buffers only
            if np.uint32(google_crc32c.value(body)).tobytes() != buf[nbytes:].tobytes():
                return None
        return buf[:nbytes].view(dt).reshape(chunk)[:stop - start]

    def iter_chunks(self, chunks=None):
        """Yield ``(k, phi, log_weight)`` for the complete chunks (or the given ones), in order.

        Chunks already known to be damaged (cheap check on open) are reported before anything
        is read; others raise :class:`CorruptChunkError` when reached.
        """
        ks = self.complete_chunks() if chunks is None else list(chunks)
        bad = [self._damage[k] for k in ks if k in self._damage]
        if bad:
            raise self._corrupt(bad)
        for k in ks:
            phi, lw = self.read_chunk(k)
            yield k, phi, lw

    def verify(self, progress: bool = False) -> VerifyReport:
        """Read every complete chunk: file present and of the right size, checksum, finiteness.

        Memory: one chunk at a time. Returns a :class:`VerifyReport`; pass its
        ``to_regenerate`` to :meth:`mark_incomplete`, then resume the generation.
        """
        ok, bad = [], []
        ks = self.complete_chunks()
        self.check_files()
        from .progress import progress_bar

        with progress_bar(len(ks), f"verifying {self.path.name}", progress) as advance:
            for k in ks:
                try:
                    self.read_chunk(k)
                except CorruptChunkError as e:
                    bad.extend(e.problems)
                    self._damage[k] = e.problems[0]
                else:
                    ok.append(k)
                advance()
        done = set(ks)
        missing = [k for k in range(self.n_chunks) if k not in done]
        return VerifyReport(self.path, self.n_chunks, ok, bad, missing, self.checksums,
                            self.partial_files())

    def prepare_resume(self, chunks=None):
        """Before writing again: cross-check the record with the files, clean up temporaries.

        Chunks recorded complete whose files fail the cheap check are marked incomplete (so the
        writer regenerates them) and the temporary ``*.partial`` files of a killed writer are
        removed: all of them when the caller owns the whole store (``chunks`` None), else those
        of ``chunks``. Returns ``(damaged, removed)``: the ChunkProblems found and the files
        removed. Do not call while another process writes the same chunks.
        """
        damaged = self.check_files()
        if damaged:
            self.mark_incomplete([p.chunk for p in damaged])
        removed = self.remove_partial_files(chunks) if self.partial_files(chunks) else []
        return damaged, removed

    def partial_files(self, chunks=None) -> list[Path]:
        """Temporary files (``*.<hex>.partial``) left inside the store by an interrupted write.

        With ``chunks`` only those of these chunk indices (of any array).
        """
        want = None if chunks is None else {int(k) for k in chunks}
        out = []
        for name in ("phi", "log_weight", "complete"):
            root = self.path / name
            if not root.is_dir():
                continue
            for dirpath, _, files in os.walk(root):
                for f in files:
                    if not _PARTIAL.search(f):
                        continue
                    p = Path(dirpath) / f
                    if want is not None:
                        rel = p.relative_to(root).parts
                        if len(rel) < 2 or rel[0] != "c":
                            continue
                        head = _PARTIAL.sub("", rel[1]) if len(rel) == 2 else rel[1]
                        if not head.isdigit() or int(head) not in want:
                            continue
                    out.append(p)
        return sorted(out)

    def remove_partial_files(self, chunks=None) -> list[Path]:
        """Delete the temporary files of :meth:`partial_files` (the caller owns these chunks).

        Only call this when no other process is writing the same chunks: the generator does it
        for the chunks it is about to write, when it resumes.
        """
        if self._mode == "r":
            raise StoreError(f"store {str(self.path)!r} was opened read-only")
        removed = []
        for p in self.partial_files(chunks):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
        return removed

    def to_xarray(self, complete_only: bool = True):
        """The store as a lazily loaded, dask-chunked :class:`xarray.Dataset`.

        With ``complete_only`` the samples of incomplete chunks are left out. Raises
        :class:`CorruptChunkError` when the cheap check found damaged chunks (xarray would
        read their fill values); checksums are still verified when the data are loaded.
        """
        import xarray as xr

        if self._damage:
            raise self._corrupt(self.damaged_chunks())
        with warnings.catch_warnings():
            # side folders of a store (e.g. Markov-chain states) are not Zarr nodes
            warnings.filterwarnings("ignore", message=".*not recognized as a component")
            ds = xr.open_zarr(self.path, consolidated=False, zarr_format=3,
                              chunks={"sample": self.chunk}).drop_vars("complete")
        ds.attrs = dict(self.attrs)
        if complete_only and not self.is_complete:
            idx = np.concatenate([np.arange(*self.chunk_range(k)) for k in self.complete_chunks()]
                                 or [np.zeros(0, dtype=int)])
            ds = ds.isel(sample=idx)
        return ds

    def __repr__(self) -> str:
        return (f"FieldStore({str(self.path)!r}, source={self.source!r}, lattice={self.lattice!r}, "
                f"n_samples={self.n_samples}, chunk={self.chunk}, "
                f"complete={len(self.complete_chunks())}/{self.n_chunks})")


# -- helpers ---------------------------------------------------------------------------------
def _build(tmp, attrs, lattice, components, dtype, compressors, weighted):
    group = zarr.open_group(tmp, mode="w", zarr_format=3, attributes=attrs)
    n_samples, chunk = attrs["n_samples"], attrs["chunk"]
    comp = () if components is None else (components,)
    spatial = tuple(f"x{i}" for i in range(len(lattice.shape)))
    dims = ("sample",) + (("component",) if components is not None else ()) + spatial
    group.create_array("phi", shape=(n_samples,) + comp + lattice.shape, dtype=dtype,
                       chunks=(chunk,) + comp + lattice.shape, compressors=compressors,
                       dimension_names=dims, fill_value=np.nan)
    if weighted:
        group.create_array("log_weight", shape=(n_samples,), dtype="float64", chunks=(chunk,),
                           compressors=compressors, dimension_names=("sample",),
                           fill_value=np.nan)
    if isinstance(lattice, Lattice):
        for mu in range(lattice.dim):
            arr = group.create_array(f"x{mu}", shape=(lattice.shape[mu],), dtype="float64",
                                     dimension_names=(f"x{mu}",))
            arr[:] = lattice.axis_coords(mu)
    else:
        arr = group.create_array("positions", shape=(lattice.volume, lattice.dim),
                                 dtype="float64", dimension_names=("x0", "dim"))
        arr[:] = lattice.positions()
    group.create_array("complete", shape=(attrs["n_chunks"],), dtype="uint8", chunks=(1,),
                       compressors=None, dimension_names=("chunk",), fill_value=0)


def _expected_size(arr):
    """Exact byte size of one encoded chunk when the codecs make it fixed, else None."""
    n = int(np.prod(arr.chunks)) * arr.dtype.itemsize
    for c in arr.metadata.codecs:
        if isinstance(c, zarr.codecs.Crc32cCodec):
            n += 4
        elif not isinstance(c, zarr.codecs.BytesCodec):
            return None
    return n


def _first_nonfinite(x):
    """Index along axis 0 of the first sample holding NaN/inf, or None (fast path: one sum)."""
    x = np.asarray(x)
    if x.size == 0:
        return None
    with np.errstate(all="ignore"):
        if np.isfinite(np.add.reduce(x, axis=None, dtype=np.float64)):
            return None  # a NaN or inf anywhere makes the sum non-finite
    flat = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    bad = np.flatnonzero(~flat)
    return int(bad[0]) if bad.size else None  # only an overflowing sum: all finite


def _bad_value(sample):
    s = np.asarray(sample)
    return "nan" if np.isnan(s).any() else "inf"


def _read_json(f: Path) -> dict:
    try:
        text = f.read_bytes()
    except OSError as e:
        raise CorruptStoreError(f"cannot read {f}: {e.strerror or e}") from None
    try:
        d = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptStoreError(f"damaged metadata file {f}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise CorruptStoreError(f"damaged metadata file {f}: not a JSON object")
    return d


def _one_line(e) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"


def _decode_reason(e) -> str:
    msg = str(e)
    if "checksum" in msg.lower():
        return "checksum mismatch (the file was changed after it was written)"
    return f"cannot be decoded ({_one_line(e)})"


def _positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise StoreError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _check_geometry(lattice):
    if not isinstance(lattice, (Lattice, PointSet)):
        raise StoreError(f"lattice must be an nnft Lattice or PointSet, got {lattice!r}")
    return lattice


def _canon(d):
    return json.loads(json.dumps(d, sort_keys=True)) if d is not None else None


_STORE_ENTRIES = {"zarr.json", "phi", "log_weight", "complete", "positions", "_nnft_mcmc"}


def _check_removable(path: Path):
    """Refuse (one line) to replace anything but an nnft FieldStore holding only nnft's files."""
    if path.is_symlink() or not path.is_dir() or not (path / "zarr.json").is_file():
        raise StoreError(f"refusing to overwrite {str(path)!r}: it is not a Zarr store")
    try:
        attrs = json.loads((path / "zarr.json").read_bytes()).get("attributes") or {}
    except (OSError, ValueError, AttributeError):
        attrs = {}
    if not isinstance(attrs, dict) or attrs.get("schema") != SCHEMA:
        raise StoreError(f"refusing to overwrite {str(path)!r}: it is not an nnft FieldStore")
    foreign = sorted(n for n in os.listdir(path)
                     if n not in _STORE_ENTRIES and not re.fullmatch(r"x\d+", n))
    if foreign:
        raise StoreError(f"refusing to overwrite {str(path)!r}: it holds files nnft did not "
                         f"write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})")


def _compare(store, lattice, n_samples, chunk, kw):
    diffs = []

    def want(name, have, expected):
        if expected is not None and have != expected:
            diffs.append(f"{name}: store has {have!r}, expected {expected!r}")

    want("lattice", store.lattice, _check_geometry(lattice))
    want("n_samples", store.n_samples, n_samples)
    want("chunk", store.chunk, chunk)
    want("source", store.source, kw.get("source", "network"))
    want("components", store.components, kw.get("components"))
    if "spec" in kw and _canon(kw["spec"]) != _canon(store.spec):
        diffs.append(f"spec: store has {store.spec}, expected {kw['spec']}")
    if kw.get("seed") is not None:
        want("seed", store.seed, int(kw["seed"]))
    want("dtype", store.dtype, np.dtype(kw.get("dtype", "float64")))
    want("weighted", store.weighted, bool(kw.get("weighted", False)))
    want("n_replicas", store.n_replicas, int(kw.get("n_replicas", 1)))
    # resuming with another backend or bit generator would mix random streams
    want("backend", store.backend, kw.get("backend"))
    want("bit_generator", store.bit_generator, kw.get("bit_generator"))
    if diffs:
        raise StoreMismatchError(f"store {str(store.path)!r} does not match: " + "; ".join(diffs))
