"""Options that only change how a run goes (worker count, compilation, logging, where the option
values came from) leave the argv stored in outputs alone, so identical outputs get identical
metadata; a run configured from a file records the values it took."""

from __future__ import annotations

import json
from pathlib import Path

from geosynth.artifacts import content_argv


def test_speed_and_logging_flags_are_left_out_of_the_stored_argv() -> None:
    plain = content_argv(["geosynth", "embed", "d", "--features", "x", "--out", "a.st"])
    for extra in (
        ["--workers", "6"],
        ["--workers=2"],
        ["--compile"],
        ["--report-to", "tensorboard"],
        ["--report-to=wandb"],
        ["--config", "run.toml"],
        ["--config=run.toml"],
    ):
        argv = ["geosynth", "embed", "d", *extra, "--features", "x", "--out", "b.st"]
        assert content_argv(argv) == plain, extra


def test_a_config_run_records_the_values_it_took(cli, tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('per-class = 2\nsize = 16\nclasses = ["water", "forest"]\nseed = 5\n')
    assert cli("toy", "data", "--out", tmp_path / "a", "--config", toml, "--seed", "1").code == 0
    argv = json.loads((tmp_path / "a" / "provenance.json").read_text())["argv"]
    kept = content_argv(argv)
    assert "--config" not in kept
    # the file's values, with the command line's --seed winning (and given once)
    assert kept[kept.index("--per-class") + 1] == "2"
    assert kept[kept.index("--size") + 1] == "16"
    assert kept.count("--seed") == 1 and kept[kept.index("--seed") + 1] == "1"
    assert kept[kept.index("--classes") + 1] == "water,forest"
