"""Classifier checkpoints: the selected trainable tensors plus the spec and class names that
rebuild the model (safetensors + JSON metadata, nothing pickled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from geosynth.artifacts import (
    Provenance,
    atomic_path,
    load_tensors,
    safetensors_bytes,
    save_tensors,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.classify.model import Classifier, ModelSpec, build_classifier, spec_from_json
from geosynth.errors import GeosynthError


def save_classifier(
    path: Path,
    state: dict[str, torch.Tensor],
    spec: ModelSpec,
    class_names: list[str],
    provenance: Provenance,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A selected checkpoint: its trainable tensors (``Classifier.trainable_state``) plus the
    spec and class names that rebuild the rest (:func:`load_classifier`)."""
    return save_tensors(
        path,
        state,
        provenance=provenance,
        class_names=class_names,
        metadata={"model_spec": json_text(spec.to_dict()), **(extra or {})},
    )


def load_classifier(path: str | Path) -> Classifier:
    """Rebuild a classifier saved by :func:`save_classifier` (the base model must be loadable)."""
    tf = load_tensors(path)
    if "model_spec" not in tf.metadata or tf.class_names is None:
        raise GeosynthError(f"{path}: not a geosynth classifier (no model_spec / class_names)")
    spec = spec_from_json(tf.metadata["model_spec"])
    prompts = json.loads(tf.metadata.get("prompt_names", "null"))
    model = build_classifier(spec, tf.class_names, prompts)
    model.load_trainable_state(tf.tensors)
    return model.eval()


def save_seed_result(path: Path, record: dict[str, Any]) -> None:
    """A finished seed (metrics as JSON, selected weights as safetensors), atomically; no pickle."""
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "state.safetensors").write_bytes(safetensors_bytes(record["state"], {}))
        rest = {k: v for k, v in record.items() if k != "state"}
        (tmp / "record.json").write_text(json_text(rest, indent=1) + "\n")


def load_seed_result(path: Path) -> dict[str, Any]:
    """Inverse of :func:`save_seed_result`."""
    try:
        record = json.loads((path / "record.json").read_text())
    except (OSError, ValueError) as exc:
        raise GeosynthError(f"{path / 'record.json'}: not a readable seed result ({exc})") from None
    record["state"] = load_tensors(path / "state.safetensors").tensors
    return record
