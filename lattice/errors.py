"""The exception a user's mistake raises anywhere in nnft.

:class:`UserError` marks errors the user can fix (a bad config, a wrong or damaged store, an
output path nnft may not use). The ``nnft`` command prints them in one line and exits with
status 2; any other exception is a bug and keeps its traceback (exit status 1). It subclasses
:class:`ValueError` so that code catching ``ValueError`` keeps working.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A mistake in the user's input or files; the message is one line that says what to fix."""
