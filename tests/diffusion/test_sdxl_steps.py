"""The steps around SDXL's generation, from the command line, on the toy SDXL (issue 34):
generate with guidance replayed byte for byte and run from a --config file; filter and
evaluate (latent colour through the SDXL VAE) reading its outputs; cluster-plora training its
LoRAs on SDXL; and bad input, one line on stderr, exit code 2 and nothing written: a model of
a family geosynth does not run given to every diffusion command, and channel means made for
SD 2.x used with SDXL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reliability.conftest import tree_bytes

CLASSES = "water,desert"
GEN = ["--classes", CLASSES, "--per-class", "2", "--steps", "2", "--guidance", "3"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def synth(toy_sdxl, tmp_path_factory) -> Path:
    """Four images of the toy SDXL, with classifier-free guidance."""
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("sdxl-synth") / "synth"
    assert main(["generate", "--model", str(toy_sdxl), *GEN, "--out", str(out)]) == 0
    return out


def test_replay_and_config_file_reproduce_generate(cli, synth, toy_sdxl, tmp_path) -> None:
    res = cli("replay", synth, "--out", tmp_path / "again")
    assert res.code == 0, res.err
    assert tree_bytes(tmp_path / "again") == tree_bytes(synth)
    config = tmp_path / "run.toml"
    config.write_text(
        f'model = "{toy_sdxl}"\nclasses = "{CLASSES}"\nper-class = 2\nsteps = 2\nguidance = 3.0\n'
    )
    res = cli("generate", "--config", config, "--out", tmp_path / "config")
    assert res.code == 0, res.err
    for name in ("water/000000.png", "desert/000001.png"):
        assert (tmp_path / "config" / name).read_bytes() == (synth / name).read_bytes(), name


def test_filter_and_evaluate_read_sdxl_outputs(
    cli, synth, toy_sdxl, toy_models, toy_data, tmp_path
):
    out = tmp_path / "kept"
    res = cli("filter", synth, "--classifier", f"clip:{toy_models['clip']}", "--min-confidence",
              "0", "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    rows = [json.loads(x) for x in (out / "filter.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    report = tmp_path / "report.json"
    res = cli("evaluate", synth, toy_data, "--metrics", "color,latent_color", "--vae", toy_sdxl,
              "--resolution", "32", "--classes", CLASSES, "--out", report)  # fmt: skip
    assert res.code == 0, res.err
    latent = json.loads(report.read_text())["latent_color"]
    assert latent["model"] == str(toy_sdxl)


def test_cluster_plora_trains_sdxl_loras(cli, toy_sdxl, toy_models, toy_data, tmp_path) -> None:
    """cluster-plora --train-loras on SDXL: the weights file records the family (and the base
    model as an absolute path), generation mixes the cluster LoRAs per class, and an SD 2.x
    model refuses the file."""
    from geosynth.artifacts import Embeddings, Provenance, save_embeddings
    from geosynth.data import load_dataset

    ds = load_dataset(toy_data, classes=CLASSES.split(","))
    rng = np.random.default_rng(0)
    x = np.stack([[8.0 * s.label, 0.0, *rng.normal(0, 0.1, 2)] for s in ds.samples])
    emb = save_embeddings(tmp_path / "e.safetensors", Embeddings(torch.tensor(x).float()),
                          provenance=Provenance.start("t"))  # fmt: skip
    out = tmp_path / "plora"
    res = cli("cluster-plora", toy_data, "--classes", CLASSES, "--embeddings", emb, "--k", "2",
              "--train-loras", "--model", toy_sdxl, "--max-steps", "1", "--resolution", "32",
              "--batch-size", "4", "--lora-rank", "4", "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    weights = json.loads((out / "weights.json").read_text())
    assert weights["family"] == "sdxl" and weights["base_model"] == str(toy_sdxl)
    for j in range(2):
        card = json.loads((out / "loras" / f"cluster_{j}" / "geosynth.json").read_text())
        assert card["base_family"] == "sdxl"
    gen = tmp_path / "gen"
    res = cli("generate", "--model", toy_sdxl, "--lora-weights", out / "weights.json",
              "--per-class", "1", "--steps", "1", "--out", gen)  # fmt: skip
    assert res.code == 0, res.err
    rows = [json.loads(x) for x in (gen / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["file_name"] for r in rows) == ["desert/000000.png", "water/000000.png"]
    assert all(len(r["loras"]) >= 1 for r in rows)
    no = tmp_path / "no"
    res = cli("generate", "--model", toy_models["sd"], "--lora-weights", out / "weights.json",
              "--per-class", "1", "--out", no)  # fmt: skip
    _refused(res, no, "--lora-weights", "made for an SDXL model")


def _refused(res, out: Path, *words: str) -> None:
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    for w in words:
        assert w in res.err, (w, res.err)
    assert not out.exists(), out
    assert not out.with_name(out.name + ".parts").exists()


@pytest.fixture(scope="module")
def flux(tmp_path_factory) -> Path:
    """A pipeline folder whose index names FLUX (a transformer, no UNet), named like SDXL."""
    model = tmp_path_factory.mktemp("other") / "stable-diffusion-xl-base-1.0"
    model.mkdir()
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]}
    (model / "model_index.json").write_text(json.dumps(index))
    return model


@pytest.mark.parametrize("command", ["generate", "channel-means", "lora import", "cluster-plora"])
def test_an_unsupported_family_is_refused_by_every_diffusion_command(
    cli, flux, toy_data, tmp_path, command
) -> None:
    from safetensors.torch import save_file

    out = tmp_path / ("out.safetensors" if command == "channel-means" else "out")
    emb = tmp_path / "e.safetensors"  # cluster-plora: given embeddings (no feature model)
    args = {
        "generate": ["generate", "--model", flux, *GEN],
        "channel-means": ["channel-means", toy_data, "--model", flux],
        "cluster-plora": [
            "cluster-plora",
            toy_data,
            "--k",
            "2",
            "--embeddings",
            emb,
            "--train-loras",
            "--model",
            flux,
        ],
    }
    if command == "cluster-plora":
        from geosynth.artifacts import Embeddings, Provenance, save_embeddings

        save_embeddings(emb, Embeddings(torch.randn(30, 4)), provenance=Provenance.start("t"))
    if command == "lora import":
        file = tmp_path / "k.safetensors"
        key = "lora_unet_down_blocks_0_attentions_0_proj_in"
        save_file({f"{key}.lora_down.weight": torch.zeros(4, 8),
                   f"{key}.lora_up.weight": torch.zeros(8, 4)}, str(file))  # fmt: skip
        args[command] = ["lora", "import", file, "--model", flux]
    res = cli(*args[command], "--out", out)
    _refused(res, out, "a FLUX model (FluxPipeline)", "Stable Diffusion 1.x, 2.x and XL")
    assert "--model" in res.err


def test_sd2_channel_means_are_refused_with_sdxl(cli, toy_sdxl, toy_models, toy_data, tmp_path):
    """The reverse of the SDXL means refused with SD 2.x (tests/diffusion/test_sdxl.py)."""
    means = tmp_path / "sd2.safetensors"
    res = cli("channel-means", toy_data, "--model", toy_models["sd"], "--classes", CLASSES,
              "--resolution", "32", "--out", means)  # fmt: skip
    assert res.code == 0, res.err
    out = tmp_path / "out"
    res = cli("generate", "--model", toy_sdxl, "--noise", "leak-aligned", "--channel-means",
              means, *GEN, "--out", out)  # fmt: skip
    _refused(res, out, "--channel-means", "made for an SD 2.x model", "(SDXL)")


def test_sd2_loras_are_refused_by_sdxl_commands(cli, toy_sdxl, toy_data, tmp_path) -> None:
    """An SD 2.x LoRA on SDXL, as its card says (a toy SD's widths tell nothing) and as a kohya
    file's metadata says, through every command that takes one."""
    from safetensors.torch import save_file

    lora = tmp_path / "sd2-lora"
    lora.mkdir()
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file({f"{key}.lora_A.weight": torch.zeros(4, 32), f"{key}.lora_B.weight": torch.zeros(32, 4)},
              str(lora / "pytorch_lora_weights.safetensors"))  # fmt: skip
    (lora / "geosynth.json").write_text(json.dumps({"base_family": "sd2"}))
    out = tmp_path / "out"
    for cmd in (["generate", "--model", toy_sdxl, "--lora", lora, *GEN],
                ["finetune", toy_data, "--model", toy_sdxl, "--init-lora", lora],
                ["cluster-plora", toy_data, "--k", "2", "--train-loras", "--model", toy_sdxl,
                 "--init-lora", lora]):  # fmt: skip
        res = cli(*cmd, "--out", out)
        _refused(res, out, "made for an SD 2.x model", "(SDXL)")
    means = tmp_path / "m.safetensors"
    res = cli("channel-means", toy_data, "--model", toy_sdxl, "--lora", lora, "--out", means)
    _refused(res, means, "--lora", "made for an SD 2.x model")
    file = tmp_path / "k.safetensors"
    kohya = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{kohya}.lora_down.weight": torch.zeros(4, 32),
               f"{kohya}.lora_up.weight": torch.zeros(32, 4)}, str(file),
              metadata={"ss_base_model_version": "sd_v2"})  # fmt: skip
    res = cli("lora", "import", file, "--model", toy_sdxl, "--out", out)
    _refused(res, out, "made for an SD 2.x model")
