"""``filter_dataset``: decide which generated images are worth training on, and write them.

Criteria, each optional and applied in this order (an image's ``reason`` is the first it fails;
every score is recorded whichever failed):

1. ``copy``: within ``copy_threshold`` of a training image (:mod:`geosynth.metrics.memorisation`);
2. ``off-class``: a classifier's confidence in the intended class (a train-clf classifier, or
   zero-shot CLIP with the class prompts: ``classifier="clip:REF"``) below
   ``min_confidence`` (default: the classifier does not predict the intended class);
3. ``off-manifold``: outside every k-NN ball of the real images of its class (PRDC's balls);
4. ``budget``: beyond ``per_class`` kept images of its class, ranked by confidence, else by
   closeness to the real manifold, else in dataset order.

Copy distances and confidences are scored part by part into ``OUT.parts/``
(:mod:`geosynth.curation.scoring`): ``resume`` continues a killed run there, ``workers``
data-loader processes do the per-image work, and under torchrun every rank scores its block of
parts; the real set's and the synthetic set's embeddings are cached and resumable as ``embed``'s.
Whichever way the scores were computed, the output is the same bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from geosynth import faults
from geosynth.artifacts import Provenance
from geosynth.curation.criteria import load_classifier_model, manifold_ratio
from geosynth.curation.scoring import (
    PART_ROWS,
    open_parts,
    part_ranges,
    parts_dir,
    score_parts,
    train_descriptors,
)
from geosynth.curation.writer import RADIOMETRY_NAME, source_rows, write_kept
from geosynth.data import ImageDataset, load_dataset
from geosynth.data.load import check_source
from geosynth.data.radiometry_sources import bind
from geosynth.data.writer import check_output_dir
from geosynth.defaults import PROMPT_TEMPLATE
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers
from geosynth.metrics.memorisation import COPY_THRESHOLD, memorisation_summary

REASONS = ("copy", "off-class", "off-manifold", "budget")


@dataclass
class FilterReport:
    """What ``filter_dataset`` kept and why it dropped the rest."""

    out: Path
    records: list[dict[str, Any]]  # one per source image: scores, kept, reason
    per_class: dict[str, dict[str, int]]  # images, kept and dropped per reason
    settings: dict[str, Any]
    memorisation: dict[str, Any] | None = None
    previews: Path | None = None
    warnings: list[str] = field(default_factory=list)

    #: the per-class table's columns: counts, then the images dropped for each reason
    columns: ClassVar[tuple[str, ...]] = ("images", "kept", *REASONS)

    def table_rows(self) -> list[list[Any]]:
        """One row per class (name, then :attr:`columns`), then the totals as class 'all'."""
        rows: list[list[Any]] = [
            [c, *(r[key] for key in self.columns)] for c, r in self.per_class.items()
        ]
        totals = [sum(r[key] for r in self.per_class.values()) for key in self.columns]
        return [*rows, ["all", *totals]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "settings": self.settings,
            "per_class": self.per_class,
            "memorisation": self.memorisation,
            "previews": None if self.previews is None else str(self.previews),
            "warnings": self.warnings,
        }


def _by_name(ds: ImageDataset, names: list[str], what: str, where: str) -> list[int]:
    """``ds``'s labels renumbered in ``names`` (the synthetic set's class order), -1 for classes
    the synthetic set does not have; an error if the two share no class."""
    common = set(ds.class_names) & set(names)
    if not common:
        raise GeosynthError(
            f"{what}={where!r}: no class in common with the synthetic set (it has "
            f"{', '.join(ds.class_names)}; the synthetic set {', '.join(names)})"
        )
    index = {c: i for i, c in enumerate(names)}
    return [index.get(ds.class_names[label], -1) for label in ds.labels]


def filter_dataset(
    synth: str | Path,
    out: str | Path,
    *,
    train: str | Path | None = None,
    copies: bool = True,
    copy_threshold: float = COPY_THRESHOLD,
    classifier: str | None = None,
    min_confidence: float | None = None,
    prompt_template: str = PROMPT_TEMPLATE,
    real: str | Path | None = None,
    features: str = "dinov2-base",
    k: int = 5,
    per_class: int | None = None,
    classes: list[str] | None = None,
    split: str | None = None,
    real_split: str | None = None,
    batch_size: int = 64,
    device: str | None = None,
    precision: str = "auto",
    use_cache: bool = True,
    workers: int = 0,
    part_size: int = PART_ROWS,
    resume: bool = False,
    track: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
    provenance: Provenance | None = None,
) -> FilterReport | None:
    """Score every image of ``synth`` by the criteria asked for, keep those that pass, and write
    them to ``out`` in the layout ``generate`` writes (see the module docstring). ``device``:
    ``cpu``, ``cuda[:N]`` or None for this process's GPU, else the CPU. Under torchrun every
    rank calls this; rank 0 writes ``out`` and gets the report, the others None."""
    from geosynth.distributed import init_from_env, is_main_process, local_device, patient_group
    from geosynth.runtime import pick_device

    dev = local_device(pick_device(device))
    distributed = init_from_env(dev)
    device = str(dev)
    check_numbers(
        copy_threshold=copy_threshold,
        min_confidence=min_confidence,
        k=k,
        per_class=per_class,
        batch_size=batch_size,
        workers=workers,
        part_size=part_size,
    )
    if min_confidence is not None and classifier is None:
        raise GeosynthError("`min_confidence` needs `classifier` (a confidence of which model?)")
    for what, source in {"synth": synth, "train": train, "real": real}.items():
        check_source(source, what)  # every input before a model loads
    out = Path(out)
    check_output_dir(out)
    # native data (GeoTIFFs) is scored through generate's radiometry.json, else the default
    # spec of its kind; the training and real images then go through the same mapping
    rad_file = Path(synth) / RADIOMETRY_NAME
    rad = rad_file.read_text() if rad_file.is_file() else "auto"
    ds = load_dataset(synth, split=split, classes=classes, radiometry=rad)
    if ds.kind != "imagefolder":
        raise GeosynthError(
            f"synth={str(synth)!r}: expected an image folder (what generate writes); its files "
            "are copied as they are"
        )
    names = ds.class_names
    n = len(ds)
    if Path(synth).resolve() == out.resolve():
        raise GeosynthError(f"out={str(out)!r}: is the synthetic set itself; choose a new path")
    rec: list[dict[str, Any]] = [
        {"file_name": s.key, "label": s.label, "class_name": names[s.label]} for s in ds.samples
    ]
    fails = {r: torch.zeros(n, dtype=torch.bool) for r in REASONS}
    settings: dict[str, Any] = {"synth": str(synth), "images": n}
    memo = None
    plan: dict[str, Any] = {"synth": ds.fingerprint(), "selection": ds.selection}
    plan.update(batch_size=batch_size, device=dev.type)
    plan["radiometry"] = None if ds.radiometry is None else ds.radiometry.to_dict()
    tdesc, tds, model = None, None, None
    if classifier is not None:
        model = load_classifier_model(
            ds, classifier, prompt_template=prompt_template, device=device
        )
        plan.update(classifier=classifier, classifier_weights=model.weights)
        plan["prompt_template"] = prompt_template
    if train is not None and copies:
        tds = load_dataset(train, split=split if split and Path(train, split).is_dir() else None)
        tds = tds if ds.radiometry is None else tds.with_radiometry(bind(ds.radiometry, tds))
        _by_name(tds, names, "train", str(train))
        if len(tds) < 2:  # the copy test is relative to the shots' own spacing
            raise GeosynthError(
                f"train={str(train)!r}: {len(tds)} image(s); copy detection needs at least 2"
            )
        plan["train"] = tds.fingerprint()
    group = patient_group() if distributed else None
    ranges = part_ranges(n, batch_size, part_size)
    if tds is not None or model is not None:  # checked before any scoring starts
        plan.update(rows=n, part_rows=ranges[0][1] - ranges[0][0] if ranges else 0)
        open_parts(parts_dir(out), plan, resume, group)
    # the embeddings before the scores: under torchrun every rank takes part in both
    ratio = None
    if real is not None:
        ratio = _manifold(ds, str(synth), real, real_split, features, k, batch_size, device,
                          precision, use_cache, distributed, log)  # fmt: skip
    if tds is not None:
        log(f"copy detection: {n} generated x {len(tds)} training images")
        tdesc = train_descriptors(tds, workers=workers, track=track)
    scores = None
    if tdesc is not None or model is not None:
        scores = score_parts(
            ds, parts_dir(out), ranges, train=tdesc, classifier=model, batch_size=batch_size,
            workers=workers, group=group, track=track, log=log,
        )  # fmt: skip
    if distributed and not is_main_process():
        return None

    if scores is not None and scores.copy is not None and tds is not None:
        match = scores.copy
        memo = memorisation_summary(match, ds.labels, names, copy_threshold)
        fails["copy"] = match.ratio <= copy_threshold
        for i, r in enumerate(rec):
            j = int(match.index[i])
            r["copy_distance"] = round(float(match.distance[i]), 6)
            r["copy_ratio"] = round(float(match.ratio[i]), 6)
            r["copy_of"] = tds.describe(tds.samples[j])
            r["copy_transform"] = match.transform[i]
        settings.update(train=str(train), copy_threshold=copy_threshold)

    rank = torch.arange(n, dtype=torch.float64)  # budget order: lower is better
    if scores is not None and scores.confidence is not None and model is not None:
        conf, predicted = scores.confidence, scores.predicted or []
        if min_confidence is None:
            fails["off-class"] = torch.tensor(
                [p != r["class_name"] for p, r in zip(predicted, rec, strict=True)]
            )
        else:
            fails["off-class"] = conf < min_confidence
        for i, r in enumerate(rec):
            r["confidence"] = round(float(conf[i]), 6)
            r["predicted"] = predicted[i]
        rank = -conf
        settings.update(classifier=model.about, min_confidence=min_confidence)

    if ratio is not None:
        fails["off-manifold"] = ratio > 1.0
        for i, r in enumerate(rec):
            r["manifold_ratio"] = round(float(ratio[i]), 6)
        if classifier is None:
            rank = ratio
        settings.update(real=str(real), features=features, k=k)

    reason: list[str | None] = [None] * n
    for why in REASONS[:3]:
        for i in torch.nonzero(fails[why]).flatten().tolist():
            reason[i] = reason[i] or why
    if per_class is not None:
        settings["per_class"] = per_class
        for c in range(len(names)):
            idx = [i for i in range(n) if ds.labels[i] == c and reason[i] is None]
            idx.sort(key=lambda i: (float(rank[i]), i))
            for i in idx[per_class:]:
                reason[i] = "budget"

    per: dict[str, dict[str, int]] = {}
    for i, r in enumerate(rec):
        r["kept"] = reason[i] is None
        r["reason"] = reason[i]
        row = per.setdefault(r["class_name"], {"images": 0, "kept": 0, **dict.fromkeys(REASONS, 0)})
        row["images"] += 1
        row["kept" if reason[i] is None else str(reason[i])] += 1
    warnings = [
        f"class '{c}': every one of its {row['images']} images was dropped; it has no folder in "
        f"{out}"
        for c, row in per.items()
        if row["kept"] == 0
    ]
    for w in warnings:
        log(f"warning: {w}")
    if all(row["kept"] == 0 for row in per.values()):
        raise GeosynthError(f"synth={str(synth)!r}: no image passed the filter; nothing written")

    meta = source_rows(Path(synth)) if ds.kind == "imagefolder" else {}
    kept = []
    for i, r in enumerate(rec):
        if not r["kept"]:
            continue
        row = dict(meta.get(r["file_name"], {}))
        row.update(file_name=r["file_name"], label=r["label"], class_name=r["class_name"])
        row.update({f"filter_{key}": r[key] for key in _SCORES if key in r})
        kept.append((Path(ds.samples[i].ref), row))
    prov = provenance or Provenance.start("filter", inputs={"synth": synth})
    report = FilterReport(out, rec, per, settings, memo, warnings=warnings)
    prov.extra["filter"] = report.to_dict()
    report.previews = write_kept(Path(synth), out, names, kept, rec, prov)
    faults.stage("filter:output")
    shutil.rmtree(parts_dir(out), ignore_errors=True)  # the scores are in OUT/filter.jsonl now
    return report


def _manifold(
    ds: ImageDataset,
    source: str,
    real: str | Path,
    real_split: str | None,
    features: str,
    k: int,
    batch_size: int,
    device: str,
    precision: str,
    use_cache: bool,
    distributed: bool,
    log: Callable[[str], None],
) -> torch.Tensor:
    """Each generated image's distance to its class's real k-NN balls (see
    :func:`~geosynth.curation.criteria.manifold_ratio`), from cached embeddings."""
    from geosynth.features.resolve import resolve_embeddings

    names = ds.class_names
    rds = load_dataset(real, split=real_split)
    rds = rds if ds.radiometry is None else rds.with_radiometry(bind(ds.radiometry, rds))
    rlab = _by_name(rds, names, "real", str(real))
    lacking = sorted({names[label] for label in ds.labels} - set(rds.class_names))
    if lacking:
        raise GeosynthError(f"real={str(real)!r}: has no images of class(es) {', '.join(lacking)}")
    common: dict[str, Any] = dict(features=features, batch_size=batch_size, device=device)
    common.update(precision=precision, use_cache=use_cache, log=log, distributed=distributed)
    se = resolve_embeddings(source, dataset=ds, **common).embeddings
    re_ = resolve_embeddings(str(real), dataset=rds, **common).embeddings
    return manifold_ratio(se, ds.labels, re_, rlab, k=k)


_SCORES = (
    "copy_distance",
    "copy_ratio",
    "copy_of",
    "confidence",
    "predicted",
    "manifold_ratio",
)
