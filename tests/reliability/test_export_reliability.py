"""data export: images whose names differ only in extension (or folder) are all kept."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def test_same_stem_two_extensions_keeps_both(cli, tmp_path) -> None:
    """Defect 7: 'a.png' and 'a.jpg' of one class were exported to one 'a.png'."""
    src = tmp_path / "src"
    for cls, names in {"forest": ["a.png", "a.jpg", "b.png"], "water": ["a.png"]}.items():
        (src / cls).mkdir(parents=True)
        for k, name in enumerate(names):
            value = 40 * k + (100 if cls == "water" else 0)
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(src / cls / name)
    res = cli("data", "export", src, "--out", tmp_path / "out")
    assert res.code == 0, res.err
    rows = [json.loads(x) for x in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    names = sorted(r["file_name"] for r in rows)
    assert names == [
        "forest/b.png",
        "forest/forest_a_jpg.png",
        "forest/forest_a_png.png",
        "water/a.png",
    ]
    sources = {r["file_name"]: r["source"] for r in rows}
    assert len(set(map(str, sources.values()))) == 4
    again = cli("data", "export", src, "--out", tmp_path / "again")
    assert again.code == 0
    assert (tmp_path / "again" / "metadata.jsonl").read_bytes() == (
        tmp_path / "out" / "metadata.jsonl"
    ).read_bytes()
