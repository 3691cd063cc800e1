"""Per-class channel means of VAE latents: the ``x0_cls`` of leak-aligned noise.

Each image is encoded at the fine-tuning resolution with the training preprocessing (resize,
centre crop, [-1, 1]), its posterior mean multiplied by ``vae.config.scaling_factor`` (the space
the UNet sees), averaged over pixels; then the per-image vectors are averaged per class.

The file's metadata records what the means depend on, so that ``generate`` can refuse a file made
for another pipeline: the resolution, the latent channels, the scaling factor and the encoder's
identity (a digest of the encoder and ``quant_conv`` weights; the decoder plays no part).
With a radiometry spec, the images are the spec's float [-1, 1] input (no 8-bit rounding) and
the spec is recorded in the metadata.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from geosynth.artifacts import ChannelMeans
from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset
from geosynth.defaults import SD_MODEL
from geosynth.diffusion.latents import encode_latents, images_to_tensor, vae_scale_factor
from geosynth.diffusion.types import VAE
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers
from geosynth.progress import Track, no_track

ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def encoder_digest(vae: VAE, dtype: torch.dtype = torch.float16) -> str:
    """A digest of the encoder weights rounded to ``dtype``. Rounding makes a float32 VAE and the
    same VAE loaded in float16 (or bfloat16, with ``dtype=torch.bfloat16``) agree."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(vae.state_dict().items()):
        if not name.startswith(ENCODER_PREFIXES):
            continue
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.detach().to("cpu", dtype).contiguous().view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def vae_identity(vae: VAE, source: str) -> dict[str, str]:
    """Channel-means metadata naming the VAE that produced the latents."""
    return {
        "vae": source,
        "latent_channels": str(vae.config.latent_channels),
        "scaling_factor": str(vae.config.scaling_factor),
        "vae_encoder_fp16": encoder_digest(vae, torch.float16),
        "vae_encoder_bf16": encoder_digest(vae, torch.bfloat16),
    }


def pipeline_mismatches(cm: ChannelMeans, vae: VAE, resolution: int) -> list[str]:
    """How a channel-means file does not fit a pipeline's VAE and generation size (empty when it
    fits): a different scaling factor, encoder or resolution, or no record of one of them."""
    meta = cm.metadata
    problems = []
    sf = meta.get("scaling_factor")
    if sf is None:
        problems.append("no scaling factor recorded")
    elif abs(float(sf) - float(vae.config.scaling_factor)) > 1e-6 * abs(float(sf)):
        problems.append(f"VAE scaling factor {sf}, the model's is {vae.config.scaling_factor}")
    bf16 = next(vae.parameters()).dtype == torch.bfloat16
    key = "vae_encoder_bf16" if bf16 else "vae_encoder_fp16"
    if key not in meta:
        problems.append("no VAE identity recorded")
    elif meta[key] != encoder_digest(vae, torch.bfloat16 if bf16 else torch.float16):
        problems.append(f"computed with another VAE encoder ({meta.get('vae', 'unknown')})")
    res = meta.get("resolution")
    if res is None:
        problems.append("no resolution recorded")
    elif int(res) != int(resolution):
        problems.append(f"computed at {res} px, generating at {resolution} px")
    return problems


def per_image_channel_means(
    vae: VAE,
    ds: ImageDataset,
    *,
    resolution: int,
    batch_size: int = 16,
    track: Track = no_track,
) -> torch.Tensor:
    """N x C: the pixel-averaged scaled latent of every image, in dataset order."""
    rows = []
    starts = range(0, len(ds), batch_size)
    for s in track(starts, len(starts), "encoding"):
        images = [ds.model_input(i) for i in range(s, min(s + batch_size, len(ds)))]
        z = encode_latents(vae, images_to_tensor(images, resolution))
        rows.append(z.float().mean(dim=(2, 3)).cpu())
    return torch.cat(rows)


def class_channel_means(
    vae: VAE,
    ds: ImageDataset,
    *,
    resolution: int,
    batch_size: int = 16,
    track: Track = no_track,
    vae_source: str = "",
) -> ChannelMeans:
    """K x C means (and stds over images) per class of ``ds``; ``vae_source`` names the VAE in the
    metadata (a model id, or a fine-tuned VAE's directory)."""
    per_image = per_image_channel_means(
        vae, ds, resolution=resolution, batch_size=batch_size, track=track
    )
    labels = torch.tensor(ds.labels)
    means, stds = [], []
    for c in range(len(ds.class_names)):
        rows = per_image[labels == c]
        means.append(rows.mean(0))
        stds.append(rows.std(0, unbiased=False))
    metadata = {"resolution": str(resolution), **vae_identity(vae, vae_source)}
    if ds.radiometry is not None:  # the means hold only for inputs made the same way
        metadata["radiometry"] = ds.radiometry.to_json()
    return ChannelMeans(
        means=torch.stack(means),
        class_names=list(ds.class_names),
        std=torch.stack(stds),
        metadata=metadata,
    )


def channel_means(
    dataset: ImageDataset,
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    lora: str | os.PathLike[str] | None = None,
    resolution: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    seed: int = 0,
    dataset_name: str | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> ChannelMeans:
    """What ``geosynth channel-means`` does: the per-class latent means of ``dataset`` written to
    ``out`` (a ``.safetensors`` file, with provenance), encoded by ``model``'s VAE (None: the
    base model ``lora``'s card records, said in one line to ``log``, else
    :data:`~geosynth.defaults.SD_MODEL`), or by the trained VAE of the finetune output
    ``lora`` (its ``vae/`` folder) when it has one, at
    ``resolution`` (default: the model's native size). ``dataset_name`` names the dataset in the
    provenance (default: its source). The means are computed in float32 on every device (exact
    sums)."""
    from geosynth.artifacts import Provenance, save_channel_means
    from geosynth.diffusion.family import detect_family
    from geosynth.diffusion.identity import model_digest
    from geosynth.diffusion.loading import load_vae, native_resolution
    from geosynth.diffusion.loras import check_base, parse_lora
    from geosynth.runtime import model_ref, pick_device

    check_numbers(resolution=resolution, batch_size=batch_size, seed=seed)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise GeosynthError(f"out={str(out)!r}: expected a path ending in .safetensors")
    item = None if lora is None else parse_lora(str(lora), set(), arg="lora")
    if model is None and item is not None:
        base = item.card.get("base_model")
        model = str(base) if base else None
        if model is not None:
            log(f"model: {model} (the base model {lora}'s card records)")
    model = model or SD_MODEL
    model_ref(model)  # inputs first, then the models: a missing path is said at once
    family = detect_family(model)
    if item is not None:  # checked before the VAE loads
        check_base(item, model, arg="lora", family=family)
    vae, source = load_vae(model), model
    if item is not None:
        # DIR of DIR[:weight]: the weight scales adapters, the VAE is the folder's as it is
        if (item.path / "vae").is_dir():
            from diffusers import AutoencoderKL

            vae, source = AutoencoderKL.from_pretrained(item.path / "vae"), str(item.path / "vae")
        else:
            log(f"warning: {item.path} has no trained VAE (no vae/ folder): using {model}'s")
    size = resolution or native_resolution(model, vae_scale_factor(vae))
    if size % vae_scale_factor(vae):
        raise GeosynthError(f"resolution={size}: must be a multiple of {vae_scale_factor(vae)}")
    vae.to(pick_device(device))
    cm = class_channel_means(
        vae, dataset, resolution=size, batch_size=batch_size, track=track, vae_source=source
    )
    cm.metadata["model"] = model
    cm.metadata["family"] = family.name  # generate refuses the file for another family
    cm.metadata["model_digest"] = json_text(model_digest(model))
    prov = Provenance.start(
        "channel-means", seeds={"seed": seed}, model=model, resolution=size, vae=source
    )
    prov.inputs[f"dataset:{dataset_name or dataset.source}"] = dataset.fingerprint()
    save_channel_means(out, cm, provenance=prov)
    return cm
