"""The ``nnft`` command.

Errors a user can cause are printed in one line (``nnft: error: ...``) with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Subcommand modules: each exposes add_parser(subparsers) and main(args) -> int.
_SUBCOMMANDS = ["nnft.free_cli", "nnft.measure_cli", "nnft.mcmc_cli", "nnft.run_cli",
                "nnft.verify_cli"]


class UserError(Exception):
    """A mistake in the user's input: printed in one line, exit status 2."""


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
    except (UserError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"nnft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnft: interrupted (completed chunks are kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
