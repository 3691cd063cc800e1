"""Metadata conditioning end to end (issue 35, part 2), on the toy pipelines: finetune --metadata
(the base model exactly at step 0, DiffusionSat's names and shapes in the output, the fields in
the card, unknown fields said in one line), generate --metadata / --metadata-from (different
values: different images, the same values: the same bytes; every image records what it asked
for), a DiffusionSat diffusers folder as --model, and the one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from geosynth.data.metadata import MODEL_FIELDS

FIELDS3 = ("lon", "lat", "gsd")
FAST = ["--resolution", "32", "--batch-size", "4", "--seed", "0", "--checkpoint-every", "1000"]
FAST += ["--lr", "1e-2", "--lora-rank", "4", "--max-steps", "3", "--metadata-dropout", "0"]
GEN = ["--classes", "water,desert", "--per-class", "2", "--steps", "3", "--batch-size", "2"]


def _main(*args: str | Path) -> int:
    from geosynth.cli.main import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def table(toy_data, tmp_path_factory) -> Path:
    """lon/lat/gsd/date for every toy image but the first's lon (a sample missing a field)."""
    rows = [json.loads(x) for x in (toy_data / "metadata.jsonl").read_text().splitlines()]
    path = tmp_path_factory.mktemp("md") / "md.csv"
    lines = ["file_name,lon,lat,gsd,date"]
    for k, r in enumerate(rows):
        lon = "" if k == 0 else f"{-10 + 2.5 * k:.2f}"
        lines.append(f"{r['file_name']},{lon},{35 + 0.7 * k:.2f},10,{2018 + k % 5}-0{1 + k % 9}-15")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def md_lora(toy_models, toy_data, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("md-ft") / "lora"
    args = ["finetune", toy_data, "--model", toy_models["sd"], "--metadata-table", table]
    assert _main(*args, "--metadata", "lon,lat,gsd", *FAST, "--out", out) == 0
    return out


def _unet(model: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(model, subfolder="unet").eval()


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_a_new_embedding_leaves_the_base_model_exactly(which, toy_models, toy_sdxl) -> None:
    from geosynth.diffusion.metadata_embedding import metadata_conditioning
    from geosynth.diffusion.training.metatrain import prepare_metadata_unet

    unet = _unet(toy_models["sd"] if which == "sd" else toy_sdxl)
    cfg = unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, cfg.in_channels, 8, 8, generator=g)
    c = torch.randn(2, 5, cfg.cross_attention_dim, generator=g)
    extra = {}
    if cfg.addition_embed_type == "text_time":
        width = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, width, generator=g),
            "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2),
        }
    t = torch.tensor([10, 700])
    with torch.no_grad():
        base = unet(x, t, c, **extra).sample
        emb = prepare_metadata_unet(unet, FIELDS3)  # what finetune --metadata does
        md = torch.tensor([[600.0, 700.0, 900.0], [100.0, 50.0, 3.0]])
        with metadata_conditioning(unet, md):
            step0 = unet(x, t, c, **extra).sample
    assert torch.equal(base, step0)
    assert all(p.requires_grad for p in emb.parameters())


def test_finetune_writes_diffusionsat_names_and_the_card_says_the_fields(
    md_lora, toy_models
) -> None:
    card = json.loads((md_lora / "geosynth.json").read_text())
    meta = card["metadata"]
    assert meta["fields"] == list(FIELDS3) and meta["dropout"] == 0.0
    assert meta["known"] == {"lon": 29, "lat": 30, "gsd": 30} and meta["samples"] == 30
    assert card["recipe"]["metadata"] == list(FIELDS3)
    assert "metadata_embedding.safetensors" in card["files"]
    config = json.loads((toy_models["sd"] / "unet" / "config.json").read_text())
    proj, width = config["block_out_channels"][0], 4 * config["block_out_channels"][0]
    state = load_file(str(md_lora / "metadata_embedding.safetensors"))
    want = {}
    for i in range(3):  # DiffusionSat's TimestepEmbedding per field: proj -> width -> width
        want[f"metadata_embedding.{i}.linear_1.weight"] = (width, proj)
        want[f"metadata_embedding.{i}.linear_1.bias"] = (width,)
        want[f"metadata_embedding.{i}.linear_2.weight"] = (width, width)
        want[f"metadata_embedding.{i}.linear_2.bias"] = (width,)
    assert {k: tuple(v.shape) for k, v in state.items()} == want
    assert state["metadata_embedding.0.linear_2.weight"].abs().max() > 0  # it trained
    with safe_open(str(md_lora / "metadata_embedding.safetensors"), framework="pt") as fh:
        assert json.loads(fh.metadata()["fields"]) == list(FIELDS3)


def _pixels(folder: Path) -> dict[str, bytes]:
    return {p.name + p.parent.name: p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_generate_steers_with_the_metadata_and_records_it(cli, md_lora, tmp_path) -> None:
    runs = {}
    for name, md in (("a", "lat=25.2,lon=55.3,gsd=0.5"), ("b", "lat=-40,lon=-70,gsd=30"),
                     ("a2", "lat=25.2,lon=55.3,gsd=0.5")):  # fmt: skip
        r = cli("generate", "--lora", md_lora, "--metadata", md, *GEN, "--out", tmp_path / name)
        assert r.code == 0, r.err
        runs[name] = _pixels(tmp_path / name)
    assert runs["a"] == runs["a2"]  # the same values: the same bytes
    assert all(runs["a"][k] != runs["b"][k] for k in runs["a"])  # different values: others
    rows = [json.loads(x) for x in (tmp_path / "a" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert all((r["lat"], r["lon"], r["gsd"]) == (25.2, 55.3, 0.5) for r in rows)
    plan = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert "metadata" in json.dumps(plan)
    # the HF card declares the columns
    assert "name: lat" in (tmp_path / "a" / "README.md").read_text()


def test_metadata_from_a_real_set_pairs_each_image(cli, md_lora, toy_data, table, tmp_path):
    from geosynth.data import load_dataset

    ds = load_dataset(str(toy_data), metadata_table=table, classes=["water", "desert"])
    real = tmp_path / "real"  # the table's values as a dataset's own metadata.jsonl columns
    shutil.copytree(toy_data, real)
    by_key = {r.split(",")[0]: r.split(",") for r in table.read_text().splitlines()[1:]}
    rows = []
    for line in (toy_data / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        _, lon, lat, gsd, date = by_key[row["file_name"]]
        row.update(
            lat=float(lat), gsd=float(gsd), date=date, **({"lon": float(lon)} if lon else {})
        )
        rows.append(json.dumps(row))
    (real / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    args = ["generate", "--lora", md_lora, "--metadata-from", real, "--classes", "water,desert"]
    r = cli(*args, "--steps", "2", "--batch-size", "4", "--out", tmp_path / "paired")
    assert r.code == 0, r.err
    got = [json.loads(x) for x in (tmp_path / "paired" / "metadata.jsonl").read_text().splitlines()]
    assert len(got) == len(ds) == 12  # one image per real sample
    for g in got:
        i = ds.keys.index(g["metadata_from"])
        m = ds.metadata(i)
        assert g["class_name"] == ds.class_names[ds.samples[i].label]
        assert g["lat"] == pytest.approx(m.lat) and not g["metadata_shuffled"]
        assert ("lon" in g) == (m.lon is not None)  # unknown: not asked for (0 to the model)
        assert g["gsd"] == pytest.approx(m.gsd)  # 32 px real chips, 32 px generated
        assert "date" not in g  # the model was not trained with the date
    r = cli(*args, "--metadata-shuffle", "--steps", "2", "--batch-size", "4", "--out",
            tmp_path / "shuffled")  # fmt: skip
    assert r.code == 0, r.err
    shuf = [
        json.loads(x) for x in (tmp_path / "shuffled" / "metadata.jsonl").read_text().splitlines()
    ]
    assert [s["metadata_from"] for s in shuf] == [g["metadata_from"] for g in got]
    assert all(s["metadata_shuffled"] for s in shuf)
    assert sorted(s["lat"] for s in shuf) == sorted(g["lat"] for g in got)
    assert [s["lat"] for s in shuf] != [g["lat"] for g in got]


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ("cloud_cover=0.2", "not trained with cloud_cover"),
        ("lat=95,lon=3", "lat='95': must be between -90 and 90"),
        ("date=2023-02-30", "not a date"),
        ("lat", "is not FIELD=VALUE"),
    ],
)
def test_bad_metadata_is_one_line_and_writes_nothing(
    cli, md_lora, toy_models, tmp_path, metadata, words
) -> None:
    model = ["--model", toy_models["sd"]]  # (else a line says which base model the card names)
    r = cli("generate", "--lora", md_lora, *model, "--metadata", metadata, *GEN, "--out",
            tmp_path / "o")  # fmt: skip
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert words in r.err and "--metadata" in r.err
    assert not any(tmp_path.iterdir())


def test_metadata_needs_a_metadata_model(cli, toy_models, tmp_path) -> None:
    r = cli("generate", "--model", toy_models["sd"], "--metadata", "lat=3", *GEN, "--out",
            tmp_path / "o")  # fmt: skip
    assert r.code == 2 and "no metadata embedding" in r.err and not any(tmp_path.iterdir())


def test_a_table_naming_other_files_is_refused(cli, toy_models, toy_data, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file_name,lat\nwater/000000.png,3\nwater/nope.png,4\n")
    r = cli("finetune", toy_data, "--model", toy_models["sd"], "--metadata-table", bad,
            "--metadata", "lat", *FAST, "--out", tmp_path / "o")  # fmt: skip
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "line 3 names 'water/nope.png'" in r.err and "--metadata-table" in r.err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.parts").exists()
    r = cli("finetune", toy_data, "--model", toy_models["sd"], "--metadata", "lat,place",
            *FAST, "--out", tmp_path / "o")  # fmt: skip
    assert r.code == 2 and "unknown field 'place'" in r.err and "--metadata" in r.err


def _diffusionsat_folder(pipeline: Path, unet_dir: Path, out: Path) -> Path:
    """``pipeline`` with ``unet_dir``'s UNet, laid out as DiffusionSat saves its pipelines:
    model_index names library "diffusionsat" and class SatUNet for the UNet, the UNet config
    has use_metadata/num_metadata (no metadata_fields: its seven), weights in a .bin."""
    shutil.copytree(pipeline, out)
    shutil.rmtree(out / "unet")
    (out / "unet").mkdir()
    config = json.loads((unet_dir / "config.json").read_text())
    assert config["metadata_fields"] == list(MODEL_FIELDS)
    del config["metadata_fields"]
    config.update(_class_name="SatUNet", use_metadata=True, num_metadata=7)
    (out / "unet" / "config.json").write_text(json.dumps(config))
    state = load_file(str(unet_dir / "diffusion_pytorch_model.safetensors"))
    torch.save(state, out / "unet" / "diffusion_pytorch_model.bin")
    index = json.loads((out / "model_index.json").read_text())
    index.update(_class_name="DiffusionSatPipeline", unet=["diffusionsat", "SatUNet"])
    (out / "model_index.json").write_text(json.dumps(index))
    return out


@pytest.fixture(scope="module")
def own_and_ds(toy_models, toy_data, table, tmp_path_factory) -> tuple[Path, Path, str]:
    """geosynth's own model (the UNet trained whole with all 7 fields) and the same weights
    saved in DiffusionSat's layout; the stderr of the finetune."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("ds")
    own = root / "own"
    args = ["finetune", toy_data, "--model", toy_models["sd"], "--metadata-table", table, *FAST]
    args += ["--metadata", "lon,lat,gsd,cloud_cover,date", "--train-unet", "full"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = _main(*args, "--train-text-encoder", "frozen", "--max-steps", "2", "--out", own)
    assert code == 0, err.getvalue()
    return (
        own,
        _diffusionsat_folder(toy_models["sd"], own / "unet", root / "diffusionsat"),
        err.getvalue(),
    )


def test_a_diffusionsat_folder_loads_and_generates_what_geosynth_s_model_does(
    cli, own_and_ds, tmp_path
) -> None:
    own, ds, err = own_and_ds
    said = [x for x in err.splitlines() if x.startswith("metadata:")]  # once, with counts
    assert len(said) == 1 and "of 30 samples, unknown lon 1, cloud_cover 30" in said[0], err
    assert json.loads((own / "geosynth.json").read_text())["metadata"]["file"] == "unet"
    md = ["--metadata", "lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01,cloud_cover=0.1"]
    assert cli("generate", "--lora", own, *md, *GEN, "--out", tmp_path / "g-own").code == 0
    r = cli("generate", "--model", ds, *md, *GEN, "--out", tmp_path / "g-ds")
    assert r.code == 0, r.err
    assert _pixels(tmp_path / "g-own") == _pixels(tmp_path / "g-ds")
    r = cli("generate", "--model", ds, *GEN, "--metadata", "lat=-60", "--out", tmp_path / "g-2")
    assert r.code == 0 and _pixels(tmp_path / "g-2") != _pixels(tmp_path / "g-ds")


@pytest.mark.slow
def test_channel_means_and_finetune_take_a_diffusionsat_folder(
    cli, own_and_ds, toy_data, table, tmp_path
) -> None:
    _, ds, _ = own_and_ds
    r = cli("channel-means", toy_data, "--model", ds, "--classes", "water,desert", "--out",
            tmp_path / "means.safetensors")  # fmt: skip
    assert r.code == 0, r.err
    r = cli("finetune", toy_data, "--model", ds, "--metadata-table", table, *FAST, "--metadata",
            "lon,lat,gsd,cloud_cover,date", "--max-steps", "1", "--out", tmp_path / "ft")  # fmt: skip
    assert r.code == 0, r.err
    assert (tmp_path / "ft" / "metadata_embedding.safetensors").is_file()
    # its LoRA and embedding generate on the DiffusionSat base (the embedding's new weights)
    r = cli("generate", "--lora", tmp_path / "ft", "--metadata", "lat=3", *GEN, "--out",
            tmp_path / "g")  # fmt: skip
    assert r.code == 0, r.err
    r = cli("finetune", toy_data, "--model", ds, "--metadata", "lat", *FAST, "--out",
            tmp_path / "ft2")  # fmt: skip
    assert r.code == 2 and "conditions on lon,lat,gsd,cloud_cover,year,month,day" in r.err
    assert not (tmp_path / "ft2").exists()


@pytest.mark.slow
def test_sdxl_trains_and_steers_with_metadata(cli, toy_sdxl, toy_data, table, tmp_path) -> None:
    out = tmp_path / "xl"
    r = cli("finetune", toy_data, "--model", toy_sdxl, "--metadata-table", table, "--metadata",
            "lat,lon", *FAST, "--classes", "water,desert", "--out", out)  # fmt: skip
    assert r.code == 0, r.err
    assert json.loads((out / "geosynth.json").read_text())["metadata"]["fields"] == ["lon", "lat"]
    for name, md in (("a", "lat=10,lon=10"), ("b", "lat=-50,lon=120")):
        r = cli("generate", "--lora", out, "--metadata", md, *GEN, "--out", tmp_path / name)
        assert r.code == 0, r.err
    a, b = _pixels(tmp_path / "a"), _pixels(tmp_path / "b")
    assert all(a[k] != b[k] for k in a)
