"""Every command's ``--help`` has an example that names only options the command has, each
example on its own line, and no rich markup printed literally (help is plain click text)."""

from __future__ import annotations

import re

import pytest
import typer._click as click

from geosynth.cli.main import leaf_commands

LEAVES = leaf_commands()
#: rich markup as it would show if printed literally: [bold], [/bold], [/], [red] ...
MARKUP = re.compile(r"\[/?(?:bold|italic|dim|underline|b|i|red|green|blue|yellow|cyan)?\]")


def _examples(text: str, path: list[str]) -> list[list[str]]:
    """The words after ``geosynth PATH`` on every help line that runs this command."""
    head = re.compile(r"(?:^|\s)geosynth\s+" + r"\s+".join(map(re.escape, path)) + r"(?=\s|$)")
    found = []
    for line in text.splitlines():
        m = head.search(line)
        if m:
            found.append(line[m.end() :].split())
    return found


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_example_names_only_the_commands_options(
    cli, monkeypatch: pytest.MonkeyPatch, path: list[str], cmd: click.Command
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    res = cli(*path, "--help")
    assert res.code == 0, res.err
    examples = _examples(res.out, path)
    assert examples, f"`geosynth {' '.join(path)} --help` has no example"
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for words in examples:
        assert "Example" not in " ".join(words), f"two examples run together: {words}"
        for w in words:
            if w.startswith("--"):
                assert w.split("=", 1)[0] in opts, f"geosynth {' '.join(path)}: no option {w}"
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
