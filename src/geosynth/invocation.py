"""The command line this process is running, for provenance records.

``sys.argv`` is the right answer under ``geosynth ...`` or ``python -m geosynth ...``, but not when
the CLI runs in-process (tests, notebooks calling :func:`geosynth.cli.main.main`); ``main`` sets
the arguments it was given here, and :class:`geosynth.artifacts.Provenance` records them.
Kept free of heavy imports: the CLI sets it before any command loads.
"""

from __future__ import annotations

import sys

_argv: list[str] | None = None


def set_argv(argv: list[str] | None) -> None:
    """Record the running command line (``["geosynth", command, ...]``); None: use sys.argv."""
    global _argv
    _argv = None if argv is None else list(argv)


def current_argv() -> list[str]:
    """The running command line: what :func:`set_argv` recorded, else ``sys.argv``."""
    return list(_argv) if _argv is not None else list(sys.argv)
