"""Deterministic, stratified K-shot sampling.

Each class draws from its own random stream, seeded by (seed, class name), over its samples sorted
by key. Hence the same seed gives the same files whatever the file system order, adding or removing
another class does not change a class's draw, and a smaller K is a prefix of a larger K's draw
(8-shot is a subset of 16-shot for the same seed).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from geosynth.errors import GeosynthError


def class_rng(seed: int, class_name: str) -> np.random.Generator:
    """The random stream of one class; crc32 makes the name's contribution stable across runs."""
    return np.random.default_rng([seed, zlib.crc32(class_name.encode("utf-8"))])


def few_shot_indices(
    labels: Sequence[int],
    keys: Sequence[str],
    class_names: Sequence[str],
    shots: int,
    seed: int,
) -> list[int]:
    """Indices of ``shots`` samples per class, returned sorted by class then key."""
    if shots < 1:
        raise GeosynthError(f"shots={shots}: must be at least 1")
    by_class: dict[int, list[int]] = {c: [] for c in range(len(class_names))}
    for i, label in enumerate(labels):
        by_class[int(label)].append(i)
    chosen: list[int] = []
    for c, members in by_class.items():
        name = class_names[c]
        if len(members) < shots:
            raise GeosynthError(f"shots={shots}: class '{name}' has only {len(members)} images")
        members.sort(key=lambda i: keys[i])
        order = class_rng(seed, name).permutation(len(members))[:shots]
        chosen.extend(sorted((members[j] for j in order), key=lambda i: keys[i]))
    return chosen
