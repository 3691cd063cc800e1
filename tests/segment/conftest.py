"""Real Dubai chips for segmentation tests: TRAIN, VAL and TEST cut from different tiles (so
TEST shares no scene with training or selection), with the README's colours and black pixels
ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: role -> (tile, image parts, stride): one scene per split, 64 px chips.
SPLITS = {
    "train": ("Tile 2", (4,), 128),
    "val": ("Tile 3", (6,), 200),
    "test": ("Tile 1", (2,), 240),
}


@pytest.fixture(scope="session")
def dubai_chips(dubai: Path, dubai_legend: Path, tmp_path_factory) -> dict[str, Path]:
    from geosynth import tile_scenes

    root = tmp_path_factory.mktemp("dubai-chips")
    out = {}
    for role, (tile, parts, stride) in SPLITS.items():
        scenes = root / "scenes" / role / tile
        for sub, suffix in (("images", ".jpg"), ("masks", ".png")):
            (scenes / sub).mkdir(parents=True)
            for k in parts:
                name = f"image_part_{k:03d}{suffix}"
                shutil.copy(dubai / tile / sub / name, scenes / sub / name)
        out[role] = root / role
        tile_scenes([scenes], out[role], 32, stride, map_legend=dubai_legend, ignore=["#000000"])
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine a second
    OpenMP thread mostly waits for a busy core (10x slower steps under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
