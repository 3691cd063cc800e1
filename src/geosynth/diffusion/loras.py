"""LoRA stacks and per-class LoRA mixtures on a loaded pipeline (diffusers adapters via peft).

A LoRA directory holds ``pytorch_lora_weights.safetensors`` (diffusers format) and, when geosynth
wrote it, a card ``geosynth.json`` with ``base_model``, ``class_names`` and ``prompt_template``.
Adapters are loaded once; switching class only changes the adapter weights, so per-class LoRAs
and pLoRA mixtures never reload the pipeline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosynth.errors import GeosynthError

LORA_FILE = "pytorch_lora_weights.safetensors"
CARD_FILE = "geosynth.json"


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


def _adapter_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", path.name) or "lora"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def parse_lora(spec: str, taken: set[str]) -> Lora:
    """``DIR`` or ``DIR:weight`` (the weight defaults to 1.0)."""
    path_text, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path_text = head
        except ValueError:
            pass
    path = Path(path_text)
    if not (path / LORA_FILE).is_file():
        raise GeosynthError(f"--lora {spec}: {path / LORA_FILE} does not exist")
    return Lora(path, weight, _adapter_name(path, taken))


def check_base(lora: Lora, model: str) -> None:
    """A LoRA trained on another base model is an error (its card says which)."""
    base = lora.card.get("base_model")
    if base is not None and str(base).rstrip("/") != str(model).rstrip("/"):
        raise GeosynthError(f"--lora {lora.path}: trained for base model '{base}', not '{model}'")


def read_lora_weights(path: Path, loras: dict[str, Lora]) -> dict[str, dict[str, float]]:
    """``weights.json`` as ``cluster-plora`` writes it: {"loras": {name: dir}, "weights":
    {class: {name: w}}}. LoRA names map to directories; every name must be known."""
    if not path.is_file():
        raise GeosynthError(f"--lora-weights {path}: no such file")
    try:
        data = json.loads(path.read_text())
        weights = {
            str(c): {str(k): float(v) for k, v in w.items()} for c, w in data["weights"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GeosynthError(
            f"--lora-weights {path}: expected {{'loras': {{name: dir}}, 'weights': "
            f"{{class: {{name: weight}}}}}} ({exc})"
        ) from None
    for c, w in weights.items():
        unknown = sorted(set(w) - set(loras))
        if unknown:
            raise GeosynthError(
                f"--lora-weights {path}: class '{c}' names unknown LoRA '{unknown[0]}' "
                f"(known: {', '.join(sorted(loras))})"
            )
    return weights


def load_adapters(pipe, loras: list[Lora]) -> None:
    """Load every LoRA once as a named adapter."""
    for lora in loras:
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=lora.name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(
                f"--lora {lora.path}: cannot load into this model: {first}"
            ) from None


def activate(pipe, weights: dict[str, float]) -> None:
    """Set the active adapters and their weights (an empty dict disables all LoRAs)."""
    active = {k: v for k, v in weights.items() if v != 0.0}
    if not active:
        pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters(list(active), adapter_weights=list(active.values()))
