"""DiffusionSat's metadata embedding on plain diffusers UNets: its formula (computed here another
way), zero-init leaving the model exactly as it was, DiffusionSat's checkpoint layout loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geosynth.data.metadata import MODEL_FIELDS
from geosynth.diffusion.diffusionsat import load_metadata_unet
from geosynth.diffusion.metadata_embedding import (
    attach_metadata_embedding,
    detach_metadata_embedding,
    drop_fields,
    metadata_conditioning,
    metadata_tensor,
    normalise_metadata,
)
from geosynth.errors import GeosynthError

TOY = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
    attention_head_dim=8, norm_num_groups=16, use_linear_projection=True,
)  # fmt: skip
# SDXL's extra conditioning: time ids and pooled text through add_embedding.
TOY_XL = dict(
    TOY, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)  # fmt: skip


def _unet(seed: int = 0, **config):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**(config or TOY)).eval()


def _inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(n, 4, 8, 8, generator=g),
        torch.tensor([7, 613][:n]),
        torch.randn(n, 5, 32, generator=g),
    )


ROWS = [
    {"lon": 55.3, "lat": 25.2, "gsd": 0.5, "cloud_cover": 0.1, "year": 2023, "month": 6, "day": 1},
    {
        "lon": -8.2,
        "lat": 39.4,
        "gsd": 10.0,
        "cloud_cover": None,
        "year": 2017,
        "month": 12,
        "day": 21,
    },
]


def test_normalisation_is_diffusionsat_s() -> None:
    got = normalise_metadata(ROWS[0])
    want = [(55.3 + 180) / 360 * 1000, (25.2 + 90) / 180 * 1000, 500.0, 100.0,
            (2023 - 1980) / 120 * 1000, 6 / 12 * 1000, 1 / 31 * 1000]  # fmt: skip
    assert got == pytest.approx(want, rel=1e-12)
    # native GSD rescaled by original over target size: a 64 px chip at 10 m seen at 512 px
    assert normalise_metadata({"gsd": 10.0}, ("gsd",), gsd_scale=64 / 512) == [1250.0]
    # missing is 0, DiffusionSat's "unknown"
    assert normalise_metadata(ROWS[1])[3] == 0.0
    t = metadata_tensor(ROWS, ("lon", "lat", "gsd"))
    assert t.shape == (2, 3) and t.dtype == torch.float32


def _sinusoid(x: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers' Timesteps(dim, flip_sin_to_cos=True, freq_shift=0), written out."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    angles = x.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


def _diffusionsat_folder(root: Path, unet, weights: dict[str, torch.Tensor], fmt: str) -> Path:
    """``unet`` saved as DiffusionSat saves its SatUNet: config keys use_metadata/num_metadata,
    class SatUNet, weights metadata_embedding.{i}.linear_1/2 beside the UNet's."""
    folder = root / "unet"
    unet.save_pretrained(folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(_class_name="SatUNet", use_metadata=True, num_metadata=7)
    (folder / "config.json").write_text(json.dumps(config))
    state = {**load_file(str(folder / "diffusion_pytorch_model.safetensors")), **weights}
    if fmt == "bin":  # diffusers 0.17's default, as DiffusionSat's checkpoints are
        (folder / "diffusion_pytorch_model.safetensors").unlink()
        torch.save(state, folder / "diffusion_pytorch_model.bin")
    else:
        save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    return root


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_diffusionsat_layout_loads_and_computes_its_formula(tmp_path, fmt) -> None:
    base = _unet()
    g = torch.Generator().manual_seed(3)
    weights = {}
    for i in range(7):
        weights[f"metadata_embedding.{i}.linear_1.weight"] = 0.1 * torch.randn(128, 32, generator=g)
        weights[f"metadata_embedding.{i}.linear_1.bias"] = 0.1 * torch.randn(128, generator=g)
        weights[f"metadata_embedding.{i}.linear_2.weight"] = 0.1 * torch.randn(
            128, 128, generator=g
        )
        weights[f"metadata_embedding.{i}.linear_2.bias"] = 0.1 * torch.randn(128, generator=g)
    root = _diffusionsat_folder(tmp_path, base, weights, fmt)
    unet = load_metadata_unet(root)
    assert unet.metadata_embedding.fields == MODEL_FIELDS
    loaded = unet.state_dict()
    assert all(torch.equal(loaded[k], w) for k, w in weights.items())
    if fmt == "bin":
        return  # the same weights as the safetensors case, whose forward is checked below
    md = metadata_tensor(ROWS)
    x, t, c = _inputs()
    with torch.no_grad():
        got = unet(x, t, c, metadata=md).sample
        # The reference: DiffusionSat's sum computed by hand, fed through diffusers' own
        # "identity" class embedding (added to the time embedding) of the same base weights.
        extra = torch.zeros(2, 128)
        for i in range(7):
            w1, b1 = (
                weights[f"metadata_embedding.{i}.linear_1.weight"],
                weights[f"metadata_embedding.{i}.linear_1.bias"],
            )
            w2, b2 = (
                weights[f"metadata_embedding.{i}.linear_2.weight"],
                weights[f"metadata_embedding.{i}.linear_2.bias"],
            )
            h = _sinusoid(md[:, i], 32) @ w1.T + b1
            extra += (h * torch.sigmoid(h)) @ w2.T + b2
        ref_unet = _unet(class_embed_type="identity", **TOY)
        ref_unet.load_state_dict(base.state_dict())
        want = ref_unet(x, t, c, class_labels=extra).sample
        plain = base(x, t, c).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3


@pytest.mark.parametrize("config", [TOY, TOY_XL], ids=["sd2", "sdxl"])
def test_zero_init_is_the_base_model_and_metadata_steers(config) -> None:
    unet = _unet(**config)
    x, t, c = _inputs()
    kw = {}
    if config is TOY_XL:
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)}
    md = metadata_tensor(ROWS)
    with torch.no_grad():
        base = unet(x, t, c, **kw).sample
        emb = attach_metadata_embedding(unet)  # zero_init by default
        assert torch.equal(unet(x, t, c, metadata=md, **kw).sample, base)  # exactly, bit for bit
        for mlp in emb:  # as after some training
            torch.nn.init.normal_(mlp.linear_2.weight, std=0.2)
        a = unet(x, t, c, metadata=md, **kw).sample
        b = unet(x, t, c, metadata=md.clone(), **kw).sample
        other = unet(x, t, c, metadata=md.flip(0), **kw).sample
        with metadata_conditioning(unet, md):
            ctx = unet(x, t, c, **kw).sample
        none = unet(x, t, c, **kw).sample  # no metadata: all unknown (zeros)
        zeros = unet(x, t, c, metadata=torch.zeros_like(md), **kw).sample
    assert torch.equal(a, b) and torch.equal(a, ctx) and torch.equal(none, zeros)
    assert (a - other).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # each image changes
    detach_metadata_embedding(unet)
    with torch.no_grad():
        assert torch.equal(unet(x, t, c, **kw).sample, base)


def test_guidance_batch_gets_zeros_first() -> None:
    unet = _unet()
    emb = attach_metadata_embedding(unet, zero_init=False)
    assert emb is unet.metadata_embedding
    x, t, c = _inputs(1)
    md = metadata_tensor(ROWS[:1])
    with torch.no_grad():
        with metadata_conditioning(unet, md, guidance=True):
            pair = unet(x.repeat(2, 1, 1, 1), t.repeat(2), c.repeat(2, 1, 1)).sample
        uncond = unet(x, t, c, metadata=torch.zeros_like(md)).sample
        cond = unet(x, t, c, metadata=md).sample
    torch.testing.assert_close(pair[:1], uncond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pair[1:], cond, rtol=1e-5, atol=1e-5)
    with pytest.raises(GeosynthError, match="3 rows for a batch of 2"):
        unet(x.repeat(2, 1, 1, 1), t.repeat(2), c.repeat(2, 1, 1), metadata=md.repeat(3, 1))
    with pytest.raises(GeosynthError, match=r"expected batch x 7"):
        unet(x, t, c, metadata=torch.zeros(1, 3))


def test_saved_subset_round_trips(tmp_path) -> None:
    unet = _unet()
    emb = attach_metadata_embedding(unet, ("lon", "lat", "gsd"), zero_init=False)
    unet.save_pretrained(tmp_path / "m" / "unet")
    config = json.loads((tmp_path / "m" / "unet" / "config.json").read_text())
    assert (config["use_metadata"], config["num_metadata"]) == (True, 3)
    assert config["metadata_fields"] == ["lon", "lat", "gsd"]
    names = set(load_file(str(tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors")))
    assert {f"metadata_embedding.{i}.linear_{j}.{p}" for i in range(3) for j in (1, 2)
            for p in ("weight", "bias")} <= names  # fmt: skip
    again = load_metadata_unet(tmp_path / "m")
    assert again.metadata_embedding.fields == emb.fields
    x, t, c = _inputs()
    md = metadata_tensor(ROWS, emb.fields)
    with torch.no_grad():
        assert torch.equal(again(x, t, c, metadata=md).sample, unet(x, t, c, metadata=md).sample)


def test_bad_checkpoints(tmp_path) -> None:
    unet = _unet()
    unet.save_pretrained(tmp_path / "u")
    config = json.loads((tmp_path / "u" / "config.json").read_text())
    (tmp_path / "u" / "config.json").write_text(
        json.dumps({**config, "use_metadata": True, "num_metadata": 3})
    )
    with pytest.raises(GeosynthError, match="num_metadata=3 without metadata_fields"):
        load_metadata_unet(tmp_path / "u", subfolder=None)
    (tmp_path / "u" / "config.json").write_text(
        json.dumps({**config, "use_metadata": True, "num_metadata": 7})
    )
    with pytest.raises(GeosynthError, match="metadata_embedding weights do not fit"):
        load_metadata_unet(tmp_path / "u", subfolder=None)
    (tmp_path / "u" / "config.json").write_text(json.dumps(config))
    assert not hasattr(load_metadata_unet(tmp_path / "u", subfolder=None), "metadata_embedding")


def test_field_dropout() -> None:
    md = metadata_tensor(ROWS * 500)
    assert torch.equal(drop_fields(md, 0.0), md)
    assert not drop_fields(md, 1.0).any()
    g = torch.Generator().manual_seed(0)
    dropped = drop_fields(md, 0.1, g)
    again = drop_fields(md, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)
    share = ((dropped == 0) & (md != 0)).sum() / (md != 0).sum()
    assert 0.08 < float(share) < 0.12
    with pytest.raises(GeosynthError, match=r"metadata_dropout=1\.5"):
        drop_fields(md, 1.5)
