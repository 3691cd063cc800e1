"""What is in a safetensors artifact: its tensors (name, shape, dtype) and its metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geosynth.artifacts.tensors import load_tensors
from geosynth.artifacts.typed import load_channel_means, load_embeddings
from geosynth.errors import GeosynthError


def describe(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """``{"path", "tensors": {name: {"shape", "dtype"}}, "metadata"}`` of the safetensors file
    ``path``, names sorted; metadata values that are JSON are decoded. ``kind``: first check that
    the file is a valid artifact of that kind (its loader's error if not)."""
    if kind not in (None, "embeddings", "channel-means"):
        raise GeosynthError(f"kind={kind!r}: expected 'embeddings' or 'channel-means'")
    if kind == "embeddings":
        load_embeddings(path)
    elif kind == "channel-means":
        load_channel_means(path)
    tf = load_tensors(path)
    tensors = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
        for k, v in sorted(tf.tensors.items())
    }
    metadata: dict[str, object] = {}
    for key, value in sorted(tf.metadata.items()):
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    return {"path": str(path), "tensors": tensors, "metadata": metadata}
