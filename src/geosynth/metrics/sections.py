"""The sections of the evaluation report (:mod:`.evaluation`), each computed from its inputs:
distances in a feature space (FID, KID, PRDC and rarity), per-class colour in pixels and latents,
SAR amplitude and texture in native units, CLIP score. Each returns the section's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geosynth.artifacts import Embeddings
from geosynth.data.dataset import ImageDataset
from geosynth.data.names import fill_prompt
from geosynth.defaults import EVAL_SECTIONS, FEATURE_MODEL, PROMPT_TEMPLATE
from geosynth.errors import GeosynthError
from geosynth.metrics.color import class_stats, compare_class_stats
from geosynth.metrics.frechet import fid, kid
from geosynth.metrics.pixels import PixelScan
from geosynth.metrics.rarity import rarity_report
from geosynth.metrics.sar import (
    GLCM_ANGLES,
    GLCM_DISTANCES,
    glcm_compare,
    shift_db,
    wasserstein1,
)
from geosynth.progress import Track

ALL_SECTIONS = EVAL_SECTIONS


@dataclass
class EvalOptions:
    """Everything the report depends on (recorded in it)."""

    features: str = FEATURE_MODEL
    sections: tuple[str, ...] = ALL_SECTIONS
    per_class: bool = True
    k: int = 5
    rarity_k: int = 3
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    vae: str | None = None
    resolution: int | None = None
    clip_model: str | None = None
    prompt_template: str = PROMPT_TEMPLATE
    greyscale: bool = False
    glcm_levels: int = 64
    kl_bins: int = 64
    amplitude_scale: str = "auto"
    bands: str | None = None
    amplitude_db_floor: float | None = None
    # native data's 3-channel view for RGB feature models, CLIP and the VAE: a spec or an
    # artifact recording one (default: SYNTH's recorded spec, else REAL's default)
    radiometry: str | None = None
    split: str | None = None
    real_split: str | None = None
    classes: list[str] | None = None
    shots: int | None = None  # K images per class of the synthetic set (under ``seed``)
    real_shots: int | None = None  # K images per class of the real set
    seed: int = 0
    batch_size: int = 64
    device: str | None = None
    precision: str = "auto"
    use_cache: bool = True
    train: str | None = None  # the model's training images: report near-copies of them
    copy_threshold: float = 0.5  # geosynth.metrics.memorisation.COPY_THRESHOLD


def fid_section(
    real: Embeddings, synth: Embeddings, classes: list[str], warnings: list[str]
) -> dict[str, Any]:
    overall = fid(real.embeddings, synth.embeddings)
    warnings.extend(overall.warnings)
    out: dict[str, Any] = overall.to_dict()
    per_class: dict[str, Any] = {}
    small: list[str] = []
    for name in classes:
        r, s = rows_of(real, name), rows_of(synth, name)
        if r.shape[0] < 2 or s.shape[0] < 2:
            per_class[name] = None
            continue
        res = fid(r, s)
        if res.warnings:
            small.append(name)
        per_class[name] = res.to_dict()
    if small:
        warnings.append(
            f"per-class FID: {len(small)} of {len(classes)} classes have no more images than the "
            f"{overall.dim} feature dimensions (e.g. {small[0]}): rank-deficient covariances, "
            "values biased upward; compare them only between runs of equal size"
        )
    if per_class:
        out["per_class"] = per_class
    return out


def kid_section(
    real: Embeddings, synth: Embeddings, classes: list[str], opts: EvalOptions, notes: list[str]
) -> dict[str, Any]:
    def one(r: torch.Tensor, s: torch.Tensor) -> dict[str, Any]:
        return kid(r, s, subsets=opts.kid_subsets, subset_size=opts.kid_subset_size, seed=opts.seed)

    out: dict[str, Any] = one(real.embeddings, synth.embeddings)
    per_class = {}
    for name in classes:
        r, s = rows_of(real, name), rows_of(synth, name)
        per_class[name] = one(r, s) if min(r.shape[0], s.shape[0]) >= 2 else None
    if per_class:
        out["per_class"] = per_class
    return out


def prdc_section(
    real: Embeddings,
    synth: Embeddings,
    classes: list[str],
    opts: EvalOptions,
    names: tuple[str, str],
    notes: list[str],
) -> dict[str, Any]:
    rep = rarity_report(real, synth, k=opts.k, rarity_k=opts.rarity_k, names=names)
    out: dict[str, Any] = {
        "k": rep["k"],
        "rarity_k": rep["rarity_k"],
        "method": rep["method"],
        "metrics": rep["metrics"],
    }
    kmax = max(opts.k, opts.rarity_k)
    per_class: dict[str, Any] = {}
    skipped = []
    for name in classes:
        r, s = rows_of(real, name), rows_of(synth, name)
        if r.shape[0] <= kmax or s.shape[0] <= opts.k:
            skipped.append(name)
            continue
        sub = rarity_report(
            Embeddings(r, metadata=real.metadata),
            Embeddings(s, metadata=synth.metadata),
            k=opts.k,
            rarity_k=opts.rarity_k,
            names=(f"{names[0]}[{name}]", f"{names[1]}[{name}]"),
        )
        per_class[name] = sub["metrics"]
    if skipped:
        notes.append(
            f"per-class PRDC skipped for {', '.join(skipped)}: a class needs more than "
            f"k={kmax} real and k={opts.k} synthetic images"
        )
    if per_class:
        out["per_class"] = per_class
        out["per_class_note"] = "each synthetic class against the real images of the same class"
    return out


def check_units(scans: dict[str, PixelScan], warnings: list[str]) -> None:
    def kind(scan: PixelScan) -> str:
        if not scan.native:
            return "8-bit"
        return "16-bit" if any(m.startswith("I;16") for m in scan.modes) else "/".join(scan.modes)

    ks, kr = kind(scans["synthetic"]), kind(scans["real"])
    if ks != kr:
        warnings.append(
            f"amplitude units differ: synthetic images are {ks}, real images {kr}; amplitude "
            "distances compare raw values and are not meaningful across units"
        )


def color_section(scans: dict[str, PixelScan], classes: list[str]) -> dict[str, Any]:
    s, r = scans["synthetic"], scans["real"]
    out = compare_class_stats(
        class_stats(r.channel_mean, r.labels, r.class_names),
        class_stats(s.channel_mean, s.labels, s.class_names),
        classes,
        r.channels,
    )
    out["space"] = (
        "pixel, native units per band (divided by 65535 for 16-bit data)"
        if r.native
        else "pixel, fraction of full scale (0..1)"
    )
    out["overall"] = {
        "real_mean": [float(v) for v in r.channel_mean.mean(0)],
        "synthetic_mean": [float(v) for v in s.channel_mean.mean(0)],
        "error": [float(v) for v in s.channel_mean.mean(0) - r.channel_mean.mean(0)],
        "real_pixel_std": [float(v) for v in r.channel_std.mean(0)],
        "synthetic_pixel_std": [float(v) for v in s.channel_std.mean(0)],
    }
    return out


def amplitude_section(scans: dict[str, PixelScan], classes: list[str], bins: int) -> dict[str, Any]:
    s, r = scans["synthetic"], scans["real"]
    scale = r.scale
    assert scale is not None
    n_bands = len(scale.lo)

    def band(label_r: int | None, label_s: int | None, b: int) -> dict[str, Any]:
        a_r, a_s = r.class_amplitude(label_r, b), s.class_amplitude(label_s, b)
        out: dict[str, Any] = {
            "wasserstein1": wasserstein1(a_r, a_s),
            "kl_log_amplitude": scale.kl(a_r, a_s, b, bins),
            "real_mean": float(a_r.mean()),
            "synthetic_mean": float(a_s.mean()),
        }
        if not scale.fixed:
            out["mean_difference"] = out["synthetic_mean"] - out["real_mean"]
            out["shift_db"] = shift_db(scale, a_r, a_s)
        return out

    def one(label_r: int | None, label_s: int | None) -> dict[str, Any]:
        if n_bands == 1:
            return band(label_r, label_s, 0)
        # Several bands: each compared on its own; the top-level numbers are their means.
        per_band = {scale.bands[b]: band(label_r, label_s, b) for b in range(n_bands)}
        keys = [k for k, v in next(iter(per_band.values())).items() if v is not None]
        out: dict[str, Any] = {
            k: float(np.mean([v[k] for v in per_band.values() if v[k] is not None])) for k in keys
        }
        out["per_band"] = per_band
        return out

    out: dict[str, Any] = one(None, None)
    out["bins"] = bins
    out["scale"] = scale.to_dict()
    out["units"] = (
        "dB" if scale.space == "db" else "native" if not scale.fixed else "8-bit luminance"
    )
    out["kl_direction"] = (
        "KL(real || synthetic) of binned log(1 + amplitude)"
        if scale.kl_log
        else f"KL(real || synthetic) of binned amplitude ({out['units']})"
    )
    if n_bands > 1:
        out["bands_note"] = "top-level values are means over bands; see per_band"
    per_class = {}
    for name in classes:
        per_class[name] = one(r.class_names.index(name), s.class_names.index(name))
    if per_class:
        out["per_class"] = per_class
    return out


def glcm_section(scans: dict[str, PixelScan], classes: list[str]) -> dict[str, Any]:
    s, r = scans["synthetic"], scans["real"]
    out: dict[str, Any] = {
        "levels": r.glcm_levels,
        "quantisation": r.scale.to_dict() if r.scale is not None else None,
        "distances": list(GLCM_DISTANCES),
        "angles_deg": [round(float(np.degrees(a))) for a in GLCM_ANGLES],
        "distance_definition": "mean over descriptors of |synthetic mean - real mean| / real std "
        "(across images)",
        **(
            {"bands_note": "each image's descriptors are means over its bands"}
            if len(r.bands) > 1
            else {}
        ),
        **glcm_compare(r.glcm, s.glcm),
    }
    per_class = {
        name: glcm_compare(
            r.glcm[r.labels == r.class_names.index(name)],
            s.glcm[s.labels == s.class_names.index(name)],
        )
        for name in classes
    }
    if per_class:
        out["per_class"] = per_class
    return out


def latent_section(
    ds_s: ImageDataset, ds_r: ImageDataset, classes: list[str], opts: EvalOptions, track: Track
) -> dict[str, Any]:
    from geosynth.diffusion import load_vae, per_image_channel_means, vae_scale_factor
    from geosynth.diffusion.loading import native_resolution

    assert opts.vae is not None
    vae = load_vae(opts.vae, what="vae")
    size = opts.resolution or native_resolution(opts.vae, vae_scale_factor(vae), what="vae")
    if size % vae_scale_factor(vae):
        raise GeosynthError(f"resolution={size}: must be a multiple of {vae_scale_factor(vae)}")
    lat = {}
    for role, ds in (("synthetic", ds_s), ("real", ds_r)):
        lat[role] = (
            per_image_channel_means(vae, ds, resolution=size, track=track).numpy(),
            np.asarray(ds.labels),
            ds.class_names,
        )
    ls, lr = lat["synthetic"], lat["real"]
    out = compare_class_stats(
        class_stats(*lr), class_stats(*ls), classes, [f"c{j}" for j in range(lr[0].shape[1])]
    )
    out["space"] = "VAE latents x scaling_factor, averaged over pixels (as channel-means)"
    out["model"] = opts.vae
    out["resolution"] = size
    return out


def clip_section(
    ds_s: ImageDataset, ds_r: ImageDataset, classes: list[str], opts: EvalOptions, track: Track
) -> dict[str, Any]:
    from geosynth.metrics.clipscore import ClipScorer, clip_scores, summarise
    from geosynth.runtime import pick_device

    if not classes:
        return {"note": "no shared classes: no prompts to score against"}
    scorer = ClipScorer.load(opts.clip_model or "", pick_device(opts.device))
    prompts = {}
    out: dict[str, Any] = {"model": opts.clip_model, "prompt_template": opts.prompt_template}
    per_class: dict[str, dict[str, Any]] = {c: {} for c in classes}
    for role, ds in (("synthetic", ds_s), ("real", ds_r)):
        sub = ds.select_classes(classes)
        prompts = {
            c: fill_prompt(opts.prompt_template, p)
            for c, p in zip(sub.class_names, sub.prompt_names, strict=True)
        }
        text = scorer.text_features([prompts[c] for c in sub.class_names])
        labels = np.asarray(sub.labels)
        scores, correct = clip_scores(
            scorer.dataset_features(sub, opts.batch_size, track), text, labels
        )
        out[role] = summarise(scores, correct)
        for c, name in enumerate(sub.class_names):
            m = labels == c
            per_class[name][role] = summarise(scores[m], correct[m])
    out["prompts"] = prompts
    out["per_class"] = per_class
    return out


def rows_of(emb: Embeddings, name: str) -> torch.Tensor:
    assert emb.labels is not None and emb.class_names is not None
    return emb.embeddings[emb.labels == emb.class_names.index(name)]
