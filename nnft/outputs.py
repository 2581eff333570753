"""Outputs that never destroy: nnft writes a result under a temporary name and renames it,
and replaces or deletes only what it made itself.

Datasets written here carry the attribute ``nnft_output`` (the command that made them); a
folder of plots carries a marker file. An existing path without that mark is refused in one
line, and so is an output inside (or equal to) the store being measured.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import UserError

__all__ = ["OutputError", "check_output_path", "write_dataset", "plots_dir", "MARK"]

MARK = "nnft_output"
_PLOTS_MARK = ".nnft-plots"


class OutputError(UserError):
    """An output path nnft may not write (it would overwrite something nnft did not make)."""


def _is_netcdf(path: Path) -> bool:
    return path.suffix in (".nc", ".nc4", ".netcdf")


def _made_by_nnft(path: Path) -> bool:
    """True when ``path`` is a dataset nnft wrote (carries the ``nnft_output`` attribute)."""
    try:
        if path.is_dir():
            meta = path / "zarr.json"
            return MARK in json.loads(meta.read_text()).get("attributes", {})
        if _is_netcdf(path):
            import xarray as xr

            with xr.open_dataset(path) as ds:
                return MARK in ds.attrs
    except (OSError, ValueError):
        return False
    return False


def check_output_path(out: Path, *, protect=()) -> None:
    """Raise :class:`OutputError` unless ``out`` may be (re)written by nnft.

    ``out`` may be new, or an earlier nnft output; it may not be (or lie inside) any path in
    ``protect`` (the input store).
    """
    out = Path(out)
    _refuse_inside(out, protect)
    if not out.parent.exists():
        raise OutputError(f"--out {str(out)!r}: parent directory does not exist")
    if out.exists() and not _made_by_nnft(out):
        raise OutputError(f"--out {str(out)!r} exists and was not written by nnft; nnft does "
                          f"not overwrite it (choose a new path)")


def _refuse_inside(out: Path, protect):
    res = Path(out).resolve()
    for p in protect:
        p = Path(p).resolve()
        if res == p or p in res.parents:
            raise OutputError(f"output {str(out)!r} is (inside) the input store {str(p)!r}; "
                              f"choose another output path")


def write_dataset(ds, out: Path, *, made_by: str) -> Path:
    """Write ``ds`` to ``out`` (NetCDF for ``.nc``, else Zarr) atomically.

    The data goes to a temporary name beside ``out``; only then is an earlier nnft output at
    ``out`` moved aside, the new one renamed into place and the old one removed. A kill at any
    point leaves either the old or the new result complete (and possibly a hidden temporary).
    """
    out = Path(out)
    check_output_path(out)
    ds = ds.copy()
    ds.attrs[MARK] = made_by
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    _remove_ours(tmp)
    if _is_netcdf(out):
        ds.to_netcdf(tmp)
    else:
        ds.to_zarr(tmp, mode="w-", consolidated=False)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    _remove_ours(old)
    return out


def _remove_ours(path: Path):
    """Remove a temporary that this process named (never anything else)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def plots_dir(path: Path, *, protect=()) -> Path:
    """Create (or reuse, if nnft made it) a folder for plots; refuse a foreign non-empty one
    and one inside ``protect`` (the input store)."""
    path = Path(path)
    _refuse_inside(path, protect)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"plots folder {str(path)!r} exists and is not a folder")
        if any(path.iterdir()) and not (path / _PLOTS_MARK).exists():
            raise OutputError(f"plots folder {str(path)!r} exists, is not empty and was not "
                              f"made by nnft; choose another with --plots")
    else:
        path.mkdir(parents=True)
    (path / _PLOTS_MARK).touch()
    return path
