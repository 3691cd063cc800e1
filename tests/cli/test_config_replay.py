"""Run files: `--config` (TOML, YAML, or a recorded run) on every command, flags winning, and
`geosynth replay` reproducing finetune and generate runs byte for byte."""

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from geosynth.cli.main import leaf_commands
from tests.reliability.conftest import tree_bytes

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


def _sub(path: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (path / sub).iterdir())


def test_every_command_takes_a_config_file() -> None:
    for path, leaf in leaf_commands():
        has = any(p.name == "config" for p in leaf.params)
        assert has == (path[0] != "replay"), " ".join(path)


def test_toml_and_yaml_values_with_flags_winning(cli, tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('per-class = 2\nsize = 16\nclasses = ["water", "forest"]\nseed = 5\n')
    assert cli("toy", "data", "--out", tmp_path / "a", "--config", toml, "--seed", "1").code == 0
    assert len(_sub(tmp_path / "a", "water")) == 2
    assert not (tmp_path / "a" / "desert").exists()
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert prov["argv"][:3] == ["geosynth", "toy", "data"]

    yaml = tmp_path / "run.yaml"
    yaml.write_text(
        "toy data:\n  per_class: 2\n  size: 16\n  classes: [water, forest]\n  seed: 1\n"
    )
    assert cli("toy", "data", "--out", tmp_path / "b", "--config", yaml).code == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_config_errors_name_the_file_and_key(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("per-clas = 2\n")
    res = cli("toy", "data", "--out", tmp_path / "x", "--config", bad)
    assert res.code == 2 and str(bad) in res.err and "'per-clas'" in res.err, res.err
    assert not (tmp_path / "x").exists()
    res = cli("toy", "data", "--out", tmp_path / "x", "--config", tmp_path / "none.toml")
    assert res.code == 2 and "no such config file" in res.err


@pytest.fixture(scope="module")
def lora(toy_models, toy_data, tmp_path_factory) -> Path:
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("replay") / "lora"
    args = ["finetune", str(toy_data), "--model", str(toy_models["sd"]), "--out", str(out)]
    t0 = time.time()
    assert main([*args, *FAST, "--max-steps", "6", "--lr", "5e-3", "--seed", "3"]) == 0
    wall = time.time() - t0
    # the record spans the run (it used to start when the result was written)
    prov = json.loads((out / "provenance.json").read_text())
    span = datetime.fromisoformat(prov["finished"]) - datetime.fromisoformat(prov["started"])
    assert span.total_seconds() >= wall * 0.5 - 1, (prov["started"], prov["finished"], wall)
    return out


def test_replay_reproduces_a_finetune_byte_for_byte(cli, lora: Path, tmp_path: Path) -> None:
    res = cli("replay", lora / "geosynth.json", "--out", tmp_path / "again")
    assert res.code == 0, res.err
    assert tree_bytes(tmp_path / "again") == tree_bytes(lora)
    # the card as --config, one option changed: a different run
    res = cli("finetune", "--config", lora, "--lr", "1e-3", "--out", tmp_path / "other")
    assert res.code == 0, res.err
    other = (tmp_path / "other" / "pytorch_lora_weights.safetensors").read_bytes()
    assert other != (lora / "pytorch_lora_weights.safetensors").read_bytes()


def test_replay_reproduces_a_generate_run_byte_for_byte(
    cli, lora: Path, toy_models, tmp_path: Path
) -> None:
    first = tmp_path / "synth"
    args = ["--model", toy_models["sd"], "--lora", lora, "--classes", "water,forest"]
    res = cli("generate", *args, "--per-class", "2", "--steps", "2", "--out", first)
    assert res.code == 0, res.err
    res = cli("replay", first, "--out", tmp_path / "again")
    assert res.code == 0, res.err
    assert tree_bytes(tmp_path / "again") == tree_bytes(first)
    res = cli("replay", first, "--out", first)
    assert res.code == 2 and "already exists" in res.err
