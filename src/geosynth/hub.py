"""Model references: every model argument is a hub id or a local directory.

Loading stays the libraries' own (``from_pretrained``); this module only decides which of the two
a string is and turns loading failures into one-line errors that say what was tried.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from geosynth.errors import GeosynthError

T = TypeVar("T")


def is_local(ref: str | os.PathLike[str]) -> bool:
    """A reference is local when it exists on disk or is written as a path."""
    text = str(ref)
    return Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") > 1


def model_ref(ref: str | os.PathLike[str], what: str = "--model") -> str:
    """Validate a reference: local directories must exist; anything else is passed on as a hub id."""
    text = str(ref)
    if is_local(text):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise GeosynthError(f"{what} {text}: no such model directory")
        return str(path)
    return text


def load_with(loader: Callable[[str], T], ref: str | os.PathLike[str], what: str) -> T:
    """Call ``loader(ref)`` (a ``from_pretrained``) and explain failures in one line."""
    resolved = model_ref(ref, what)
    try:
        return loader(resolved)
    except GeosynthError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = "local directory" if is_local(resolved) else "hub id (is the hub reachable?)"
        raise GeosynthError(f"{what} {resolved}: cannot load as a {where}: {first}") from None
