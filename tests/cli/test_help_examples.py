"""Every command's ``--help`` has an example that names only options the command has, each
example on its own line, and no rich markup printed literally (help is plain click text). The
shell commands of README.md and docs/*.md are held to the same rule, and parsed by the command
they run as a shell would hand them over (tests/doc_commands.py reads them)."""

from __future__ import annotations

import re

import pytest
import typer._click as click

from geosynth.cli.main import leaf_commands
from tests.doc_commands import Step, all_steps

LEAVES = leaf_commands()
DOC_STEPS = all_steps()
#: rich markup as it would show if printed literally: [bold], [/bold], [/], [red] ...
MARKUP = re.compile(r"\[/?(?:bold|italic|dim|underline|b|i|red|green|blue|yellow|cyan)?\]")


def _examples(text: str, path: list[str]) -> list[list[str]]:
    """The words after ``geosynth PATH`` on every help line that runs this command (a line
    ending in a backslash goes on on the next)."""
    head = re.compile(r"(?:^|\s)geosynth\s+" + r"\s+".join(map(re.escape, path)) + r"(?=\s|$)")
    found = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        m = head.search(line)
        if m:
            found.append(line[m.end() :].split())
    return found


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}


def _check_parses(path: list[str], cmd: click.Command, words: list[str], where: str) -> None:
    """``words`` name only ``cmd``'s options and, unless abbreviated (``...``) or completed by
    a ``--config`` file, parse: the arguments it needs, option values of the right type."""
    opts = _options(cmd)
    for w in words:
        if w.startswith("--"):
            assert w.split("=", 1)[0] in opts, f"{where}: geosynth {' '.join(path)}: no option {w}"
    if any("..." in w for w in words) or "--config" in words:
        return  # abbreviated, or arguments that come from a file
    try:
        cmd.make_context(" ".join(path), list(words))
    except click.ClickException as exc:
        raise AssertionError(f"{where}: geosynth {' '.join(path + words)}: {exc}") from None


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_example_names_only_the_commands_options(
    cli, monkeypatch: pytest.MonkeyPatch, path: list[str], cmd: click.Command
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    res = cli(*path, "--help")
    assert res.code == 0, res.err
    examples = _examples(res.out, path)
    assert examples, f"`geosynth {' '.join(path)} --help` has no example"
    for words in examples:
        assert "Example" not in " ".join(words), f"two examples run together: {words}"
    for words in _examples(cmd.help or "", path):  # as written, before click wraps the help
        _check_parses(path, cmd, words, f"`geosynth {' '.join(path)} --help`")
    # each example in the docstring is printed as written, on a line of its own (a \b block),
    # not rewrapped into a paragraph with its neighbours
    printed = {line.strip() for line in res.out.splitlines()}
    for line in (cmd.help or "").splitlines():
        if _examples(line, path):
            assert line.strip() in printed, f"example rewrapped in --help: {line.strip()}"
    assert not MARKUP.search(res.out), MARKUP.search(res.out)


@pytest.mark.parametrize("path", [[], *[[p[0]] for p, _ in LEAVES if len(p) > 1]])
def test_group_help_prints_no_markup(cli, path: list[str]) -> None:
    res = cli(*path, "--help")
    assert res.code == 0, res.err
    assert not MARKUP.search(res.out), MARKUP.search(res.out)


def _leaf(step: Step) -> tuple[list[str], click.Command]:
    found = [(p, c) for p, c in LEAVES if list(step.words[: len(p)]) == p]
    assert found, f"{step.where}: `geosynth {' '.join(step.words)}` runs no geosynth command"
    return max(found, key=lambda pc: len(pc[0]))


def test_the_docs_hold_commands() -> None:
    """The reader below finds the docs' commands (a broken reader would pass every test)."""
    docs = {s.doc.name for s in DOC_STEPS}
    assert {"README.md", "evaluate.md", "train-clf.md", "filter.md"} <= docs, docs
    assert len(DOC_STEPS) > 40


@pytest.mark.parametrize("step", DOC_STEPS, ids=[s.where for s in DOC_STEPS])
def test_every_docs_command_parses(step: Step) -> None:
    path, cmd = _leaf(step)
    _check_parses(path, cmd, list(step.words[len(path) :]), step.where)
