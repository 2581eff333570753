"""``nnft verify``: check every chunk of a store (files, checksums, finite values); repair it.

Exit status: 0 when no chunk is damaged (after ``--repair``: when the repair left the store
clean), 1 when damage was found (or remains), 2 for a path that is not a store (via nnft's CLI).
"""
from __future__ import annotations

import sys

import numpy as np

from .lattice import UserError

REGENERABLE = ("network", "exact_free")


def add_parser(sub):
    p = sub.add_parser(
        "verify", help="check a store's chunks (files, checksums, finite values) and repair them",
        description="Read every complete chunk of a FieldStore: the file must exist with its "
                    "size, its CRC32C checksum must match and every value must be finite. Lists "
                    "the damaged chunks and how to regenerate them; --repair regenerates them "
                    "bit for bit (network and exact free-field stores: chunk k depends only on "
                    "the seed and k).")
    p.add_argument("store", help="path of the Zarr store")
    p.add_argument("--repair", action="store_true",
                   help="mark damaged chunks incomplete, remove temporary files of interrupted "
                        "writes, and regenerate the damaged chunks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def chunk_maker(store):
    """``make_chunk(k, start, stop)`` regenerating chunk ``k`` of ``store`` from its attributes.

    Raises UserError (one line) when the store's source cannot be regenerated.
    """
    from .lattice import chunk_rng, get_xp

    if store.source not in REGENERABLE:
        raise UserError(f"store {str(store.path)!r} has source {store.source!r}: its chunks "
                         f"cannot be regenerated (only {', '.join(REGENERABLE)}); re-run the "
                         "command that made it into a new store")
    if store.seed is None:
        raise UserError(f"store {str(store.path)!r} records no seed: its chunks cannot be "
                         "regenerated")
    xp = get_xp(store.backend or "numpy")
    dtype = store.dtype.name
    if store.source == "exact_free":
        from .lattice import free_field_chunk

        m2 = float(store.spec["m2"])

        def make(k, start, stop):
            return free_field_chunk(store.lattice, m2, stop - start, chunk_rng(store.seed, k, xp),
                                    xp, dtype)

        return make
    from .ensembles import spec_from_dict
    from .ensembles.engine import make_chunk_function, store_generator

    method = "fused" if store.extra.get("method") == "fused" else "auto"
    return make_chunk_function(spec_from_dict(store.spec), store.lattice, store.seed, xp,
                               method=method, dtype=dtype, generator=store_generator(store))


def repair(store, report, out=sys.stdout, progress=False) -> list[int]:
    """Regenerate the damaged chunks of ``report`` in ``store`` (opened "r+"); returns them.

    Before touching the store one intact chunk (if any) is regenerated in memory and compared
    with the stored bytes, so that a store that cannot be reproduced (other code version or
    evaluation method) is refused rather than mixed.
    """
    from .lattice import to_numpy
    from .lattice import progress_bar

    ks = report.to_regenerate
    make = chunk_maker(store)
    if report.ok:
        j = report.ok[0]
        a, b = store.chunk_range(j)
        again = np.asarray(to_numpy(make(j, a, b)), dtype=store.dtype)
        if again.tobytes() != store.read_chunk(j)[0].tobytes():
            raise UserError(f"store {str(store.path)!r}: regenerating intact chunk {j} does not "
                             "reproduce its stored values bit for bit (other nnft version, backend "
                             "or evaluation method?); not repairing. Re-run the command that made "
                             "the store into a new store")
        print(f"check: intact chunk {j} regenerates bit for bit", file=out)
    removed = store.remove_partial_files()
    if removed:
        print(f"removed {len(removed)} temporary file(s) of an interrupted write", file=out)
    store.mark_incomplete(ks)
    with progress_bar(len(ks), "regenerating", progress) as advance:
        for k in ks:
            a, b = store.chunk_range(k)
            store.write_chunk(k, make(k, a, b))
            advance()
    if ks:
        print(f"regenerated chunk(s) {_fmt(ks)}", file=out)
    return ks


def _fmt(ks):
    from .lattice.store import _ranges

    return _ranges(ks)


def main(args) -> int:
    from .lattice import CorruptStoreError, FieldStore

    out = sys.stdout
    try:
        store = FieldStore.open(args.store, mode="r+" if args.repair else "r")
    except CorruptStoreError as e:
        print(f"nnft verify: {e}", file=out)
        print("the store's metadata is damaged: it cannot be repaired in place; regenerate the "
              "store (re-run the command that made it into a new path)", file=out)
        return 1
    report = store.verify(progress=not args.quiet)
    print(report, file=out)
    if report.missing:
        print(f"chunks never written: {_fmt(report.missing)} (an unfinished store: resume the "
              "generation to fill them)", file=out)
    if report.clean:
        if args.repair and report.partial_files:
            store.remove_partial_files()
            print(f"removed {len(report.partial_files)} temporary file(s)", file=out)
        print("no damaged chunk" + ("" if report.checksums else
                                    " (this store has no checksums: only files and finite values "
                                    "were checked)"), file=out)
        return 0
    ks = report.to_regenerate
    print(f"chunks to regenerate: {_fmt(ks)}", file=out)
    if not args.repair:
        if store.source in REGENERABLE:
            print(f"regenerate them with: nnft verify {args.store} --repair", file=out)
        else:
            print(f"source {store.source!r} cannot be regenerated chunk by chunk: re-run the "
                  "command that made the store into a new store", file=out)
        return 1
    repair(store, report, out=out, progress=not args.quiet)
    after = FieldStore.open(args.store).verify()
    if after.clean:
        print(f"store {str(store.path)!r} repaired: {len(after.ok)} chunks ok", file=out)
        return 0
    print(after, file=out)
    return 1
