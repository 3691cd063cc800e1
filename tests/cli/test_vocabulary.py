"""One option vocabulary: docs/cli.md's table lists every option that more than one command
takes, with exactly the commands that take it; a name means one thing everywhere."""

import re
from collections import defaultdict
from pathlib import Path

from geosynth.cli.main import leaf_commands

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def actual() -> dict[str, set[str]]:
    """Option name -> the commands ("toy data" for subcommands) that take it."""
    use: dict[str, set[str]] = defaultdict(set)
    for path, leaf in leaf_commands():
        for p in leaf.params:
            for opt in (*p.opts, *p.secondary_opts):
                if opt.startswith("--"):
                    use[opt].add(" ".join(path))
    return use


def documented() -> dict[str, set[str]]:
    """The vocabulary table of docs/cli.md: option -> commands (`all` = every command)."""
    section = DOC.read_text().split("## Vocabulary", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`(--[a-z0-9-]+)`\s*\|[^|]*\|\s*(.*?)\s*\|\s*$", line)
        if m:
            table[m.group(1)] = {c.strip(" `") for c in m.group(2).split(",")}
    return table


def test_the_table_matches_the_commands() -> None:
    use, table = actual(), documented()
    every = {c for cmds in use.values() for c in cmds} - {"replay"}
    shared = {opt for opt, cmds in use.items() if len(cmds) > 1}
    missing = sorted(shared - set(table))
    assert not missing, "options taken by several commands but not in docs/cli.md: " + ", ".join(
        f"{o} ({', '.join(sorted(use[o]))})" for o in missing
    )
    for opt, cmds in table.items():
        want = every if cmds == {"all"} else cmds
        assert use.get(opt, set()) == want, (
            f"docs/cli.md lists {opt} for {sorted(want)}, the commands take it in "
            f"{sorted(use.get(opt, set()))}"
        )


def test_cluster_plora_old_train_switch_names_its_new_name(cli, tmp_path: Path) -> None:
    """``--train`` names training images (evaluate, filter); cluster-plora's switch that trains
    its LoRAs is ``--train-loras``, and the old spelling is refused in one line that says so."""
    res = cli("cluster-plora", tmp_path, "--train", "--out", tmp_path / "plora")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert "--train-loras" in res.err
    assert not (tmp_path / "plora").exists()
