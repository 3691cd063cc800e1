"""open_clip models: the one loader every package uses (features, the CLIP classifier, CLIP
score), with one spec grammar, and the image-tower feature extractor.

A reference is ``NAME`` or ``NAME/PRETRAINED`` (open_clip's model name and weights tag, e.g.
``ViT-B-16/openai``), ``hf-hub:ID``, ``local-dir:DIR``, or a directory holding
``open_clip_config.json`` (read as ``local-dir:DIR``); an ``open_clip:`` prefix is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor
from geosynth.runtime import is_local

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


class OpenClipExtractor(FeatureExtractor):
    """``encode_image`` features (not normalised; metrics use the raw vectors)."""

    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        clip = load_open_clip(spec, what="features", device=device)
        self.spec = spec
        self.model = clip.model
        self.preprocess = clip.preprocess
        self.dim = int(clip.model.visual.output_dim)
        self.preprocessing = {
            "library": "open_clip",
            "model": clip.name,
            "pretrained": clip.pretrained,
            "transform": repr(clip.preprocess).replace("\n", " "),
            "output": "encode_image",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)
