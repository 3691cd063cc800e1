"""Atomic writes: a temporary name in the same directory, then a rename, so that a killed run never
leaves a half-written file a later step would trust; and the clean-up of temporaries a killed run
left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories. The temporary lives in the same directory so the final
    ``os.replace`` is a rename on one filesystem. An existing directory at ``path`` is replaced
    only by a directory (swapped out, removed after the new one is in place); something of the
    other kind at ``path`` (a directory where a file is written, or the reverse) is refused and
    left untouched, since it is not ours to remove.
    """
    final = output_path(path)
    check_replaceable(final, None)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        check_replaceable(final, "directory" if tmp.is_dir() else "file")
        if final.is_dir() and not final.is_symlink():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def output_path(path: str | os.PathLike[str]) -> Path:
    """The path the OS will write to, for every output check: ``nope/../first`` is ``first``
    even while ``nope`` is missing (creating ``nope`` on the way, as a writer would, then
    writing to ``first``). A path with ``..`` has its folder resolved as the OS does (through
    symlinks, missing folders cancelled); the last name is kept, so a symlink there stays a
    link. Paths without ``..`` are returned as given."""
    p = Path(path)
    if ".." not in p.parts:
        return p
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


def check_replaceable(path: Path, kind: str | None = "file") -> None:
    """Refuse an output path that exists as something ``kind`` ("file" or "directory") cannot
    replace: a directory where a file goes or a file where a directory goes, or any parent that
    is a file. ``None`` checks only the parents. The path is taken as :func:`output_path` sees
    it; writers check and write ``output_path(out)`` so that their own checks see it too."""
    path = output_path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise GeosynthError(f"{path}: {parent} is a file, expected a directory")
    if kind == "file" and path.is_dir() and not path.is_symlink():
        raise GeosynthError(
            f"{path}: is a directory, expected a file path; it is left as is (choose another path)"
        )
    if kind == "directory" and path.exists() and not path.is_dir():
        raise GeosynthError(f"{path}: is a file, expected a directory path; it is left as is")


def clean_temporaries(root: Path) -> int:
    """Remove the temporaries (``.NAME.tmp-*``, ``.NAME.old-*``) that a killed writer left under
    ``root``; returns how many. Only names :func:`atomic_path` makes are touched."""
    n = 0
    if not root.is_dir():
        return 0
    for p in sorted(root.rglob(".*"), reverse=True):
        if ".tmp-" in p.name or ".old-" in p.name:
            _remove(p)
            n += 1
    return n


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale_temporaries(final: Path) -> None:
    """Remove the temporaries of ``final`` left by writers that no longer run (killed): their
    names carry the writer's process id. Temporaries of a live process are left alone."""
    prefix = f".{final.name}.tmp-"
    if not final.parent.is_dir():
        return
    for p in final.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(p)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    clean_stale_temporaries(Path(path))
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj, indent=2, sort_keys=False, default=str) + "\n")
