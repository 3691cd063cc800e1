"""LoRAs on a loaded pipeline (diffusers adapters via peft): what their cards ask for (full
components, a learned token, scheduler settings) applied, adapters loaded once, and per-class
weights switched without reloading, so per-class LoRAs and pLoRA mixtures stay cheap."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from geosynth.diffusion.diffusionsat import (
    EMBEDDING_FILE,
    load_metadata_embedding,
    load_metadata_unet,
)
from geosynth.diffusion.family import family_of
from geosynth.diffusion.loras import COMPONENTS, TOKEN_FILE, Lora
from geosynth.errors import GeosynthError


def apply_cards(pipe, loras: list[Lora]) -> None:
    """What cards ask for beyond adapters: full components (one LoRA directory at most),
    learned tokens, and the scheduler settings the model was trained with."""
    full = [x for x in loras if set(x.card.get("files", [])) & set(COMPONENTS)]
    if len(full) > 1:
        raise GeosynthError(
            f"loras={str(full[1].path)!r}: only one LoRA directory with fully trained "
            f"components can be used at a time (also {full[0].path})"
        )
    for item in full:
        _replace_components(pipe, item)
    for item in loras:  # DiffusionSat's metadata embedding, saved beside a LoRA
        meta = item.card.get("metadata")
        if meta and meta.get("file") == EMBEDDING_FILE:
            load_metadata_embedding(pipe.unet, item.path / EMBEDDING_FILE, meta.get("fields"))
    fam = family_of(pipe)
    for item in loras:
        token = item.card.get("learned_token")
        if token and (item.path / TOKEN_FILE).is_file():
            fam.load_token(pipe, item.path / TOKEN_FILE, token)
    overrides: dict[str, Any] = {}
    for item in loras:
        overrides.update(item.card.get("scheduler") or {})
    if overrides:
        cls = type(pipe.scheduler)
        if overrides.get("rescale_betas_zero_snr") and (
            "rescale_betas_zero_snr" not in inspect.signature(cls.__init__).parameters
        ):
            # PNDM (SD's default), LMS and Heun ignore rescaled betas: sampling a zero-terminal-
            # SNR model with them would silently use the wrong schedule. DDIM supports it.
            from diffusers import DDIMScheduler

            cls = DDIMScheduler
        pipe.scheduler = cls.from_config({**pipe.scheduler.config, **overrides})


def _replace_components(pipe, item: Lora) -> None:
    """Put the fully trained components of a finetune output in place of the pipeline's, each
    loaded with the class of the component it replaces (text encoders with their tokenizers)."""
    from transformers import AutoTokenizer

    fam = family_of(pipe)
    files = set(item.card.get("files", []))
    dtype, device = pipe.unet.dtype, pipe.device
    tokenizers = dict(zip(fam.text_encoders, fam.tokenizers, strict=True))
    for name in fam.components:
        if name not in files:
            continue
        if name == "unet":  # with the metadata embedding its config may name
            unet = load_metadata_unet(item.path, dtype=dtype, what="loras")
            setattr(pipe, name, unet.to(device))
            continue
        cls = type(getattr(pipe, name))
        setattr(pipe, name, cls.from_pretrained(item.path / name, dtype=dtype).to(device))
        if name in tokenizers:
            tok = tokenizers[name]
            setattr(pipe, tok, AutoTokenizer.from_pretrained(item.path / tok))


def load_adapters(pipe, loras: list[Lora]) -> None:
    """Load every LoRA that has adapter weights once as a named adapter."""
    for lora in loras:
        if not lora.has_weights:
            continue
        try:
            with warnings.catch_warnings():
                # peft warns on every adapter after the first; several adapters are the point.
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                pipe.load_lora_weights(str(lora.path), adapter_name=lora.name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(
                f"loras={str(lora.path)!r}: cannot load into this model: {first}"
            ) from None


def activate(pipe, weights: dict[str, float]) -> dict[str, float]:
    """Set the active adapters and their weights (an empty dict disables all LoRAs); returns
    the adapters now active, with their weights."""
    loaded = {name for names in pipe.get_list_adapters().values() for name in names}
    if not loaded:
        return {}
    active = {k: v for k, v in weights.items() if v != 0.0 and k in loaded}
    if not active:
        pipe.disable_lora()
        return {}
    pipe.enable_lora()
    pipe.set_adapters(list(active), adapter_weights=list(active.values()))
    return active


class ClassMix:
    """The LoRA mixture of the class being generated, optionally fused into the weights.

    Unfused, peft runs every active adapter beside its base layer at every denoising step (two
    extra small matmuls per adapted layer and adapter). Fused, :meth:`set` adds each active
    adapter's weighted delta into its base layer once (peft's ``get_delta_weight``, the numbers
    diffusers' ``fuse_lora`` adds, computed like it in the weights' dtype) and switches the
    adapters off, so the steps run the plain layers. ``fuse_lora`` itself is not used: it
    flags layers as merged with the adapters' names, which ``torch.compile`` guards on, so a
    compiled UNet would be recompiled at every class switch; with the adapters switched off
    instead, the compiled graph stays valid (it reads the weights as inputs).

    :meth:`restore` (before the next class, and on leaving the context) copies back the exact
    base weights saved before fusing. Subtracting the delta again is off by a rounding step (up
    to an fp16 ulp on GPU) and would drift with each class switch, so a resumed or sharded run
    (which switches classes a different number of times) would not see the same weights; with
    the copy, a class's fused weights depend only on the base weights and its mixture."""

    def __init__(self, pipe: Any, fuse: bool = True) -> None:
        self.pipe = pipe
        self.fuse = fuse
        self._saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> ClassMix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _layers(self, names: set[str]) -> list[tuple[Any, list[str]]]:
        """peft LoRA layers of the UNet and text encoder(s) holding adapters of ``names``, with
        those adapters (in the order of ``names``' source: the mixture's)."""
        from peft.tuners.lora import LoraLayer

        found = []
        for comp in family_of(self.pipe).components:
            model = getattr(self.pipe, comp, None)
            if model is None:
                continue
            for m in model.modules():
                if isinstance(m, LoraLayer):
                    held = set(m.lora_A) | set(m.lora_embedding_A)
                    mine = [n for n in names if n in held]
                    if mine:
                        found.append((m, mine))
        return found

    def set(self, weights: dict[str, float]) -> dict[str, float]:
        """Make ``weights`` (adapter name -> weight; 0 or absent: off) the pipeline's mixture,
        fused when ``fuse``; returns the active adapters."""
        import torch

        self.restore()
        active = activate(self.pipe, weights)
        if not (self.fuse and active):
            return active
        layers = self._layers(set(active))
        if any(n in getattr(m, "lora_variant", {}) for m, names in layers for n in names):
            return active  # DoRA and other variants: peft runs them unfused
        with torch.no_grad():
            for m, names in layers:
                base = m.get_base_layer()
                self._saved.append((base.weight, base.weight.detach().clone()))
                bias = getattr(base, "bias", None)
                if bias is not None:
                    self._saved.append((bias, bias.detach().clone()))
                for n in [k for k in active if k in names]:  # the mixture's order
                    # set_adapters put the class weight into m.scaling[n], which this uses
                    base.weight.data += m.get_delta_weight(n).to(base.weight.dtype)
                    if getattr(m, "lora_bias", {}).get(n):
                        base.bias.data += (m.lora_B[n].bias * m.scaling[n]).to(base.bias.dtype)
        self.pipe.disable_lora()
        return active

    def restore(self) -> None:
        """Put back the exact base weights (a no-op when nothing is fused)."""
        import torch

        with torch.no_grad():
            for p, orig in self._saved:
                p.copy_(orig)
        self._saved = []
