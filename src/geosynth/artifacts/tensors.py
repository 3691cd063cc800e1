"""safetensors files with JSON string metadata: written atomically with canonical (byte-reproducible)
headers, read back with one-line errors naming the file, and torch state files read with
``weights_only=True``."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import safe_open as _safe_open
from safetensors.torch import save as _save_bytes

from geosynth import __version__
from geosynth.artifacts.atomic import (
    atomic_path,
    check_replaceable,
    clean_stale_temporaries,
    output_path,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.artifacts.provenance import Provenance, content_argv, write_provenance
from geosynth.errors import GeosynthError


@dataclass
class TensorFile:
    """The tensors and string metadata of one safetensors file."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def class_names(self) -> list[str] | None:
        raw = self.metadata.get("class_names")
        if raw is None:
            return None
        try:
            names = json.loads(raw)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GeosynthError(
                f"{self.path}: metadata 'class_names' is not a JSON list of strings: {raw[:60]!r}"
            )
        return names

    def require(self, name: str, *, ndim: int | None = None, what: str = "") -> torch.Tensor:
        """Return tensor ``name`` or fail with a message naming the file and what was expected."""
        if name not in self.tensors:
            names = sorted(self.tensors)
            found = ", ".join(names[:8]) or "none"
            if len(names) > 8:
                found += f", ... ({len(names) - 8} more)"
            hint = f" ({what})" if what else ""
            raise GeosynthError(f"{self.path}: no tensor '{name}'{hint}; tensors found: {found}")
        t = self.tensors[name]
        if ndim is not None and t.ndim != ndim:
            raise GeosynthError(
                f"{self.path}: tensor '{name}' has shape {tuple(t.shape)}, expected {ndim} dimensions"
            )
        return t


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    *,
    provenance: Provenance,
    class_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``tensors`` with geosynth's metadata keys, atomically, plus the provenance sidecar.

    Metadata values that are not strings are stored as JSON (safetensors only holds strings).
    """
    meta: dict[str, str] = {
        "format": "geosynth",
        "geosynth_version": __version__,
        "command": provenance.command,
        "argv": json_text(content_argv(provenance.argv)),
        "input_fingerprint": provenance.input_fingerprint,
    }
    if class_names is not None:
        meta["class_names"] = json_text(list(class_names))
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json_text(value)
    out = output_path(path)
    check_replaceable(out, "file")
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = safetensors_bytes(contiguous, meta)
    clean_stale_temporaries(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_provenance(out, provenance)
    return out


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file as bytes, with the metadata keys in sorted order.

    safetensors serialises its metadata from a hash map, so the key order (and with it the
    file's bytes and fingerprint) changes from one process to the next; we rewrite the header
    with sorted metadata so that identical inputs give identical files. The tensor entries and
    data offsets are kept exactly as safetensors wrote them.
    """
    raw = _save_bytes(dict(tensors), metadata=dict(metadata))
    (n,) = struct.unpack("<Q", raw[:8])
    text = _canonical_header(json.loads(raw[8 : 8 + n]))
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def _canonical_header(header: dict[str, Any]) -> bytes:
    """A safetensors header with sorted metadata and tensor keys, padded to 8 bytes."""
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {}
    if meta is not None:
        ordered["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    ordered.update((k, header[k]) for k in sorted(header))
    text = json_text(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    return text + b" " * (-len(text) % 8)  # the data section stays 8-byte aligned


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite a safetensors file written by another library (diffusers, transformers) with a
    sorted header, in place (atomically): same tensors and metadata, stable bytes."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    text = _canonical_header(json.loads(raw[8 : 8 + n]))
    if text != raw[8 : 8 + n]:
        with atomic_path(path) as tmp:
            tmp.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def load_tensors(path: str | os.PathLike[str]) -> TensorFile:
    """Read every tensor and the metadata of a safetensors file, with one-line errors."""
    p = Path(path)
    if not p.exists():
        raise GeosynthError(f"{p}: no such file (expected a .safetensors file)")
    if p.is_dir():
        raise GeosynthError(f"{p}: is a directory (expected a .safetensors file)")
    try:
        with _safe_open(str(p), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GeosynthError(f"{p}: not a readable safetensors file ({exc})") from exc
    check_finite(tensors, str(p))
    return TensorFile(path=p, tensors=tensors, metadata=metadata)


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or infinite values in floating-point tensors: downstream they turn into black
    images or NaN metrics without any error."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise GeosynthError(
                f"{where}: tensor '{name}' has {bad} NaN or infinite value(s); expected finite "
                "numbers (the file is damaged or was written by a diverged run)"
            )


def load_torch_state(path: str | os.PathLike[str]) -> Any:
    """Read a ``torch.save`` file of plain tensors and containers (optimizer and LR-schedule
    state) with ``weights_only=True``: torch's restricted loader, which runs no code from the
    file. Anything else in it is refused with a one-line error."""
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GeosynthError(f"{p}: no such file (expected a training-state file)") from None
    except Exception as exc:  # the restricted loader's refusals come as several exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GeosynthError(
            f"{p}: not a plain tensor-state file; refused to load it ({first[:120]})"
        ) from None
