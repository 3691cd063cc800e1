"""``geosynth channel-means``: per-class latent channel means for leak-aligned noise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import Provenance, save_channel_means
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    DeviceOpt,
    JsonOpt,
    RadiometryOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.defaults import SD_MODEL
from geosynth.diffusion import class_channel_means, load_vae, vae_scale_factor
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.loading import native_resolution
from geosynth.errors import GeosynthError
from geosynth.runtime import pick_device


def channel_means(
    dataset: DatasetArg,
    out: Annotated[
        Path, typer.Option("--out", help="Output .safetensors file.", show_default=False)
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Pipeline (hub id or directory) whose VAE encodes the images."
        ),
    ] = SD_MODEL,
    lora: Annotated[
        Path | None,
        typer.Option(
            "--lora",
            help="A finetune output whose trained VAE (DIR/vae/, e.g. from --train-vae-encoder) "
            "encodes the images; generate with the same --lora.",
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution", help="Fine-tuning resolution (default: the model's native size)."
        ),
    ] = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    radiometry: RadiometryOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-class means of the VAE latents (x scaling_factor) of a dataset: x0_cls of leak-aligned noise.

    \b
    Example:
      geosynth channel-means eurosat-16shot/ --model stabilityai/stable-diffusion-2-1-base --out means.safetensors
    """
    if out.suffix != ".safetensors":
        raise GeosynthError(f"--out {out}: expected a path ending in .safetensors")
    ds = dataset_from_options(dataset, split, classes, shots, seed, radiometry)
    vae, source = load_vae(model), model
    if lora is not None:
        item = lora_ops.parse_lora(str(lora), set(), arg="lora")
        lora_ops.check_base(item, model, arg="lora")
        # DIR of DIR[:weight]: the weight scales adapters, the VAE is the folder's as it is
        if (item.path / "vae").is_dir():
            from diffusers import AutoencoderKL

            vae, source = AutoencoderKL.from_pretrained(item.path / "vae"), str(item.path / "vae")
        else:
            message(f"warning: {item.path} has no trained VAE (no vae/ folder): using {model}'s")
    size = resolution or native_resolution(model, vae_scale_factor(vae))
    if size % vae_scale_factor(vae):
        raise GeosynthError(f"--resolution {size}: must be a multiple of {vae_scale_factor(vae)}")
    vae.to(pick_device(device))  # float32 on every device: the means are exact sums
    cm = class_channel_means(
        vae, ds, resolution=size, batch_size=batch_size, track=track, vae_source=source
    )
    cm.metadata["model"] = model
    prov = Provenance.start(
        "channel-means", seeds={"seed": seed}, model=model, resolution=size, vae=source
    )
    prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
    save_channel_means(out, cm, provenance=prov)
    rows = [(c, *[f"{v:+.3f}" for v in cm.means[i].tolist()]) for i, c in enumerate(cm.class_names)]
    if as_json:
        print_json(
            {
                "out": str(out),
                "resolution": size,
                "class_names": cm.class_names,
                "means": cm.means.tolist(),
                "std": None if cm.std is None else cm.std.tolist(),
            }
        )
        return
    print_table(
        f"latent channel means ({source}, {size} px)",
        ["class", *[f"c{j}" for j in range(cm.means.shape[1])]],
        rows,
    )
    message(f"wrote {out}")
