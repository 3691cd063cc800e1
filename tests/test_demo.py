"""The whole demo's output, checked once: the ``demo-out`` that ``make demo`` wrote beside the
repository when its ``build.json`` says the current code, libraries and data built it (CI runs
``make demo`` just before ``make test``), else a fresh run in a temporary folder."""

import json
import os
from pathlib import Path

import pytest

from geosynth.data import open_dataset
from geosynth.demo import BUILD_RECORD, is_current, run_demo
from geosynth.toy.real_sar import real_sar_root

REPO = Path(__file__).resolve().parents[1]
#: Where ``make demo`` writes (its DEMO_OUT); GEOSYNTH_DEMO_OUT names another folder.
MADE = Path(os.environ.get("GEOSYNTH_DEMO_OUT", REPO / "demo-out"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished demo output of the current code (seed 0): ``make demo``'s when current."""
    if is_current(MADE, seed=0):
        return MADE
    out = tmp_path_factory.mktemp("demo") / "demo"
    run_demo(out, log=lambda _: None)
    return out


def test_a_demo_output_records_what_built_it(demo: Path) -> None:
    """The record a fresh run writes is the one the reader compares with; a changed seed, or
    an edit to the source, makes the output stale."""
    assert is_current(demo, seed=0)
    assert not is_current(demo, seed=1)
    record = json.loads((demo / BUILD_RECORD).read_text())
    assert len(record["source_sha256"]) == 64 and record["seed"] == 0


def test_a_stale_or_unfinished_demo_output_is_not_current(tmp_path: Path) -> None:
    from geosynth.demo.record import build_record

    assert not is_current(tmp_path / "absent")
    (tmp_path / "report.md").write_text("# an unfinished run: no record")
    assert not is_current(tmp_path)
    record = build_record(0)
    (tmp_path / BUILD_RECORD).write_text(json.dumps(record))
    assert is_current(tmp_path)
    (tmp_path / BUILD_RECORD).write_text(json.dumps({**record, "source_sha256": "0" * 64}))
    assert not is_current(tmp_path)
    (tmp_path / BUILD_RECORD).write_text("{not json")
    assert not is_current(tmp_path)


def test_demo_writes_report_grids_and_metrics(demo: Path) -> None:
    text = (demo / "report.md").read_text()
    for section in (
        "## Toy data",
        "## Toy models",
        "## Rarity",
        "## Fine-tuning",
        "## Generation",
        "## Prototype LoRAs",
        "## Evaluation",
        "## Classifier",
        "## Generating from semantic maps",
        "## Stable Diffusion XL",
    ):
        assert section in text
    for image in (
        "fewshot.png",
        "vae-recon.png",
        "generated.png",
        "generated-sdxl.png",
        "maps.png",
    ):
        assert f"]({image})" in text and (demo / image).is_file()
    metrics = json.loads((demo / "metrics.json").read_text())
    assert 0 < metrics["vae_recon_l1"] < 0.5
    maps = metrics["maps"]
    assert maps["map"]["mean_fidelity"] > maps["blank"]["mean_fidelity"] + 0.1
    ft = metrics["finetune"]
    assert ft["steps"] == 120 and ft["final_loss"] < ft["loss_first_10"]
    assert metrics["sdxl"]["family"] == "sdxl" and metrics["sdxl"]["steps"] == 20
    assert open_dataset(demo / "synth-sdxl").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 4
    )
    assert (demo / "toy-lora" / "pytorch_lora_weights.safetensors").is_file()
    assert sum(map(sum, metrics["plora"]["counts"])) == 40
    assert len(open_dataset(demo / "synth-plora")) == 10
    errors = metrics["generate_mean_rgb_error"]
    assert set(errors) == {"gaussian", "leak-aligned"}
    assert open_dataset(demo / "synth-leak-aligned").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 4
    )
    rarity = json.loads((demo / "rarity.json").read_text())
    # Classes absent from the LAION stand-in lie in fewer reference balls than present ones.
    per = rarity["per_class"]
    assert max(per[c]["density"] for c in ("water", "desert")) < min(
        per[c]["density"] for c in ("forest", "cropland", "urban")
    )
    assert open_dataset(demo / "toy-8shot").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 8
    )
    # The evaluation step: both generated sets against the real pool, with plots.
    assert "## Evaluation" in text
    assert (demo / "evaluate-plots" / "per-class.png").is_file()
    evaluation = metrics["evaluate"]
    assert set(evaluation) == {"gaussian", "leak-aligned"}
    assert evaluation["leak-aligned"]["color_error"] < evaluation["gaussian"]["color_error"]
    leak = json.loads((demo / "evaluate-leak-aligned.json").read_text())
    assert len(leak["classes"]["compared"]) == 5 and leak["fid"]["value"] > 0
    # The SAR section: native float32 VV/VH GeoTIFFs out, through the printed default spec.
    assert "## SAR in native units" in text and (demo / "sar.png").is_file()
    sar = metrics["sar"]
    assert sar["synthetic_dtype"] == "float32" and sar["synthetic_bands"] == ["VV", "VH"]
    synth_sar = open_dataset(demo / "synth-sar")
    if real_sar_root() is None:  # the procedural toy: 4 classes of known backscatter order
        assert sar["real_mean_db"]["water"][0] < sar["real_mean_db"]["urban"][0]
        assert synth_sar.raster(0).count == 2 and len(synth_sar) == 16
    else:  # real SSL4EO-S12 chips (one class): Sentinel-1 land backscatter, VV above VH
        ((vv, vh),) = sar["real_mean_db"].values()
        assert -20 < vh < vv < 0
        assert synth_sar.raster(0).count == 2 and len(synth_sar) == 4


def test_demo_classifier_step_reports_top1_on_disjoint_val_and_test(demo: Path) -> None:
    """The train-clf step: a toy Table 3 (zero-shot, both synthetic sets, the real 8 shots),
    VAL and TEST drawn from the pool outside the 8-shot set (12 VAL images per class)."""
    metrics = json.loads((demo / "metrics.json").read_text())
    top1 = metrics["train_clf_test_top1"]
    assert set(top1) == {
        "zero-shot",
        "synthetic, leak-aligned",
        "synthetic, Gaussian",
        "real 8-shot",
    }
    assert all(0.0 <= v <= 1.0 for v in top1.values())
    assert "## Classifier" in (demo / "report.md").read_text()
    assert (demo / "clf-confusion.png").is_file()
    report = json.loads((demo / "clf-real-8-shot" / "report.json").read_text())
    counts = open_dataset(demo / "toy-pool").counts()
    assert report["data"]["val"]["images"] == 12 * len(counts)
    assert report["data"]["test"]["images"] == sum(n - 8 - 12 for n in counts.values())
