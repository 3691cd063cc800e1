"""Which family a model is, from its files (never from its name), from a loaded pipeline, or
from the name a card recorded; and the one-line refusals of families geosynth does not run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geosynth.diffusion.family.base import ModelFamily
from geosynth.diffusion.family.files import (
    OTHER_FAMILIES,
    component_config,
    is_single_file,
    model_index,
)
from geosynth.diffusion.family.sd import SD1, SD2
from geosynth.diffusion.family.sdxl import SDXL
from geosynth.diffusion.ldm_layout import RUNS
from geosynth.errors import GeosynthError

#: Every family geosynth runs, by the name cards record.
FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (SD1, SD2, SDXL)}


def family_named(name: str, where: str = "family") -> ModelFamily:
    """The family a card or file recorded by name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise GeosynthError(
            f"{where}: unknown model family {name!r} (known: {', '.join(FAMILIES)})"
        ) from None


def label(name: str | None) -> str:
    """``SDXL`` for ``sdxl``; unknown names as they are."""
    return FAMILIES[name].label if name in FAMILIES else str(name)


def _sd_by_unet(unet: dict[str, Any]) -> ModelFamily:
    """SD 1.x or 2.x: SD 1's UNet cross-attends to CLIP ViT-L (768 wide) through convolutions;
    SD 2's to OpenCLIP ViT-H (1024) through linear projections (so are geosynth's toy and domain
    pipelines, whatever their width)."""
    width = unet.get("cross_attention_dim")
    if width == 768 or (width != 1024 and not unet.get("use_linear_projection", False)):
        return SD1
    return SD2


def family_from_index(
    index: dict[str, Any], unet: dict[str, Any] | None, where: str
) -> ModelFamily:
    """The family of a pipeline folder from its ``model_index.json`` and UNet config."""
    cls = str(index.get("_class_name", "a pipeline"))

    def present(component: str) -> bool:
        value = index.get(component)
        return isinstance(value, list | tuple) and len(value) == 2 and value[1] is not None

    for prefix, kind in OTHER_FAMILIES:
        if cls.startswith(prefix):
            raise GeosynthError(f"{where}: {kind} model ({cls}); {RUNS}")
    if not present("unet") or unet is None:
        what = "a transformer" if present("transformer") else "no UNet"
        raise GeosynthError(f"{where}: {cls} with {what}, not a Stable Diffusion model; {RUNS}")
    # DiffusionSat's SatUNet: a UNet2DConditionModel with a metadata embedding (diffusionsat.py)
    satunet = unet.get("_class_name") == "SatUNet" and unet.get("use_metadata")
    if unet.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel" and not satunet:
        raise GeosynthError(f"{where}: {cls} with a {unet['_class_name']}; {RUNS}")
    added = unet.get("addition_embed_type")
    if added == "text_time":
        if not present("text_encoder"):
            raise GeosynthError(
                f"{where}: an SDXL refiner (no CLIP ViT-L text encoder), not a base model; {RUNS}"
            )
        if not present("text_encoder_2"):
            raise GeosynthError(f"{where}: an SDXL UNet without its second text encoder; {RUNS}")
        return SDXL
    if added is not None or not present("text_encoder"):
        what = f"added conditioning {added!r}" if added else "no text encoder"
        raise GeosynthError(f"{where}: {cls} with {what}; {RUNS}")
    return _sd_by_unet(unet)


def detect_family(model: str | os.PathLike[str], what: str = "model") -> ModelFamily:
    """The family of a model given as a hub id, folder, HF cache entry or single file, read from
    its files (pipeline index and UNet config, or a single file's key names); a family geosynth
    does not run is a one-line error naming it."""
    where = f"{what}={str(model)!r}"
    if is_single_file(model):
        from geosynth.diffusion.single_file import kind

        try:
            found = kind(Path(str(model)).expanduser())
        except GeosynthError as exc:  # messages name `model`; callers may call it otherwise
            raise GeosynthError(str(exc).replace(f"model={str(model)!r}", where, 1)) from None
        return SDXL if found.endswith("sdxl") else SD2 if found in ("sd2", "toy-sd") else SD1
    index = model_index(model, what)
    return family_from_index(index, component_config(model, "unet", what), where)


def family_of(pipe: Any) -> ModelFamily:
    """The family of a loaded pipeline (or anything with its components), from its modules."""
    unet = getattr(pipe, "unet", None)
    config = getattr(unet, "config", None)
    if getattr(pipe, "text_encoder_2", None) is not None or (
        config is not None and config.get("addition_embed_type") == "text_time"
    ):
        return SDXL
    return _sd_by_unet(dict(config) if config is not None else {"use_linear_projection": True})


def check_family(
    recorded: str | None, family: ModelFamily, where: str, model: str | os.PathLike[str]
) -> None:
    """A file made for another family than ``model``'s is an error: ``where`` names the file
    (``loras='lora/'``), ``recorded`` its family (None: not recorded, nothing to check)."""
    if recorded and recorded != family.name:
        raise GeosynthError(
            f"{where}: made for an {label(recorded)} model, not for model={str(model)!r} "
            f"({family.label})"
        )
