"""Where and how models run: device, precision, and model references (hub id or local directory).

Every package asks this module, so that "auto" means the same everywhere: the CUDA device of this
process (``LOCAL_RANK`` under ``accelerate launch`` / torchrun) or the CPU; precision ``auto``
is float32 off CUDA and fp16 on CUDA GPUs, except where a caller prefers bf16 (classifier
training): bf16 on GPUs with native bf16 (compute capability 8.0+, ROCm), else fp16. Loading stays the libraries' own (``from_pretrained``);
:func:`load_with` only decides whether a string is a hub id or a directory and turns loading
failures into one-line errors that say what was tried.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def is_local(ref: str | os.PathLike[str]) -> bool:
    """A reference is local when it exists on disk or is written as a path (a hub id is
    ``name`` or ``owner/name``: never two slashes, nor a trailing one)."""
    text = str(ref)
    return (
        Path(text).exists()
        or text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or text.endswith(("/", os.sep))
    )


def model_ref(ref: str | os.PathLike[str], what: str = "model") -> str:
    """Validate a reference: local directories must exist; anything else is passed on as a hub id.
    ``what`` is the name of the parameter that gave ``ref``; errors read ``what='ref': ...``."""
    text = str(ref)
    if is_local(text) or text.endswith(".safetensors"):
        path = Path(text).expanduser()
        if text.endswith(".safetensors"):
            if not path.is_file():
                raise GeosynthError(f"{what}={text!r}: no such checkpoint file")
        elif not path.is_dir():
            raise GeosynthError(f"{what}={text!r}: no such model directory")
        return str(path)
    return text


def recorded_ref(ref: str | os.PathLike[str]) -> str:
    """How a model reference is written into cards and files that other steps read back: a
    local path (folder or single file) as an absolute path, so that the file works from any
    working directory; a hub id as given."""
    text = str(ref)
    if is_local(text) or text.endswith(".safetensors"):
        return os.path.abspath(Path(text).expanduser())
    return text


def load_with(loader: Callable[[str], T], ref: str | os.PathLike[str], what: str) -> T:
    """Call ``loader(ref)`` (a ``from_pretrained``) and explain failures in one line."""
    resolved = model_ref(ref, what)
    try:
        return loader(resolved)
    except GeosynthError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if resolved.endswith(".safetensors"):
            where = "single-file checkpoint"
        else:
            where = "local directory" if is_local(resolved) else _hub_hint()
        raise GeosynthError(f"{what}={resolved!r}: cannot load as a {where}: {first}") from None


def _hub_hint() -> str:
    """How a hub id failed to load: offline without a cached copy, or the hub unreachable."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "hub id (HF_HUB_OFFLINE is set and it is not in the Hugging Face cache)"
    return "hub id (is the hub reachable?)"


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when present (this process's GPU under ``accelerate
    launch`` / torchrun, from LOCAL_RANK), else CPU."""
    import torch

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device, *, prefer_bf16: bool = False) -> str:
    """What ``precision`` means on ``device``: ``auto`` is fp32 on CPU (no fast half-precision
    kernels there) and fp16 on CUDA (more mantissa bits than bf16; Stable Diffusion's weights
    and LoRA fine-tuning are made for it); ``prefer_bf16`` picks bf16 where the GPU computes it
    natively, compute capability 8.0+ (A100, H100, L4, RTX 30/40) or ROCm, else fp16
    (classifier training, whose fp16 gradients would need loss scaling; emulated bf16 on older
    GPUs would be slower than fp16). Explicit choices are kept; ``no`` (accelerate's word)
    means fp32."""
    import torch

    if precision == "no":
        precision = "fp32"
    if precision not in PRECISIONS:
        raise GeosynthError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    if prefer_bf16 and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp16"


def accelerate_precision(precision: str, device: torch.device, *, prefer_bf16: bool = False) -> str:
    """accelerate's ``mixed_precision`` for ``precision`` on ``device``: ``no``, ``fp16`` or
    ``bf16`` (:func:`resolve_precision`'s choice, with fp32 spelt as accelerate spells it)."""
    prec = resolve_precision(precision, device, prefer_bf16=prefer_bf16)
    return "no" if prec == "fp32" else prec


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype of ``precision`` on ``device``: fp16/bf16 only on GPU, CPU always computes
    in float32."""
    import torch

    prec = resolve_precision(precision, device)
    if device.type == "cpu" or prec == "fp32":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[prec]


#: Experiment trackers ``report_to`` accepts (accelerate's), and the package each needs.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def logs_dir(out: Path, logging_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``report_to`` writes: ``logging_dir``, or ``OUT.logs`` beside the output (logs
    are not part of the output, so a finished output stays byte-identical with or without)."""
    return Path(logging_dir) if logging_dir is not None else out.parent / f"{out.name}.logs"


def tracker_config(values: Mapping[str, Any]) -> dict[str, int | float | str | bool]:
    """A run's settings as flat scalars, as experiment trackers (TensorBoard hparams) take
    them: nested values as JSON, None left out."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in values.items():
        if isinstance(value, bool | int | float | str):
            flat[key] = value
        elif value is not None:
            flat[key] = json_text(value, default=str)
    return flat


def check_report_to(report_to: str | None) -> None:
    """Fail early, in one line, on an unknown tracker or one whose package is missing."""
    import importlib.util

    if report_to is None:
        return
    if report_to not in TRACKERS:
        raise GeosynthError(f"report_to={report_to!r}: expected one of {', '.join(TRACKERS)}")
    package = TRACKERS[report_to]
    if importlib.util.find_spec(package) is None:
        raise GeosynthError(
            f"report_to={report_to!r}: needs the {package} package (pip install {package})"
        )
