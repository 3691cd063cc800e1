"""What a model family is: everything that differs between Stable Diffusion 1.x/2.x and SDXL
(and would differ again for the next family) behind one interface.

Commands, the training loop and the sampling loop hold a :class:`ModelFamily` and call it; none
of them asks which family it is. A family says:

* which pipeline classes run it (text-to-image, ControlNet) and how a folder or hub id loads;
* which text encoders and tokenizers it has (attribute names on the pipeline), how a prompt
  becomes the UNet's conditioning (:meth:`ModelFamily.encode_prompts`,
  :meth:`ModelFamily.unet_conditioning`: hidden states, and for SDXL the pooled embedding and
  the size/crop numbers), and the prompt embeddings its pipeline call takes;
* the safe precision of its VAE;
* how a learned token is saved and loaded, and the kohya / A1111 names of its LoRA modules;
* how a single-file checkpoint in the original layout loads.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: A text encoder and its tokenizer, as a family encodes prompts with them.
Encoder = tuple[Any, Any]


@dataclass
class PromptEmbeds:
    """A batch of encoded prompts: ``hidden`` (B x L x D, what the UNet cross-attends to) and,
    for families with pooled text conditioning, ``pooled`` (B x P)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> PromptEmbeds:
        """The embeddings of rows ``index`` (a table of distinct prompts, indexed per batch)."""
        pooled = None if self.pooled is None else self.pooled[index]
        return PromptEmbeds(self.hidden[index], pooled)

    @staticmethod
    def cat(items: Sequence[PromptEmbeds]) -> PromptEmbeds:
        import torch

        pooled = [x.pooled for x in items]
        return PromptEmbeds(
            torch.cat([x.hidden for x in items]),
            None if any(p is None for p in pooled) else torch.cat(pooled),  # type: ignore[arg-type]
        )


class ModelFamily(ABC):
    """One family of latent diffusion models (see the module docstring)."""

    #: recorded in cards and files: ``sd1``, ``sd2``, ``sdxl``
    name: str
    #: for messages: ``SD 1.x``, ``SD 2.x``, ``SDXL``
    label: str
    #: pipeline attributes of the text encoders and of their tokenizers, in prompt order
    text_encoders: tuple[str, ...] = ("text_encoder",)
    tokenizers: tuple[str, ...] = ("tokenizer",)
    #: whether training conditions on each image's original size and crop (SDXL)
    size_conditioning: bool = False
    #: whether ``finetune --condition`` (semantic maps, seed 004) runs on this family's UNet
    map_conditioning: bool = True
    #: whether ``finetune --joint-masks`` (mask bits beside the latents, SatSynth) runs on it
    joint_masks: bool = True

    def __repr__(self) -> str:
        return f"<model family {self.name}>"

    @property
    def components(self) -> tuple[str, ...]:
        """The weight-bearing components a fine-tune may train or replace."""
        return ("unet", *self.text_encoders, "vae")

    def encoders(self, pipe: Any) -> list[Encoder]:
        """The pipeline's (text encoder, tokenizer) pairs, in prompt order."""
        return [
            (getattr(pipe, te), getattr(pipe, tok))
            for te, tok in zip(self.text_encoders, self.tokenizers, strict=True)
        ]

    # --- pipelines --------------------------------------------------------------------------
    @abstractmethod
    def pipeline_class(self, control: bool = False) -> Any:
        """The diffusers pipeline class (``control``: its ControlNet variant)."""

    @abstractmethod
    def load_pipeline(self, ref: str, dtype: torch.dtype, **kwargs: Any) -> Any:
        """The pipeline of a folder, cached or remote hub id (no safety checker, no watermark)."""

    @abstractmethod
    def load_single_file(self, path: str | os.PathLike[str], dtype: torch.dtype) -> Any:
        """The pipeline of a single-file checkpoint in the original layout, offline."""

    @abstractmethod
    def single_file_parts(self, path: Path) -> dict[str, dict[str, torch.Tensor]]:
        """A single file's ``unet``, ``text_encoder`` and ``vae`` weights in diffusers' names."""

    @abstractmethod
    def single_file_sample_size(self, path: Path) -> int:
        """The UNet's latent size of a single-file checkpoint, without loading its weights."""

    # --- conditioning -----------------------------------------------------------------------
    @abstractmethod
    def encode_prompts(
        self, encoders: Sequence[Encoder], prompts: list[str], device: Any
    ) -> PromptEmbeds:
        """What the UNet is conditioned on for ``prompts`` (as the family's pipeline encodes
        them), computed with ``encoders`` (the pipeline's, or training wrappers of them)."""

    @abstractmethod
    def unet_conditioning(
        self, embeds: PromptEmbeds, sizes: torch.Tensor | None, dtype: torch.dtype
    ) -> dict[str, Any]:
        """Keyword arguments of a UNet call: ``encoder_hidden_states`` and any added
        conditioning. ``sizes`` (B x 6: original height and width, crop top and left, target
        height and width of each image) feeds families with :attr:`size_conditioning`."""

    @abstractmethod
    def pipeline_embeddings(self, pipe: Any, prompts: list[str], guidance: bool) -> dict[str, Any]:
        """The prompt embeddings a pipeline call takes in place of ``prompt`` (the same numbers
        the pipeline computes from the prompts), with the unconditional ones under
        ``guidance``."""

    def cross_attention_width(self, pipe: Any) -> int:
        """The width of the text features the UNet cross-attends to."""
        return sum(int(getattr(pipe, te).config.hidden_size) for te in self.text_encoders)

    # --- precision --------------------------------------------------------------------------
    def vae_dtype(self, vae: Any, dtype: torch.dtype) -> torch.dtype:
        """The dtype the VAE may safely run in when the rest runs in ``dtype``."""
        return dtype

    # --- learned tokens ---------------------------------------------------------------------
    @abstractmethod
    def save_token(self, path: Path, token: str, rows: dict[str, torch.Tensor]) -> None:
        """Write a learned token's embedding rows (text encoder name -> D vector) in the
        textual-inversion file convention of the family."""

    @abstractmethod
    def load_token(self, pipe: Any, path: Path, token: str) -> None:
        """Load a learned token written by :meth:`save_token` into the pipeline."""

    # --- kohya / A1111 / ComfyUI LoRA names -------------------------------------------------
    @abstractmethod
    def kohya_prefix(self, component: str) -> str | None:
        """The kohya key prefix of a LoRA'd component (None: it has none)."""

    @abstractmethod
    def kohya_module(self, component: str, module: str, unet_config: Any) -> str:
        """A module path in the names kohya's networks use for it (before "." becomes "_")."""

    @abstractmethod
    def kohya_metadata(self) -> dict[str, str]:
        """``ss_*`` / ``modelspec`` metadata naming the base model version."""

    def kohya_unet_config(self, base_model: str | os.PathLike[str] | None) -> Any:
        """The UNet config kohya names depend on (None: the names do not depend on it)."""
        return None
