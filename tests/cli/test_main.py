"""The command line: help with examples, JSON output, and exit codes for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from geosynth import __version__
from geosynth.artifacts import Provenance, save_tensors

SUBCOMMANDS = [
    ["toy", "data"],
    ["toy", "model"],
    ["data", "info"],
    ["data", "export"],
    ["data", "tile"],
    ["inspect"],
    ["demo"],
    ["embed"],
    ["rarity"],
    ["rarity-correlate"],
    ["channel-means"],
    ["generate"],
]


def test_console_script_prints_version() -> None:
    exe = Path(sys.executable).with_name("geosynth")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == f"geosynth {__version__}"


def test_help_lists_subcommands(cli) -> None:
    res = cli("--help")
    assert res.code == 0
    for name in ("toy", "data", "inspect", "demo"):
        assert name in res.out


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help_with_an_example(cli, sub: list[str]) -> None:
    res = cli(*sub, "--help")
    assert res.code == 0
    assert "Example" in res.out and f"geosynth {' '.join(sub)}" in res.out


def _one_line_error(res, *needles: str) -> None:
    assert res.code == 2, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    for n in needles:
        assert n in lines[0]


def test_missing_path(cli, tmp_path: Path) -> None:
    _one_line_error(
        cli("data", "info", tmp_path / "nowhere"), str(tmp_path / "nowhere"), "no such directory"
    )


def test_empty_class_folder(cli, tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "d" / "a" / "x.png")
    (tmp_path / "d" / "b").mkdir()
    _one_line_error(cli("data", "info", tmp_path / "d"), str(tmp_path / "d" / "b"), "no images")


def test_unreadable_image(cli, tmp_path: Path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    _one_line_error(cli("data", "info", tmp_path / "d"), "bad.jpg", "cannot read image")


def test_safetensors_without_expected_tensor(cli, tmp_path: Path) -> None:
    path = save_tensors(
        tmp_path / "f.safetensors", {"x": torch.zeros(2, 2)}, provenance=Provenance.start("t")
    )
    _one_line_error(cli("inspect", path, "--kind", "channel-means"), str(path), "'means'")
    _one_line_error(cli("inspect", path, "--kind", "embeddings"), "'embeddings'")
    assert cli("inspect", path).code == 0


def test_shots_larger_than_a_class(cli, toy_data: Path) -> None:
    _one_line_error(cli("data", "info", toy_data, "--shots", "7"), "--shots 7", "'water'", "only 6")


def test_bad_usage_is_exit_2(cli) -> None:
    _one_line_error(cli("data", "info", "x", "--no-such-flag"), "--no-such-flag")
    _one_line_error(cli("data", "info", "x", "--shots", "0"), "--shots")


def test_internal_errors_exit_1_and_debug_shows_traceback(cli, toy_data, monkeypatch) -> None:
    import geosynth.data.stats as stats

    def boom(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(stats, "class_color_stats", boom)  # data_info looks it up when called
    res = cli("data", "info", toy_data)
    assert res.code == 1 and "RuntimeError: unexpected" in res.err and "Traceback" not in res.err
    res = cli("--debug", "data", "info", toy_data)
    assert res.code == 1 and "Traceback" in res.err


def test_data_info_json(cli, toy_data: Path) -> None:
    res = cli("data", "info", toy_data, "--classes", "water,desert", "--shots", "2", "--json")
    assert res.code == 0
    report = json.loads(res.out)
    assert [c["class_name"] for c in report["classes"]] == ["water", "desert"]
    assert [c["images"] for c in report["classes"]] == [2, 2]
    assert report["selection"] == {"classes": ["water", "desert"], "shots": 2, "seed": 0}


def test_data_info_table(cli, toy_data: Path) -> None:
    res = cli("data", "info", toy_data)
    assert res.code == 0 and "cropland" in res.out and "mean RGB" in res.out


def test_toy_data_and_export_chain(cli, tmp_path: Path) -> None:
    assert (
        cli(
            "toy",
            "data",
            "--out",
            tmp_path / "hf",
            "--format",
            "hf",
            "--per-class",
            "4",
            "--classes",
            "3",
        ).code
        == 0
    )
    res = cli(
        "data", "export", tmp_path / "hf", "--shots", "2", "--seed", "1", "--out", tmp_path / "k2"
    )
    assert res.code == 0, res.err
    info = json.loads(cli("data", "info", tmp_path / "k2", "--json").out)
    assert [c["images"] for c in info["classes"]] == [2, 2, 2]
    prov = json.loads((tmp_path / "k2" / "provenance.json").read_text())
    assert prov["command"] == "data export" and prov["seeds"] == {"seed": 1}
    # Re-running over its own output is allowed (replaced atomically).
    assert cli("data", "export", tmp_path / "hf", "--out", tmp_path / "k2").code == 0
