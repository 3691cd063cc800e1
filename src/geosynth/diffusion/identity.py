"""A base model's identity: a digest of its weights per component, not the string that named it.

The same weights reach geosynth under many names: a hub id or a mirror's id, a relative or
absolute path, a copied folder, the Hugging Face cache, a single-file checkpoint. LoRA cards,
channel-means files and generated datasets record :func:`model_digest`, and a LoRA is accepted on
any model whose digest agrees, refused on one whose weights differ.

The digest hashes *canonical tensor content*, not file bytes: for each component (``unet``,
``text_encoder``, ``vae``) the floating-point tensors in diffusers' key names, sorted by name,
each as its name, shape and float32 values (SHA-256). So a single-file checkpoint and the
diffusers folder of the same weights, or two folders saved with different safetensors headers or
shard sizes, get the same identity; an fp16 copy (rounded weights) gets another. Buffers that are
not weights (``position_ids``) are left out. Hashing SD 2.1-base's 5 GB takes seconds to a
minute, so results are cached under ``$GEOSYNTH_CACHE/model-digests/`` keyed by each file's
path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

#: The components a digest covers (those a LoRA or channel means depend on).
DIGEST_COMPONENTS = ("unet", "text_encoder", "vae")
#: Weight files of a diffusers component folder (non-variant safetensors, maybe sharded).
_WEIGHT_PREFIXES = ("diffusion_pytorch_model", "model")


def _cache_root() -> Path:
    return Path(os.environ.get("GEOSYNTH_CACHE", Path.home() / ".cache" / "geosynth"))


def tensor_digest(names: Iterable[str], get: Callable[[str], torch.Tensor]) -> str:
    """SHA-256 of the tensors ``get(name)`` in canonical form (see the module docstring); one
    tensor in memory at a time, whatever order ``names`` come in."""
    import torch

    h = hashlib.sha256()
    for name in sorted(names, key=lambda n: n.removeprefix("text_model.")):
        if name.endswith("position_ids"):
            continue
        t = get(name)
        if not torch.is_floating_point(t):
            continue
        # transformers 5 saves CLIPTextModel without ``text_model.``; older files have it.
        canonical = name.removeprefix("text_model.")
        h.update(f"{canonical}|{tuple(t.shape)}|".encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """:func:`tensor_digest` of an in-memory state dict."""
    return tensor_digest(state, state.__getitem__)


def _component_files(folder: Path) -> list[Path]:
    """The non-variant safetensors weight files of a component folder (several when sharded)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob("*.safetensors")
        if p.name.startswith(_WEIGHT_PREFIXES) and p.name.count(".") == 1
    )


def files_digest(files: list[Path]) -> str:
    """:func:`tensor_digest` of the tensors of safetensors ``files`` (the shards of one model)."""
    from safetensors import safe_open

    handles = [safe_open(str(f), framework="pt") for f in files]
    where = {key: h for h in handles for key in h.keys()}  # noqa: SIM118 (not a mapping)
    return tensor_digest(where, lambda key: where[key].get_tensor(key))


def _cached(files: list[Path], compute: Callable[[], dict[str, str]]) -> dict[str, str]:
    """``compute()``, remembered by the files' paths, sizes and modification times."""
    stamp = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = hashlib.sha256(json_text(stamp).encode()).hexdigest()[:32]
    path = _cache_root() / "model-digests" / f"{key}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json_text(value))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs the hashing next time
    return value


def model_folder(model: str | os.PathLike[str]) -> Path | None:
    """The local folder holding ``model``'s files: the directory itself, or the Hugging Face
    cache's snapshot of a hub id (None when nothing is cached)."""
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.suffix == ".safetensors" or text.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True))
    except Exception:
        return None


def model_digest(model: str | os.PathLike[str]) -> dict[str, str] | None:
    """Per-component weight digests of a pipeline given as a directory, a cached hub id or a
    single-file checkpoint; None when its weights are not on this machine as safetensors."""
    path = Path(str(model)).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        from geosynth.diffusion.single_file import component_state_dicts

        def from_file() -> dict[str, str]:
            parts = component_state_dicts(path)
            return {c: state_digest(parts[c]) for c in DIGEST_COMPONENTS}

        return _cached([path], from_file)
    folder = model_folder(model)
    if folder is None:
        return None
    files = {c: _component_files(folder / c) for c in DIGEST_COMPONENTS}
    if not all(files.values()):
        return None
    return _cached(
        [f for c in DIGEST_COMPONENTS for f in files[c]],
        lambda: {c: files_digest(files[c]) for c in DIGEST_COMPONENTS},
    )


def short(digest: dict[str, str] | None, component: str = "unet") -> str:
    """``unet sha256:0123456789ab`` for messages."""
    if not digest or component not in digest:
        return "weights unknown"
    return f"{component} sha256:{digest[component][:12]}"


def differing(a: dict[str, str], b: dict[str, str]) -> str | None:
    """The first component both digests cover whose weights differ (None: the same model)."""
    for c in DIGEST_COMPONENTS:
        if c in a and c in b and a[c] != b[c]:
            return c
    return None


def require_digest(model: str | os.PathLike[str], what: str = "model") -> dict[str, str]:
    """:func:`model_digest`, or a one-line error when the weights are not here."""
    digest = model_digest(model)
    if digest is None:
        raise GeosynthError(f"{what}={str(model)!r}: no local safetensors weights to identify")
    return digest
