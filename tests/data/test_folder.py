import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.data import ImageFolderWriter, export_dataset, load_dataset, open_dataset
from geosynth.errors import GeosynthError


def _folder(root: Path, spec: dict[str, int]) -> Path:
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 20, 10, 30)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_classes_sorted_and_prompt_names(tmp_path: Path) -> None:
    ds = open_dataset(_folder(tmp_path / "d", {"SeaLake": 2, "AnnualCrop": 3}))
    assert ds.class_names == ["AnnualCrop", "SeaLake"]
    assert ds.prompt_names == ["annual crop", "sea lake"]
    assert ds.counts() == {"AnnualCrop": 3, "SeaLake": 2}
    img, label = ds[4]
    assert img.mode == "RGB" and label == 1


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"a": 2})
    (root / "b").mkdir()
    with pytest.raises(GeosynthError, match=r"d/b: class folder has no images"):
        open_dataset(root)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"a": 2})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    ds = open_dataset(root)
    idx = ds.keys.index("a/broken.png")
    with pytest.raises(GeosynthError, match=r"a/broken\.png: cannot read image"):
        ds.image(idx)


def test_missing_path_and_split_errors(tmp_path: Path, eurosat: Path) -> None:
    with pytest.raises(GeosynthError, match="no such directory"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(GeosynthError, match="choose one with `split`"):
        open_dataset(eurosat)
    with pytest.raises(GeosynthError, match=r"^split='bogus': "):
        open_dataset(eurosat, split="bogus")
    assert len(open_dataset(eurosat, split="val")) == 500


def test_unknown_class_in_selection(toy_data: Path) -> None:
    with pytest.raises(GeosynthError, match=r"unknown class 'lava'.*available: water"):
        load_dataset(toy_data, classes=["lava"])


def test_written_imagefolder_reads_back_with_both_readers(tmp_path: Path) -> None:
    """Labels keep the writer's class order, even when it is not alphabetical."""
    import datasets

    names = ["zebra_crossing", "AnnualCrop"]
    colours = [(200, 0, 0), (0, 0, 200)]
    out = tmp_path / "synth"
    with ImageFolderWriter(out, names, Provenance.start("test")) as w:
        for label in (0, 1, 1):
            w.add(Image.new("RGB", (16, 16), colours[label]), label, seed=label)

    ds = open_dataset(out)
    assert ds.class_names == names and ds.labels == [0, 1, 1]
    assert np.asarray(ds.image(0))[0, 0].tolist() == [200, 0, 0]

    hf = datasets.load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    rows = sorted(zip(hf["label"], hf["class_name"], hf["seed"], strict=True))
    assert rows == [(0, "zebra_crossing", 0), (1, "AnnualCrop", 1), (1, "AnnualCrop", 1)]
    for row in hf:
        assert np.asarray(row["image"])[0, 0].tolist() == list(colours[row["label"]])
    assert (out / "provenance.json").is_file()


def test_writer_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (
        pytest.raises(KeyboardInterrupt),
        ImageFolderWriter(out, ["a"], Provenance.start("t")) as w,
    ):
        w.add(Image.new("RGB", (4, 4)), 0)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_to_replace_foreign_directories(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(GeosynthError, match="not a geosynth output"):
        ImageFolderWriter(mine, ["a"], Provenance.start("t"))


def test_export_few_shot_round_trip(eurosat: Path, tmp_path: Path) -> None:
    ds = load_dataset(eurosat, split="train", classes=["Forest", "River"], shots=3, seed=5)
    out = export_dataset(ds, tmp_path / "k3", Provenance.start("data export"))
    back = open_dataset(out)
    assert back.class_names == ["Forest", "River"] and back.counts() == {"Forest": 3, "River": 3}
    for i in range(len(ds)):
        assert np.array_equal(np.asarray(back.image(i)), np.asarray(ds.image(i)))
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(Path(r["source"]).is_file() for r in rows)
