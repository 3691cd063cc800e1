"""cluster-plora options for seed 001's setup: a prompt template and LoRA targets carried to the
cluster LoRAs' training and printed commands, and clustering in the feature space of a
classifier the user trained (``--features clf:TRAIN_CLF_OUT``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import torch

from geosynth.classify import load_classifier
from geosynth.classify.augment import eval_transform
from geosynth.data import load_dataset
from geosynth.features.spec import create_extractor
from geosynth.toy import make_toy_timm

SAR = "a SAR image of a {} ship"


def test_cluster_in_a_trained_classifiers_space_with_template_and_targets(
    cli, toy_data, toy_models, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    timm_dir = make_toy_timm(tmp_path / "timm")
    clf = tmp_path / "clf"
    res = cli(
        "train-clf",
        toy_data,
        "--val",
        toy_data,
        "--test",
        toy_data,
        "--backbone",
        f"timm:local-dir:{timm_dir}",
        "--resolution",
        "32",
        "--head-only",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--out",
        clf,
    )
    assert res.code == 0, res.err

    # The extractor gives the classifier's own pre-head features with its eval preprocessing.
    ex = create_extractor(f"clf:{clf}", device="cpu")
    model = load_classifier(clf / "seed-0" / "model.safetensors")
    ds = load_dataset(toy_data)
    tfm = eval_transform(model.image_size, model.mean, model.std, model.interpolation)
    x = torch.stack([tfm(ds.image(i)) for i in range(3)])
    with torch.no_grad():
        torch.testing.assert_close(
            ex(torch.stack([ex.transform(ds.image(i)) for i in range(3)])), model.features(x)
        )

    out = tmp_path / "plora"
    args = ["cluster-plora", toy_data, "--k", "2", "--features", f"clf:{clf}", "--out", out]
    args += ["--model", str(toy_models["sd"]), "--prompt-template", SAR]
    args += ["--lora-targets", "cross-attention-qkv", "--json"]
    res = cli(*args)
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert json.loads((out / "assignments.json").read_text())["feature_model"] == f"clf:{clf}"
    for cmd in report["commands"]:
        argv = shlex.split(cmd)
        assert argv[argv.index("--prompt-template") + 1] == SAR
        assert argv[argv.index("--lora-targets") + 1] == "cross-attention-qkv"

    # Training the cluster LoRAs uses the same template and targets (recorded on their cards).
    res = cli(*args[:-1], "--train-loras", "--resume", "--max-steps", "1", "--resolution", "32")
    assert res.code == 0, res.err
    for j in range(2):
        card = json.loads((out / "loras" / f"cluster_{j}" / "geosynth.json").read_text())
        assert card["prompt_template"] == SAR
        assert card["lora_targets"]["preset"] == "cross-attention-qkv"
        assert card["lora_targets"]["unet"] == ["attn2.to_q", "attn2.to_k", "attn2.to_v"]


def test_unknown_classifier_path_is_one_line(cli, toy_data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    res = cli("cluster-plora", toy_data, "--features", f"clf:{tmp_path}", "--out", tmp_path / "o")
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert res.code == 2 and len(errors) == 1 and "expected a train-clf output" in errors[0]
    assert not (tmp_path / "o").exists()
