"""The evaluation report: is a synthetic set faithful to a real one?

Sections (each skipped, with a note, when its inputs are missing):

* ``fid``, ``kid``: Fréchet and kernel distances in a feature space (:mod:`.fid`);
* ``prdc``: precision, recall, density, coverage and rarity, real playing reference (the rarity
  engine, :func:`geosynth.metrics.rarity.rarity_report`);
* ``color``: per-class channel means in pixel space, ``latent_color`` in the VAE latent space
  (:mod:`.color`);
* ``amplitude``: W1 and KL of log-amplitude; ``glcm``: texture descriptors (:mod:`.sar`);
* ``clip``: CLIP score of images against their class prompt (:mod:`.clipscore`).

Classes are matched by name. Overall numbers use every image of both sets as given; per-class
numbers use the classes both sets hold, and the report lists the classes left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosynth.artifacts import Embeddings
from geosynth.data import load_dataset
from geosynth.data.dataset import ImageDataset
from geosynth.defaults import FEATURE_MODEL, PROMPT_TEMPLATE
from geosynth.errors import GeosynthError
from geosynth.metrics.color import class_stats, compare_class_stats
from geosynth.metrics.fid import fid, kid
from geosynth.metrics.pixels import PixelScan, amplitude_scale, is_greyscale, scan_images
from geosynth.metrics.rarity import rarity_report
from geosynth.metrics.sar import (
    GLCM_ANGLES,
    GLCM_DISTANCES,
    GLCM_PROPS,
    AmplitudeScale,
    wasserstein1,
)
from geosynth.progress import Track, no_track

ALL_SECTIONS = ("fid", "kid", "prdc", "color", "latent_color", "amplitude", "glcm", "clip")


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


@dataclass
class Evaluation:
    """The JSON report plus what the plots need (per-set pixel scans)."""

    report: dict[str, Any]
    scans: dict[str, PixelScan] = field(default_factory=dict)


def _is_embeddings(source: str) -> bool:
    p = Path(source)
    return p.suffix == ".safetensors" or p.is_file()


def _load(
    source: str,
    split: str | None,
    classes: list[str] | None,
    shots: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    ds = load_dataset(source, split=split)
    if classes:
        missing = [c for c in classes if c not in ds.class_names]
        if missing:
            raise GeosynthError(
                f"`classes`: {source} has no class '{missing[0]}' "
                f"(available: {', '.join(ds.class_names)})"
            )
        ds = ds.select_classes(classes)
    return ds if shots is None else ds.few_shot(shots, seed)


def _rows_of(emb: Embeddings, name: str) -> torch.Tensor:
    assert emb.labels is not None and emb.class_names is not None
    return emb.embeddings[emb.labels == emb.class_names.index(name)]


def _feature_meta(emb: Embeddings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("feature_model", "preprocessing"):
        if key in emb.metadata:
            try:
                out[key] = json.loads(emb.metadata[key])
            except ValueError:
                out[key] = emb.metadata[key]
    out["feature_dim"] = int(emb.embeddings.shape[1])
    return out


def evaluate(
    synthetic: str,
    real: str,
    options: EvalOptions | None = None,
    *,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> Evaluation:
    """Compare SYNTHETIC with REAL (datasets, or embeddings files for the feature metrics)."""
    opts = options or EvalOptions()
    unknown = [s for s in opts.sections if s not in ALL_SECTIONS]
    if unknown:
        raise GeosynthError(
            f"`sections`: unknown metric '{unknown[0]}' (known: {', '.join(ALL_SECTIONS)})"
        )
    want = set(opts.sections)
    notes: list[str] = []
    warnings: list[str] = []
    report: dict[str, Any] = {"synthetic": synthetic, "real": real}

    emb_inputs = _is_embeddings(synthetic), _is_embeddings(real)
    ds_s = (
        None if emb_inputs[0] else _load(synthetic, opts.split, opts.classes, opts.shots, opts.seed)
    )
    ds_r = (
        None
        if emb_inputs[1]
        else _load(real, opts.real_split, opts.classes, opts.real_shots, opts.seed)
    )
    if any(emb_inputs):
        pixel = want & {"color", "latent_color", "amplitude", "glcm", "clip"}
        if pixel:
            notes.append(
                "embeddings files hold no pixels: "
                f"{', '.join(sorted(pixel))} need image datasets and were skipped"
            )
        want -= pixel

    # ---------------------------------------------------------------- feature metrics
    emb_s = emb_r = None
    if want & {"fid", "kid", "prdc"}:
        from geosynth.features.resolve import resolve_embeddings

        bi = None
        if opts.bands is not None:
            # One standardisation for both sets, from REAL (the reference), as for the bins.
            from geosynth.data.multiband import band_input

            if ds_r is None:
                raise GeosynthError(
                    f"bands: REAL {real} must be a dataset (its per-band statistics standardise "
                    "both sets), not an embeddings file"
                )
            bi = band_input(ds_r, opts.bands, track=track)
        common: dict[str, Any] = dict(
            features=opts.features,
            bands=bi,
            seed=opts.seed,
            batch_size=opts.batch_size,
            device=opts.device,
            precision=opts.precision,
            use_cache=opts.use_cache,
            track=track,
            log=log,
        )
        emb_s = resolve_embeddings(
            synthetic, split=opts.split, classes=opts.classes, shots=opts.shots, **common
        )
        emb_r = resolve_embeddings(
            real, split=opts.real_split, classes=opts.classes, shots=opts.real_shots, **common
        )
        ds_, dr_ = emb_s.embeddings.shape[1], emb_r.embeddings.shape[1]
        if ds_ != dr_:
            raise GeosynthError(
                f"feature dimensions differ: SYNTH {synthetic} has {ds_}, REAL {real} has {dr_}"
            )
        meta_s, meta_r = _feature_meta(emb_s), _feature_meta(emb_r)
        fm_s, fm_r = meta_s.get("feature_model"), meta_r.get("feature_model")
        if fm_s and fm_r and fm_s != fm_r:
            raise GeosynthError(
                f"feature models differ: SYNTH {synthetic} used {fm_s}, REAL {real} used {fm_r}"
            )
        report["features"] = meta_r if fm_r else meta_s

    # ---------------------------------------------------------------- classes
    names_s = (ds_s.class_names if ds_s else emb_s.class_names if emb_s else None) or []
    names_r = (ds_r.class_names if ds_r else emb_r.class_names if emb_r else None) or []
    compared = [c for c in names_r if c in names_s] if opts.per_class else []
    only_s = [c for c in names_s if c not in names_r]
    only_r = [c for c in names_r if c not in names_s]
    report["classes"] = {
        "compared": compared,
        "only_synthetic": only_s,
        "only_real": only_r,
    }
    if opts.per_class and (only_s or only_r):
        notes.append(
            "class names differ: per-class metrics cover the "
            f"{len(compared)} classes both sets hold"
            + (f"; only in SYNTH: {', '.join(only_s)}" if only_s else "")
            + (f"; only in REAL: {', '.join(only_r)}" if only_r else "")
            + "; overall metrics use every image of both sets"
        )
    if opts.per_class and not compared:
        notes.append("no class name is shared by both sets: no per-class metrics")
    if opts.train is not None:  # near-copies of the training images (issue 28)
        from geosynth.metrics.memorisation import memorisation_section

        report["memorisation"] = memorisation_section(ds_s, opts.train, opts.copy_threshold)

    # ---------------------------------------------------------------- FID / KID / PRDC
    if emb_s is not None and emb_r is not None:
        labelled = (
            emb_s.labels is not None
            and emb_s.class_names is not None
            and emb_r.labels is not None
            and emb_r.class_names is not None
        )
        feat_classes = compared if labelled else []
        if compared and not labelled:
            notes.append("embeddings without labels and class names: no per-class FID/KID/PRDC")
        report["n_synthetic"] = int(emb_s.embeddings.shape[0])
        report["n_real"] = int(emb_r.embeddings.shape[0])
        if "fid" in want:
            report["fid"] = _fid_section(emb_r, emb_s, feat_classes, warnings)
        if "kid" in want:
            report["kid"] = _kid_section(emb_r, emb_s, feat_classes, opts, notes)
        if "prdc" in want:
            report["prdc"] = _prdc_section(
                emb_r, emb_s, feat_classes, opts, (real, synthetic), notes
            )

    # ---------------------------------------------------------------- pixel metrics
    scans: dict[str, PixelScan] = {}
    if ds_s is not None and ds_r is not None:
        report["n_synthetic"] = len(ds_s)
        report["n_real"] = len(ds_r)
        grey_s, grey_r = is_greyscale(ds_s), is_greyscale(ds_r)
        if grey_s != grey_r and not opts.greyscale:
            which = (synthetic, real) if grey_s else (real, synthetic)
            raise GeosynthError(
                f"{which[0]} is greyscale but {which[1]} is colour: pixel metrics would compare "
                "different channels; pass greyscale=True to compare both as luminance, or evaluate "
                "sets of the same kind"
            )
        grey = opts.greyscale or (grey_s and grey_r)
        report["greyscale"] = grey
        if grey_s != grey_r:
            notes.append("--greyscale: colour images were compared as luminance (ITU-R 601-2)")
        if want & {"color", "amplitude", "glcm"}:
            # One scale for both sets, from REAL: the same GLCM levels and KL bins on each side.
            scale = amplitude_scale(
                ds_r,
                space=opts.amplitude_scale,
                db_floor=opts.amplitude_db_floor,
                seed=opts.seed,
                track=track,
            )
            for role, ds in (("synthetic", ds_s), ("real", ds_r)):
                scans[role] = scan_images(
                    ds,
                    greyscale=grey,
                    glcm_levels=opts.glcm_levels,
                    seed=opts.seed,
                    scale=scale,
                    track=track,
                    description=f"reading {role} images",
                )
            _check_units(scans, warnings)
        if "color" in want:
            report["color"] = _color_section(scans, compared)
        if "amplitude" in want:
            report["amplitude"] = _amplitude_section(scans, compared, opts.kl_bins)
        if "glcm" in want:
            report["glcm"] = _glcm_section(scans, compared)
        if "latent_color" in want:
            if opts.vae:
                report["latent_color"] = _latent_section(ds_s, ds_r, compared, opts, track)
            elif opts.sections != ALL_SECTIONS:
                notes.append("latent_color needs --vae MODEL: skipped")
        if "clip" in want:
            if opts.clip_model:
                report["clip"] = _clip_section(ds_s, ds_r, compared, opts, track)
            elif opts.sections != ALL_SECTIONS:
                notes.append("clip needs --clip-model SPEC: skipped")

    report["options"] = {
        k: v
        for k, v in opts.__dict__.items()
        if k not in ("use_cache", "device", "batch_size", "precision")
    }
    report["notes"] = notes
    report["warnings"] = warnings
    report["summary"] = summary(report)
    return Evaluation(report, scans)


# -------------------------------------------------------------------- sections


def _fid_section(
    real: Embeddings, synth: Embeddings, classes: list[str], warnings: list[str]
) -> dict[str, Any]:
    overall = fid(real.embeddings, synth.embeddings)
    warnings.extend(overall.warnings)
    out: dict[str, Any] = overall.to_dict()
    per_class: dict[str, Any] = {}
    small: list[str] = []
    for name in classes:
        r, s = _rows_of(real, name), _rows_of(synth, name)
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


def _kid_section(
    real: Embeddings, synth: Embeddings, classes: list[str], opts: EvalOptions, notes: list[str]
) -> dict[str, Any]:
    def one(r: torch.Tensor, s: torch.Tensor) -> dict[str, Any]:
        return kid(r, s, subsets=opts.kid_subsets, subset_size=opts.kid_subset_size, seed=opts.seed)

    out: dict[str, Any] = one(real.embeddings, synth.embeddings)
    per_class = {}
    for name in classes:
        r, s = _rows_of(real, name), _rows_of(synth, name)
        per_class[name] = one(r, s) if min(r.shape[0], s.shape[0]) >= 2 else None
    if per_class:
        out["per_class"] = per_class
    return out


def _prdc_section(
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
        r, s = _rows_of(real, name), _rows_of(synth, name)
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


def _check_units(scans: dict[str, PixelScan], warnings: list[str]) -> None:
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


def _color_section(scans: dict[str, PixelScan], classes: list[str]) -> dict[str, Any]:
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


def _shift_db(scale: AmplitudeScale, a_r: np.ndarray, a_s: np.ndarray) -> float | None:
    """Signed gain of synthetic over real in dB: the mean dB difference in the dB space,
    ``10 log10`` of the ratio of mean values for non-negative linear data; None otherwise."""
    if scale.space == "db":
        return float(a_s.mean() - a_r.mean())
    m_r, m_s = float(a_r.mean()), float(a_s.mean())
    if scale.space == "linear" and scale.kl_log and m_r > 0 and m_s > 0:
        return float(10.0 * np.log10(m_s / m_r))
    return None


def _amplitude_section(
    scans: dict[str, PixelScan], classes: list[str], bins: int
) -> dict[str, Any]:
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
            out["shift_db"] = _shift_db(scale, a_r, a_s)
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


def _glcm_compare(g_r: np.ndarray, g_s: np.ndarray) -> dict[str, Any]:
    mr, ms, sd = g_r.mean(0), g_s.mean(0), g_r.std(0)
    std_diff = (ms - mr) / np.where(sd > 0, sd, 1.0)
    return {
        "real": dict(zip(GLCM_PROPS, map(float, mr), strict=True)),
        "synthetic": dict(zip(GLCM_PROPS, map(float, ms), strict=True)),
        "difference": dict(zip(GLCM_PROPS, map(float, ms - mr), strict=True)),
        "standardised_difference": dict(zip(GLCM_PROPS, map(float, std_diff), strict=True)),
        "distance": float(np.abs(std_diff).mean()),
    }


def _glcm_section(scans: dict[str, PixelScan], classes: list[str]) -> dict[str, Any]:
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
        **_glcm_compare(r.glcm, s.glcm),
    }
    per_class = {
        name: _glcm_compare(
            r.glcm[r.labels == r.class_names.index(name)],
            s.glcm[s.labels == s.class_names.index(name)],
        )
        for name in classes
    }
    if per_class:
        out["per_class"] = per_class
    return out


def _latent_section(
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


def _clip_section(
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
            c: opts.prompt_template.format(p)
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


# -------------------------------------------------------------------- summary


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers (overall, and a row per compared class) for tables and plots."""

    def g(path: tuple[str, ...], src: dict[str, Any] | None = None) -> Any:
        cur: Any = report if src is None else src
        for p in path:
            if not isinstance(cur, dict) or p not in cur or cur[p] is None:
                return None
            cur = cur[p]
        return cur

    columns = {
        "fid": ("fid", "value"),
        "kid": ("kid", "mean"),
        "precision": ("prdc", "metrics", "precision"),
        "recall": ("prdc", "metrics", "recall"),
        "density": ("prdc", "metrics", "density"),
        "coverage": ("prdc", "metrics", "coverage"),
        "rarity": ("prdc", "metrics", "rarity_mean"),
        "color_error": ("color", "mean_abs_error"),
        "latent_color_error": ("latent_color", "mean_abs_error"),
        "amplitude_w1": ("amplitude", "wasserstein1"),
        "amplitude_kl": ("amplitude", "kl_log_amplitude"),
        "glcm_distance": ("glcm", "distance"),
        "clip_score": ("clip", "synthetic", "clip_score"),
        "clip_score_real": ("clip", "real", "clip_score"),
    }
    per_class_paths = {
        "fid": ("fid", "per_class", "{c}", "value"),
        "kid": ("kid", "per_class", "{c}", "mean"),
        "precision": ("prdc", "per_class", "{c}", "precision"),
        "recall": ("prdc", "per_class", "{c}", "recall"),
        "density": ("prdc", "per_class", "{c}", "density"),
        "coverage": ("prdc", "per_class", "{c}", "coverage"),
        "rarity": ("prdc", "per_class", "{c}", "rarity_mean"),
        "color_error": ("color", "per_class", "{c}", "abs_error"),
        "latent_color_error": ("latent_color", "per_class", "{c}", "abs_error"),
        "amplitude_w1": ("amplitude", "per_class", "{c}", "wasserstein1"),
        "amplitude_kl": ("amplitude", "per_class", "{c}", "kl_log_amplitude"),
        "glcm_distance": ("glcm", "per_class", "{c}", "distance"),
        "clip_score": ("clip", "per_class", "{c}", "synthetic", "clip_score"),
        "clip_score_real": ("clip", "per_class", "{c}", "real", "clip_score"),
    }
    overall = {k: g(p) for k, p in columns.items()}
    present = [k for k, v in overall.items() if v is not None]
    per_class = {}
    for c in report.get("classes", {}).get("compared", []):
        per_class[c] = {
            k: g(tuple(p.replace("{c}", c) for p in per_class_paths[k])) for k in present
        }
    return {"overall": {k: overall[k] for k in present}, "per_class": per_class}
