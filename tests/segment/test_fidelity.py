"""Map fidelity by a segmentation model (seed 004): a train-seg model scores image/mask pairs;
on real TEST chips it is the TEST score train-seg reported, computed again from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_SPEC = {"encoder": "test_efficientnet", "pretrained": "none",
             "decoder_channels": [16, 16, 8, 8, 8]}  # fmt: skip


def test_fidelity_on_test_pairs_is_the_reported_test_score(
    dubai_chips, toy_data, tmp_path: Path, cli
) -> None:
    from geosynth import train_seg
    from geosynth.segment import segmenter_fidelity

    out = tmp_path / "seg"
    train_seg(dubai_chips["train"], dubai_chips["val"], dubai_chips["test"], out, spec=TINY_SPEC,
              config={"epochs": 1, "batch_size": 8}, seeds=[0])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    r = segmenter_fidelity(out / "seed-0" / "model.safetensors", dubai_chips["test"])
    assert r["n"] > 0 and r["pairs"] == str(dubai_chips["test"])
    assert r["miou"] == pytest.approx(report["runs"][0]["test"]["miou"], abs=1e-6)
    assert r["pixel_accuracy"] == pytest.approx(report["runs"][0]["test"]["pixel_accuracy"])
    # evaluate --segmenter: a missing model or a SYNTH without masks is one line, exit 2, at once
    r = cli("evaluate", dubai_chips["test"], dubai_chips["val"], "--segmenter", tmp_path / "no.st")
    assert r.code == 2 and r.err.startswith("error: --segmenter"), r.err
    model = out / "seed-0" / "model.safetensors"
    r = cli("evaluate", toy_data, dubai_chips["val"], "--segmenter", model)
    assert r.code == 2 and "not a segmentation dataset" in r.err and len(r.err.splitlines()) == 1
