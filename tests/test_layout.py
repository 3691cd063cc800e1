"""The layout rules of docs/architecture.md, checked on the source: no import circles, no module
over 450 lines, command modules that import only the front door and CLI helpers, and a front door
that stays lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "geosynth"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """Every geosynth module an ``import`` statement anywhere in ``tree`` names: at module level,
    inside functions and under ``TYPE_CHECKING`` alike (a deferred import is still a dependency,
    and the circles we removed were all deferred ones)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                names.add(full if full in modules else node.module)
    return {n for n in names if n in modules}


def _graph() -> dict[str, set[str]]:
    """Module -> modules it imports. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``,
    so those are edges too, except the importer's own packages (already running)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        deps: set[str] = set()
        for target in _imported(ast.parse(path.read_text()), modules):
            parts = target.split(".")
            deps.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
        graph[name] = {d for d in deps if d in modules and d != name and d not in own}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles in src/geosynth:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_module_over_450_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by role): {long}"


def test_submodules_are_not_shadowed_by_functions() -> None:
    """``import geosynth.x.y as m`` must give the module y, not a function a package re-exports
    under the same name."""
    import importlib

    shadowed = []
    for name in _modules():
        if "." not in name.removeprefix("geosynth.") or name.startswith("geosynth.cli"):
            continue
        parent, _, leaf = name.rpartition(".")
        pkg = importlib.import_module(parent)
        importlib.import_module(name)
        if not isinstance(getattr(pkg, leaf), type(sys)):
            shadowed.append(name)
    assert not shadowed, f"package attributes that hide a submodule: {shadowed}"


HEAVY = ("torchvision", "transformers", "diffusers", "open_clip", "timm", "matplotlib", "rasterio")


def test_heavy_libraries_load_late() -> None:
    """Importing every library module (running nothing) loads none of the heavy libraries: they
    are imported inside the functions that need them."""
    code = (
        "import importlib, pkgutil, sys, geosynth\n"
        "for m in pkgutil.walk_packages(geosynth.__path__, 'geosynth.'):\n"
        "    if not m.name.startswith(('geosynth.cli', 'geosynth.__main__')):\n"
        "        importlib.import_module(m.name)\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", f"imported at module level somewhere: {out.stdout}"


def test_front_door_is_lazy_and_complete() -> None:
    """``import geosynth`` loads no step (torch stays out), every EXPORTS entry resolves to a
    callable, ``__all__`` lists them, and no exported name is also a top-level module."""
    code = (
        "import sys, geosynth\n"
        "print(sorted(m for m in ('torch', 'numpy', 'geosynth.data', 'geosynth.metrics') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
    import geosynth

    assert set(geosynth.__all__) == {"EXPORTS", "GeosynthError", "__version__", *geosynth.EXPORTS}
    top_level = {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if p.is_dir()}
    for name in geosynth.EXPORTS:
        assert name not in top_level, f"geosynth.{name} would shadow the module geosynth/{name}"
        assert callable(getattr(geosynth, name)), name
    with pytest.raises(AttributeError, match="no_such_step"):
        _ = geosynth.no_such_step  # type: ignore[attr-defined]


#: package -> the geosynth top-level modules it may import (besides itself): no upward imports.
LAYERS = {
    "geosynth.data": {
        "geosynth.errors",
        "geosynth.artifacts",
        "geosynth.progress",
        "geosynth.extras",
        "geosynth.limits",  # what numeric parameters may be (errors only below it)
    },
    "geosynth.features": {
        "geosynth.errors",
        "geosynth.artifacts",
        "geosynth.progress",
        "geosynth.extras",
        "geosynth.limits",
        "geosynth.data",
        "geosynth.distributed",
        "geosynth.runtime",
        "geosynth.backbones",
        "geosynth.faults",  # fault injection points of the reliability tests
        "geosynth.classify",  # clf:PATH features read a train-clf checkpoint
    },
}


def test_no_upward_imports() -> None:
    """``data`` builds on nothing of geosynth's but errors, artifacts, progress, extras and limits; ``features``
    not on diffusion or metrics; no library module imports the command line."""
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        targets = _imported(ast.parse(path.read_text()), modules)
        tops = {".".join(t.split(".")[:2]) for t in targets}
        pkg = ".".join(name.split(".")[:2])
        if not name.startswith("geosynth.cli") and name != "geosynth.__main__":
            wrong += [f"{name} -> {t}" for t in sorted(tops) if t == "geosynth.cli"]
        if pkg in LAYERS:
            wrong += [f"{name} -> {t}" for t in sorted(tops - LAYERS[pkg] - {pkg})]
    assert not wrong, "imports against the layering of docs/architecture.md:\n" + "\n".join(wrong)
