"""The evaluation report: is a synthetic set faithful to a real one?

Sections (each skipped, with a note, when its inputs are missing):

* ``fid``, ``kid``: Fréchet and kernel distances in a feature space (:mod:`.frechet`);
* ``prdc``: precision, recall, density, coverage and rarity, real playing reference (the rarity
  engine, :func:`geosynth.metrics.rarity.rarity_report`);
* ``color``: per-class channel means in pixel space, ``latent_color`` in the VAE latent space
  (:mod:`.color`);
* ``amplitude``: W1 and KL of log-amplitude; ``glcm``: texture descriptors (:mod:`.sar`);
* ``clip``: CLIP score of images against their class prompt (:mod:`.clipscore`).

Classes are matched by name. Overall numbers use every image of both sets as given; per-class
numbers use the classes both sets hold, and the report lists the classes left out. Each section
is computed in :mod:`.sections`; this module loads the inputs and assembles the report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geosynth.artifacts import Embeddings
from geosynth.data import load_dataset
from geosynth.data.dataset import ImageDataset
from geosynth.data.radiometry_sources import load_radiometry
from geosynth.errors import GeosynthError
from geosynth.limits import check_fields
from geosynth.metrics.native import (
    degenerate_bands,
    pixel_bands,
    recorded,
    rgb_view,
    scale_record,
    set_units,
)
from geosynth.metrics.pixels import PixelScan, amplitude_scale, is_greyscale, scan_images
from geosynth.metrics.sections import (
    ALL_SECTIONS,
    EvalOptions,
    amplitude_section,
    check_units,
    clip_section,
    color_section,
    fid_section,
    glcm_section,
    kid_section,
    latent_section,
    prdc_section,
)
from geosynth.metrics.summary import summary
from geosynth.progress import Track, no_track


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
    val: str | None = None,
    real_maps: str | os.PathLike[str] | None = None,
    val_maps: str | os.PathLike[str] | None = None,
    landscape: str = "dominant",
    segmenter: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    plots: str | os.PathLike[str] | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    **settings: Any,
) -> Evaluation:
    """What ``geosynth evaluate`` does: compare SYNTHETIC with REAL (datasets, or embeddings files
    for the feature metrics) and return the report with what the plots need.

    ``settings`` override fields of ``options`` (:class:`EvalOptions`; ``sections=("all",)``
    means every section). A paired synthetic set (images with their maps), or ``val``, adds
    the map-conditioned section ``maps`` (:func:`~geosynth.metrics.paired.paired_evaluation`,
    with ``real_maps``, ``val_maps`` and ``landscape``). ``segmenter`` (a ``train-seg``
    ``seed-S/model.safetensors`` trained on real pairs) adds ``segmenter``: how well it finds in
    each synthetic image the mask it was generated from (seed 004's map fidelity by a
    segmentation model; SYNTHETIC must be image/mask pairs). ``plots``: a directory of figures
    (replaced whole, checked before the work starts); ``out``: the report as JSON. Both get a
    provenance record."""
    from geosynth.artifacts import Provenance, atomic_path, write_json, write_provenance
    from geosynth.data import check_output_dir, check_source
    from geosynth.data.paired import has_maps

    opts = replace(options or EvalOptions(), **settings)
    check_fields(opts)
    if tuple(opts.sections) == ("all",):
        opts = replace(opts, sections=ALL_SECTIONS)
    if not opts.sections:
        raise GeosynthError("`sections`: give at least one metric, or 'all'")
    if out is not None and Path(out).suffix != ".json":
        raise GeosynthError(f"out={str(out)!r}: expected a path ending in .json")
    if landscape not in ("dominant", "label"):
        raise GeosynthError(f"landscape={landscape!r}: expected dominant or label")
    if plots is not None:
        check_output_dir(Path(plots), what="plots")
    inputs = {"synthetic": synthetic, "real": real, "val": val, "train": opts.train}
    for what, source in {**inputs, "real_maps": real_maps, "val_maps": val_maps}.items():
        check_source(source, what)  # every input before a model loads
    if segmenter is not None and not Path(segmenter).is_file():
        raise GeosynthError(
            f"segmenter={str(segmenter)!r}: no such file (expected a train-seg model, "
            "OUT/seed-S/model.safetensors)"
        )
    prov = Provenance.start("evaluate", seeds={"seed": opts.seed})
    seg = None
    if segmenter is not None:  # first: a SYNTHETIC without masks is refused before the work
        from geosynth.segment.fidelity import segmenter_fidelity

        seg = segmenter_fidelity(segmenter, synthetic, role="synthetic", batch_size=opts.batch_size)
    result = _compare(synthetic, real, opts, track=track, log=log)
    report = result.report
    if seg is not None:
        report["segmenter"] = seg
    if val is not None or has_maps(synthetic):
        from geosynth.metrics.paired import paired_evaluation

        report["maps"] = paired_evaluation(
            synthetic,
            real,
            opts,
            val=val,
            real_maps=None if real_maps is None else Path(real_maps),
            val_maps=None if val_maps is None else Path(val_maps),
            landscape=landscape,
            track=track,
            log=log,
        )
        report["notes"] += report["maps"].pop("notes")
    if plots is not None:
        from geosynth.metrics.evaluate_plots import write_plots

        plots = Path(plots)
        with atomic_path(plots) as tmp:
            made = write_plots(report, result.scans, tmp)
            write_provenance(tmp, prov)
        report["plots"] = [str(plots / q.name) for q in made]
    if out is not None:
        write_json(out, report)
        write_provenance(out, prov)
    return result


def _compare(
    synthetic: str,
    real: str,
    opts: EvalOptions,
    *,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> Evaluation:
    """The sections of the report (the feature and pixel metrics), without maps or files."""
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
    # native data: the spec through which feature models (8-bit RGB), CLIP and the VAE see it
    given = None if opts.radiometry is None else load_radiometry(opts.radiometry)
    rgb = (bool(want & {"fid", "kid", "prdc"}) and opts.bands is None) or opts.train is not None
    rgb |= ("clip" in want and bool(opts.clip_model)) or ("latent_color" in want and bool(opts.vae))
    if rgb or given is not None:
        ds_s, ds_r, view = rgb_view(ds_s, ds_r, given, notes)
        if view is not None:
            report["radiometry"] = view

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
            seed=opts.seed,
            batch_size=opts.batch_size,
            device=opts.device,
            precision=opts.precision,
            use_cache=opts.use_cache,
            track=track,
            log=log,
        )
        # the same bands by name in SYNTH's files (a 3-band generated set of a 13-band one)
        bi_s = bi.matched(ds_s) if bi is not None and ds_s is not None else bi
        emb_s = resolve_embeddings(
            synthetic, split=opts.split, classes=opts.classes, shots=opts.shots,
            dataset=ds_s, bands=bi_s, **common,
        )  # fmt: skip
        emb_r = resolve_embeddings(
            real, split=opts.real_split, classes=opts.classes, shots=opts.real_shots,
            dataset=ds_r, bands=bi, **common,
        )  # fmt: skip
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
            report["fid"] = fid_section(emb_r, emb_s, feat_classes, warnings)
        if "kid" in want:
            report["kid"] = kid_section(emb_r, emb_s, feat_classes, opts, notes)
        if "prdc" in want:
            report["prdc"] = prdc_section(
                emb_r, emb_s, feat_classes, opts, (real, synthetic), notes
            )
        if ds_s is not None:  # a set made with generate --metadata-from REAL
            from geosynth.metrics.retrieval import retrieval_section

            ranks = retrieval_section(ds_s, emb_s, emb_r)
            if ranks is not None:
                report["metadata_retrieval"] = ranks

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
            # Bands by name, each set in its own units (dB data is never taken for linear), and
            # one scale for both from REAL: the same GLCM levels and KL bins on each side.
            sel_s, sel_r = pixel_bands(ds_s, ds_r, opts.bands, notes)
            sel = {"synthetic": sel_s, "real": sel_r}
            units = {
                role: set_units(ds, given or recorded(ds))
                for role, ds in (("synthetic", ds_s), ("real", ds_r))
            }
            scale = amplitude_scale(
                ds_r,
                space=opts.amplitude_scale,
                db_floor=opts.amplitude_db_floor,
                seed=opts.seed,
                bands=sel["real"],
                units=units["real"][0],
                track=track,
            )
            for band in degenerate_bands(scale):
                warnings.append(
                    f"amplitude: every sampled real value of band {band} is one value in the "
                    f"{scale.space} space (a dB floor above the data?): its distances compare "
                    "nothing"
                )
            for role, ds in (("synthetic", ds_s), ("real", ds_r)):
                scans[role] = scan_images(
                    ds,
                    greyscale=grey,
                    glcm_levels=opts.glcm_levels,
                    seed=opts.seed,
                    scale=scale,
                    bands=sel[role],
                    units=units[role][0],
                    track=track,
                    description=f"reading {role} images",
                )
            check_units(scans, warnings)
        if "color" in want:
            report["color"] = color_section(scans, compared)
        if "amplitude" in want:
            report["amplitude"] = amplitude_section(scans, compared, opts.kl_bins)
            report["amplitude"]["scale"] = scale_record(scale, units)
        if "glcm" in want:
            report["glcm"] = glcm_section(scans, compared)
            report["glcm"]["quantisation"] = scale_record(scale, units)
        if "latent_color" in want:
            if opts.vae:
                report["latent_color"] = latent_section(ds_s, ds_r, compared, opts, track)
            elif opts.sections != ALL_SECTIONS:
                notes.append("latent_color needs --vae MODEL: skipped")
        if "clip" in want:
            if opts.clip_model:
                report["clip"] = clip_section(ds_s, ds_r, compared, opts, track)
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
