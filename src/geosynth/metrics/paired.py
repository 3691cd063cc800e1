"""Metrics of map-conditioned synthesis (seed 004): FID against the training and the validation
set, FID per landscape type, and per-map fidelity.

* **Landscape type** of an image: the dominant class of its map (``landscape="dominant"``,
  seed 004's Table 2, which takes the images whose map is mostly urban, vegetation or water) or
  its dataset label (``landscape="label"``, e.g. a type the user assigned). A set without maps
  falls back to its labels, with a note.
* **Per-map fidelity** of a generated image: the fraction of its pixels whose colour is nearest
  (Euclidean RGB) to the mean real colour of the pixel's own map class, among the mean real
  colours of all map classes seen in the real pairs. Mean real colours come from the real pairs
  (training set). Chance level is about one over the number of classes; an image that follows
  its map scores near 1. Pixels of classes absent from the real pairs are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.data.dataset import ImageDataset
from geosynth.data.paired import PairedDataset, dominant_class
from geosynth.errors import GeosynthError
from geosynth.metrics.frechet import fid
from geosynth.progress import Track, no_track


def class_colours(real: PairedDataset) -> np.ndarray:
    """K x 3 mean RGB (0..255) of the real pixels of each map class; NaN for absent classes."""
    assert real.legend is not None
    k = len(real.legend)
    sums = np.zeros((k, 3), np.float64)
    counts = np.zeros(k, np.int64)
    for i in range(len(real)):
        img = np.asarray(real.image(i), np.float64).reshape(-1, 3)
        classes = real.map(i).reshape(-1)
        labelled = classes >= 0  # ignored pixels (-1) belong to no class
        np.add.at(sums, classes[labelled], img[labelled])
        counts += np.bincount(classes[labelled], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def map_fidelity(image: np.ndarray, classes: np.ndarray, colours: np.ndarray) -> float:
    """Fraction of pixels (of classes with a real colour) nearest to their own class colour."""
    valid = ~np.isnan(colours[:, 0])
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return float("nan")
    px = image.reshape(-1, 3).astype(np.float64)
    c = classes.reshape(-1)
    counted = (c >= 0) & valid[np.clip(c, 0, None)]  # ignored pixels (-1) are not counted
    if not counted.any():
        return float("nan")
    d = np.linalg.norm(px[counted, None, :] - colours[idx][None], axis=-1)
    nearest = idx[d.argmin(1)]
    return float((nearest == c[counted]).mean())


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the defined values; None when there is none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def fidelity_report(
    synth: PairedDataset, real: PairedDataset, track: Track = no_track
) -> dict[str, Any]:
    """Per-map fidelity of every synthetic pair, with mean, per landscape and per map."""
    assert synth.legend is not None and real.legend is not None
    if synth.legend.names != real.legend.names:
        raise GeosynthError(
            f"{synth.source} and {real.source}: map legends differ "
            f"({synth.legend.names} vs {real.legend.names})"
        )
    colours = class_colours(real)
    k = len(real.legend)
    per_map: list[dict[str, Any]] = []
    by_type: dict[str, list[float]] = {}
    for i in track(range(len(synth)), len(synth), "map fidelity"):
        classes = synth.map(i)
        score = map_fidelity(np.asarray(synth.image(i)), classes, colours)
        name = real.legend.names[dominant_class(classes, k)]
        # None (JSON null): the map has no class the real set gives a colour to
        fidelity = None if math.isnan(score) else score
        per_map.append({"file": synth.samples[i].key, "landscape": name, "fidelity": fidelity})
        by_type.setdefault(name, []).append(score)
    scores = [r["fidelity"] for r in per_map]
    return {
        "mean": _mean(scores),
        "chance": 1.0 / int((~np.isnan(colours[:, 0])).sum()),
        "per_landscape": {n: _mean(v) for n, v in sorted(by_type.items())},
        "class_colours": {
            n: None if np.isnan(c[0]) else [round(float(v), 2) for v in c]
            for n, c in zip(real.legend.names, colours, strict=True)
        },
        "per_map": per_map,
    }


def landscapes(ds: ImageDataset, how: str) -> list[str]:
    """Landscape type of every sample: dominant map class, or its label's class name."""
    if how == "dominant" and isinstance(ds, PairedDataset) and ds.legend is not None:
        k = len(ds.legend)
        return [ds.legend.names[dominant_class(ds.map(i), k)] for i in range(len(ds))]
    return [ds.class_names[s.label] for s in ds.samples]


def paired_report(
    synth: ImageDataset,
    reals: dict[str, ImageDataset],
    *,
    features: str,
    landscape: str = "dominant",
    batch_size: int = 64,
    device: str | None = None,
    precision: str = "auto",
    use_cache: bool = True,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """FID of ``synth`` against each real set (``{"train": ..., "val": ...}``), overall and per
    landscape type, plus per-map fidelity when ``synth`` and the training set carry maps."""
    from geosynth.features.resolve import resolve_embeddings

    if landscape not in ("dominant", "label"):
        raise GeosynthError(f"landscape {landscape}: expected dominant or label")
    notes: list[str] = []

    def embed(ds: ImageDataset):
        return resolve_embeddings(
            ds.source,
            features=features,
            batch_size=batch_size,
            device=device,
            precision=precision,
            use_cache=use_cache,
            track=track,
            log=log,
            dataset=ds,
        ).embeddings

    def types(ds: ImageDataset) -> list[str]:
        if landscape == "dominant" and not isinstance(ds, PairedDataset):
            notes.append(f"{ds.source} has no maps: its landscape types are its labels")
        return landscapes(ds, landscape)

    e_s, t_s = embed(synth), np.array(types(synth))
    out: dict[str, Any] = {"landscape": landscape, "n_synthetic": len(synth), "fid": {}}
    for role, real in reals.items():
        e_r, t_r = embed(real), np.array(types(real))
        section: dict[str, Any] = {"n_real": len(real), "overall": fid(e_r, e_s).to_dict()}
        per: dict[str, Any] = {}
        for name in sorted(set(t_s.tolist()) | set(t_r.tolist())):
            r, s = e_r[t_r == name], e_s[t_s == name]
            per[name] = (
                fid(r, s).to_dict()
                if min(r.shape[0], s.shape[0]) >= 2
                else {"value": None, "n_real": int(r.shape[0]), "n_synthetic": int(s.shape[0])}
            )
        section["per_landscape"] = per
        out["fid"][role] = section
    train = reals.get("train")
    if isinstance(synth, PairedDataset) and isinstance(train, PairedDataset):
        out["map_fidelity"] = fidelity_report(synth, train, track)
    else:
        notes.append("per-map fidelity needs maps in SYNTH and REAL: skipped")
    out["notes"] = notes
    return out


def paired_evaluation(
    synthetic: str,
    real: str,
    opts: Any,
    *,
    val: str | None = None,
    real_maps: Path | None = None,
    val_maps: Path | None = None,
    landscape: str = "dominant",
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Seed 004's report from paths, as ``geosynth evaluate`` makes it: the synthetic pairs
    (``opts.split``) against REAL (``opts.real_split``, its maps beside it or ``real_maps``) and
    VAL (``val_maps``), with ``opts`` an :class:`geosynth.metrics.evaluation.EvalOptions`."""
    from geosynth.data import load_dataset
    from geosynth.data.paired import attach_maps, has_maps

    def open_set(source: str, part: str | None, maps: Path | None, arg: str) -> ImageDataset:
        ds = load_dataset(source, split=part, classes=opts.classes)
        if maps is not None or has_maps(source, part):
            ds = attach_maps(ds, maps, arg=arg)
        return ds

    reals = {"train": open_set(real, opts.real_split, real_maps, "real_maps")}
    if val is not None:
        reals["val"] = open_set(val, None, val_maps, "val_maps")
    return paired_report(
        open_set(synthetic, opts.split, None, "synthetic"),
        reals,
        features=opts.features,
        landscape=landscape,
        batch_size=opts.batch_size,
        device=opts.device,
        precision=opts.precision,
        use_cache=opts.use_cache,
        track=track,
        log=log,
    )
