"""The generation builder called from Python (``load_generation``): the same images as the
``generate`` command for the same settings, LoRA sets resolved from a stack, a per-class
directory or a mixture file, and errors in the library's own terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geosynth.artifacts import ChannelMeans, Provenance, save_channel_means
from geosynth.diffusion import load_generation
from geosynth.diffusion.loras import LoraWeights
from geosynth.diffusion.sampling import Generation, resolve_loras
from geosynth.errors import GeosynthError
from geosynth.toy import make_toy_lora

CLASSES = ["water", "desert"]


def _files(out: Path) -> dict[str, bytes]:
    """metadata.jsonl and every image, byte for byte."""
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    files = {"metadata.jsonl": (out / "metadata.jsonl").read_bytes()}
    files.update({r["file_name"]: (out / r["file_name"]).read_bytes() for r in rows})
    return files


@pytest.fixture(scope="module")
def setup(toy_models, tmp_path_factory) -> dict[str, Path]:
    from geosynth.diffusion import load_vae
    from geosynth.diffusion.channel_means import vae_identity

    root = tmp_path_factory.mktemp("pipeline")
    sd = toy_models["sd"]
    means = ChannelMeans(
        means=torch.tensor([[2.0, -1.0, 0.5, 1.0], [-2.0, 1.0, 0.0, -0.5]]),
        class_names=CLASSES,
        metadata={"resolution": "32", **vae_identity(load_vae(sd), str(sd))},
    )
    return {
        "sd": sd,
        "a": make_toy_lora(sd, root / "loras" / "a", seed=1),
        "b": make_toy_lora(sd, root / "loras" / "b", seed=2),
        "means": save_channel_means(
            root / "means.safetensors", means, provenance=Provenance.start("t")
        ),
        "per_class": root / "per_class",
        "root": root,
    }


def test_stack_with_leak_aligned_noise_matches_the_command_byte_for_byte(
    cli, setup, tmp_path
) -> None:
    gen = load_generation(
        model=str(setup["sd"]),
        classes=CLASSES,
        per_class=2,
        steps=3,
        loras=[(setup["a"], 0.6), setup["b"]],
        noise="leak-aligned",
        channel_means=setup["means"],
        device="cpu",
    )
    assert isinstance(gen, Generation)
    assert [x.name for x in gen.loras.stack] == ["a", "b"]
    assert gen.spec.weights_for("water") == {"a": 0.6, "b": 1.0}
    result = gen.run(tmp_path / "lib", batch_size=2)
    assert result["complete"] and result["generated"] == 4
    assert result["out"] == str(tmp_path / "lib")
    res = cli(
        "generate",
        "--model",
        setup["sd"],
        "--classes",
        ",".join(CLASSES),
        "--per-class",
        "2",
        "--steps",
        "3",
        "--lora",
        f"{setup['a']}:0.6",
        "--lora",
        setup["b"],
        "--noise",
        "leak-aligned",
        "--channel-means",
        setup["means"],
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        tmp_path / "cli",
    )
    assert res.code == 0, res.err
    assert _files(tmp_path / "lib") == _files(tmp_path / "cli")
    row = json.loads((tmp_path / "lib" / "metadata.jsonl").read_text().splitlines()[0])
    assert row["noise"] == "leak-aligned" and 0 < row["sqrt_alpha_bar"] < 1
    # The channel means are the job's: a different file gives different images.
    plain = load_generation(
        model=str(setup["sd"]),
        classes=CLASSES,
        per_class=2,
        steps=3,
        loras=[(setup["a"], 0.6), setup["b"]],
        device="cpu",
    )
    plain.run(tmp_path / "gauss", batch_size=2)
    lib, gauss = _files(tmp_path / "lib"), _files(tmp_path / "gauss")
    assert all(lib[k] != gauss[k] for k in lib if k.endswith(".png"))


def test_per_class_directory_sets_classes_and_each_class_uses_its_own_lora(setup, tmp_path) -> None:
    for k, c in enumerate(CLASSES):
        make_toy_lora(setup["sd"], setup["per_class"] / c, seed=10 + k)
    lset = resolve_loras(str(setup["sd"]), lora_dir=setup["per_class"])
    assert lset.classes == sorted(CLASSES) and lset.stack == []
    assert lset.class_weights == {c: {c: 1.0} for c in CLASSES}
    gen = load_generation(
        model=str(setup["sd"]), lora_dir=setup["per_class"], per_class=1, steps=2, device="cpu"
    )
    assert gen.spec.classes == sorted(CLASSES)  # no `classes`: the directory's
    gen.run(tmp_path / "pc")
    rows = [json.loads(x) for x in (tmp_path / "pc" / "metadata.jsonl").read_text().splitlines()]
    assert {r["class_name"]: list(r["loras"]) for r in rows} == {c: [c] for c in CLASSES}
    with pytest.raises(GeosynthError, match=r"lora_dir='.*': no LoRA for class 'urban'"):
        load_generation(model=str(setup["sd"]), lora_dir=setup["per_class"], classes=["urban"])


def test_weights_file_is_read_once_and_checked_in_library_terms(setup, tmp_path) -> None:
    (tmp_path / "w.json").write_text(
        json.dumps(
            {
                "loras": {"a": str(setup["a"]), "b": str(setup["b"])},
                "class_names": CLASSES,
                "weights": {"water": {"a": 1.0}, "desert": {"a": 0.25, "b": 0.75}},
            }
        )
    )
    mix = LoraWeights.read(tmp_path / "w.json")
    assert mix.classes == CLASSES and mix.loras["b"] == setup["b"]
    lset = resolve_loras(str(setup["sd"]), lora_weights=tmp_path / "w.json")
    assert lset.classes == CLASSES
    assert lset.class_weights["desert"] == {"a": 0.25, "b": 0.75}
    assert {x.name: x.weight for x in lset.per_class} == {"a": 0.0, "b": 0.0}

    bad = {"loras": {"a": str(setup["a"])}, "weights": {"water": {"c": 1.0}}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(GeosynthError, match=r"^lora_weights='.*bad.json': class 'water' names"):
        resolve_loras(str(setup["sd"]), lora_weights=tmp_path / "bad.json")
    with pytest.raises(GeosynthError, match=r"^lora_weights='.*nope.json': no such file"):
        LoraWeights.read(tmp_path / "nope.json")


def test_errors_name_parameters_not_flags(setup, tmp_path) -> None:
    sd = str(setup["sd"])
    cases = [
        ({"noise": "pink"}, r"^noise='pink': expected gaussian or leak-aligned"),
        ({"noise": "leak-aligned"}, r"`channel_means` go together"),
        ({"loras": [str(tmp_path / "none")]}, r"^loras='.*none': "),
        ({"classes": CLASSES, "scheduler": "nope"}, r"^scheduler='nope': expected one of"),
        ({"classes": CLASSES, "control": "canny"}, r"`controlnet`, `control` and"),
        ({}, r"^`classes` is needed"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(GeosynthError, match=pattern):
            load_generation(model=sd, device="cpu", **kwargs)
    other = make_toy_lora(setup["sd"], tmp_path / "other", base_model="someone/else")
    with pytest.raises(GeosynthError, match=r"^loras='.*other': trained for base model"):
        load_generation(model=sd, loras=[other], classes=CLASSES)
    gen = load_generation(model=sd, classes=CLASSES, per_class=1, steps=1, device="cpu")
    gen.run(tmp_path / "done")
    with pytest.raises(GeosynthError, match=r"^out='.*done': a finished .* resume=True"):
        gen.run(tmp_path / "done")
