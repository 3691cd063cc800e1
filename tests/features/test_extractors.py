"""Extractors through their real loading paths (local directories in the libraries' layouts)."""

from pathlib import Path

import pytest
import torch

from geosynth.data import load_dataset
from geosynth.errors import GeosynthError
from geosynth.features import create_extractor
from geosynth.features.embed import embed_dataset


@pytest.mark.parametrize(
    ("kind", "prefix", "dim"),
    [
        ("dinov2", "", 32),
        ("clip", "open_clip:local-dir:", 32),
        ("timm", "timm:local-dir:", 256),
    ],
)
def test_extractors_embed_in_batches_consistently(toy_models, toy_data, kind, prefix, dim) -> None:
    extractor = create_extractor(f"{prefix}{toy_models[kind]}", device="cpu")
    ds = load_dataset(toy_data, classes=["water", "urban"])
    emb = embed_dataset(extractor, ds, batch_size=4)
    assert emb.embeddings.shape == (len(ds), dim) and emb.labels.tolist() == ds.labels
    # Batching does not change a sample's features.
    single = extractor(extractor.transform(ds.image(5)).unsqueeze(0))
    torch.testing.assert_close(single[0], emb.embeddings[5], rtol=1e-4, atol=1e-5)
    assert emb.metadata["feature_model"].endswith(str(toy_models[kind]))
    assert "preprocessing" in emb.metadata


def test_dinov2_uses_the_cls_pooler_output(toy_models) -> None:
    from transformers import AutoModel

    from geosynth.toy import toy_image

    extractor = create_extractor(str(toy_models["dinov2"]), device="cpu")
    pixels = extractor.transform(toy_image("forest", 0)).unsqueeze(0)
    model = AutoModel.from_pretrained(toy_models["dinov2"]).eval()
    with torch.no_grad():
        expected = model(pixel_values=pixels).pooler_output
    torch.testing.assert_close(extractor(pixels), expected)


def test_unknown_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GeosynthError, match=r"^features='.*missing': no such model directory"):
        create_extractor(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(GeosynthError, match=r"^features='open_clip:NoSuchArch/none': cannot load"):
        create_extractor("open_clip:NoSuchArch/none", device="cpu")
