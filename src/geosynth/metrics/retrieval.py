"""Does the metadata steer? A retrieval rank for sets made with ``generate --metadata-from REAL``.

Each such image records the key of the real sample whose metadata it asked for
(``metadata_from``, in the set's ``metadata.jsonl``). For every generated image with a pair in
REAL, the real images are ranked by cosine similarity of their features to it (the features of
the ``evaluate`` run); the rank of its own real sample is 1 when that sample is the most similar.
Reported among all real images and among those of its class (the class prompt alone already
narrows the search to its class; what metadata adds shows within it), with the rank a random
order gives, ``(N + 1) / 2``. The same numbers for a set generated with ``--metadata-shuffle``
(each image asks for another sample's metadata but keeps its pair) are the control: metadata
that steers gives better ranks for the true set than for the shuffled one.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from geosynth.artifacts.typed import Embeddings
from geosynth.data.dataset import ImageDataset

PAIR_COLUMN = "metadata_from"


def pairs_of(ds: ImageDataset) -> dict[str, tuple[str, bool]]:
    """Generated file key -> (its real pair's key, whether its metadata was shuffled), from the
    set's ``metadata.jsonl``; empty for sets that do not record pairs."""
    path = Path(str(ds.source)) / "metadata.jsonl"
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, bool]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if isinstance(row, dict) and row.get(PAIR_COLUMN):
            out[str(row["file_name"])] = (
                str(row[PAIR_COLUMN]),
                bool(row.get("metadata_shuffled", False)),
            )
    return out


def _summary(ranks: list[int], pool: list[int]) -> dict[str, Any]:
    return {
        "mean_rank": statistics.fmean(ranks),
        "median_rank": statistics.median(ranks),
        "top1": sum(r == 1 for r in ranks) / len(ranks),
        "top5": sum(r <= 5 for r in ranks) / len(ranks),
        "chance_mean_rank": statistics.fmean((n + 1) / 2 for n in pool),
        "pool": statistics.fmean(pool),
    }


def retrieval_section(
    ds_s: ImageDataset, emb_s: Embeddings, emb_r: Embeddings
) -> dict[str, Any] | None:
    """The retrieval-rank section (module docstring), or None when SYNTHETIC records no pairs
    or the embeddings carry no row keys."""
    pairs = pairs_of(ds_s)
    if not pairs or emb_s.ids is None or emb_r.ids is None:
        return None
    real_row = {k: i for i, k in enumerate(emb_r.ids)}
    s = torch.nn.functional.normalize(emb_s.embeddings.double(), dim=1)
    r = torch.nn.functional.normalize(emb_r.embeddings.double(), dim=1)
    labels = emb_r.labels
    ranks: list[int] = []
    class_ranks: list[int] = []
    class_pool: list[int] = []
    shuffled: set[bool] = set()
    unpaired = 0
    for i, key in enumerate(emb_s.ids):
        pair = pairs.get(key)
        if pair is None or pair[0] not in real_row:
            unpaired += 1
            continue
        j = real_row[pair[0]]
        shuffled.add(pair[1])
        sims = r @ s[i]
        ranks.append(1 + int((sims > sims[j]).sum()))
        if labels is not None:
            same = labels == labels[j]
            class_ranks.append(1 + int((sims[same] > sims[j]).sum()))
            class_pool.append(int(same.sum()))
    if not ranks:
        return None
    out: dict[str, Any] = {
        "images": len(ranks),
        "unpaired": unpaired,
        "shuffled": next(iter(shuffled)) if len(shuffled) == 1 else None,
        "all": _summary(ranks, [len(real_row)] * len(ranks)),
        "within_class": _summary(class_ranks, class_pool) if class_ranks else None,
        "similarity": "cosine of the evaluate features",
    }
    return out
