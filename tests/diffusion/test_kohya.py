"""kohya / A1111 / ComfyUI LoRA files: export keeps every module's update (alpha included) as plain
diffusers loads it, and import gives back geosynth's layout with the same weights and scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from geosynth.diffusion.kohya import export_kohya, import_kohya
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.loras import LORA_FILE
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.trainable import export_trained, prepare_components


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})  # noqa: SIM118


@pytest.fixture(scope="module")
def trained_lora(toy_models, tmp_path_factory) -> Path:
    """A finetune-layout LoRA with rank 4 and alpha 8 (scale 2, so a lost alpha shows), with
    non-zero up matrices as after training."""
    pipe = load_sd_pipeline(str(toy_models["sd"]), device=torch.device("cpu"), dtype=torch.float32)
    recipe = Recipe(rank=4, alpha=8.0)
    info = prepare_components(pipe, recipe)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in [*pipe.unet.named_parameters(), *pipe.text_encoder.named_parameters()]:
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    out = tmp_path_factory.mktemp("lora") / "lora"
    out.mkdir()
    export_trained(pipe, recipe, info, out)
    (out / "geosynth.json").write_text(json.dumps({"base_model": str(toy_models["sd"])}))
    return out


def _outputs(pipe) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = pipe.tokenizer(["a satellite photo of a forest"], return_tensors="pt").input_ids
    with torch.no_grad():
        text = pipe.text_encoder(ids)[0]
        c = pipe.unet.config
        x = torch.randn(1, c.in_channels, c.sample_size, c.sample_size, generator=gen)
        return text, pipe.unet(x, 500, encoder_hidden_states=text).sample


def test_export_has_kohya_keys_alpha_and_metadata(trained_lora, tmp_path) -> None:
    out = export_kohya(trained_lora, tmp_path / "lora.safetensors")
    tensors, meta = _read(out)
    assert all(k.startswith(("lora_unet_", "lora_te_text_model_")) for k in tensors)
    alphas = [v for k, v in tensors.items() if k.endswith(".alpha")]
    downs = [k for k in tensors if k.endswith(".lora_down.weight")]
    assert len(alphas) == len(downs) > 0 and all(float(a) == 8.0 for a in alphas)
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "8"
    assert meta["ss_network_module"] == "networks.lora"


def test_plain_diffusers_runs_the_export_like_the_original(
    trained_lora, toy_models, tmp_path
) -> None:
    base = str(toy_models["sd"])
    exported = export_kohya(trained_lora, tmp_path / "lora.safetensors")
    reference = load_sd_pipeline(base, device=torch.device("cpu"), dtype=torch.float32)
    reference.load_lora_weights(str(trained_lora))
    kohya = load_sd_pipeline(base, device=torch.device("cpu"), dtype=torch.float32)
    kohya.load_lora_weights(str(exported))
    plain = load_sd_pipeline(base, device=torch.device("cpu"), dtype=torch.float32)
    (t_ref, u_ref), (t_k, u_k), (_, u_0) = _outputs(reference), _outputs(kohya), _outputs(plain)
    torch.testing.assert_close(t_k, t_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(u_k, u_ref, rtol=1e-5, atol=1e-5)
    assert (u_ref - u_0).abs().max() > 1e-3  # the LoRA does change the output


def test_import_round_trips_weights_and_scale(trained_lora, toy_models, tmp_path) -> None:
    exported = export_kohya(trained_lora, tmp_path / "lora.safetensors")
    back = import_kohya(exported, str(toy_models["sd"]), tmp_path / "imported")
    orig, _ = _read(trained_lora / LORA_FILE)
    new, new_meta = _read(back / LORA_FILE)
    assert sorted(new) == sorted(orig)
    for k, v in orig.items():
        torch.testing.assert_close(new[k], v, rtol=0, atol=0)
    cfg = json.loads(new_meta["lora_adapter_metadata"])
    assert cfg["unet.r"] == 4 and cfg["unet.lora_alpha"] == 8
    assert cfg["text_encoder.r"] == 4 and cfg["text_encoder.lora_alpha"] == 8
    card = json.loads((back / "geosynth.json").read_text())
    assert card["base_model"] == str(toy_models["sd"])


def test_import_of_a_non_lora_file_is_one_line_error(toy_models, tmp_path) -> None:
    from safetensors.torch import save_file

    from geosynth.errors import GeosynthError

    bad = tmp_path / "bad.safetensors"
    save_file({"something": torch.zeros(2)}, str(bad))
    with pytest.raises(GeosynthError, match=r"bad\.safetensors"):
        import_kohya(bad, str(toy_models["sd"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export_import_and_existing_output(trained_lora, toy_models, tmp_path, cli) -> None:
    file = tmp_path / "k.safetensors"
    res = cli("lora", "export", trained_lora, "--out", file)
    assert res.code == 0, res.err
    res = cli("lora", "import", file, "--model", toy_models["sd"], "--out", tmp_path / "d")
    assert res.code == 0, res.err
    assert (tmp_path / "d" / LORA_FILE).is_file()
    res = cli("lora", "export", trained_lora, "--out", file)  # never replaced silently
    assert res.code == 2 and "already exists" in res.err
    res = cli("lora", "export", trained_lora, "--out", tmp_path / "x", "--format", "a1111")
    assert res.code == 2 and "--format a1111" in res.err
