"""Helpers for the reliability tests: fault injection at named stage boundaries (in process, or
as a real ``os._exit`` in a subprocess) and byte-level comparison of output trees."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import geosynth
from geosynth.cli.main import main

#: The source tree under test (subprocesses must run the same code as this process).
SRC = Path(geosynth.__file__).resolve().parents[1]


def tree_bytes(root: Path, *, skip: tuple[str, ...] = ("provenance.json",)) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), except provenance sidecars, whose
    start and end times differ from run to run by design."""
    return {
        f.relative_to(root).as_posix(): f.read_bytes()
        for f in sorted(root.rglob("*"))
        if f.is_file() and not f.name.endswith(skip)
    }


def leftovers(root: Path) -> list[str]:
    """Temporaries and work folders that a finished command must not leave behind."""
    names = [p for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    names += [p for p in root.rglob(".parts")]
    return sorted(p.relative_to(root).as_posix() for p in names)


@pytest.fixture
def killed(monkeypatch: pytest.MonkeyPatch):
    """``killed(stage, *args)``: run ``geosynth ARGS`` in process and interrupt it at ``stage``
    (``NAME`` or ``NAME@K``); fails if the run got past the stage without being interrupted."""

    faults = importlib.import_module("geosynth.faults")

    def run(stage: str, *args: str | Path) -> None:
        monkeypatch.setenv(faults.ENV, stage)
        monkeypatch.setenv(faults.MODE_ENV, "raise")
        faults.reset()
        try:
            with pytest.raises(faults.Killed):
                main([str(a) for a in args])
        finally:
            monkeypatch.delenv(faults.ENV)
            monkeypatch.delenv(faults.MODE_ENV)
            faults.reset()

    return run


def run_subprocess(*args: str | Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m geosynth ARGS`` in a fresh process; with ``fault`` it dies by ``os._exit``
    at that stage boundary, as a ``kill -9`` would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC)}
    env.pop("GEOSYNTH_FAULT_MODE", None)
    if fault:
        env["GEOSYNTH_FAULT"] = fault
    else:
        env.pop("GEOSYNTH_FAULT", None)
    cmd = [sys.executable, "-m", "geosynth", *(str(a) for a in args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
