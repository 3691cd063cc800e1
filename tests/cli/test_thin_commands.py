"""Every command module is thin: option declarations, ONE call of a library function from the
front door (``from geosynth import <step>``), and printing. Checked on the source (AST): what a
command module may import is the allow-list below; logic it needed lives in the library."""

from __future__ import annotations

import ast
from pathlib import Path

from geosynth.cli.main import COMMANDS

CLI = Path(__file__).resolve().parents[2] / "src" / "geosynth" / "cli"

#: geosynth modules a command may import: the front door, the CLI's own helpers (prefix
#: ``geosynth.cli.``), the error type and the constants that option defaults show.
ALLOWED_GEOSYNTH = {"geosynth", "geosynth.errors", "geosynth.defaults"}
#: anything else: the CLI toolkit and the standard library's typing / path basics.
ALLOWED_OTHER = {"__future__", "typing", "pathlib", "enum", "collections.abc", "typer", "rich"}

#: Commands not yet reduced to one front-door call (issue 26, left for a follow-up): they still
#: reach into library packages. The list may only shrink: a command that complies must leave it.
PENDING: set[str] = set()


def _runtime_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) of every import that runs: ``TYPE_CHECKING`` blocks are annotations."""
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def _command_modules() -> dict[str, Path]:
    return {mod: CLI / f"{mod}.py" for mod, _, _ in COMMANDS.values()}


def test_command_modules_import_only_the_front_door_and_cli_helpers() -> None:
    offenders: dict[str, list[str]] = {}
    for mod, path in sorted(_command_modules().items()):
        bad = []
        for name, _ in _runtime_imports(ast.parse(path.read_text())):
            ok = (
                name in ALLOWED_GEOSYNTH
                or name.startswith("geosynth.cli.")
                or (not name.startswith("geosynth") and name in ALLOWED_OTHER)
            )
            if not ok:
                bad.append(name)
        if bad:
            offenders[mod] = sorted(set(bad))
    unexpected = {m: b for m, b in offenders.items() if m not in PENDING}
    assert not unexpected, f"command modules importing outside the allow-list: {unexpected}"
    done = sorted(PENDING - set(offenders))
    assert not done, f"these commands comply now: remove them from PENDING: {done}"


def test_each_thin_command_makes_one_library_call() -> None:
    """A complying command takes exactly one step from the front door (a command group: one per
    sub-command)."""
    for mod, path in sorted(_command_modules().items()):
        if mod in PENDING:
            continue
        steps = [
            names
            for name, names in _runtime_imports(ast.parse(path.read_text()))
            if name == "geosynth"
        ]
        flat = [n for names in steps for n in names]
        tree = ast.parse(path.read_text())
        subcommands = sum(
            1
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            and any("command" in ast.unparse(d) for d in node.decorator_list)
        )
        assert len(flat) == max(1, subcommands), (
            f"cli/{mod}.py imports {flat or 'nothing'} from geosynth for "
            f"{max(1, subcommands)} command(s)"
        )
