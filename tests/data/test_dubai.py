"""The real Dubai scenes (../shared/data/aerial-seg/dubai) as a segmentation dataset, with the
two quirks of the real data: black pixels no class names, and a shipped classes.json whose
colours the masks do not use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _black_pixels(mask: Path) -> int:
    rgb = np.asarray(Image.open(mask).convert("RGB"))
    return int((rgb == 0).all(-1).sum())


def test_readme_colours_stop_at_black_naming_file_and_count(cli, dubai, dubai_legend) -> None:
    r = cli("data", "info", dubai, "--map-legend", dubai_legend)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    m = re.search(r"error: (.+\.png): colour #000000 \(0, 0, 0\) in (\d+) pixel", r.err)
    assert m, r.err
    assert _black_pixels(Path(m.group(1))) == int(m.group(2)) > 0


def test_shipped_classes_json_names_the_first_unknown_colour(cli, dubai) -> None:
    r = cli("data", "info", dubai)  # the dataset's own classes.json is its legend by default
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    shipped = json.loads((dubai / "classes.json").read_text())
    m = re.search(r"(Tile 1/masks/image_part_001.png): colour (#[0-9A-F]{6}) ", r.err)
    assert m and "classes.json" in r.err, r.err
    assert m.group(2) not in {c["color"].upper() for c in shipped["classes"]}
    first = np.asarray(Image.open(dubai / m.group(1)).convert("RGB"))[0, 0]
    assert m.group(2) == "#{:02X}{:02X}{:02X}".format(*first)  # the first pixel's colour


def _check_fractions(report: dict, dubai: Path, tiles: list[str]) -> None:
    masks = report["masks"]
    names = [c["class_name"] for c in masks["classes"]]
    assert names == ["Building", "Land (unpaved area)", "Road", "Vegetation", "Water", "Unlabeled"]
    files = [f for t in tiles for f in sorted((dubai / t / "masks").glob("*.png"))]
    black = sum(_black_pixels(f) for f in files)
    total = sum(np.prod(Image.open(f).size) for f in files)
    assert masks["pixels"] == total and masks["ignored_pixels"] == black > 0
    assert masks["ignored_fraction"] == pytest.approx(black / total)
    assert sum(c["fraction"] for c in masks["classes"]) + masks["ignored_fraction"] == (
        pytest.approx(1.0)
    )
    road = np.array([0x6E, 0xC1, 0xE4])
    roads = sum(
        int((np.asarray(Image.open(f).convert("RGB")) == road).all(-1).sum()) for f in files
    )
    assert masks["classes"][2]["pixels"] == roads
    assert sum(masks["sizes"].values()) == len(files)


def test_black_mapped_to_ignore_gives_fractions_and_ignored_share(cli, dubai, dubai_legend) -> None:
    tiles = ["Tile 2", "Tile 3"]  # palette and RGB masks; Tile 3 holds black pixels
    r = cli("data", "info", dubai, "--classes", ",".join(tiles), "--map-legend", dubai_legend,
            "--ignore", "#000000", "--json")  # fmt: skip
    assert r.code == 0, r.err
    _check_fractions(json.loads(r.out), dubai, tiles)


@pytest.mark.slow
def test_whole_dataset_info_with_black_ignored(cli, dubai, dubai_legend) -> None:
    r = cli("data", "info", dubai, "--map-legend", dubai_legend, "--ignore", "#000000", "--json")
    assert r.code == 0, r.err
    tiles = sorted(p.name for p in dubai.iterdir() if p.is_dir())
    _check_fractions(json.loads(r.out), dubai, tiles)
    r = cli("data", "info", dubai, "--map-legend", dubai_legend, "--ignore", "#000000")
    assert r.code == 0 and "Unlabeled" in r.out and "(ignored: #000000)" in r.out
