"""Per-class pixel statistics: the low-frequency colour cue that signal leakage is about."""

from __future__ import annotations

import numpy as np

from geosynth.data.dataset import ImageDataset
from geosynth.progress import Track, no_track


def class_color_stats(
    ds: ImageDataset,
    track: Track = no_track,
) -> list[dict[str, object]]:
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
