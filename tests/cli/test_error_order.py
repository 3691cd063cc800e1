"""Errors in the order a user needs them: inputs that do not exist, and settings that cannot
work, are refused before any model loads (loading takes seconds on a workstation), and a missing
--model path is named as missing, not as a LoRA trained for another model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from geosynth.diffusion.loras import CARD_FILE, LORA_FILE


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load fails the test: a refusal must come before it."""

    def loaded(*_a, **_k):
        raise AssertionError("a model was loaded before the refusal")

    for target in (
        "geosynth.diffusion.loading.load_sd_pipeline",
        "geosynth.diffusion.loading.load_vae",
        "geosynth.diffusion.training.finetune.load_sd_pipeline",
    ):
        monkeypatch.setattr(target, loaded)


def _lora(path: Path, base: str) -> Path:
    path.mkdir()
    save_file({"unet.a.lora_A.weight": torch.zeros(2, 2)}, str(path / LORA_FILE))
    (path / CARD_FILE).write_text(json.dumps({"base_model": base, "class_names": ["water"]}))
    return path


def _refused(res, *needles: str) -> str:
    assert res.code == 2, res.err
    line = res.err.strip().splitlines()[-1]
    assert line.startswith("error: "), res.err
    for n in needles:
        assert n in line, line
    return line


def test_a_missing_model_path_is_named_first(cli, tmp_path, no_loading) -> None:
    lora = _lora(tmp_path / "lora", "some/other-model")
    out = tmp_path / "out"
    for extra in (["--lora", lora], []):
        res = cli("generate", "--model", "nope/", *extra, "--out", out)
        _refused(res, "--model nope/: no such model directory")
    assert not out.exists()


def test_generate_refuses_before_loading(cli, tmp_path, toy_models, no_loading) -> None:
    sd = toy_models["sd"]
    out = tmp_path / "out"
    base = ["generate", "--model", sd, "--per-class", "1", "--out", out]
    _refused(cli(*base, "--classes", "water", "--prompt-template", "no field"), "--prompt-template")
    _refused(cli(*base, "--classes", ".hidden"), "reserved")
    _refused(
        cli(
            *base,
            "--classes",
            "water",
            "--controlnet",
            tmp_path / "cn",
            "--control",
            "canny",
            "--control-images",
            tmp_path / "imgs",
        ),
        "--controlnet",
        "no such model directory",
    )
    means = tmp_path / "means.safetensors"
    save_file({"means": torch.zeros(1, 4)}, str(means), metadata={"class_names": '["desert"]'})
    _refused(
        cli(*base, "--classes", "water", "--noise", "leak-aligned", "--channel-means", means),
        "no class 'water'",
    )
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(cli(*base, "--classes", "water"), "not a generation output")
    assert (out / "notes.txt").read_text() == "mine"


def test_finetune_and_channel_means_refuse_before_loading(
    cli, tmp_path, toy_data, toy_models, no_loading
) -> None:
    out = tmp_path / "out"
    _refused(cli("finetune", toy_data, "--model", "nope/", "--out", out), "--model nope/")
    _refused(
        cli(
            "finetune",
            toy_data,
            "--model",
            toy_models["sd"],
            "--init",
            "scratch",
            "--train-unet",
            "full",
            "--unet-config",
            tmp_path / "unet.json",
            "--out",
            out,
        ),
        "--unet-config",
        "no such file",
    )
    _refused(
        cli("channel-means", toy_data, "--model", "nope/", "--out", tmp_path / "m.safetensors"),
        "--model nope/",
    )
    _refused(
        cli(
            "channel-means",
            toy_data,
            "--model",
            toy_models["sd"],
            "--lora",
            tmp_path / "x",
            "--out",
            tmp_path / "m.safetensors",
        ),
        "--lora",
    )
    assert list(tmp_path.iterdir()) == []


def test_feature_steps_check_every_input_before_embedding(
    cli, tmp_path, toy_data, monkeypatch
) -> None:
    def loaded(*_a, **_k):
        raise AssertionError("a feature model was loaded before the refusal")

    monkeypatch.setattr("geosynth.features.spec.create_extractor", loaded)
    monkeypatch.setattr("geosynth.features.resolve.create_extractor", loaded)
    gone = tmp_path / "gone"
    _refused(cli("embed", gone, "--out", tmp_path / "f.safetensors"), f"DATASET {gone}: no such")
    _refused(cli("rarity", toy_data, gone), f"REFERENCE {gone}: no such")
    _refused(cli("evaluate", toy_data, toy_data, "--val", gone), f"--val {gone}: no such")
    _refused(cli("evaluate", gone / "e.safetensors", toy_data), "no such file")
    _refused(cli("filter", toy_data, "--train", gone, "--out", tmp_path / "k"), f"--train {gone}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
