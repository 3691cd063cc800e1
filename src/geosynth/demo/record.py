"""What a demo output was built with, so that a reader (CI's test of the demo) can tell whether
the folder ``make demo`` just wrote is the one the current code would write.

``build.json`` is written last, after ``report.md`` and ``metrics.json``, and removed when a run
starts: a folder holds one only when a run finished. It records the digest of the geosynth
package's source, the seed, whether real SAR chips were at hand (the demo's SAR section uses them
when ``../shared`` is present) and the versions of the libraries whose numerics the figures
depend on. Any difference means "stale": build again.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

#: The record of a finished demo run, inside its output folder.
BUILD_RECORD = "build.json"
_LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "timm", "numpy", "pillow")


def source_digest() -> str:
    """sha256 over every file of the installed geosynth package (relative path and bytes, in
    path order; compiled ``__pycache__`` left out): any edit to the code that wrote a demo
    output changes it."""
    import geosynth

    root = Path(geosynth.__file__).resolve().parent
    files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def build_record(seed: int) -> dict[str, Any]:
    """What a demo run with ``seed`` would be built from, here and now."""
    from geosynth.toy.real_sar import real_sar_root

    sar = real_sar_root()
    return {
        "source_sha256": source_digest(),
        "seed": seed,
        "real_sar": None if sar is None else str(sar.resolve()),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
    }


def is_current(out: str | Path, seed: int = 0) -> bool:
    """Whether ``out`` holds a finished demo run that the current code, libraries and data
    would build again with ``seed`` (its ``build.json`` equals :func:`build_record`)."""
    path = Path(out) / BUILD_RECORD
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded == build_record(seed))
