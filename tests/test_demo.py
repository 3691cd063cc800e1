import json
from pathlib import Path

from geosynth.data import open_dataset
from geosynth.demo import run_demo
from geosynth.toy.real_sar import real_sar_root


def test_demo_writes_report_grids_and_metrics(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", log=lambda _: None)
    text = report.read_text()
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
        assert f"]({image})" in text and (tmp_path / "demo" / image).is_file()
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert 0 < metrics["vae_recon_l1"] < 0.5
    maps = metrics["maps"]
    assert maps["map"]["mean_fidelity"] > maps["blank"]["mean_fidelity"] + 0.1
    ft = metrics["finetune"]
    assert ft["steps"] == 120 and ft["final_loss"] < ft["loss_first_10"]
    assert metrics["sdxl"]["family"] == "sdxl" and metrics["sdxl"]["steps"] == 20
    assert open_dataset(tmp_path / "demo" / "synth-sdxl").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 4
    )
    assert (tmp_path / "demo" / "toy-lora" / "pytorch_lora_weights.safetensors").is_file()
    assert sum(map(sum, metrics["plora"]["counts"])) == 40
    assert len(open_dataset(tmp_path / "demo" / "synth-plora")) == 10
    errors = metrics["generate_mean_rgb_error"]
    assert set(errors) == {"gaussian", "leak-aligned"}
    assert open_dataset(tmp_path / "demo" / "synth-leak-aligned").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 4
    )
    rarity = json.loads((tmp_path / "demo" / "rarity.json").read_text())
    # Classes absent from the LAION stand-in lie in fewer reference balls than present ones.
    per = rarity["per_class"]
    assert max(per[c]["density"] for c in ("water", "desert")) < min(
        per[c]["density"] for c in ("forest", "cropland", "urban")
    )
    assert open_dataset(tmp_path / "demo" / "toy-8shot").counts() == dict.fromkeys(
        ["water", "forest", "desert", "cropland", "urban"], 8
    )
    # The evaluation step: both generated sets against the real pool, with plots.
    assert "## Evaluation" in text
    assert (tmp_path / "demo" / "evaluate-plots" / "per-class.png").is_file()
    evaluation = metrics["evaluate"]
    assert set(evaluation) == {"gaussian", "leak-aligned"}
    assert evaluation["leak-aligned"]["color_error"] < evaluation["gaussian"]["color_error"]
    leak = json.loads((tmp_path / "demo" / "evaluate-leak-aligned.json").read_text())
    assert len(leak["classes"]["compared"]) == 5 and leak["fid"]["value"] > 0
    # The SAR section: native float32 VV/VH GeoTIFFs out, through the printed default spec.
    assert "## SAR in native units" in text and (tmp_path / "demo" / "sar.png").is_file()
    sar = metrics["sar"]
    assert sar["synthetic_dtype"] == "float32" and sar["synthetic_bands"] == ["VV", "VH"]
    synth_sar = open_dataset(tmp_path / "demo" / "synth-sar")
    if real_sar_root() is None:  # the procedural toy: 4 classes of known backscatter order
        assert sar["real_mean_db"]["water"][0] < sar["real_mean_db"]["urban"][0]
        assert synth_sar.raster(0).count == 2 and len(synth_sar) == 16
    else:  # real SSL4EO-S12 chips (one class): Sentinel-1 land backscatter, VV above VH
        ((vv, vh),) = sar["real_mean_db"].values()
        assert -20 < vh < vv < 0
        assert synth_sar.raster(0).count == 2 and len(synth_sar) == 4
