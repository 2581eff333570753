"""The ``nnft`` command.

Errors a user can cause (:class:`nnft.lattice.UserError`: bad config, wrong or damaged store,
an output folder nnft may not use) and a full disk or read-only folder are printed in one line
(``nnft: error: ...``) with exit status 2. Anything else is a bug in nnft and keeps its
traceback (exit status 1).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

from . import __version__
from .lattice import UserError

# Subcommand modules: each exposes add_parser(subparsers) and main(args) -> int.
_SUBCOMMANDS = ["nnft.free_cli", "nnft.measure_cli", "nnft.mcmc_cli", "nnft.run_cli",
                "nnft.verify_cli"]
# operating-system errors that are the machine's state, not a bug: one line, exit 2
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                       errno.ENOENT}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnft",
        description="Lattice field theory from ensembles of randomly initialised neural networks.")
    parser.add_argument("--version", action="version", version=f"nnft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"nnft: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"nnft: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnft: interrupted (completed chunks are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
