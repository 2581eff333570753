"""Progress bars (rich) for long loops over chunks; a no-op when disabled."""
from __future__ import annotations

import contextlib

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool):
    """A rich progress bar over ``total`` chunks (a no-op when disabled)."""
    if not enabled or total == 0:
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
