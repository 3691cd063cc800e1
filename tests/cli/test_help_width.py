"""`--help` in a pipe, in CI or in a small terminal (80 columns) shows every option's full name."""

import pytest
import typer._click as click

from geosynth.cli.main import leaf_commands

LEAVES = leaf_commands()


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_name_whole_at_80_columns(
    cli, monkeypatch: pytest.MonkeyPatch, path: list[str], cmd: click.Command
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    res = cli(*path, "--help")
    assert res.code == 0, res.err
    # every line fits, except the example command lines, which are kept whole to be copied
    long = [line for line in res.out.splitlines() if len(line) > 80 and "geosynth " not in line]
    assert not long, long
    names = [o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    assert names, path
    for name in names:
        # whole: followed by a space, comma, '=' or end of line, never cut with an ellipsis
        assert any(
            tok.rstrip(",") == name or tok.startswith(name + "=")
            for line in res.out.splitlines()
            for tok in line.split()
        ), f"{' '.join(path)} --help at 80 columns does not show {name} whole"
    assert "…" not in res.out
