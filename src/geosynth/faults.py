"""Deterministic fault injection at named stage boundaries, for testing resume and cleanup.

Long-running steps call :func:`stage` with a name ("generate:image", "generate:finalize:sheets",
...) each time they pass a boundary that a kill could fall on. When the environment variable
``GEOSYNTH_FAULT`` is ``NAME`` or ``NAME@K``, the K-th (default first) pass of boundary ``NAME``
ends the process at once with ``os._exit(FAULT_EXIT)``, as ``kill -9`` would: no ``finally``
blocks, no atexit handlers, no flushing. With ``GEOSYNTH_FAULT_MODE=raise`` it raises
:class:`Killed` instead (a ``BaseException``, so no ``except Exception`` handler swallows it),
which lets in-process tests interrupt a run without paying for a subprocess. Unset (the normal
case) a boundary costs one dictionary lookup.

The boundaries are listed in docs/reliability.md; tests kill at every one of them and check that
``--resume`` ends with the same files as an uninterrupted run.
"""

from __future__ import annotations

import os
from collections import Counter

ENV = "GEOSYNTH_FAULT"
MODE_ENV = "GEOSYNTH_FAULT_MODE"
FAULT_EXIT = 137  # what a shell reports for a process killed by SIGKILL
_passes: Counter[str] = Counter()


class Killed(BaseException):
    """The simulated kill of ``GEOSYNTH_FAULT_MODE=raise``."""


def stage(name: str) -> None:
    """Mark that the process has just passed boundary ``name`` (see the module docstring)."""
    want = os.environ.get(ENV)
    if not want:
        return
    target, _, nth = want.partition("@")
    if target != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        if os.environ.get(MODE_ENV) == "raise":
            raise Killed(name)
        os._exit(FAULT_EXIT)


def reset() -> None:
    """Forget the passes counted so far (tests that inject several faults in one process)."""
    _passes.clear()
