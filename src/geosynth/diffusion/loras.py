"""LoRA stacks and per-class LoRA mixtures on a loaded pipeline (diffusers adapters via peft).

A LoRA directory holds ``pytorch_lora_weights.safetensors`` (diffusers format) and, when geosynth
wrote it, a card ``geosynth.json`` with ``base_model``, ``class_names`` and ``prompt_template``.
``geosynth finetune`` may also leave full components (``unet/``, ``text_encoder/`` +
``tokenizer/``, ``vae/``), a learned token (``learned_embeds.safetensors``), scheduler settings
the model was trained for, and the LoRA stack it was trained on top of; :func:`expand_stacks` and
:func:`apply_cards` honour them.
Adapters are loaded once; switching class only changes the adapter weights, so per-class LoRAs
and pLoRA mixtures never reload the pipeline.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosynth.errors import GeosynthError

LORA_FILE = "pytorch_lora_weights.safetensors"
CARD_FILE = "geosynth.json"
TOKEN_FILE = "learned_embeds.safetensors"
COMPONENTS = ("unet", "text_encoder", "vae")


@dataclass(frozen=True)
class Lora:
    """One LoRA directory, its adapter name in the pipeline and its default weight."""

    path: Path
    weight: float
    name: str

    @property
    def card(self) -> dict[str, Any]:
        p = self.path / CARD_FILE
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def has_weights(self) -> bool:
        """False for a finetune output that trained only full components or a token."""
        return (self.path / LORA_FILE).is_file()


def _adapter_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", path.name) or "lora"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def parse_lora(spec: str, taken: set[str], arg: str = "loras") -> Lora:
    """``DIR`` or ``DIR:weight`` (the weight defaults to 1.0); ``arg`` names the parameter the
    spec came from, for errors."""
    path_text, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path_text = head
        except ValueError:
            pass
    path = Path(path_text)
    if not (path / LORA_FILE).is_file() and not (path / CARD_FILE).is_file():
        raise GeosynthError(f"{arg}={spec!r}: {path / LORA_FILE} does not exist")
    return Lora(path, weight, _adapter_name(path, taken))


def check_base(lora: Lora, model: str, arg: str = "loras") -> None:
    """A LoRA trained on other weights is an error. Cards record the base model's weight
    digest (:mod:`geosynth.diffusion.identity`), so the same weights under any path, hub id,
    mirror or single file are accepted; cards from before digests fall back to comparing the
    model strings, with a note."""
    from geosynth.diffusion.identity import differing, model_digest, short

    card = lora.card
    base, recorded = card.get("base_model"), card.get("base_digest")
    if base is None and recorded is None:
        return
    if recorded:
        digest = model_digest(model)
        if digest is not None:
            comp = differing(dict(recorded), digest)
            if comp is not None:
                raise GeosynthError(
                    f"{arg}={str(lora.path)!r}: trained for base model '{base}' "
                    f"({short(recorded, comp)}), not model={str(model)!r} ({short(digest, comp)})"
                )
            return
    elif base is not None:
        logging.getLogger("geosynth").warning(
            "note: %s's card predates weight digests: checking the base model by name only",
            lora.path,
        )
    if base is not None and not _same_name(str(base), str(model)):
        raise GeosynthError(
            f"{arg}={str(lora.path)!r}: trained for base model '{base}', not model={str(model)!r}"
        )


def _same_name(a: str, b: str) -> bool:
    """Model strings naming the same thing: equal, or the same existing directory."""
    if a.rstrip("/") == b.rstrip("/"):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


@dataclass(frozen=True)
class LoraWeights:
    """A per-class mixture file (``weights.json``, as ``cluster-plora`` writes it):
    ``{"loras": {name: dir}, "weights": {class: {name: w}}, "class_names": [...]}``.
    Directories are resolved against the file's folder; every LoRA a class names is listed."""

    path: Path
    loras: dict[str, Path]
    weights: dict[str, dict[str, float]]
    class_names: list[str] | None

    @classmethod
    def read(cls, path: str | os.PathLike[str], arg: str = "lora_weights") -> LoraWeights:
        """Parse and check the file (the one reader of the format)."""
        path = Path(path)
        where = f"{arg}={str(path)!r}"
        if not path.is_file():
            raise GeosynthError(f"{where}: no such file")
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise GeosynthError(f"{where}: not JSON ({exc})") from None
        try:
            loras = {
                str(name): (Path(rel) if Path(rel).is_absolute() else path.parent / rel)
                for name, rel in dict(data.get("loras", {})).items()
            }
            weights = {
                str(c): {str(k): float(v) for k, v in w.items()} for c, w in data["weights"].items()
            }
            names = data.get("class_names")
            class_names = None if names is None else [str(c) for c in names]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GeosynthError(
                f"{where}: expected {{'loras': {{name: dir}}, 'weights': "
                f"{{class: {{name: weight}}}}}} ({exc})"
            ) from None
        for name, d in loras.items():
            if not (d / LORA_FILE).is_file():
                raise GeosynthError(f"{where}: LoRA '{name}' not found at {d}")
        for c, w in weights.items():
            unknown = sorted(set(w) - set(loras))
            if unknown:
                raise GeosynthError(
                    f"{where}: class '{c}' names unknown LoRA '{unknown[0]}' "
                    f"(known: {', '.join(sorted(loras))})"
                )
        if class_names is not None:
            extra = [c for c in weights if c not in class_names]
            if extra:
                raise GeosynthError(
                    f"{where}: weights for unknown class '{extra[0]}' "
                    f"(its class_names: {', '.join(class_names)})"
                )
        return cls(path, loras, weights, class_names)

    @property
    def classes(self) -> list[str]:
        """The classes the file is for: its ``class_names``, else the classes it weights."""
        return list(self.class_names or self.weights)


def expand_stacks(stack: list[Lora], extra: list[Lora], taken: set[str]) -> list[Lora]:
    """The stack with the LoRAs that cards say were merged before training
    (``finetune --init-lora``) added once, at their recorded weights, unless already listed:
    before the stacked LoRA that needs them, and for per-class or pLoRA LoRAs (``extra``, e.g.
    cluster LoRAs trained on a stage-1 LoRA) at the front, applied to every class."""
    listed = {item.path.resolve() for item in stack + extra}
    out: list[Lora] = []

    def required(item: Lora) -> None:
        for entry in item.card.get("stack", []):
            path = Path(entry["path"])
            if path.resolve() not in listed:
                listed.add(path.resolve())
                spec = f"{path}:{float(entry['weight'])}"
                out.append(parse_lora(spec, taken, f"the stack of {item.path}: loras"))

    for item in extra:
        required(item)
    for item in stack:
        required(item)
        out.append(item)
    return out


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
    for item in loras:
        token = item.card.get("learned_token")
        if token and (item.path / TOKEN_FILE).is_file():
            pipe.load_textual_inversion(str(item.path / TOKEN_FILE), token=token)
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
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    files = set(item.card.get("files", []))
    dtype, device = pipe.unet.dtype, pipe.device
    if "unet" in files:
        pipe.unet = UNet2DConditionModel.from_pretrained(item.path / "unet", dtype=dtype).to(device)
    if "text_encoder" in files:
        te = CLIPTextModel.from_pretrained(item.path / "text_encoder", dtype=dtype)
        pipe.text_encoder = te.to(device)
        pipe.tokenizer = AutoTokenizer.from_pretrained(item.path / "tokenizer")
    if "vae" in files:
        pipe.vae = AutoencoderKL.from_pretrained(item.path / "vae", dtype=dtype).to(device)


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
    loaded = set(pipe.get_list_adapters().get("unet", [])) | set(
        pipe.get_list_adapters().get("text_encoder", [])
    )
    if not loaded:
        return {}
    active = {k: v for k, v in weights.items() if v != 0.0 and k in loaded}
    if not active:
        pipe.disable_lora()
        return {}
    pipe.enable_lora()
    pipe.set_adapters(list(active), adapter_weights=list(active.values()))
    return active


#: The pipeline components LoRA adapters are loaded into (diffusers' SD loader).
LORA_COMPONENTS = ("unet", "text_encoder")


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
        """peft LoRA layers of the UNet and text encoder holding adapters of ``names``, with
        those adapters (in the order of ``names``' source: the mixture's)."""
        from peft.tuners.lora import LoraLayer

        found = []
        for comp in LORA_COMPONENTS:
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
