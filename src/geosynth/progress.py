"""The progress hook library functions accept: ``track(items, total, description)`` returns an
iterable over ``items``. The CLI passes a rich progress bar; the default shows nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Track = Callable[[Iterable[Any], int | None, str], Iterable[Any]]


def no_track(items: Iterable[Any], total: int | None, description: str) -> Iterable[Any]:
    """The default progress hook: none."""
    return items
