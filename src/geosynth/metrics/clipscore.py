"""CLIP score: how well images match their class prompt, with any open_clip model.

Per image, ``100 * max(cos(E_image, E_prompt), 0)`` with the prompt of its own class (the scale
torchmetrics' ``CLIPScore`` uses; Hessel et al. 2021 weight the same cosine by 2.5). The report
also gives the zero-shot accuracy: the share of images whose own prompt is the most similar of
all class prompts. Real images scored with the same model and prompts give the reference a
synthetic set should reach. For SAR use a SAR-specific CLIP checkpoint (any open_clip spec:
``NAME/PRETRAINED``, ``hf-hub:ID`` or ``local-dir:DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth.data.dataset import ImageDataset
from geosynth.progress import Track, no_track


@dataclass
class ClipScorer:
    """An open_clip model with its image preprocessing and tokenizer."""

    spec: str
    model: Any
    preprocess: Any
    tokenizer: Any
    device: torch.device

    @classmethod
    def load(cls, spec: str, device: torch.device | str = "cpu") -> ClipScorer:
        """Load ``spec`` (``NAME/PRETRAINED``, ``hf-hub:ID``, ``local-dir:DIR``); one-line errors."""
        from geosynth.backbones import load_open_clip

        dev = torch.device(device)
        clip = load_open_clip(spec, what="clip_model", device=dev)
        return cls(spec, clip.model, clip.preprocess, clip.tokenizer, dev)

    @torch.inference_mode()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """K x D unit vectors."""
        t = self.model.encode_text(self.tokenizer(list(prompts)).to(self.device)).float()
        return torch.nn.functional.normalize(t, dim=-1).cpu()

    @torch.inference_mode()
    def image_features(self, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
        """N x D unit vectors."""
        out = []
        for s in range(0, len(images), batch_size):
            px = torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[s : s + batch_size]]
            )
            f = self.model.encode_image(px.to(self.device)).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu())
        return torch.cat(out)

    def dataset_features(
        self, ds: ImageDataset, batch_size: int = 64, track: Track = no_track
    ) -> torch.Tensor:
        """Image features of every image of ``ds``, in order, decoded batch by batch."""
        out = []
        starts = range(0, len(ds), batch_size)
        for s in track(starts, len(starts), "CLIP score"):
            images = [ds.image(i) for i in range(s, min(s + batch_size, len(ds)))]
            out.append(self.image_features(images, batch_size))
        return torch.cat(out)


def clip_scores(
    image_features: torch.Tensor, text_features: torch.Tensor, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: CLIP score against its own class prompt, and whether that prompt wins."""
    sims = (image_features @ text_features.T).double().numpy()
    own = sims[np.arange(len(labels)), labels]
    return 100.0 * np.clip(own, 0.0, None), sims.argmax(1) == labels


def summarise(scores: np.ndarray, correct: np.ndarray) -> dict[str, float | int]:
    return {
        "n": len(scores),
        "clip_score": float(scores.mean()),
        "clip_score_std": float(scores.std()),
        "zero_shot_accuracy": float(correct.mean()),
    }
