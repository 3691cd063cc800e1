"""The FID Inception extractor: the same features, hence the same FID, as torchmetrics' FID with
torch-fidelity's network. The real weights cannot be downloaded here, so both sides load one
weights file with the network's exact layout and random (He-initialised) values."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from geosynth.metrics.evaluation import EvalOptions, evaluate

tf_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")


def _random_weights(path: Path) -> Path:
    """A state dict for FeatureExtractorInceptionV3 (built without loading, then He-initialised
    so activations keep their scale through the ~90 layers)."""
    cls = tf_inception.FeatureExtractorInceptionV3
    empty = path.with_name("empty.pth")
    torch.save({}, empty)
    torch.manual_seed(0)
    with mock.patch.object(cls, "load_state_dict", lambda self, sd: None):
        net = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


class _Pool3(torch.nn.Module):
    """torch-fidelity's network as a torchmetrics custom extractor (it returns a tuple)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.net = tf_inception.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
        )
        self.num_features = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


@pytest.mark.slow
def test_inception_fid_equals_torchmetrics(eurosat: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    weights = _random_weights(tmp_path / "inception.pth")
    sets: dict[str, list[np.ndarray]] = {}
    for role, cls in (("real", "Forest"), ("synth", "SeaLake")):
        sets[role] = []
        for i, p in enumerate(sorted((eurosat / "train" / cls).iterdir())[:5]):
            # Stored at 299 px, so neither side resizes and both see the same uint8 pixels.
            img = Image.open(p).convert("RGB").resize((299, 299), Image.Resampling.BICUBIC)
            out = tmp_path / role / "x" / f"{i}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            img.save(out)
            sets[role].append(np.asarray(img))
    opts = EvalOptions(features=f"inception:{weights}", sections=("fid",), per_class=False)
    report = evaluate(str(tmp_path / "synth"), str(tmp_path / "real"), opts).report
    assert report["features"]["feature_dim"] == 2048
    tm = FrechetInceptionDistance(feature=_Pool3(weights))
    for role, real in (("real", True), ("synth", False)):
        tm.update(torch.from_numpy(np.stack(sets[role])).permute(0, 3, 1, 2), real=real)
    expected = float(tm.compute().double())
    assert expected > 0
    assert report["fid"]["value"] == pytest.approx(expected, rel=1e-4)
    assert any("5 images for 2048-dimensional features" in w for w in report["warnings"])
