from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geosynth.artifacts import load_channel_means
from geosynth.data import load_dataset
from geosynth.diffusion import class_channel_means, load_vae


def test_channel_means_match_a_direct_computation(toy_models, tmp_path: Path) -> None:
    """Two classes of constant-colour images (no resize or crop involved), encoded one by one
    with diffusers directly; means over pixels, then over images."""
    colours = {"dark": [(10, 20, 60), (20, 30, 70)], "bright": [(220, 200, 150), (240, 230, 200)]}
    for cls, cs in colours.items():
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i, c in enumerate(cs):
            Image.new("RGB", (32, 32), c).save(tmp_path / "d" / cls / f"{i}.png")
    ds = load_dataset(tmp_path / "d")
    vae = load_vae(toy_models["sd"])
    cm = class_channel_means(vae, ds, resolution=32, batch_size=3)
    expected = []
    for cls in ds.class_names:  # sorted: bright, dark
        per_image = []
        for c in colours[cls]:
            x = (
                torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 32, 32) / 127.5
                - 1
            )
            with torch.no_grad():
                z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            per_image.append(z.mean(dim=(2, 3))[0])
        expected.append(torch.stack(per_image).mean(0))
    torch.testing.assert_close(cm.means, torch.stack(expected), rtol=1e-4, atol=1e-5)
    assert cm.class_names == ["bright", "dark"]


def test_channel_means_cli_writes_a_valid_file(cli, toy_models, toy_data, tmp_path) -> None:
    out = tmp_path / "m.safetensors"
    res = cli("channel-means", toy_data, "--model", toy_models["sd"], "--out", out, "--json")
    assert res.code == 0, res.err
    cm = load_channel_means(out)
    assert cm.class_names == ["water", "forest", "desert", "cropland", "urban"]
    assert cm.means.shape == (5, 4) and cm.std.shape == (5, 4)
    assert cm.metadata["resolution"] == "32"
    # Dark water and bright desert sit apart in latent space.
    assert float((cm.for_class("water") - cm.for_class("desert")).abs().max()) > 0.5
    assert np.isfinite(cm.means.numpy()).all()


def test_channel_means_bad_output_name(cli, toy_models, toy_data, tmp_path) -> None:
    res = cli("channel-means", toy_data, "--model", toy_models["sd"], "--out", tmp_path / "m.pt")
    assert res.code == 2 and "--out" in res.err
