"""Per-class pixel statistics: the low-frequency colour cue that signal leakage is about."""

from __future__ import annotations

from typing import Any

import numpy as np

from geosynth.data.dataset import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


def class_color_stats(
    ds: ImageDataset,
    track: Track = no_track,
) -> list[dict[str, Any]]:
    """Decode every image once; per class, the mean and std over images of the per-image channel
    mean (RGB in [0, 1]), and the image sizes seen. Unreadable images raise a named error."""
    k = len(ds.class_names)
    sums = np.zeros((k, 3))
    sq = np.zeros((k, 3))
    counts = np.zeros(k, dtype=np.int64)
    sizes: list[set[tuple[int, int]]] = [set() for _ in range(k)]
    for i in track(range(len(ds)), len(ds), "reading images"):
        img = ds.image(i)
        label = ds.samples[i].label
        m = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0) / 255.0
        sums[label] += m
        sq[label] += m * m
        counts[label] += 1
        sizes[label].add(img.size)
    rows = []
    for c, name in enumerate(ds.class_names):
        n = max(int(counts[c]), 1)
        mean = sums[c] / n
        std = np.sqrt(np.maximum(sq[c] / n - mean**2, 0.0))
        rows.append(
            {
                "class_name": name,
                "prompt_name": ds.prompt_names[c],
                "images": int(counts[c]),
                "mean_rgb": [round(float(v), 4) for v in mean],
                "std_rgb": [round(float(v), 4) for v in std],
                "sizes": sorted(f"{w}x{h}" for w, h in sizes[c]),
            }
        )
    return rows


def band_stats(ds: ImageDataset, track: Track = no_track) -> dict[str, Any]:
    """Per-band statistics over every image in native units (the file's values, before any
    radiometry): mean, std, min, max over valid pixels, and the count of NaN/nodata pixels.

    Also the dtype, band names and CRSs seen; images that differ in band count or dtype raise.
    """
    from geosynth.data.bandnames import band_names
    from geosynth.data.writer import mixed_message

    first: tuple[int, str, str] | None = None
    # per-band accumulators, sized by the first image's band count
    total: Any = None
    sq: Any = None
    lo: Any = None
    hi: Any = None
    valid_n: Any = None
    invalid_n: Any = None
    names: list[str] | None = None
    crss: set[str] = set()
    nodata = None
    for i in track(range(len(ds)), len(ds), "reading bands"):
        r = ds.raster(i)
        where = ds.describe(ds.samples[i])
        if first is None:
            first, nodata = (r.count, r.dtype, where), r.nodata
            names = band_names(r)  # the file's names, else its layout's
            total, sq = np.zeros(r.count), np.zeros(r.count)
            lo, hi = np.full(r.count, np.inf), np.full(r.count, -np.inf)
            valid_n, invalid_n = np.zeros(r.count, np.int64), np.zeros(r.count, np.int64)
        elif (r.count, r.dtype) != first[:2]:
            raise GeosynthError(mixed_message(where, r, first))
        if r.crs:
            crss.add(r.crs)
        ok = r.valid_mask()
        for b in range(r.count):
            v = r.array[b][ok[b]].astype(np.float64)
            valid_n[b] += v.size
            invalid_n[b] += ok[b].size - v.size
            if v.size:
                total[b] += v.sum()
                sq[b] += (v * v).sum()
                lo[b] = min(lo[b], v.min())
                hi[b] = max(hi[b], v.max())
    assert first is not None and total is not None and valid_n is not None
    rows = []
    for b in range(first[0]):
        n = max(int(valid_n[b]), 1)
        mean = total[b] / n
        rows.append(
            {
                "band": b,
                "name": names[b] if names else None,
                "mean": float(mean),
                "std": float(np.sqrt(max(sq[b] / n - mean * mean, 0.0))),
                "min": float(lo[b]) if valid_n[b] else None,
                "max": float(hi[b]) if valid_n[b] else None,
                "invalid_pixels": int(invalid_n[b]),
            }
        )
    return {
        "dtype": first[1],
        "count": first[0],
        "nodata": nodata,
        "crs": sorted(crss),
        "bands": rows,
    }


def mask_stats(ds: Any, track: Track = no_track) -> dict[str, Any]:
    """Masks of a segmentation dataset (a :class:`~geosynth.data.pairdata.PairedDataset`): per
    legend class its pixels, their fraction of all mask pixels and the number of masks holding
    it; the ignored pixels and their share; the mask sizes. Every mask is read through the
    legend (an unknown colour is an error) and checked against its image's size. Without a
    legend: the values or colours the masks hold, with their pixel counts, to write one from."""
    from collections import Counter

    from geosynth.data.legend import hex_color
    from geosynth.data.masks import class_counts, classify, raw_counts

    sizes: Counter[str] = Counter()
    legend = ds.legend
    if legend is None:
        seen: Counter[str] = Counter()
        for i in track(range(len(ds)), len(ds), "reading masks"):
            mask = ds.decoded_mask(i)
            ds.check_size(i, mask.shape)
            sizes[f"{mask.shape[1]}x{mask.shape[0]}"] += 1
            seen.update(dict(raw_counts(mask, limit=1 << 20)))
        return {"legend": None, "sizes": dict(sorted(sizes.items())), "found": seen.most_common(64)}
    k = len(legend)
    pixels = np.zeros(k, np.int64)
    holding = np.zeros(k, np.int64)
    ignored = 0
    for i in track(range(len(ds)), len(ds), "reading masks"):
        mask = ds.decoded_mask(i)
        ds.check_size(i, mask.shape)
        sizes[f"{mask.shape[1]}x{mask.shape[0]}"] += 1
        counts, n_ignored = class_counts(classify(mask, legend, ds.mask_name(i)), k)
        pixels += counts
        holding += counts > 0
        ignored += n_ignored
    total = max(int(pixels.sum()) + ignored, 1)
    return {
        "legend": legend.where,
        "ignore": [*legend.ignore_values, *(hex_color(c) for c in legend.ignore_colors)],
        "masks": len(ds),
        "pixels": int(pixels.sum()) + ignored,
        "classes": [
            {
                "class_name": name,
                "color": hex_color(color),
                "pixels": int(pixels[c]),
                "fraction": float(pixels[c] / total),
                "masks": int(holding[c]),
            }
            for c, (name, color) in enumerate(zip(legend.names, legend.colors, strict=True))
        ],
        "ignored_pixels": ignored,
        "ignored_fraction": float(ignored / total),
        "sizes": dict(sorted(sizes.items())),
    }
