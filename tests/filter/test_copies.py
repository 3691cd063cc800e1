"""``geosynth filter --train``: memorised copies of the training shots are dropped, genuine
samples kept, and the kept set reads back with the right classes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.data import load_dataset
from geosynth.data.writer import ImageFolderWriter
from geosynth.metrics.memorisation import COPY_THRESHOLD
from geosynth.toy import make_toy_dataset

CLASSES = ["forest", "water", "urban"]


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _shift(img: Image.Image, px: int) -> Image.Image:
    return Image.fromarray(np.roll(np.asarray(img), (px, -px), axis=(0, 1)))


#: how each planted copy is derived from its training image
COPIES = {
    "exact": lambda im: im,
    "flipped": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rotated": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "jpeg90": lambda im: _jpeg(im, 90),
    "shifted2-jpeg95": lambda im: _jpeg(_shift(im, 2), 95),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training shots (seed 1), and a 'generated' set: genuine samples (toy images of another
    seed) beside copies of training images, with generate-like metadata."""
    root = tmp_path_factory.mktemp("filter-copies")
    train = make_toy_dataset(root / "train", per_class=6, seed=1, classes=CLASSES)
    genuine = make_toy_dataset(root / "genuine", per_class=6, seed=7, classes=CLASSES)
    tds, gds = load_dataset(train), load_dataset(genuine)
    with ImageFolderWriter(root / "synth", CLASSES, Provenance.start("test")) as w:
        for c in range(len(CLASSES)):
            g = [i for i, lab in enumerate(gds.labels) if lab == c]
            t = [i for i, lab in enumerate(tds.labels) if lab == c]
            for j, i in enumerate(g):
                w.add(gds.image(i), c, image_id=f"genuine-{j}", seed=100 + j)
            for (kind, fn), i in zip(COPIES.items(), t, strict=False):
                w.add(fn(tds.image(i)), c, image_id=f"copy-{kind}", seed=0, source_key=tds.keys[i])
    return {"train": train, "synth": root / "synth", "root": root}


def test_filter_drops_every_copy_and_keeps_every_genuine_sample(cli, planted):
    out = planted["root"] / "kept"
    res = cli("filter", planted["synth"], "--train", planted["train"], "--out", out)
    assert res.code == 0, res.err
    records = [json.loads(x) for x in (out / "filter.jsonl").read_text().splitlines()]
    assert len(records) == len(CLASSES) * (6 + len(COPIES))
    for r in records:
        is_copy = "/copy-" in r["file_name"]
        assert r["kept"] is (not is_copy), r
        if is_copy:
            assert r["reason"] == "copy"
            assert r["copy_ratio"] <= COPY_THRESHOLD
        else:
            assert r["copy_ratio"] > COPY_THRESHOLD
    # the matched training image is the one each copy was made from
    meta = {
        json.loads(x)["file_name"]: json.loads(x)
        for x in (planted["synth"] / "metadata.jsonl").read_text().splitlines()
    }
    for r in records:
        if "/copy-" in r["file_name"]:
            assert r["copy_of"].endswith(meta[r["file_name"]]["source_key"]), r
    # kept files are byte-for-byte copies; their rows keep the source metadata plus the scores
    kept = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(kept) == 6 * len(CLASSES)
    for row in kept:
        assert (out / row["file_name"]).read_bytes() == (
            planted["synth"] / row["file_name"]
        ).read_bytes()
        assert row["seed"] >= 100 and row["filter_copy_ratio"] > COPY_THRESHOLD
    assert "forest" in res.out and "copy" in res.out  # the per-class summary table


def test_kept_set_loads_in_imagefolder(cli, planted):
    out = planted["root"] / "kept-readers"
    assert cli("filter", planted["synth"], "--train", planted["train"], "--out", out).code == 0
    from torchvision.datasets import ImageFolder

    tv = ImageFolder(str(out))
    assert sorted(tv.classes) == sorted(CLASSES) and len(tv) == 6 * len(CLASSES)
    back = load_dataset(out)
    assert back.class_names == CLASSES and back.counts() == dict.fromkeys(CLASSES, 6)


@pytest.mark.slow  # importing datasets takes ~40 s on a busy 2-core machine
def test_kept_set_loads_in_datasets(cli, planted):
    out = planted["root"] / "kept-hf"
    assert cli("filter", planted["synth"], "--train", planted["train"], "--out", out).code == 0
    import datasets

    hf = datasets.load_dataset(str(out), split="train")
    assert hf.features["label"].names == CLASSES and len(hf) == 6 * len(CLASSES)
    assert sorted(set(hf["label"])) == [0, 1, 2]


def test_evaluate_train_reports_memorisation_per_class(cli, planted):
    out = planted["root"] / "eval.json"
    res = cli(
        "evaluate",
        planted["synth"],
        planted["train"],
        "--metrics",
        "color",
        "--train",
        planted["train"],
        "--out",
        out,
    )
    assert res.code == 0, res.err
    m = json.loads(out.read_text())["memorisation"]
    n = 6 + len(COPIES)
    assert m["copies"] == len(CLASSES) * len(COPIES)
    for c in CLASSES:
        row = m["per_class"][c]
        assert (row["images"], row["copies"]) == (n, len(COPIES))
        assert row["rate"] == pytest.approx(len(COPIES) / n)
    assert "memorisation" in res.out and f"{len(COPIES) / n:.3f}" in res.out


def test_train_with_no_class_in_common_is_refused(cli, planted):
    other = make_toy_dataset(planted["root"] / "other", per_class=2, seed=3, classes=["desert"])
    out = planted["root"] / "none"
    res = cli("filter", planted["synth"], "--train", other, "--out", out)
    assert res.code == 2
    assert "--train" in res.err and "no class in common" in res.err
    assert len(res.err.strip().splitlines()) == 1 and not out.exists()


def test_a_class_left_empty_is_named(cli, planted):
    """Copies only, in one class: that class is emptied, with a warning naming it."""
    root = planted["root"]
    tds, gds = load_dataset(planted["train"]), load_dataset(root / "genuine")
    with ImageFolderWriter(root / "synth-empty", CLASSES, Provenance.start("test")) as w:
        for i, lab in enumerate(tds.labels):
            w.add(tds.image(i) if lab == 1 else gds.image(i), lab)
    out = root / "kept-empty"
    res = cli("filter", root / "synth-empty", "--train", planted["train"], "--out", out)
    assert res.code == 0, res.err
    assert "class 'water'" in res.err and "dropped" in res.err
    assert not (out / "water").exists() and (out / "forest").is_dir()
    # nothing at all kept: one line, exit 2, nothing written
    out2 = root / "kept-nothing"
    res = cli("filter", planted["train"], "--train", planted["train"], "--out", out2)
    assert res.code == 2 and "no image passed" in res.err and not out2.exists()


def test_native_geotiffs_and_previews_are_copied_as_they_are(cli, tmp_path):
    """A generate-style native set (uint16 GeoTIFFs, 8-bit previews in OUT.previews/): kept
    files and their previews come through byte for byte; dropped ones leave no preview."""
    from geosynth.data.raster import Raster

    rng = np.random.default_rng(0)
    names = ["a", "b"]
    arrays = {
        (c, i): rng.integers(0, 4000, (3, 32, 32), dtype=np.uint16) for c in names for i in range(4)
    }
    geo = {"crs": "EPSG:32631", "transform": (10.0, 0.0, 5e5, 0.0, -10.0, 4e6)}
    with ImageFolderWriter(tmp_path / "shots", names, Provenance.start("test")) as w:
        for (c, i), arr in arrays.items():
            if i < 2:  # the first two of each class are the training shots
                w.add_raster(Raster(arr, **geo), names.index(c), image_id=f"{i}")
    synth = tmp_path / "synth"
    with ImageFolderWriter(synth, names, Provenance.start("test")) as w:
        for (c, i), arr in arrays.items():
            w.add_raster(Raster(arr, **geo), names.index(c), image_id=f"{i:06d}")
    previews = tmp_path / "synth.previews"
    for (c, i), arr in arrays.items():
        (previews / c).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((arr // 16).astype(np.uint8).transpose(1, 2, 0))
        img.save(previews / c / f"{i:06d}.png")
    out = tmp_path / "kept"
    res = cli("filter", synth, "--train", tmp_path / "shots", "--out", out)
    assert res.code == 0, res.err
    recs = {
        r["file_name"]: r for r in map(json.loads, (out / "filter.jsonl").read_text().splitlines())
    }
    assert [k for k, r in recs.items() if not r["kept"]] == ["a/000000.tif", "a/000001.tif",
                                                          "b/000000.tif", "b/000001.tif"]  # fmt: skip
    for rel, r in recs.items():
        png = Path(rel).with_suffix(".png")
        if r["kept"]:
            assert (out / rel).read_bytes() == (synth / rel).read_bytes()
            assert (tmp_path / "kept.previews" / png).read_bytes() == (previews / png).read_bytes()
        else:
            assert not (out / rel).exists() and not (tmp_path / "kept.previews" / png).exists()


def test_front_door_call_and_its_table(planted):
    """``geosynth.filter`` is the command's one call: the device is picked by the library
    (None: this process's GPU, else the CPU) and the report carries the table the command prints."""
    from geosynth import filter as filter_dataset

    out = planted["root"] / "kept-library"
    report = filter_dataset(planted["synth"], out, train=planted["train"], device=None)
    assert report.columns == ("images", "kept", "copy", "off-class", "off-manifold", "budget")
    rows = report.table_rows()
    assert [r[0] for r in rows] == [*CLASSES, "all"]
    for row in rows[:-1]:  # six genuine images kept, five planted copies dropped per class
        assert dict(zip(report.columns, row[1:], strict=True)) == {
            "images": 11, "kept": 6, "copy": 5, "off-class": 0, "off-manifold": 0, "budget": 0,
        }  # fmt: skip
    assert rows[-1][1:] == [sum(r[i] for r in rows[:-1]) for i in range(1, len(rows[0]))]
    assert load_dataset(out).counts() == dict.fromkeys(CLASSES, 6)
