"""A base model's identity: a digest of its weights per component, not the string that named it.

The same weights reach geosynth under many names: a hub id or a mirror's id, a relative or
absolute path, a copied folder, the Hugging Face cache, a single-file checkpoint. LoRA cards,
channel-means files and generated datasets record :func:`model_digest`, and a LoRA is accepted on
any model whose digest agrees, refused on one whose weights differ.

The digest hashes *canonical tensor content*, not file bytes: for each component (``unet``,
``text_encoder``, ``vae``, and SDXL's ``text_encoder_2``) the floating-point tensors in diffusers' key names, sorted by name,
each as its name, shape and float32 values (SHA-256). So a single-file checkpoint and the
diffusers folder of the same weights, or two folders saved with different safetensors headers or
shard sizes, get the same identity; an fp16 copy (rounded weights) gets another. Buffers that are
not weights (``position_ids``) are left out. Hashing SD 2.1-base's 5 GB takes seconds to a
minute, so results are cached under ``$GEOSYNTH_CACHE/model-digests/`` keyed by each file's
path, size and modification time.

Hashing runs while a step holds the pipeline, so it must not hold the weights a second time: the
files are read in chunks of at most 16 MB through their safetensors headers
(:mod:`geosynth.diffusion.tensorfile`), never memory-mapped whole (mapped pages count in the
process's resident set). A single-file checkpoint's conversion to diffusers' names runs on meta
tensors, and each converted tensor is hashed from the bytes of the file it is a view of. The
digest is the same as hashing the loaded tensors; ``model_digest(cost=...)`` reports what
hashing cost (seconds, bytes read, or that the cache answered).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.artifacts.jsontext import json_text
from geosynth.diffusion.tensorfile import TensorFile
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

#: The components a digest covers (those a LoRA or channel means depend on).
DIGEST_COMPONENTS = ("unet", "text_encoder", "vae")
#: Covered too where the model has them (SDXL's second text encoder); a digest without them
#: (SD 1.x / 2.x, or one recorded before) is compared on the components both have.
OPTIONAL_COMPONENTS = ("text_encoder_2",)


def _present(names: Iterable[str]) -> tuple[str, ...]:
    """The digest's components among ``names``: every required one, the optional ones held."""
    have = set(names)
    return DIGEST_COMPONENTS + tuple(c for c in OPTIONAL_COMPONENTS if c in have)


#: Weight files of a diffusers component folder (non-variant safetensors, maybe sharded).
_WEIGHT_PREFIXES = ("diffusion_pytorch_model", "model")


def _cache_root() -> Path:
    return Path(os.environ.get("GEOSYNTH_CACHE", Path.home() / ".cache" / "geosynth"))


@dataclass(frozen=True)
class _Part:
    """A tensor to hash without holding it: its shape, whether it is floating-point, and its
    values as float32 bytes in chunks."""

    shape: tuple[int, ...]
    floating: bool
    values: Callable[[], Iterable[Any]]


def _hash(names: Iterable[str], part: Callable[[str], _Part]) -> str:
    """SHA-256 of the canonical form (see the module docstring): one tensor, or one chunk of
    one, in memory at a time, whatever order ``names`` come in."""
    h = hashlib.sha256()
    for name in sorted(names, key=lambda n: n.removeprefix("text_model.")):
        if name.endswith("position_ids"):
            continue
        p = part(name)
        if not p.floating:
            continue
        # transformers 5 saves CLIPTextModel without ``text_model.``; older files have it.
        canonical = name.removeprefix("text_model.")
        h.update(f"{canonical}|{p.shape}|".encode())
        for chunk in p.values():
            h.update(chunk)
    return h.hexdigest()


def _tensor_part(t: torch.Tensor) -> _Part:
    import torch

    def values() -> list[Any]:
        return [t.detach().to("cpu", torch.float32).contiguous().numpy()]

    return _Part(tuple(int(n) for n in t.shape), torch.is_floating_point(t), values)


def tensor_digest(names: Iterable[str], get: Callable[[str], torch.Tensor]) -> str:
    """SHA-256 of the tensors ``get(name)`` in canonical form (see the module docstring); one
    tensor in memory at a time, whatever order ``names`` come in."""
    return _hash(names, lambda name: _tensor_part(get(name)))


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


def _file_part(f: TensorFile, key: str) -> _Part:
    e = f.entries[key]
    dtype = e.torch_dtype()
    if dtype is None or sys.byteorder != "little":  # as safetensors' own reader sees it
        return _tensor_part(_mapped_tensor(f.path, key))
    return _Part(e.shape, dtype.is_floating_point, lambda: f.float32_chunks(key))


def _mapped_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor(key)


def files_digest(files: list[Path]) -> str:
    """:func:`tensor_digest` of the tensors of safetensors ``files`` (the shards of one model),
    read in bounded chunks (:mod:`geosynth.diffusion.tensorfile`), never mapped whole."""
    readers = [TensorFile(f) for f in files]
    where = {key: r for r in readers for key in r.entries}
    return _hash(where, lambda key: _file_part(where[key], key))


def _view_part(t: torch.Tensor, sources: dict[int, tuple[TensorFile, str]]) -> _Part | None:
    """The part of a (meta) tensor that is a view of a file's tensor: the byte range of a
    contiguous view, else the source tensor read whole and viewed the same way; None when
    ``t`` is no view of one (computed by the conversion)."""
    import torch

    found = sources.get(id(t if t._base is None else t._base))
    if found is None:
        return None
    f, key = found
    if not t.is_floating_point():
        return _Part(tuple(t.shape), False, list)
    if t.is_contiguous():
        size = t.element_size()
        start = int(t.storage_offset()) * size
        stop = start + int(t.numel()) * size
        return _Part(tuple(t.shape), True, lambda: f.float32_chunks(key, start, stop))
    shape, stride, offset = t.size(), t.stride(), t.storage_offset()

    def values() -> list[Any]:
        full = f.tensor(key).reshape(-1)
        view = full.as_strided(shape, stride, offset)
        return [view.to(torch.float32).contiguous().numpy()]

    return _Part(tuple(shape), True, values)


def _views(
    converted: dict[str, dict[str, torch.Tensor]], sources: dict[int, tuple[TensorFile, str]]
) -> dict[str, dict[str, _Part]] | None:
    """:func:`_view_part` of every converted tensor; None if one is not a view of the file."""
    views: dict[str, dict[str, _Part]] = {}
    for c in _present(converted):
        views[c] = {}
        for name, t in converted[c].items():
            part = _view_part(t, sources)
            if part is None:
                return None
            views[c][name] = part
    return views


def single_file_digest(path: Path) -> dict[str, str]:
    """Per-component digests of a single-file checkpoint, equal to hashing the converted state
    dicts, in bounded memory: the conversion to diffusers' names runs on meta tensors (shapes
    only), and each converted tensor is hashed from the file's bytes it views."""
    import torch

    from geosynth.diffusion.single_file import component_state_dicts

    f = TensorFile(path)
    dtypes = {k: e.torch_dtype() for k, e in f.entries.items()}
    if sys.byteorder == "little" and all(d is not None for d in dtypes.values()):
        meta = {
            k: torch.empty(e.shape, dtype=dtypes[k], device="meta") for k, e in f.entries.items()
        }
        sources = {id(t): (f, k) for k, t in meta.items()}
        try:
            views = _views(component_state_dicts(path, tensors=meta), sources)
        except (NotImplementedError, RuntimeError):  # a conversion step meta tensors lack
            views = None
        if views is not None:
            return {c: _hash(views[c], views[c].__getitem__) for c in views}
    # Tensors computed by the conversion, or dtypes torch lacks: hash the converted tensors.
    real = component_state_dicts(path)
    return {c: state_digest(real[c]) for c in _present(real)}


def _cached(
    files: list[Path], compute: Callable[[], dict[str, str]], cost: dict[str, Any] | None
) -> dict[str, str]:
    """``compute()``, remembered by the files' paths, sizes and modification times; ``cost``
    (when given) receives ``cached``, ``seconds`` and ``bytes`` (the weight files' size)."""
    stamp = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = hashlib.sha256(json_text(stamp).encode()).hexdigest()[:32]
    path = _cache_root() / "model-digests" / f"{key}.json"
    size = sum(f.stat().st_size for f in files)
    report: dict[str, Any] = {"cached": True, "seconds": 0.0, "bytes": size}
    try:
        value = dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        start = time.perf_counter()
        value = compute()
        report.update(cached=False, seconds=round(time.perf_counter() - start, 3))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json_text(value))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs the hashing next time
    if cost is not None:
        cost.update(report)
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


def model_digest(
    model: str | os.PathLike[str], *, cost: dict[str, Any] | None = None
) -> dict[str, str] | None:
    """Per-component weight digests of a pipeline given as a directory, a cached hub id or a
    single-file checkpoint; None when its weights are not on this machine as safetensors.
    ``cost``: a dict that receives what identifying the weights cost (see :func:`_cached`)."""
    path = Path(str(model)).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        return _cached([path], lambda: single_file_digest(path), cost)
    folder = model_folder(model)
    if folder is None:
        return None
    files = {c: _component_files(folder / c) for c in DIGEST_COMPONENTS}
    if not all(files.values()):
        return None
    for c in OPTIONAL_COMPONENTS:
        if found := _component_files(folder / c):
            files[c] = found
    return _cached(
        [f for c in files for f in files[c]],
        lambda: {c: files_digest(files[c]) for c in files},
        cost,
    )


def describe_cost(cost: dict[str, Any]) -> str | None:
    """A line for the log when identifying the weights meant hashing them (None when the cache
    answered or nothing was hashed)."""
    if cost.get("cached", True):
        return None
    size, secs = cost["bytes"], cost["seconds"]
    amount = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    took = f"{secs:.1f} s" if secs >= 0.05 else "under 0.1 s"
    return f"base model identified by its weights: {amount} hashed in {took} (cached from now on)"


def short(digest: dict[str, str] | None, component: str = "unet") -> str:
    """``unet sha256:0123456789ab`` for messages."""
    if not digest or component not in digest:
        return "weights unknown"
    return f"{component} sha256:{digest[component][:12]}"


def differing(a: dict[str, str], b: dict[str, str]) -> str | None:
    """The first component both digests cover whose weights differ (None: the same model)."""
    for c in DIGEST_COMPONENTS + OPTIONAL_COMPONENTS:
        if c in a and c in b and a[c] != b[c]:
            return c
    return None


def require_digest(model: str | os.PathLike[str], what: str = "model") -> dict[str, str]:
    """:func:`model_digest`, or a one-line error when the weights are not here."""
    digest = model_digest(model)
    if digest is None:
        raise GeosynthError(f"{what}={str(model)!r}: no local safetensors weights to identify")
    return digest
