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
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
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


def _compressor():
    return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def _geometry_from_attrs(d):
    return Lattice.from_dict(d)


class FieldStore:
    """A Zarr-backed ensemble of field configurations.

    Create with :meth:`create`, open with :meth:`open` (validating), or
    :meth:`open_or_create` to resume. See the module docstring for the layout and guarantees.
    """

    def __init__(self, path, group, mode: str):
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

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, path, lattice, n_samples: int, chunk: int, *, components=None,
               source: str = "network", spec: dict | None = None, seed: int | None = None,
               backend: str = "numpy", bit_generator: str = "PCG64", weighted: bool = False,
               dtype="float64", n_replicas: int = 1, extra: dict | None = None,
               overwrite: bool = False) -> "FieldStore":
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
        try:
            json.dumps(spec)
            json.dumps(extra or {})
        except TypeError as e:
            raise StoreError(f"spec and extra must be JSON-serialisable: {e}") from None
        if path.exists():
            if not overwrite:
                raise StoreError(f"store path {str(path)!r} already exists (use overwrite=True, "
                                 "or open_or_create to resume)")
            _remove_store(path)
        if not path.parent.exists():
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
        group = zarr.open_group(tmp, mode="w", zarr_format=3, attributes=attrs)
        comp = () if components is None else (components,)
        spatial = tuple(f"x{i}" for i in range(len(lattice.shape)))
        dims = ("sample",) + (("component",) if components is not None else ()) + spatial
        group.create_array("phi", shape=(n_samples,) + comp + lattice.shape, dtype=dtype,
                           chunks=(chunk,) + comp + lattice.shape, compressors=_compressor(),
                           dimension_names=dims, fill_value=np.nan)
        if weighted:
            group.create_array("log_weight", shape=(n_samples,), dtype="float64", chunks=(chunk,),
                               dimension_names=("sample",), fill_value=np.nan)
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
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if path.exists():
                raise StoreError(f"store path {str(path)!r} was created by another process "
                                 "meanwhile; open it instead") from None
            raise
        return cls(path, zarr.open_group(path, mode="r+", zarr_format=3), "r+")

    @classmethod
    def open(cls, path, *, lattice=None, spec: dict | None = None, source: str | None = None,
             mode: str = "r") -> "FieldStore":
        """Open an existing store and check it is what the caller expects.

        Raises
        ------
        StoreError
            The path does not exist or is not an nnft FieldStore of a known schema version.
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
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"cannot open {str(path)!r} as a Zarr group: {e}") from None
        a = dict(group.attrs)
        if a.get("schema") != SCHEMA:
            raise StoreError(f"{str(path)!r} is not an nnft FieldStore (schema attr "
                             f"{a.get('schema')!r}, expected {SCHEMA!r})")
        if a.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{str(path)!r} has FieldStore schema version "
                             f"{a.get('schema_version')!r}; this nnft reads version {SCHEMA_VERSION}")
        missing = [k for k in ("lattice", "n_samples", "chunk", "source", "dtype") if k not in a]
        if missing or "phi" not in group:
            raise StoreError(f"{str(path)!r} is damaged: missing {missing or ['phi']}")
        store = cls(path, group, mode)
        diffs = []
        if lattice is not None and _check_geometry(lattice) != store.lattice:
            diffs.append(f"lattice: store has {store.lattice!r}, expected {lattice!r}")
        if spec is not None and _canon(spec) != _canon(store.spec):
            diffs.append(f"spec: store has {store.spec}, expected {spec}")
        if source is not None and source != store.source:
            diffs.append(f"source: store has {store.source!r}, expected {source!r}")
        if diffs:
            raise StoreMismatchError(f"store {str(path)!r} does not match: " + "; ".join(diffs))
        return store

    @classmethod
    def open_or_create(cls, path, lattice, n_samples: int, chunk: int, **kwargs) -> "FieldStore":
        """Resume a matching store at ``path``, or create it.

        All arguments of :meth:`create` that describe the ensemble (lattice, spec, source,
        n_samples, chunk, components, dtype, weighted, n_replicas, and seed when given) must match
        an existing store; otherwise :class:`StoreMismatchError` says what differs.
        """
        path = Path(path)
        if path.exists():
            store = cls.open(path, mode="r+")
            _compare(store, lattice, n_samples, chunk, kwargs)
            return store
        try:
            return cls.create(path, lattice, n_samples, chunk, **kwargs)
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

    # -- writing -----------------------------------------------------------------------------
    def write_chunk(self, k: int, phi, log_weight=None) -> None:
        """Write chunk ``k`` (NumPy or CuPy data) and then mark it complete."""
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
        self._group["phi"][start:stop] = phi.astype(self.dtype, copy=False)
        if self.weighted:
            self._group["log_weight"][start:stop] = log_weight
        self._group["complete"][k] = 1

    # -- completeness ------------------------------------------------------------------------
    def is_chunk_complete(self, k: int) -> bool:
        try:
            return bool(self._group["complete"][k])
        except Exception:  # noqa: BLE001 - an unreadable record entry means "not written"
            return False

    def complete_chunks(self) -> list[int]:
        """Sorted indices of the chunks whose data is fully written."""
        try:
            flags = np.asarray(self._group["complete"][:])
        except Exception:  # noqa: BLE001 - fall back to entry-by-entry reading
            flags = np.array([self.is_chunk_complete(k) for k in range(self.n_chunks)])
        return [int(k) for k in np.flatnonzero(flags)]

    def missing_chunks(self) -> list[int]:
        done = set(self.complete_chunks())
        return [k for k in range(self.n_chunks) if k not in done]

    @property
    def is_complete(self) -> bool:
        return len(self.complete_chunks()) == self.n_chunks

    @property
    def n_complete_samples(self) -> int:
        return sum(stop - start for start, stop in map(self.chunk_range, self.complete_chunks()))

    # -- reading -----------------------------------------------------------------------------
    def read_chunk(self, k: int):
        """``(phi, log_weight)`` of complete chunk ``k`` as NumPy arrays (log_weight may be None)."""
        if not self.is_chunk_complete(k):
            raise StoreError(f"chunk {k} of {str(self.path)!r} is not complete")
        start, stop = self.chunk_range(k)
        phi = self._group["phi"][start:stop]
        lw = self._group["log_weight"][start:stop] if self.weighted else None
        return phi, lw

    def iter_chunks(self, chunks=None):
        """Yield ``(k, phi, log_weight)`` for the complete chunks (or the given ones), in order."""
        ks = self.complete_chunks() if chunks is None else list(chunks)
        for k in ks:
            phi, lw = self.read_chunk(k)
            yield k, phi, lw

    def to_xarray(self, complete_only: bool = True):
        """The store as a lazily loaded, dask-chunked :class:`xarray.Dataset`.

        With ``complete_only`` the samples of incomplete chunks are left out.
        """
        import xarray as xr

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


def _remove_store(path: Path):
    if (path / "zarr.json").exists():
        shutil.rmtree(path)
    else:
        raise StoreError(f"refusing to overwrite {str(path)!r}: it is not a Zarr store")


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
