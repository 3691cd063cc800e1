"""``data tile`` on image/mask pairs: the same windows for both, masks cropped bit for bit in
their own encoding, mostly-ignored chips skipped, a pair dataset that reads back, and bad input
that writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.data import load_dataset


@pytest.fixture
def dubai_subset(dubai: Path, tmp_path: Path) -> Path:
    """Two real pairs of Tile 2 (palette masks) and two of Tile 3 (RGB masks, one with black
    pixels), in the dataset's own layout."""
    root = tmp_path / "dubai"
    for tile, parts in (("Tile 2", (1, 4)), ("Tile 3", (5, 6))):
        for sub, suffix in (("images", ".jpg"), ("masks", ".png")):
            (root / tile / sub).mkdir(parents=True)
            for k in parts:
                name = f"image_part_{k:03d}{suffix}"
                shutil.copy(dubai / tile / sub / name, root / tile / sub / name)
    return root


def test_dubai_chip_masks_are_bit_exact_crops(cli, dubai_subset, dubai_legend, tmp_path) -> None:
    out = tmp_path / "chips"
    r = cli("data", "tile", dubai_subset, "--size", "160", "--stride", "150", "--map-legend",
            dubai_legend, "--ignore", "#000000", "--out", out, "--json")  # fmt: skip
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert summary["chips"] == len(rows) > 0 and summary["skipped_ignore"] == 0
    modes = set()
    opened: dict[str, tuple[Image.Image, np.ndarray]] = {}

    def source(path: str) -> tuple[Image.Image, np.ndarray]:
        if path not in opened:
            img = Image.open(path)
            opened[path] = (img, np.asarray(img))
        return opened[path]

    for row in rows:
        src, src_pixels = source(row["source_mask"])
        chip = Image.open(out / row["mask_file_name"])
        modes.add(chip.mode)
        assert chip.mode == src.mode and chip.size == (160, 160)
        window = src_pixels[row["row"] : row["row"] + 160, row["col"] : row["col"] + 160]
        assert np.array_equal(np.asarray(chip), window)
        if src.mode == "P":
            assert chip.getpalette() == src.getpalette()
        image = source(row["source"])[1]
        crop = image[row["row"] : row["row"] + 160, row["col"] : row["col"] + 160]
        assert np.array_equal(np.asarray(Image.open(out / row["file_name"])), crop)
    assert modes == {"P", "RGB"}
    # the pair dataset reads back, with the legend (black ignored), in geosynth and in datasets
    ds = load_dataset(out)
    assert ds.class_names == ["Tile 2", "Tile 3"] and len(ds) == len(rows)
    assert ds.legend is not None and ds.legend.ignore_colors == ((0, 0, 0),)
    black = [i for i, row in enumerate(rows) if row["ignore_fraction"] > 0]
    assert black and (ds.map(ds.keys.index(rows[black[0]]["file_name"])) == -1).any()
    import datasets

    hf = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert hf.features["label"].names == ["Tile 2", "Tile 3"] and len(hf) == len(rows)
    first = hf[0]
    assert np.array_equal(
        np.asarray(first["mask"]), np.asarray(Image.open(out / rows[0]["mask_file_name"]))
    )


def test_mostly_ignored_chips_are_skipped(cli, dubai_subset, dubai_legend, tmp_path) -> None:
    # Land (the dominant class) ignored: chips more than 60 % land are skipped and counted
    out = tmp_path / "chips"
    r = cli("data", "tile", dubai_subset / "Tile 2", "--size", "256", "--map-legend", dubai_legend,
            "--ignore", "Land (unpaved area)", "--max-ignore", "0.6", "--out", out, "--json")  # fmt: skip
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["skipped_ignore"] > 0 and summary["chips"] + summary["skipped_ignore"] == 4
    legend = json.loads((out / "legend.json").read_text())
    assert "Land (unpaved area)" not in [c["name"] for c in legend["classes"]]
    for row in (json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()):
        assert row["ignore_fraction"] <= 0.6


def test_geotiff_pairs_keep_values_and_georeference(cli, tmp_path) -> None:
    from geosynth.data.raster import Raster, read_raster, write_raster

    root = tmp_path / "geo"
    rng = np.random.default_rng(0)
    transform = (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    image = rng.integers(0, 12000, (4, 40, 48), dtype=np.uint16)
    mask = rng.integers(0, 3, (1, 40, 48)).astype(np.uint8)
    mask[0, :20, :24] = 255  # a quarter unlabelled
    for sub, arr in (("images", image), ("masks", mask)):
        (root / sub).mkdir(parents=True)
        write_raster(root / sub / "s.tif", Raster(arr, crs="EPSG:32631", transform=transform))
    legend = {"classes": [{"name": n} for n in ("a", "b", "c")], "ignore": [255]}
    (root / "legend.json").write_text(json.dumps(legend))
    out = tmp_path / "chips"
    r = cli("data", "tile", root, "--size", "16", "--max-ignore", "0.5", "--out", out)
    assert r.code == 0, r.err
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 6 - 1  # 2 x 3 windows, the top-left one all ignored
    for row in rows:
        r0, c0 = row["row"], row["col"]
        img, msk = read_raster(out / row["file_name"]), read_raster(out / row["mask_file_name"])
        assert np.array_equal(img.array, image[:, r0 : r0 + 16, c0 : c0 + 16])
        assert np.array_equal(msk.array, mask[:, r0 : r0 + 16, c0 : c0 + 16])
        assert img.transform == msk.transform == (10.0, 0.0, 500000.0 + 10 * c0, 0.0, -10.0,
                                                  4000000.0 - 10 * r0)  # fmt: skip
        assert img.crs == "EPSG:32631" and img.dtype == "uint16"


def test_bad_pairs_write_nothing(cli, tmp_path, dubai_legend) -> None:
    def scenes(name: str) -> Path:
        root = tmp_path / name
        for sub in ("images", "masks"):
            (root / sub).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "images" / f"{k}.jpg")
            Image.new("RGB", (32, 32), (0x3C, 0x10, 0x98)).save(root / "masks" / f"{k}.png")
        return root

    orphan = scenes("orphan")
    (orphan / "masks" / "2.png").write_bytes((orphan / "masks" / "0.png").read_bytes())
    small = scenes("small")
    Image.new("RGB", (16, 32), (0x3C, 0x10, 0x98)).save(small / "masks" / "1.png")
    unknown = scenes("unknown")
    Image.new("RGB", (32, 32), (1, 2, 3)).save(unknown / "masks" / "1.png")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"classes": [{"name": "a", "color": "#3C1098"},
                                           {"name": "b", "color": [60, 16, 152]}]}))  # fmt: skip
    cases = [
        (orphan, dubai_legend, "2.png: a mask with no image"),
        (small, dubai_legend, "1.png: mask is 16x32 but its image"),
        (unknown, dubai_legend, "1.png: colour #010203 (1, 2, 3) in 1024 pixel(s)"),
        (scenes("dupe"), dup, "colour #3C1098 is given to class 'a' and to class 'b'"),
    ]
    for root, legend, msg in cases:
        for command in (["data", "tile", root, "--size", "16"], ["data", "info", root]):
            out = tmp_path / f"out-{root.name}"
            extra = ["--out", out] if command[1] == "tile" else []
            r = cli(*command, "--map-legend", legend, *extra)
            assert r.code == 2 and msg in r.err, (command, r.err)
            assert len(r.err.strip().splitlines()) == 1, r.err
            assert not out.exists() and not out.with_name(out.name + ".parts").exists()
