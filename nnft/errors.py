"""Errors of the nnft front end. All are :class:`nnft.lattice.UserError`: the ``nnft`` command
prints them in one line and exits with status 2."""
from __future__ import annotations

from .lattice import UserError

__all__ = ["UserError", "ConfigError", "RunError"]


class ConfigError(UserError):
    """A mistake in a run config; the message is one line naming the key."""


class RunError(UserError):
    """The output folder cannot be used (foreign contents, locked by another run, ...)."""
