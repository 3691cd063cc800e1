"""The ``toy`` steps, one call each as the ``geosynth toy data|sar|model`` commands make them:
output checks, provenance and the writer behind each format."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from geosynth.artifacts import Provenance
from geosynth.errors import GeosynthError

#: What :func:`toy_model` builds: each kind alone, or all of them in ``out/<kind>/``.
TOY_MODEL_KINDS = ("all", "sd", "sdxl", "dinov2", "clip", "timm")


def toy_data(
    out: str | os.PathLike[str],
    *,
    per_class: int = 16,
    size: int = 32,
    seed: int = 0,
    classes: Sequence[str] | int | None = None,
    fmt: str = "folder",
    paired: bool = False,
) -> int | None:
    """Write a procedural toy dataset to ``out``: an imagefolder (``fmt="folder"``) or a
    Hugging Face ``save_to_disk`` directory (``fmt="hf"``); ``paired``: land-cover maps with the
    images rendered from them (``per_class`` x classes pairs). Returns the number of pairs when
    ``paired``, else ``None``."""
    from geosynth.toy.data import make_toy_dataset, resolve_toy_classes, toy_hf_dataset

    if fmt not in ("folder", "hf"):
        raise GeosynthError(f"fmt={fmt!r}: expected 'folder' or 'hf'")
    if paired:
        from geosynth.toy.paired import make_toy_paired_dataset

        if fmt != "folder":
            raise GeosynthError("`paired` writes an image folder: use `fmt` folder")
        n = per_class * len(resolve_toy_classes(classes))
        prov = Provenance.start("toy data", seeds={"seed": seed}, pairs=n, size=size)
        make_toy_paired_dataset(out, n=n, size=size, seed=seed, classes=classes, provenance=prov)
        return n
    if fmt == "folder":
        prov = Provenance.start("toy data", seeds={"seed": seed}, per_class=per_class, size=size)
        make_toy_dataset(
            out, per_class=per_class, size=size, seed=seed, classes=classes, provenance=prov
        )
        return None
    from geosynth.artifacts import atomic_path, write_provenance
    from geosynth.data.writer import check_output_dir

    check_output_dir(Path(out))
    ds = toy_hf_dataset(per_class=per_class, size=size, seed=seed, classes=classes)
    prov = Provenance.start("toy data", seeds={"seed": seed}, per_class=per_class, size=size)
    with atomic_path(out) as tmp:
        ds.save_to_disk(str(tmp))
        write_provenance(tmp, prov)
    return None


def toy_sar(
    out: str | os.PathLike[str],
    *,
    per_class: int = 8,
    size: int = 32,
    seed: int = 0,
    looks: float = 4.0,
) -> Path:
    """Write a procedural toy SAR dataset (float32 VV/VH power GeoTIFFs, gamma speckle of
    ``looks`` looks) to ``out``, which must not hold files yet."""
    from geosynth.data.writer import check_output_dir
    from geosynth.toy.sar import make_toy_sar_dataset

    check_output_dir(Path(out))
    return make_toy_sar_dataset(out, per_class=per_class, size=size, seed=seed, looks=looks)


def toy_model(
    out: str | os.PathLike[str],
    *,
    kind: str = "all",
    size: int = 32,
    seed: int = 0,
    vae_steps: int = 200,
) -> dict[str, Path]:
    """Build the tiny model(s) of ``kind`` (see :data:`TOY_MODEL_KINDS`) in the real models'
    layouts; returns kind -> directory written (``all``: ``out/<kind>/`` for each)."""
    from geosynth.toy import models
    from geosynth.toy.sdxl import make_toy_sdxl_pipeline

    if kind not in TOY_MODEL_KINDS:
        raise GeosynthError(f"kind={kind!r}: expected one of {', '.join(TOY_MODEL_KINDS)}")
    if size % 8:
        raise GeosynthError(f"size={size}: must be a multiple of 8 (the models' patch size)")
    if kind == "all":
        made = models.make_toy_models(out, size=size, seed=seed, vae_steps=vae_steps)
        made["sdxl"] = make_toy_sdxl_pipeline(
            Path(out) / "sdxl", size=size, seed=seed, vae_steps=vae_steps
        )
        return made
    if kind == "sd":
        models.make_toy_sd_pipeline(out, size=size, seed=seed, vae_steps=vae_steps)
    elif kind == "sdxl":
        make_toy_sdxl_pipeline(out, size=size, seed=seed, vae_steps=vae_steps)
    elif kind == "dinov2":
        models.make_toy_dinov2(out, size=size, seed=seed)
    elif kind == "clip":
        models.make_toy_clip(out, seed=seed)
    else:
        models.make_toy_timm(out, seed=seed)
    return {kind: Path(out)}
