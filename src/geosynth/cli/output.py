"""Printing for every subcommand: tables or JSON on stdout, messages and progress on stderr.

Keeping progress and messages on stderr means ``geosynth ... --json | jq`` always sees clean JSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    """Machine-readable output on stdout: strict JSON (never NaN)."""
    from geosynth.artifacts.jsontext import json_text

    sys.stdout.write(json_text(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def json_text(value: Any) -> str:
    """A table cell for a value: strings as they are, anything else as compact JSON."""
    from geosynth.artifacts.jsontext import json_text as strict_json

    return value if isinstance(value, str) else strict_json(value)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A readable table on stdout."""
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(str(v) for v in r))
    out_console().print(table)


def _progress(*extra: TextColumn) -> Progress:
    """The bar every command shows on a terminal's stderr: count, elapsed, remaining (and extra
    columns)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=err,
        transient=False,
    )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class LineProgress:
    """Progress for a log or a pipe (stderr not a terminal): one plain line now and then,
    instead of a bar that a file cannot redraw. A line comes when the work has advanced by
    ``every_pct`` percent and ``min_s`` seconds have passed since the last one (or ``max_s``
    seconds have passed, or at every ``min_s`` when the total is unknown), with the count,
    rate, elapsed and remaining time and the caller's status; work that ends within ``min_s``
    prints nothing, longer work ends with a line of its totals."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        every_pct: float = 5.0,
        min_s: float = 10.0,
        max_s: float = 300.0,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description or "working"
        self.total = total
        self.every_pct, self.min_s, self.max_s = every_pct, min_s, max_s
        self.write = write or message
        self.clock = clock
        self.start = self.last_time = clock()
        self.done = self.last_done = 0
        self.status = ""
        self.printed = 0

    def _line(self, final: bool = False) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        parts = [f"{self.description}: {count}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.3g}/s")
        if final:
            parts.append(f"done in {_clock(elapsed)}")
        else:
            parts.append(f"{_clock(elapsed)} elapsed")
            if self.total and rate > 0:
                parts.append(f"about {_clock((self.total - self.done) / rate)} left")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        since = now - self.last_time
        if since < self.min_s:
            return
        if self.total:
            pct = 100 * (self.done - self.last_done) / self.total
            if pct < self.every_pct and since < self.max_s:
                return
        self.write(self._line())
        self.printed += 1
        self.last_time, self.last_done = now, self.done

    def close(self) -> None:
        if self.printed or self.clock() - self.start >= self.min_s:
            self.write(self._line(final=True))


def track(
    items: Iterable[T], total: int | None = None, description: str = "working"
) -> Iterator[T]:
    """Iterate with progress on stderr: a rich bar on a terminal (count, elapsed, remaining),
    a line every few percent in a log or a pipe (:class:`LineProgress`)."""
    yield from LiveProgress().track(items, total, description)


class LiveProgress:
    """Progress whose status text (loss, speed) the caller updates while iterating: a bar on a
    terminal, :class:`LineProgress` lines elsewhere."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lines: LineProgress | None = None

    def track(
        self, items: Iterable[T], total: int | None = None, description: str = ""
    ) -> Iterator[T]:
        if not err.is_terminal:
            lines = LineProgress(description, total)
            self._lines = lines
            try:
                for item in items:
                    yield item
                    lines.advance()
            finally:
                self._lines = None
            lines.close()  # only when the work ran to its end
            return
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
        if self._lines is not None:
            self._lines.status = text
        elif self._progress is not None and self._task is not None:
            self._progress.update(self._task, status=text)


def is_main_process() -> bool:
    """False on the other ranks of an ``accelerate launch`` / torchrun run: they print nothing,
    so the report appears once."""
    from accelerate import PartialState

    return bool(PartialState().is_main_process)
