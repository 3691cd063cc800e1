"""Seed 004 on toy pairs: paired data, map-conditioned training (concat, cross-attention, both),
resume, generation from maps, evaluation, and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from geosynth.data import load_dataset
from geosynth.data.paired import attach_maps, read_map, read_map_folder
from geosynth.diffusion.mapcond import MapCondition, widen_conv_in
from geosynth.diffusion.training.finetune import finetune, parts_dir
from geosynth.diffusion.training.recipe import Recipe
from geosynth.errors import GeosynthError
from geosynth.metrics.paired import map_fidelity
from geosynth.toy.paired import make_toy_paired_dataset, toy_legend


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, Path]:
    """Toy pairs: train (20) and val (10), 32 px; and a from-scratch UNet config."""
    root = tmp_path_factory.mktemp("pairs")
    return {
        "train": make_toy_paired_dataset(root / "train", n=20, seed=0),
        "val": make_toy_paired_dataset(root / "val", n=10, seed=1),
    }


@pytest.fixture(scope="module")
def unet_config(toy_models, tmp_path_factory) -> Path:
    config = json.loads((toy_models["sd"] / "unet" / "config.json").read_text())
    path = tmp_path_factory.mktemp("cfg") / "unet.json"
    path.write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))
    return path


def _recipe(unet_config: Path | None, cond: MapCondition, **kw) -> Recipe:
    base = dict(
        unet="full",
        text_encoder="frozen",
        init="scratch" if unet_config else "pretrained",
        unet_config=str(unet_config) if unet_config else None,
        max_steps=4,
        batch_size=4,
        lr=1e-3,
        checkpoint_every=2,
        maps=cond,
    )
    return Recipe(**{**base, **kw})


def test_pairs_follow_filters_and_rgb_maps_read_as_classes(pairs, tmp_path) -> None:
    ds = attach_maps(load_dataset(pairs["train"], classes=["water", "desert"], shots=2, seed=0))
    assert len(ds) == 4 and ds.class_names == ["water", "desert"]
    for i in range(len(ds)):
        # the landscape label of a toy pair is its map's dominant class
        counts = np.bincount(ds.map(i).ravel(), minlength=5)
        assert ds.legend.names[int(counts.argmax())] == ds.class_names[ds.samples[i].label]
    # an RGB rendering in legend colours reads back as the same class indices
    legend = ds.legend
    classes = ds.map(0)
    legend.render(classes).save(tmp_path / "rgb.png")
    assert np.array_equal(read_map(tmp_path / "rgb.png", legend), classes)
    # a sibling map folder with the same names works like the map_file column
    maps = tmp_path / "maps"
    shutil.copytree(pairs["train"] / "maps", maps)
    shutil.copy(pairs["train"] / "legend.json", maps / "legend.json")
    plain = tmp_path / "plain"
    shutil.copytree(pairs["train"], plain, ignore=shutil.ignore_patterns("maps", "legend.json"))
    sib = attach_maps(load_dataset(plain), maps)
    assert [p.name for p in sib.maps.values()] == [p.name for p in attach_maps(
        load_dataset(pairs["train"])).maps.values()]  # fmt: skip


def test_bad_maps_are_one_line_errors(pairs, tmp_path) -> None:
    legend = toy_legend(["water", "forest", "desert", "cropland", "urban"])
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((32, 32), 7, np.uint8), "L").save(bad)
    with pytest.raises(
        GeosynthError, match=r"mask value 7 in 1024 pixel.* is no class of the legend"
    ):
        read_map(bad, legend)
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8), "RGB").save(bad)
    with pytest.raises(GeosynthError, match=r"colour #FFFFFF \(255, 255, 255\) in 1024 pixel"):
        read_map(bad, legend)
    with pytest.raises(GeosynthError, match="no map for this image"):
        attach_maps(load_dataset(pairs["train"]), tmp_path)


def test_widened_pretrained_unet_starts_unchanged(toy_models) -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(toy_models["sd"], subfolder="unet").eval()
    x, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 77, 32)
    with torch.no_grad():
        before = unet(x, t, c).sample
        widen_conv_in(unet, 5)
        after = unet(torch.cat([x, torch.randn(2, 5, 16, 16)], 1), t, c).sample
    assert unet.config.in_channels == 9
    assert torch.allclose(before, after, atol=1e-5)


VARIANTS = [
    # (condition, map encoder, text, from scratch). "both" exercises the concat and the
    # cross-attention paths at once in the default suite; each mode alone runs with -m slow.
    pytest.param("concat", "downsample", "beside", True, marks=pytest.mark.slow),
    pytest.param("cross-attention", "downsample", "instead", True, marks=pytest.mark.slow),
    ("both", "vae", "beside", True),
    ("concat", "learned", "beside", False),
]


@pytest.mark.parametrize(("condition", "encoder", "text", "scratch"), VARIANTS)
def test_modes_train_resume_and_generate(
    condition, encoder, text, scratch, pairs, unet_config, toy_models, tmp_path, cli
) -> None:
    """Every conditioning mode trains, resumes to bit-identical weights and generates pairs."""
    sd = str(toy_models["sd"])
    ds = attach_maps(load_dataset(pairs["train"]))
    cond = MapCondition(condition=condition, map_encoder=encoder, text=text, dropout=0.2)
    cfg = unet_config if scratch else None
    finetune(ds, tmp_path / "ref", _recipe(cfg, cond), model=sd, log=lambda s: None)

    class Stop(Exception):
        pass

    def crash(info) -> None:
        if info.step == 3:
            raise Stop

    out = tmp_path / "cut"
    with pytest.raises(Stop):
        finetune(ds, out, _recipe(cfg, cond), model=sd, on_step=crash, log=lambda s: None)
    assert not out.exists()
    res = finetune(ds, out, _recipe(cfg, cond), model=sd, resume=True, log=lambda s: None)
    card = res["cards"]["all"]
    assert card["resumed_from_step"] == 2
    assert card["map_condition"]["condition"] == condition
    assert card["map_condition"]["legend"]["classes"][0]["name"] == "water"
    assert card["recipe"]["maps"]["map_encoder"] == encoder
    for sub in ("unet/diffusion_pytorch_model.safetensors", "map_encoder/model.safetensors"):
        a, b = load_file(str(tmp_path / "ref" / sub)), load_file(str(out / sub))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    gen = tmp_path / "gen"
    args = ["--maps", pairs["val"], "--per-map", "2", "--steps", "2", "--out", gen]
    r = cli("generate", "--model", sd, "--lora", out, *args)
    assert r.code == 0, r.err
    synth = attach_maps(load_dataset(gen))
    assert len(synth) == 20
    assert synth.image(0).size == (32, 32) and synth.map(0).shape == (32, 32)
    assert set(synth.class_names) == set(ds.legend.names)


@pytest.fixture(scope="module")
def concat_model(pairs, unet_config, toy_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("concat") / "model"
    cond = MapCondition(condition="concat")
    ds = attach_maps(load_dataset(pairs["train"]))
    finetune(ds, out, _recipe(unet_config, cond, max_steps=2), model=str(toy_models["sd"]))
    return out


def test_cli_bad_input_exits_2(pairs, concat_model, unet_config, toy_models, tmp_path, cli):
    sd = str(toy_models["sd"])
    fast = ["--init", "scratch", "--unet-config", unet_config, "--train-text-encoder", "frozen"]
    fast += ["--max-steps", "1", "--batch-size", "2"]

    def broken(name: str, fix) -> Path:
        root = tmp_path / name
        shutil.copytree(pairs["train"], root)
        rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
        fix(root / rows[0]["map_file"])
        return root

    cases = [
        (broken("missing", lambda p: p.unlink()), "no map for this image"),
        (
            broken("small", lambda p: Image.new("L", (16, 16)).save(p)),
            "mask is 16x16 but its image",
        ),
        (
            broken("unknown", lambda p: Image.new("L", (32, 32), 9).save(p)),
            "mask value 9 in 1024 pixel(s) (first at x=0, y=0) is no class of the legend",
        ),
    ]
    for data, msg in cases:
        out = tmp_path / f"out-{data.name}"
        r = cli("finetune", data, "--model", sd, "--condition", "concat", *fast, "--out", out)
        assert r.code == 2, r.err
        assert msg in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert not out.exists() and not parts_dir(out).exists()
    r = cli("finetune", pairs["train"], "--model", sd, "--condition", "diagonal", "--out", tmp_path)
    assert r.code == 2 and "--condition diagonal" in r.err
    r = cli("finetune", pairs["train"], "--model", sd, "--maps", pairs["train"], "--out", tmp_path)
    assert r.code == 2 and "--maps is only used with --condition" in r.err
    r = cli("generate", "--model", sd, "--lora", concat_model, "--out", tmp_path / "g")
    assert r.code == 2 and "give the maps to follow with --maps" in r.err
    assert not (tmp_path / "g").exists()
    r = cli("generate", "--model", sd, "--maps", pairs["val"], "--out", tmp_path / "g")
    assert r.code == 2 and "--maps needs a map-conditioned model" in r.err
    # a class-generation option with --maps is refused by name, not ignored
    r = cli(
        "generate",
        "--model",
        sd,
        "--classes",
        "water",
        "--maps",
        pairs["val"],
        "--out",
        tmp_path / "g",
    )
    assert r.code == 2 and "--classes water: not supported with --maps" in r.err


def test_map_fidelity_definition() -> None:
    colours = np.array([[0, 0, 255], [0, 255, 0], [np.nan, np.nan, np.nan]], np.float64)
    classes = np.array([[0, 1], [1, 2]])
    image = np.array([[[0, 0, 200], [0, 0, 200]], [[0, 200, 0], [9, 9, 9]]], np.uint8)
    # pixel 0 right (blue), pixel 1 wrong (blue on a green class), pixel 2 right, class 2 unused
    assert map_fidelity(image, classes, colours) == pytest.approx(2 / 3)


def test_evaluate_reports_fid_vs_train_and_val_per_landscape(
    pairs, concat_model, toy_models, tmp_path, cli
):
    sd = str(toy_models["sd"])
    gen = tmp_path / "gen"
    r = cli(
        "generate",
        "--model",
        sd,
        "--lora",
        concat_model,
        "--maps",
        pairs["val"],
        "--steps",
        "2",
        "--out",
        gen,
    )
    assert r.code == 0, r.err
    report = tmp_path / "report.json"
    r = cli(
        "evaluate", gen, pairs["train"], "--val", pairs["val"], "--features", toy_models["dinov2"],
        "--metrics", "fid", "--out", report,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "FID vs val" in r.out and "map fidelity" in r.out
    maps = json.loads(report.read_text())["maps"]
    assert set(maps["fid"]) == {"train", "val"}
    for role in ("train", "val"):
        assert maps["fid"][role]["overall"]["value"] > 0
        assert set(maps["fid"][role]["per_landscape"]) <= set(toy_legend(
            ["water", "forest", "desert", "cropland", "urban"]).names)  # fmt: skip
    fidelity = maps["map_fidelity"]
    assert len(fidelity["per_map"]) == 10 and 0 <= fidelity["mean"] <= 1
    assert fidelity["chance"] == pytest.approx(0.2)
    assert read_map_folder(gen).legend.names == toy_legend(
        ["water", "forest", "desert", "cropland", "urban"]).names  # fmt: skip


@pytest.fixture(scope="module")
def two_class_pairs(tmp_path_factory) -> dict[str, Path]:
    """Water and desert pairs: the tests' toy VAE (40 training steps) reconstructs these two
    colours faithfully (map fidelity about 0.9 after a VAE round trip) but not five classes
    (about 0.3), so only two classes can show what the UNet learned."""
    root = tmp_path_factory.mktemp("pairs2")
    classes = ["water", "desert"]
    return {
        "train": make_toy_paired_dataset(root / "train", n=24, seed=0, classes=classes),
        "val": make_toy_paired_dataset(root / "val", n=10, seed=1, classes=classes),
    }


def _fidelity_after_training(
    pairs, unet_config, sd: str, out: Path, dropout: float, steps: int, lr: float
) -> float:
    """Train a concat UNet from scratch for ``steps`` and return the mean per-map fidelity of one
    image per held-out map."""
    from geosynth.artifacts import Provenance
    from geosynth.diffusion import adapters
    from geosynth.diffusion import loras as lora_ops
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.sampling.mapgen import generate_from_maps
    from geosynth.metrics.paired import fidelity_report

    ds = attach_maps(load_dataset(pairs["train"]))
    cond = MapCondition(condition="concat", dropout=dropout)
    recipe = _recipe(
        unet_config,
        cond,
        max_steps=steps,
        batch_size=8,
        lr=lr,
        lr_schedule="constant",
        warmup_ratio=0.0,
        checkpoint_every=10_000,
    )
    finetune(ds, out / "model", recipe, model=sd, log=lambda s: None)
    pipe = load_sd_pipeline(sd, device="cpu")
    item = lora_ops.parse_lora(str(out / "model"), set())
    adapters.apply_cards(pipe, [item])
    generate_from_maps(
        pipe, out / "model", item.card, read_map_folder(pairs["val"]), out / "gen", per_map=1,
        steps=20, guidance=2.0, seed=0, resolution=None, batch_size=10,
        provenance=Provenance.start("test"),
    )  # fmt: skip
    return fidelity_report(attach_maps(load_dataset(out / "gen")), ds)["mean"]


@pytest.mark.slow
def test_short_training_follows_maps_far_better_than_blank_maps(
    two_class_pairs, unet_config, toy_models, tmp_path
) -> None:
    """The Done-when check: a short run on toy pairs learns to follow the maps; the same UNet
    trained with blank maps cannot place the map's classes (chance is 0.5 for two classes;
    measured 0.74 against 0.48 at 100 steps)."""
    sd = str(toy_models["sd"])
    args = (two_class_pairs, unet_config, sd)
    with_maps = _fidelity_after_training(*args, tmp_path / "m", 0.1, 100, 2e-3)
    blank = _fidelity_after_training(*args, tmp_path / "b", 1.0, 100, 2e-3)
    assert with_maps > blank + 0.15, (with_maps, blank)
    assert with_maps > 0.65, with_maps
    assert blank < 0.6, blank


# Two trainings, among the suite's slowest tests: `make test` checks the same contrast once, on
# the demo's map step (100 steps, map fidelity above the blank-map model's by 0.1: test_demo.py).
@pytest.mark.slow
def test_few_steps_already_follow_maps_better_than_blank_maps(
    two_class_pairs, unet_config, toy_models, tmp_path
) -> None:
    """The fast, smaller version of the check above (40 steps)."""
    sd = str(toy_models["sd"])
    args = (two_class_pairs, unet_config, sd)
    with_maps = _fidelity_after_training(*args, tmp_path / "m", 0.1, 40, 3e-3)
    blank = _fidelity_after_training(*args, tmp_path / "b", 1.0, 40, 3e-3)
    assert with_maps > blank + FAST_MARGIN, (with_maps, blank)


FAST_MARGIN = 0.1
