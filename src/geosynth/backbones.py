"""Pretrained image backbones that both features/ and classify/ build on: open_clip models by
reference, and the evaluation transforms (resize, centre-crop, normalise) they are fed with.

A neutral layer: features/ (extractors) and classify/ (classifiers) both import it and it imports
neither, so the two packages need not import each other. torchvision and open_clip load inside
the functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.runtime import is_local

if TYPE_CHECKING:
    from torchvision.transforms import InterpolationMode


SCHEMAS = ("local-dir:", "hf-hub:")


def parse_open_clip(ref: str) -> tuple[str, str | None]:
    """``"ViT-B-16/openai"`` -> ``("ViT-B-16", "openai")``; schema references and model
    directories pass whole (their weights come with them)."""
    ref = ref.removeprefix("open_clip:")
    path = Path(ref).expanduser()
    if not ref.startswith(SCHEMAS) and path.is_dir() and (path / "open_clip_config.json").is_file():
        return f"local-dir:{path}", None
    if ref.startswith(SCHEMAS):
        return ref, None
    name, _, pretrained = ref.partition("/")
    return name, pretrained or None


@dataclass
class OpenClip:
    """A loaded open_clip model with its eval transform and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    name: str
    pretrained: str | None


def load_open_clip(
    ref: str,
    *,
    what: str,
    pretrained: str | None = None,
    device: torch.device | str = "cpu",
) -> OpenClip:
    """Load ``ref`` (the module's grammar) on ``device``. ``pretrained`` (a tag, a checkpoint file
    or ``none``) replaces the reference's own tag for model names; ``what`` names the parameter
    the reference came from, for errors."""
    from geosynth.extras import require

    open_clip = require("open_clip", f"{what}={ref!r}")
    name, tag = parse_open_clip(ref)
    if not name.startswith(SCHEMAS) and is_local(ref.removeprefix("open_clip:")):
        raise GeosynthError(
            f"{what}={ref!r}: not an open_clip model directory (no open_clip_config.json there)"
        )
    if pretrained is not None and not name.startswith(SCHEMAS):
        tag = None if pretrained in ("none", "") else pretrained
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=tag, device=torch.device(device)
        )
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        weights = f" (pretrained {tag})" if tag else ""
        raise GeosynthError(
            f"{what}={ref!r}: cannot load open_clip model{weights}: {first}"
        ) from None
    return OpenClip(model.eval(), preprocess, tokenizer, name, tag)


def interpolation_mode(name: str) -> InterpolationMode:
    from torchvision.transforms import InterpolationMode

    modes = {
        "bicubic": InterpolationMode.BICUBIC,
        "bilinear": InterpolationMode.BILINEAR,
        "nearest": InterpolationMode.NEAREST,
    }
    return modes.get(name, InterpolationMode.BICUBIC)


def eval_transform(
    size: int, mean: tuple[float, ...], std: tuple[float, ...], interpolation: str = "bicubic"
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the short side to ``size``, centre-crop a square, normalise."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=interpolation_mode(interpolation)),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def native_eval_transform(
    size: int, interpolation: str = "bilinear"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multi-band tensors (C x H x W, already standardised): resize the short side, centre-crop."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=interpolation_mode(interpolation), antialias=True),
            T.CenterCrop(size),
        ]
    )
