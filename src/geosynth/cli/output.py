"""Printing for every subcommand: tables or JSON on stdout, messages and progress on stderr.

Keeping progress and messages on stderr means ``geosynth ... --json | jq`` always sees clean JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

T = TypeVar("T")

#: soft_wrap: a message is never broken into lines by rich (at 80 columns when stderr is a pipe
#: or a file); a terminal wraps long lines itself, a log keeps one message per line.
err = Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """A stdout console created on use, so tests that capture stdout see the output."""
    return Console(file=sys.stdout, highlight=False, width=120)


def message(text: str) -> None:
    """A status line on stderr."""
    err.print(text)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def json_text(value: Any) -> str:
    """A table cell for a value: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A readable table on stdout."""
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(str(v) for v in r))
    out_console().print(table)


def _progress(*extra: TextColumn) -> Progress:
    """The bar every command shows on stderr: count, elapsed, remaining (and extra columns)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=err,
        transient=not err.is_terminal,
    )


def track(
    items: Iterable[T], total: int | None = None, description: str = "working"
) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (count, elapsed, remaining)."""
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class LiveProgress:
    """A progress bar whose status text (loss, speed) the caller updates while iterating."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def track(
        self, items: Iterable[T], total: int | None = None, description: str = ""
    ) -> Iterator[T]:
        progress = _progress(TextColumn("{task.fields[status]}"))
        with progress:
            self._progress = progress
            task = progress.add_task(description, total=total, status="")
            self._task = task
            for item in items:
                yield item
                progress.advance(task)
        self._progress = None

    def status(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, status=text)


def is_main_process() -> bool:
    """False on the other ranks of an ``accelerate launch`` / torchrun run: they print nothing,
    so the report appears once."""
    from accelerate import PartialState

    return bool(PartialState().is_main_process)
