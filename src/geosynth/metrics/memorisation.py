"""Memorisation: which generated images are near-copies of a training image.

Few-shot LoRAs trained for hundreds of epochs on 16 images reproduce some of them. A copy may
come back flipped, rotated, shifted by a few pixels or re-encoded, so images are compared in a
small descriptor that ignores those changes: the centre crop (``CROP`` of the side),
area-averaged to ``SIZE`` x ``SIZE`` RGB, each channel centred and the whole scaled by its RMS
contrast (+ ``EPS``, so that flat images are not all noise). Each training image enters as 392
variants (the 8 flips/rotations of the square times 49 crops shifted by up to ``SHIFT`` pixels),
a generated image's distance to it is the RMS difference to its nearest variant.

Whether that distance makes a copy depends on how alike the images of the set are anyway
(featureless water images are close to each other without being copies), so a copy is judged
*relative to the training set's own spacing*: image x copies training image j when
``d(x, j) <= threshold * s_j``, with ``s_j`` the distance from j to the nearest variant of any
other training image. The same functions serve ``geosynth filter`` (drop the copies) and
``geosynth evaluate --train`` (report their share per class); docs/filter.md says how the
default threshold was chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geosynth.errors import GeosynthError

SIZE = 16  # descriptor side (pixels)
CROP = 7 / 8  # the compared crop, as a fraction of the image side
SHIFT = 3  # the largest shift of a training crop, in pixels
#: A generated image at most this fraction of a training image's spacing away from it is a copy
#: (docs/filter.md: distinct real EuroSAT images lie at 0.70 and above, re-encoded, flipped and
#: shifted copies mostly below 0.3).
COPY_THRESHOLD = 0.5
EPS = 0.01
NSHIFT = (2 * SHIFT + 1) ** 2
VARIANTS = 8 * NSHIFT
IDENTITY = NSHIFT // 2  # the unshifted, untransformed variant
#: the names of the 8 transforms (index into the variant axis // 9)
TRANSFORMS = ("id", "rot90", "rot180", "rot270", "flip", "flip-rot90", "flip-rot180", "flip-rot270")


def _pixels(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def _crop(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The ``CROP`` square moved (dy, dx) pixels from the centre."""
    _, h, w = x.shape
    ch, cw = max(1, round(h * CROP)), max(1, round(w * CROP))
    y0 = min(max(0, (h - ch) // 2 + dy), h - ch)
    x0 = min(max(0, (w - cw) // 2 + dx), w - cw)
    return x[:, y0 : y0 + ch, x0 : x0 + cw]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """Descriptors of a batch of crops (B x 3 x h x w -> B x 3 * SIZE^2)."""
    y = F.adaptive_avg_pool2d(x, SIZE)
    y = y - y.mean(dim=(2, 3), keepdim=True)
    return (y / (y.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + EPS)).flatten(1)


def describe(image: Image.Image) -> torch.Tensor:
    """A generated image's descriptor: its centre crop at ``SIZE`` x ``SIZE`` (3 * SIZE^2)."""
    return _pool(_crop(_pixels(image), 0, 0).unsqueeze(0))[0]


def describe_variants(image: Image.Image) -> torch.Tensor:
    """A training image's ``VARIANTS`` descriptors: 8 flips/rotations x 49 shifted crops."""
    x = _pixels(image)
    shifts = range(-SHIFT, SHIFT + 1)
    out = []
    for flip in (False, True):
        base = x.flip(-1) if flip else x
        for k in range(4):
            t = torch.rot90(base, k, dims=(1, 2))
            out.append(_pool(torch.stack([_crop(t, dy, dx) for dy in shifts for dx in shifts])))
    return torch.cat(out)


@dataclass
class Matches:
    """For each generated image: the training image it is relatively closest to (index), the
    distance, that distance over the training image's spacing (the ratio a copy is judged by)
    and the transform that matched."""

    distance: torch.Tensor  # float64 (N,)
    ratio: torch.Tensor  # float64 (N,)
    index: torch.Tensor  # int64 (N,)
    transform: list[str]


def _sqdist(rows: torch.Tensor, flat: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    d2 = torch.addmm(sq.unsqueeze(0), rows, flat.T, beta=1.0, alpha=-2.0)
    return d2.add_(rows.pow(2).sum(1, keepdim=True)).clamp_min_(0)


def spacing(train: torch.Tensor, *, block: int = 64) -> torch.Tensor:
    """Each training image's distance to the nearest variant of any *other* training image: how
    far apart distinct images of this set are around it (M x V x D -> M)."""
    m, v, d = train.shape
    if m < 2:
        raise GeosynthError(f"train: {m} image(s); copy detection needs at least 2 to compare")
    flat = train.reshape(m * v, d).float()
    sq = flat.pow(2).sum(1)
    centre = train[:, IDENTITY].float()
    out = torch.empty(m, dtype=torch.float64)
    for start in range(0, m, block):
        rows = centre[start : start + block]
        d2 = _sqdist(rows, flat, sq).view(len(rows), m, v).amin(dim=2)
        own = torch.arange(start, start + len(rows))
        d2[torch.arange(len(rows)), own] = float("inf")
        out[start : start + len(rows)] = (d2.amin(dim=1).double() / d).sqrt()
    return out


def nearest_training(
    synth: torch.Tensor,
    train: torch.Tensor,
    *,
    block: int = 64,
    space: torch.Tensor | None = None,
) -> Matches:
    """For each generated descriptor (``synth``: N x D) the training image (``train``:
    M x V x D) with the smallest distance-to-spacing ratio, minimised over its V variants.
    ``space``: ``spacing(train)`` when the caller has it (it costs M x M x V comparisons)."""
    m, v, d = train.shape
    space = (spacing(train) if space is None else space).clamp_min(1e-6)
    flat = train.reshape(m * v, d).float()
    sq = flat.pow(2).sum(1)
    n = synth.shape[0]
    dist, ratio = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    index = torch.empty(n, dtype=torch.int64)
    transform: list[str] = []
    for start in range(0, n, block):
        rows = synth[start : start + block].float()
        d2, var = _sqdist(rows, flat, sq).view(len(rows), m, v).min(dim=2)
        r = (d2.double() / d).sqrt() / space.unsqueeze(0)
        best = r.argmin(dim=1)
        pick = torch.arange(len(rows))
        chosen = best * v + var[pick, best]
        exact = (flat[chosen].double() - rows.double()).pow(2).sum(1)
        dist[start : start + len(rows)] = (exact / d).sqrt()
        ratio[start : start + len(rows)] = dist[start : start + len(rows)] / space[best]
        index[start : start + len(rows)] = best
        transform.extend(TRANSFORMS[int(x) // NSHIFT] for x in var[pick, best])
    return Matches(dist, ratio, index, transform)


def describe_all(
    images: Callable[[int], Image.Image],
    n: int,
    *,
    variants: bool,
    track: Callable[..., Any] | None = None,
    description: str = "",
) -> torch.Tensor:
    """Descriptors of ``images(0) .. images(n - 1)`` (N x D, or N x VARIANTS x D)."""
    fn = describe_variants if variants else describe
    indices: Any = range(n) if track is None else track(range(n), n, description)
    out = [fn(images(i)) for i in indices]
    if not out:
        return torch.empty((0, VARIANTS, 3 * SIZE * SIZE) if variants else (0, 3 * SIZE * SIZE))
    return torch.stack(out)


def memorisation_summary(
    matches: Matches,
    labels: Sequence[int],
    class_names: Sequence[str],
    threshold: float = COPY_THRESHOLD,
) -> dict[str, Any]:
    """Share of generated images that copy a training image (ratio at most ``threshold``),
    overall and per class (of the generated image)."""
    if not threshold > 0:
        raise GeosynthError(f"copy_threshold={threshold}: must be above 0")
    is_copy = matches.ratio <= threshold
    per_class: dict[str, Any] = {}
    lab = torch.as_tensor(list(labels))
    for c, name in enumerate(class_names):
        mask = lab == c
        n = int(mask.sum())
        if n == 0:
            continue
        k = int(is_copy[mask].sum())
        per_class[name] = {
            "images": n,
            "copies": k,
            "rate": k / n,
            "median_ratio": float(matches.ratio[mask].median()),
        }
    n = len(lab)
    return {
        "threshold": threshold,
        "space": f"distance / training spacing; normalised {SIZE}x{SIZE} RGB of the {CROP:.3f} "
        f"centre crop, 8 flips/rotations x shifts up to {SHIFT} px",
        "images": n,
        "copies": int(is_copy.sum()),
        "rate": float(is_copy.sum()) / n if n else None,
        "per_class": per_class,
    }


def memorisation(
    synth: Any, train: Any, *, threshold: float = COPY_THRESHOLD, track: Any = None
) -> dict[str, Any]:
    """``memorisation_summary`` of two :class:`~geosynth.data.ImageDataset` (what ``evaluate
    --train`` reports)."""
    s = describe_all(synth.image, len(synth), variants=False, track=track, description="synth")
    t = describe_all(train.image, len(train), variants=True, track=track, description="train")
    summary = memorisation_summary(
        nearest_training(s, t), synth.labels, synth.class_names, threshold
    )
    summary["train"] = train.source
    summary["train_images"] = len(train)
    return summary


def memorisation_section(synth: Any, train: str, threshold: float, track: Any = None) -> Any:
    """``evaluate``'s ``memorisation`` entry: ``synth`` (an ImageDataset, None for an
    embeddings file) against the training images at ``train``."""
    from geosynth.data import load_dataset

    if synth is None:
        raise GeosynthError(f"train={train!r}: needs SYNTH as images, not an embeddings file")
    tds = load_dataset(train)
    if not set(tds.class_names) & set(synth.class_names):
        raise GeosynthError(
            f"train={train!r}: no class in common with the synthetic set (it has "
            f"{', '.join(tds.class_names)}; the synthetic set {', '.join(synth.class_names)})"
        )
    return memorisation(synth, tds, threshold=threshold, track=track)
