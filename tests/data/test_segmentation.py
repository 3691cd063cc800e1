"""Segmentation datasets as distributed: sibling images/ + masks/ folders, tables of pairs and
Hugging Face datasets with a mask column; masks read through the legend (colours, values,
palettes, ignore), and the errors a user meets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.data import load_dataset
from geosynth.data.legend import Legend
from geosynth.data.paired import attach_maps, read_map_folder
from geosynth.errors import GeosynthError

COLORS = {"water": (0, 0, 255), "field": (0, 200, 0), "road": (128, 128, 128)}
LEGEND = {"classes": [{"name": n, "color": list(c)} for n, c in COLORS.items()]}


def _classes(seed: int, h: int = 12, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, (h, w))


def _pair(folder: Path, stem: str, classes: np.ndarray, *, suffix: str = ".png") -> None:
    """An image and its RGB mask (legend colours) under folder/images and folder/masks."""
    palette = np.array(list(COLORS.values()), np.uint8)
    for sub in ("images", "masks"):
        (folder / sub / stem).parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(len(stem)).integers(0, 255, (*classes.shape, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "images" / f"{stem}{suffix}")
    Image.fromarray(palette[classes]).save(folder / "masks" / f"{stem}.png")


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    root = tmp_path / "scenes"
    _pair(root / "north", "a", _classes(0))
    _pair(root / "north", "b", _classes(1), suffix=".jpg")
    _pair(root / "far" / "south", "deep/c", _classes(2))
    (root / "legend.json").write_text(json.dumps(LEGEND))
    return root


def test_sibling_folders_at_any_depth_read_as_pairs(pairs: Path) -> None:
    ds = load_dataset(pairs)
    assert ds.kind == "pairs" and ds.class_names == ["far/south", "north"]
    assert ds.keys == ["far/south/images/deep/c.png", "north/images/a.png", "north/images/b.jpg"]
    assert ds.legend is not None and ds.legend.names == list(COLORS)
    for i, seed in enumerate([2, 0, 1]):
        assert np.array_equal(ds.map(i), _classes(seed))
    # the pairs are a map set (seed 004): their masks, and attach_maps keeps them
    maps = read_map_folder(pairs)
    assert sorted(p.name for p in maps.maps.values()) == ["a.png", "b.png", "c.png"]
    assert attach_maps(ds).maps == ds.maps


def test_colours_the_legend_does_not_name_are_errors_unless_mapped(pairs: Path) -> None:
    mask = pairs / "north" / "masks" / "a.png"
    rgb = np.asarray(Image.open(mask)).copy()
    rgb[2:5, 3:7] = 0  # 12 black pixels, first at x=3, y=2
    Image.fromarray(rgb).save(mask)
    ds = load_dataset(pairs)
    with pytest.raises(GeosynthError) as err:
        ds.map(1)
    msg = str(err.value)
    assert msg.startswith(f"{mask}: colour #000000 (0, 0, 0) in 12 pixel(s) (first at x=3, y=2)")
    assert "\n" not in msg
    ignored = load_dataset(pairs, ignore=["#000000"]).map(1)
    assert (ignored == -1).sum() == 12 and np.array_equal(ignored[0], _classes(0)[0])
    # ... or given to a class
    legend = {**LEGEND, "classes": [*LEGEND["classes"][:2], {"name": "road", "color": "#808080",
                                                             "aliases": ["#000000"]}]}  # fmt: skip
    (pairs / "legend.json").write_text(json.dumps(legend))
    assert (load_dataset(pairs).map(1)[2:5, 3:7] == 2).all()


def test_index_masks_values_ignore_and_palettes(tmp_path: Path) -> None:
    classes = _classes(3)
    names = list(COLORS)
    legend = Legend.from_dict({**LEGEND, "ignore": [255]}, "legend")
    # greyscale class indices, 255 unlabelled
    grey = classes.astype(np.uint8)
    grey[0, 0] = 255
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    from geosynth.data.masks import read_mask

    got = read_mask(tmp_path / "grey.png", legend)
    assert got[0, 0] == -1 and np.array_equal(got.ravel()[1:], classes.ravel()[1:])
    # a colour rendering saved with a palette in another order is read by its colours
    order = [2, 0, 1]  # palette index i holds class order[i]'s colour
    p = Image.fromarray(np.array([order.index(k) for k in range(3)], np.uint8)[classes], "P")
    p.putpalette([v for k in order for v in COLORS[names[k]]])
    p.save(tmp_path / "pal.png")
    assert np.array_equal(read_mask(tmp_path / "pal.png", legend), classes)
    # a VOC-style palette that agrees with the legend: indices, with 255 ignored
    voc = Image.fromarray(grey, "P")
    voc.putpalette([v for n in names for v in COLORS[n]] + [224, 224, 192] * 253)
    voc.save(tmp_path / "voc.png")
    assert np.array_equal(read_mask(tmp_path / "voc.png", legend), got)
    # binary 0/255 masks: a class's value
    binary = Legend.from_dict(
        {"classes": [{"name": "bg"}, {"name": "building", "value": 255}]}, "b"
    )
    Image.fromarray((classes > 0).astype(np.uint8) * 255, "L").save(tmp_path / "bin.png")
    assert np.array_equal(read_mask(tmp_path / "bin.png", binary), (classes > 0).astype(int))
    with pytest.raises(GeosynthError, match=r"grey.png: mask value 255 in 1 pixel"):
        read_mask(tmp_path / "grey.png", Legend.from_dict(LEGEND, "legend"))


def test_legend_formats_and_ignore_by_class_name() -> None:
    # a dataset's own palette file: titles and hex colours (Humans in the Loop's classes.json)
    own = {"classes": [{"title": "Water", "shape": "polygon", "color": "#50E3C2"},
                       {"title": "Land", "color": "#F5A623", "geometry_config": {}}], "tags": []}  # fmt: skip
    legend = Legend.from_dict(own, "classes.json")
    assert legend.names == ["Water", "Land"] and legend.colors == [(80, 227, 194), (245, 166, 35)]
    assert Legend.from_dict(legend.to_dict(), "again") == legend
    dup = {"classes": [{"name": "a", "color": "#50E3C2"}, {"name": "b", "color": [80, 227, 194]}]}
    with pytest.raises(
        GeosynthError, match="colour #50E3C2 is given to class 'a' and to class 'b'"
    ):
        Legend.from_dict(dup, "x.json")
    dropped = Legend.from_dict(LEGEND, "l").with_ignore(["field"])
    assert dropped.names == ["water", "road"] and dropped.class_values == [0, 2]
    assert dropped.ignore_values == (1,) and dropped.ignore_colors == (COLORS["field"],)


def test_tables_of_pairs(pairs: Path, tmp_path: Path) -> None:
    rows = [
        {"image": "scenes/north/images/a.png", "mask": "scenes/north/masks/a.png", "class_name": "x"},
        {"image": "scenes/north/images/b.jpg", "mask": "scenes/north/masks/b.png", "class_name": "y"},
    ]  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "pairs.csv").write_text(
        "image,mask,class_name\n" + "".join(f"{r['image']},{r['mask']},{r['class_name']}\n" for r in rows)
    )  # fmt: skip
    for table in ("pairs.jsonl", "pairs.csv"):
        ds = load_dataset(tmp_path / table, map_legend=pairs / "legend.json")
        assert ds.kind == "pair table" and ds.class_names == ["x", "y"]
        assert np.array_equal(ds.map(1), _classes(1))
    bad = tmp_path / "bad.csv"
    bad.write_text("image,mask\nscenes/north/images/a.png,scenes/north/masks/zz.png\n")
    with pytest.raises(GeosynthError, match=r"bad.csv:2: mask .*zz.png does not exist"):
        load_dataset(bad)


def test_hugging_face_dataset_with_a_mask_column(pairs: Path, tmp_path: Path) -> None:
    import datasets

    images = [str(pairs / "north" / "images" / n) for n in ("a.png", "b.jpg")]
    masks = [str(pairs / "north" / "masks" / n) for n in ("a.png", "b.png")]
    hf = datasets.Dataset.from_dict({"image": images, "mask": masks})
    hf = hf.cast_column("image", datasets.Image()).cast_column("mask", datasets.Image())
    hf.save_to_disk(str(tmp_path / "hf"))
    (tmp_path / "hf" / "legend.json").write_text(json.dumps(LEGEND))
    ds = load_dataset(tmp_path / "hf")
    assert ds.kind == "hf" and len(ds) == 2 and ds.legend is not None
    assert np.array_equal(ds.map(1), _classes(1))
    assert ds.image(0).size == (16, 12)


def test_sizes_missing_partners_and_legend_options(pairs: Path, tmp_path: Path) -> None:
    small = pairs / "north" / "masks" / "b.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(small)
    with pytest.raises(GeosynthError, match=r"b.png: mask is 8x6 but its image .*b.jpg is 16x12"):
        load_dataset(pairs, ignore=["#000000"]).map(2)
    (pairs / "north" / "masks" / "extra.png").write_bytes(small.read_bytes())
    with pytest.raises(GeosynthError, match=r"extra.png: a mask with no image"):
        load_dataset(pairs)
    plain = tmp_path / "plain" / "cls"
    plain.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(plain / "x.png")
    with pytest.raises(GeosynthError, match=r"`map_legend`: .* holds no masks"):
        load_dataset(plain.parent, map_legend=pairs / "legend.json")


def test_info_without_a_legend_lists_mask_colours_and_export_keeps_pairs(pairs, tmp_path, cli):
    (pairs / "legend.json").unlink()
    r = cli("data", "info", pairs, "--json")
    assert r.code == 0, r.err
    masks = json.loads(r.out)["masks"]
    assert masks["legend"] is None and {c for c, _ in masks["found"]} == {
        "#0000FF",
        "#00C800",
        "#808080",
    }
    (pairs / "legend.json").write_text(json.dumps(LEGEND))
    out = tmp_path / "subset"
    r = cli("data", "export", pairs, "--classes", "north", "--out", out)
    assert r.code == 0, r.err
    ds = load_dataset(out)
    assert ds.class_names == ["north"] and len(ds) == 2 and ds.legend is not None
    assert (out / "images" / "north" / "b.jpg").read_bytes() == (
        pairs / "north" / "images" / "b.jpg"
    ).read_bytes()
    assert np.array_equal(ds.map(ds.keys.index("images/north/b.jpg")), _classes(1))
