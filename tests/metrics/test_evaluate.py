"""The evaluation report on real EuroSAT images and toy sets: known answers and bad input."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geosynth.artifacts import Embeddings, Provenance, save_embeddings
from geosynth.data import load_dataset
from geosynth.data.stats import class_color_stats
from geosynth.errors import GeosynthError
from geosynth.metrics.evaluation import EvalOptions, evaluate
from geosynth.metrics.pixels import scan_images


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))


def _copy(src: Path, dst: Path, change=lambda a: a, mode: str | None = None) -> Path:
    """An image-folder copy of ``src`` with ``change`` applied to each RGB array, saved as PNG
    (lossless, so unchanged channels stay bit-identical)."""
    for p in sorted(src.glob("*/*")):
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.int16)
        img = Image.fromarray(np.clip(change(arr), 0, 255).astype(np.uint8), "RGB")
        out = dst / p.parent.name / (p.stem + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        (img.convert(mode) if mode else img).save(out)
    return dst


@pytest.fixture(scope="module")
def shifted_eurosat(eurosat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EuroSAT's 16-shot train split with +20 added to the red channel."""

    def redder(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[..., 0] += 20
        return a

    return _copy(eurosat / "train", tmp_path_factory.mktemp("shift") / "red", redder)


def test_colour_shift_of_real_eurosat_is_detected_with_sign_and_size(
    eurosat: Path, shifted_eurosat: Path, toy_models: dict[str, Path]
) -> None:
    opts = EvalOptions(
        sections=("color", "latent_color", "amplitude"),
        real_split="train",
        vae=str(toy_models["sd"]),
        resolution=32,
    )
    report = evaluate(str(shifted_eurosat), str(eurosat), opts).report
    color = report["color"]
    assert color["channels"] == ["R", "G", "B"] and len(color["per_class"]) == 10
    real = load_dataset(eurosat, split="train")
    for name, row in color["per_class"].items():
        # Expected size, computed independently: +20/255 except where red clips at 255.
        reds = [
            np.asarray(real.image(i), dtype=np.float64)[..., 0]
            for i in range(len(real))
            if real.class_names[real.samples[i].label] == name
        ]
        expected = np.mean([(np.minimum(r + 20, 255) - r).mean() for r in reds]) / 255
        assert row["error"][0] == pytest.approx(expected, abs=1e-9)
        assert 0.07 < row["error"][0] <= 20 / 255 + 1e-12
        assert row["error"][1] == 0.0 and row["error"][2] == 0.0
    assert color["mean_abs_error_per_channel"][1:] == [0.0, 0.0]
    # The pixel statistics are the ones `data info` reports (class_color_stats, rounded there).
    by_class = {r["class_name"]: r["mean_rgb"] for r in class_color_stats(real)}
    for name, row in color["per_class"].items():
        np.testing.assert_allclose(row["real_mean"], by_class[name], atol=6e-5)
    # Luminance (ITU-R 601-2) moves by about 0.299 * 20 = 6 grey levels.
    assert 5.0 < report["amplitude"]["wasserstein1"] < 6.1
    assert report["latent_color"]["mean_abs_error"] > 0.01


def test_identical_sets_give_zero_distances(toy_data: Path, toy_models: dict[str, Path]) -> None:
    opts = EvalOptions(
        features=str(toy_models["dinov2"]),
        vae=str(toy_models["sd"]),
        resolution=32,
        clip_model=f"local-dir:{toy_models['clip']}",
        kid_subsets=5,
    )
    result = evaluate(str(toy_data), str(toy_data), opts)
    rep = result.report
    assert rep["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert all(v["value"] == pytest.approx(0.0, abs=1e-6) for v in rep["fid"]["per_class"].values())
    assert rep["kid"]["mean"] <= 0  # the unbiased estimate is slightly negative for equal sets
    assert rep["prdc"]["metrics"]["precision"] == 1.0 and rep["prdc"]["metrics"]["coverage"] == 1.0
    for section in ("color", "latent_color"):
        assert rep[section]["mean_abs_error"] == 0.0
    assert rep["amplitude"]["wasserstein1"] == 0.0 and rep["amplitude"]["kl_log_amplitude"] == 0.0
    assert rep["glcm"]["distance"] == 0.0
    assert rep["clip"]["synthetic"] == rep["clip"]["real"]
    # Six images per class in 32 dimensions: the per-class FID warning names the reason.
    assert any("rank-deficient" in w for w in rep["warnings"])
    assert set(rep["summary"]["per_class"]) == set(rep["classes"]["compared"])
    assert len(rep["classes"]["compared"]) == 5 and not rep["notes"]


def test_different_class_names_report_the_intersection(
    toy_data: Path, toy_models: dict[str, Path], tmp_path: Path
) -> None:
    synth = tmp_path / "synth"
    shutil.copytree(toy_data / "water", synth / "water")
    shutil.copytree(toy_data / "desert", synth / "dunes")
    opts = EvalOptions(features=str(toy_models["dinov2"]), sections=("fid", "color"))
    rep = evaluate(str(synth), str(toy_data), opts).report
    assert rep["classes"]["compared"] == ["water"]
    assert rep["classes"]["only_synthetic"] == ["dunes"]
    assert set(rep["classes"]["only_real"]) == {"forest", "desert", "cropland", "urban"}
    assert any("per-class metrics cover the 1 classes" in n and "dunes" in n for n in rep["notes"])
    assert list(rep["color"]["per_class"]) == ["water"] and list(rep["fid"]["per_class"]) == [
        "water"
    ]
    assert rep["color"]["per_class"]["water"]["error"] == [0.0, 0.0, 0.0]


def test_greyscale_against_rgb_is_refused_unless_asked(toy_data: Path, tmp_path: Path) -> None:
    grey = _copy(toy_data, tmp_path / "grey", mode="L")
    opts = EvalOptions(sections=("color", "amplitude"))
    with pytest.raises(
        GeosynthError, match=r"grey.* is greyscale but .* is colour.*pass greyscale=True"
    ):
        evaluate(str(grey), str(toy_data), opts)
    opts.greyscale = True
    rep = evaluate(str(grey), str(toy_data), opts).report
    assert rep["greyscale"] and rep["color"]["channels"] == ["grey"]
    # The greyscale copy is the luminance of the real images: nothing left to tell them apart.
    assert rep["color"]["mean_abs_error"] == 0.0 and rep["amplitude"]["wasserstein1"] == 0.0
    assert any("luminance" in n for n in rep["notes"])
    scan = scan_images(load_dataset(grey), greyscale=True)
    assert scan.modes == {"L": 30}


def test_embeddings_files_give_feature_metrics_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def save(name: str, x: np.ndarray) -> Path:
        emb = Embeddings(
            torch.from_numpy(x.astype(np.float32)),
            torch.arange(len(x)) % 2,
            ["a", "b"],
            {"feature_model": "m"},
        )
        return save_embeddings(tmp_path / name, emb, provenance=Provenance.start("test"))

    real = save("r.safetensors", rng.normal(size=(80, 4)))
    synth = save("s.safetensors", rng.normal(size=(60, 4)) + 1.0)
    rep = evaluate(str(synth), str(real), EvalOptions(kid_subsets=3)).report
    assert {"fid", "kid", "prdc"} <= set(rep) and "color" not in rep
    assert rep["fid"]["value"] == pytest.approx(4.0, rel=0.5)  # a unit shift in 4 dimensions
    assert set(rep["fid"]["per_class"]) == {"a", "b"} and set(rep["prdc"]["per_class"]) == {
        "a",
        "b",
    }
    assert any("hold no pixels" in n for n in rep["notes"])
    with pytest.raises(GeosynthError, match=r"^`sections`: unknown metric 'fdd'"):
        evaluate(str(synth), str(real), EvalOptions(sections=("fdd",)))
