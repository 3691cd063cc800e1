"""Provenance: where an output came from (argv, version, input fingerprints, seeds, start and end
time), in a sidecar next to it, and the argv reduced to what changes an output's content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geosynth import __version__
from geosynth.artifacts.atomic import write_json
from geosynth.artifacts.jsontext import json_text
from geosynth.invocation import current_argv

PROVENANCE_SUFFIX = ".provenance.json"


DIR_PROVENANCE_NAME = "provenance.json"


def file_digest(path: Path) -> str:
    """blake2b-128 of a file's bytes, streamed."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(source: str | os.PathLike[str]) -> str:
    """A content hash of a file or directory tree; hub ids and other non-paths hash their name.

    Directories hash every file's relative path and content (provenance sidecars excluded, so that
    re-running a step does not change the fingerprint of its output), which makes the fingerprint
    independent of file system order and modification times.
    """
    p = Path(source)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        h = hashlib.blake2b(digest_size=16)
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            if rel.endswith(PROVENANCE_SUFFIX) or rel == DIR_PROVENANCE_NAME:
                continue
            h.update(rel.encode())
            h.update(file_digest(f).encode())
        return h.hexdigest()
    return "name:" + hashlib.blake2b(str(source).encode(), digest_size=16).hexdigest()


def combine_fingerprints(fingerprints: Mapping[str, str]) -> str:
    """One hash over several named inputs (order-independent)."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(fingerprints):
        h.update(f"{key}={fingerprints[key]};".encode())
    return h.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Where an output came from: enough to re-run it and to tell whether its inputs changed."""

    command: str
    inputs: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    argv: list[str] = field(default_factory=current_argv)
    version: str = __version__
    started: str = field(default_factory=_now)
    finished: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        command: str,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        seeds: Mapping[str, int] | None = None,
        **extra: Any,
    ) -> Provenance:
        """Begin a record; ``inputs`` maps a role ("dataset", "model") to a path or id."""
        fps = {f"{k}:{v}": fingerprint(v) for k, v in (inputs or {}).items()}
        return cls(command=command, inputs=fps, seeds=dict(seeds or {}), extra=dict(extra))

    @property
    def input_fingerprint(self) -> str:
        return combine_fingerprints(self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "argv": self.argv,
            "version": self.version,
            "inputs": self.inputs,
            "input_fingerprint": self.input_fingerprint,
            "seeds": self.seeds,
            "started": self.started,
            "finished": self.finished or _now(),
            **({"extra": self.extra} if self.extra else {}),
        }


def provenance_path(output: str | os.PathLike[str]) -> Path:
    """The sidecar of an output: ``DIR/provenance.json`` for a directory, ``FILE.provenance.json``
    for a file."""
    out = Path(output)
    if out.is_dir():
        return out / DIR_PROVENANCE_NAME
    return out.with_name(out.name + PROVENANCE_SUFFIX)


def write_provenance(output: str | os.PathLike[str], provenance: Provenance) -> Path:
    """Close the record (end time now) and write the sidecar of ``output`` atomically."""
    provenance.finished = _now()
    target = provenance_path(output)
    write_json(target, provenance.to_dict())
    return target


#: Options that change where or how a run writes, never what it writes: left out of the ``argv``
#: stored in a file's metadata, so that a resumed run, a rerun into another folder and an
#: uninterrupted run give byte-identical files (the provenance sidecar keeps the full argv).
#: Worker counts, compilation and experiment logging change speed or side logs only; a
#: ``--config`` file's values are written into the argv as options (see geosynth.cli.config).
NEUTRAL_FLAGS = {"--resume", "--overwrite", "--json", "--debug", "--no-cache", "--compile"}
NEUTRAL_OPTIONS = {"--out", "--workers", "--report-to", "--config"}


def content_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the options of :data:`NEUTRAL_FLAGS` / :data:`NEUTRAL_OPTIONS` and with
    the program reduced to ``geosynth`` (it is a script path under ``python -m``)."""
    args = list(argv[1:])
    kept: list[str] = ["geosynth"] if argv else []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if a in NEUTRAL_FLAGS:
            continue
        if name in NEUTRAL_OPTIONS:
            skip = "=" not in a
            continue
        kept.append(a)
    return kept


def replay_argv(recorded: Sequence[str], out: str | os.PathLike[str]) -> list[str]:
    """The arguments (after ``geosynth``) that rerun the recorded command line ``recorded`` into
    ``out``: its :func:`content_argv` (less ``--out`` and the flags that never change what a run
    writes) and ``--out OUT``."""
    return [*content_argv(recorded)[1:], "--out", str(out)]


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """'seed 0 -> 1, noise "gaussian" -> "leak-aligned"': the settings of two records of a run
    (a resumed run's and the new call's) that differ, each value short."""

    def short(v: Any) -> str:
        text = json_text(v, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {short(old.get(k))} -> {short(new.get(k))}" for k in keys)
