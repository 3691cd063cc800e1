"""The library does not depend on the toy fixtures: only ``geosynth.toy`` itself, the demo (which
runs on toy data by design), the CLI's ``toy`` command and the front door (which names the ``toy``
command's steps, loaded only when called) import from it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "geosynth"


def _allowed(rel: Path) -> bool:
    top = rel.parts[0]
    return top == "toy" or top.startswith("demo") or rel.as_posix() in ("cli/toy.py", "__init__.py")


def test_library_modules_do_not_import_the_toy_fixtures() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if _allowed(rel):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "geosynth.toy" or n.startswith("geosynth.toy.") for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
