"""DiffusionSat's UNet checkpoints in a plain diffusers ``UNet2DConditionModel``.

A DiffusionSat UNet folder (``checkpoint-N/unet/`` of its training runs, ``unet/`` of a saved
pipeline) is a diffusers UNet folder whose ``config.json`` adds ``use_metadata`` and
``num_metadata`` (and names the class ``SatUNet``) and whose weights add
``metadata_embedding.{i}.linear_1/2.{weight,bias}``. diffusers loads the rest into a plain
``UNet2DConditionModel`` and drops what it does not know; :func:`load_metadata_unet` reads the
embedding's weights from the weight files itself and attaches them
(:mod:`geosynth.diffusion.metadata_embedding`). A UNet geosynth saves with an embedding has the
same layout, plus ``metadata_fields`` when its fields are not DiffusionSat's seven.

Weight files, in this order: ``diffusion_pytorch_model.safetensors.index.json`` (sharded),
``diffusion_pytorch_model.safetensors``, ``diffusion_pytorch_model.bin`` (what DiffusionSat's
diffusers 0.17 wrote; read with ``weights_only=True``: tensors only, no code is run).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from geosynth.artifacts.jsontext import json_text
from geosynth.data.metadata import MODEL_FIELDS
from geosynth.diffusion.metadata_embedding import (
    MetadataEmbedding,
    attach_metadata_embedding,
    check_fields,
)
from geosynth.diffusion.types import UNet
from geosynth.errors import GeosynthError
from geosynth.runtime import is_local, load_with

PREFIX = "metadata_embedding."
#: The embedding's file in a finetune output whose UNet is not saved whole (beside its LoRA).
EMBEDDING_FILE = "metadata_embedding.safetensors"
_WEIGHTS = (
    "diffusion_pytorch_model{v}.safetensors.index.json",
    "diffusion_pytorch_model{v}.safetensors",
    "diffusion_pytorch_model{v}.bin",
)


def metadata_fields_of(config: Mapping[str, Any], where: str = "model") -> tuple[str, ...] | None:
    """The fields a UNet config conditions on: None without ``use_metadata``; DiffusionSat's
    seven for ``num_metadata`` 7 without ``metadata_fields``."""
    n = int(config.get("num_metadata") or 0)
    if not config.get("use_metadata") or n == 0:
        return None
    fields = config.get("metadata_fields")
    if not fields:
        if n != len(MODEL_FIELDS):
            raise GeosynthError(
                f"{where}: num_metadata={n} without metadata_fields; DiffusionSat's layout has "
                f"{len(MODEL_FIELDS)} ({', '.join(MODEL_FIELDS)})"
            )
        return MODEL_FIELDS
    fields = check_fields(fields)
    if len(fields) != n:
        raise GeosynthError(f"{where}: num_metadata={n} but metadata_fields names {len(fields)}")
    return fields


def unet_folder(model: str | os.PathLike[str], subfolder: str | None = "unet") -> Path:
    """The local folder of the UNet of ``model`` (a pipeline folder with ``subfolder``, a UNet
    folder, or a hub id, fetched from the Hugging Face cache or hub)."""
    root = Path(model)
    if not is_local(str(model)):
        from huggingface_hub import snapshot_download

        pattern = f"{subfolder}/*" if subfolder else "*"
        root = Path(snapshot_download(str(model), allow_patterns=[pattern]))
    for folder in ((root / subfolder) if subfolder else root, root):
        if (folder / "config.json").is_file():
            return folder
    raise GeosynthError(f"model={str(model)!r}: no UNet config.json in it or in {subfolder}/")


def read_metadata_weights(folder: Path, variant: str | None = None) -> dict[str, torch.Tensor]:
    """The ``metadata_embedding.*`` tensors of the UNet weights in ``folder``, names without
    that prefix (``0.linear_1.weight``, ...)."""
    from safetensors.torch import load_file

    v = f".{variant}" if variant else ""
    path = next(
        (folder / n.format(v=v) for n in _WEIGHTS if (folder / n.format(v=v)).is_file()), None
    )
    if path is None:
        raise GeosynthError(
            f"{folder}: no UNet weights ({', '.join(n.format(v=v) for n in _WEIGHTS)})"
        )
    try:
        if path.name.endswith(".index.json"):
            shards = sorted(
                {
                    f
                    for k, f in json.loads(path.read_text())["weight_map"].items()
                    if k.startswith(PREFIX)
                }
            )
            state = {k: t for s in shards for k, t in load_file(str(folder / s)).items()}
        elif path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, json and torch's restricted loader raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GeosynthError(f"{path}: cannot read the UNet weights ({first[:160]})") from None
    return {k[len(PREFIX) :]: t for k, t in state.items() if k.startswith(PREFIX)}


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns about the config keys and weights it does not know; here they are
    expected (they are read separately), so the warnings would only mislead."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def load_metadata_unet(
    model: str | os.PathLike[str],
    *,
    subfolder: str | None = "unet",
    dtype: torch.dtype = torch.float32,
    variant: str | None = None,
    what: str = "model",
) -> UNet:
    """The UNet of ``model`` as a plain ``UNet2DConditionModel``; when its config says
    ``use_metadata``, with the metadata embedding attached and its weights loaded (module
    docstring). A missing or misshapen embedding weight is an error naming the folder."""
    from diffusers import UNet2DConditionModel

    folder = load_with(lambda ref: unet_folder(ref, subfolder), model, what)
    config = json.loads((folder / "config.json").read_text())
    fields = metadata_fields_of(config, f"{what}={str(model)!r}")
    # Name the format, so that diffusers does not look for safetensors first (and say so).
    v = f".{variant}" if variant else ""
    safe = not (folder / f"diffusion_pytorch_model{v}.bin").is_file() or any(
        (folder / n.format(v=v)).is_file() for n in _WEIGHTS[:2]
    )
    with _quiet_diffusers():
        unet = load_with(
            lambda ref: UNet2DConditionModel.from_pretrained(
                ref, dtype=dtype, variant=variant, use_safetensors=safe
            ),
            folder,
            what,
        )
    if fields is None:
        return unet
    emb = attach_metadata_embedding(unet, fields, zero_init=False)
    weights = read_metadata_weights(folder, variant)
    try:
        emb.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        detail = str(exc).strip().splitlines()[1:2]
        raise GeosynthError(
            f"{folder}: its metadata_embedding weights do not fit its config "
            f"(num_metadata={len(fields)}): {first} {' '.join(detail).strip()}"
        ) from None
    emb.to(dtype=dtype)
    return unet


def save_metadata_embedding(unet: UNet, out: Path) -> str:
    """Write the UNet's embedding as ``metadata_embedding.safetensors`` (DiffusionSat's names;
    the fields in its metadata); returns the file name."""
    from safetensors.torch import save_file

    emb = getattr(unet, "metadata_embedding", None)
    if not isinstance(emb, MetadataEmbedding):
        raise GeosynthError("`metadata`: the model has no metadata embedding to save")
    state = {PREFIX + k: v.detach().float().cpu().contiguous() for k, v in emb.state_dict().items()}
    meta = {"fields": json_text(list(emb.fields)), "num_metadata": str(len(emb.fields))}
    save_file(state, str(out / EMBEDDING_FILE), metadata=meta)
    return EMBEDDING_FILE


def load_metadata_embedding(unet: UNet, path: Path, fields: Sequence[str] | None = None) -> None:
    """Put the embedding a finetune output saved (``metadata_embedding.safetensors``) on
    ``unet`` (in its dtype and device): attached, or in place of the weights of the one the
    base model has (a DiffusionSat checkpoint fine-tuned on)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
        names = tuple(fields or json.loads(meta.get("fields", "null")) or MODEL_FIELDS)
    except Exception as exc:  # safetensors and json raise many types
        raise GeosynthError(f"{path}: cannot read the metadata embedding ({exc})") from None
    emb = getattr(unet, "metadata_embedding", None)
    if isinstance(emb, MetadataEmbedding):  # the base model's own, trained on: new weights
        if tuple(emb.fields) != names:
            raise GeosynthError(
                f"{path}: conditions on {','.join(names)}, but the base model's embedding on "
                f"{','.join(emb.fields)}"
            )
    else:
        emb = attach_metadata_embedding(unet, names, zero_init=False)
    weights = {k[len(PREFIX) :]: t for k, t in state.items() if k.startswith(PREFIX)}
    try:
        emb.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise GeosynthError(
            f"{path}: does not fit this UNet ({str(exc).splitlines()[0]})"
        ) from None
    param = unet.time_embedding.linear_1.weight
    emb.to(device=param.device, dtype=param.dtype)


def has_metadata_unet(model: str | os.PathLike[str]) -> bool:
    """Whether the UNet config of pipeline ``model`` says ``use_metadata`` (DiffusionSat's
    layout, or a geosynth UNet saved with an embedding)."""
    from geosynth.diffusion.family.files import component_config, is_single_file

    if is_single_file(model):
        return False
    config = component_config(model, "unet")
    return bool(config and config.get("use_metadata"))


def load_metadata_pipeline(
    model: str | os.PathLike[str],
    pipeline_class: Any,
    dtype: torch.dtype = torch.float32,
    what: str = "model",
) -> Any:
    """The pipeline of a folder or hub id whose UNet has a metadata embedding, built from its
    components: DiffusionSat's ``model_index.json`` names its own library (``diffusionsat``,
    ``SatUNet``) for the UNet, which diffusers would try to import, so the index is read for
    the other components only (each loaded by the diffusers / transformers class it names; no
    safety checker, no watermark, no code from the model's folder) and the UNet comes from
    :func:`load_metadata_unet`. ``pipeline_class`` is the family's pipeline class."""
    import inspect

    import diffusers
    import transformers

    from geosynth.diffusion.family.files import model_index

    index = model_index(model, what)
    params = inspect.signature(pipeline_class.__init__).parameters
    libraries = {"diffusers": diffusers, "transformers": transformers}
    parts: dict[str, Any] = {}
    for name, value in index.items():
        if name.startswith("_") or name not in params:
            continue
        if name == "unet":
            parts[name] = load_metadata_unet(model, dtype=dtype, what=what)
            continue
        named = isinstance(value, list | tuple) and len(value) == 2 and value[1] is not None
        if not named or name in ("safety_checker", "feature_extractor", "image_encoder"):
            parts[name] = None
            continue
        lib, cls_name = value
        cls = getattr(libraries.get(str(lib)), str(cls_name), None) if lib in libraries else None
        if cls is None:
            raise GeosynthError(
                f"{what}={str(model)!r}: its {name} is {lib}.{cls_name}, which is neither a "
                "diffusers nor a transformers class"
            )
        kwargs: dict[str, Any] = {"subfolder": name}
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            kwargs["dtype"] = dtype

        def load(ref: str, cls: Any = cls, kwargs: dict[str, Any] = kwargs) -> Any:
            return cls.from_pretrained(ref, **kwargs)

        parts[name] = load_with(load, model, what)
    for switch in ("requires_safety_checker", "add_watermarker"):
        if switch in params:
            parts[switch] = False
    for name, p in params.items():  # optional components the index does not list
        if name not in parts and name != "self" and p.default is inspect.Parameter.empty:
            parts[name] = None
    return pipeline_class(**parts)
