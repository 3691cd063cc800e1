"""Every JSON geosynth writes is strict JSON: one helper (``json_text``) refuses NaN and
infinities, naming where they are, and no module writes JSON around it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from geosynth.artifacts import json_text, write_json

SRC = Path(__file__).resolve().parents[1] / "src" / "geosynth"


def test_non_finite_numbers_are_refused_by_place(tmp_path: Path) -> None:
    assert json_text({"a": [1, 2.5]}) == '{"a": [1, 2.5]}'
    with pytest.raises(ValueError, match=r"not strict JSON: \['fid'\]\['value'\] is nan"):
        json_text({"fid": {"value": float("nan")}})
    with pytest.raises(ValueError, match=r"\[1\] is inf"):
        json_text([0.0, float("inf")])
    with pytest.raises(ValueError):
        write_json(tmp_path / "r.json", {"x": float("-inf")})
    assert not (tmp_path / "r.json").exists()


def test_no_module_writes_json_around_the_helper() -> None:
    pattern = re.compile(r"\bjson\.dumps?\(")
    found = [
        f"{p.relative_to(SRC)}:{i}"
        for p in sorted(SRC.rglob("*.py"))
        if p.name != "jsontext.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"json.dumps outside geosynth.artifacts.jsontext: {found}"


def test_undefined_metrics_are_null_not_nan() -> None:
    """A rarity of targets of which none is inside a real ball is undefined: JSON null."""
    import torch

    from geosynth.metrics.manifold import manifold_metrics

    real = torch.zeros(6, 2) + torch.arange(6.0)[:, None] * 1e-3
    far = torch.full((3, 2), 100.0)
    report = manifold_metrics(real, far, k=2).summary()
    assert report["rarity_mean"] is None and report["rarity_median"] is None
    assert json.loads(json_text(report))["rarity_mean"] is None
