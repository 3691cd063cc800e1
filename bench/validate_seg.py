"""Do generated image/mask pairs help a segmentation model? (issue 36, docs/validation.md)

On the real Dubai scenes (``../shared/data/aerial-seg/dubai``; black mapped to ignore), split by
tile (TRAIN scenes from tiles 1-3, VAL from tile 4, TEST from tile 5), cut into 128 px chips
with ``geosynth data tile``; at N real TRAIN scenes (one and three per tile):

* ``real``: ``train-seg`` on the real chips alone;
* ``maps``: real chips + pairs generated from the real chips' masks by a map-conditioned latent
  diffusion model (seed 004, ``finetune --condition concat``) trained here on those N scenes;
* ``joint``: real chips + pairs whose masks were generated with their images (SatSynth,
  ``finetune --joint-masks``) by a model trained here on those N scenes;

each over 3 seeds (mIoU mean and spread on TEST), selected on VAL. The diffusion models are
small and trained from scratch on CPU: a domain autoencoder (factor 2) on the smallest TRAIN set
and an SD-shaped UNet at 32 px. Map fidelity (seed 004): the real-only segmenter of the largest
N (seed 0) segments the generated images; its mIoU against the maps they followed (and the
joint masks they came with), beside the same score on real TEST chips (the segmenter's own
ceiling).

    OMP_NUM_THREADS=1 python bench/validate_seg.py --work validate-seg-out

Stages are cached under ``--work`` (delete a folder to redo it); ``WORK/report.md`` and
``WORK/results.json`` hold the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "aerial-seg" / "dubai"
LEGEND = {
    "classes": [
        {"name": "Building", "color": "#3C1098"},
        {"name": "Land (unpaved area)", "color": "#8429F6"},
        {"name": "Road", "color": "#6EC1E4"},
        {"name": "Vegetation", "color": "#FEDD3A"},
        {"name": "Water", "color": "#E2A929"},
        {"name": "Unlabeled", "color": "#9B9B9B"},
    ],
    "ignore": ["#000000"],
}
TRAIN_TILES = ("Tile 1", "Tile 2", "Tile 3")
START = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - START:6.0f}s] {msg}", flush=True)


def geosynth(*args: Any) -> str:
    """Run one geosynth command (the exact command line is logged)."""
    cmd = [sys.executable, "-m", "geosynth", *map(str, args)]
    log("geosynth " + " ".join(f"'{a}'" if " " in str(a) else str(a) for a in args))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r.stdout


def parallel(jobs: list[tuple[Any, ...]], n: int) -> None:
    with ThreadPoolExecutor(n) as ex:
        for f in [ex.submit(geosynth, *j) for j in jobs]:
            f.result()


def pending(out: Path) -> bool:
    """True when ``out`` must be made. An ``OUT.parts`` of another process running the same
    command (the stages can be started by hand, in parallel) is waited for instead; one left by
    a killed run must be deleted by hand."""
    while not out.is_dir() and out.with_name(out.name + ".parts").is_dir():
        time.sleep(10)
    return not out.is_dir()


def scenes(dest: Path, picks: dict[str, list[int]]) -> Path:
    """A segmentation dataset of the chosen scenes (symlinks, the distributed layout)."""
    if dest.is_dir():
        return dest
    for tile, idx in picks.items():
        names = sorted(p.stem for p in (DUBAI / tile / "images").glob("*.jpg"))
        for sub, ext in (("images", ".jpg"), ("masks", ".png")):
            (dest / tile / sub).mkdir(parents=True, exist_ok=True)
            for i in idx:
                (dest / tile / sub / f"{names[i]}{ext}").symlink_to(
                    DUBAI / tile / sub / f"{names[i]}{ext}"
                )
    return dest


def by_landscape(chips: Path) -> None:
    """Group chips by landscape (their mask's dominant class, in legend order), so a chip's
    prompt is its landscape's, as the generators' prompts are (seed 004's per-landscape text)."""
    names = [c["name"] for c in LEGEND["classes"]]
    meta = chips / "metadata.jsonl"
    rows = [json.loads(x) for x in meta.read_text().splitlines() if x]
    if all(r["class_name"] == r["landscape"] for r in rows):
        return
    for r in rows:
        r["label"], r["class_name"] = names.index(r["landscape"]), r["landscape"]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tile(src: Path, out: Path) -> Path:
    if not out.is_dir():
        geosynth(
            "data",
            "tile",
            src,
            "--size",
            128,
            "--max-ignore",
            0.5,
            "--map-legend",
            out.parent / "legend.json",
            "--out",
            out,
        )
    by_landscape(out)
    return out


def chips_count(d: Path) -> int:
    return len((d / "metadata.jsonl").read_text().splitlines())


def stage_models(
    work: Path, sizes: list[int], mixed: list[int], steps: int
) -> dict[int, dict[str, Path]]:
    """The domain autoencoder (on the smallest TRAIN set), then per N with mixed arms a
    map-conditioned and a joint UNet from scratch with the same budget."""
    from geosynth.data import load_dataset
    from geosynth.diffusion.vae import VaeRecipe, make_domain_pipeline, train_vae

    smallest = work / f"chips-train-{min(sizes)}"
    if not (work / "vae").is_dir():
        recipe = VaeRecipe(resolution=32, block_out_channels=(16, 32), norm_num_groups=16,
                           steps=300, batch_size=32, lr=2e-3)  # fmt: skip
        held = load_dataset(work / "chips-val")
        s = train_vae(load_dataset(smallest), work / "vae", recipe, held_out=held, log=log)
        log(f"VAE reconstruction on VAL chips: {json.dumps(s['reconstruction'])}")
    cfg = {
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [16, 32, 64],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 64, "attention_head_dim": 8, "norm_num_groups": 8,
    }  # fmt: skip
    if not (work / "sd-base").is_dir():
        (work / "unet.json").write_text(json.dumps(cfg, indent=2))
        make_domain_pipeline(work / "vae", work / "sd-base", cfg)
    common = ["--model", work / "sd-base", "--init", "scratch", "--unet-config", work / "unet.json",
              "--train-text-encoder", "frozen", "--max-steps", steps, "--batch-size", 16,
              "--lr", "1e-3", "--resolution", 32, "--checkpoint-every", 1000,
              "--precision", "fp32"]  # fmt: skip
    jobs, models = [], {}
    for n in mixed:
        data = work / f"chips-train-{n}"
        models[n] = {"maps": work / f"ldm-maps-{n}", "joint": work / f"ldm-joint-{n}"}
        if pending(models[n]["maps"]):
            jobs.append(("finetune", data, *common, "--condition", "concat", "--out",
                         models[n]["maps"]))  # fmt: skip
        if pending(models[n]["joint"]):
            jobs.append(("finetune", data, *common, "--joint-masks", "--out", models[n]["joint"]))
    parallel(jobs, 2)
    return models


def stage_generate(work: Path, models: dict[int, dict[str, Path]], gen_steps: int) -> None:
    jobs = []
    names = [c["name"] for c in LEGEND["classes"]]
    for n, m in models.items():
        data = work / f"chips-train-{n}"
        common = ["--model", work / "sd-base", "--steps", gen_steps, "--scheduler", "ddim",
                  "--seed", 0, "--batch-size", 16]  # fmt: skip
        if not (work / f"gen-maps-{n}").is_dir():
            jobs.append(("generate", "--lora", m["maps"], "--maps", data,
                         "--per-map", 1, "--guidance", 2, *common,
                         "--out", work / f"gen-maps-{n}"))  # fmt: skip
        if not (work / f"gen-joint-{n}").is_dir():
            rows = [json.loads(x) for x in (data / "metadata.jsonl").read_text().splitlines()]
            present = [c for c in names if any(r["class_name"] == c for r in rows)]
            per = math.ceil(len(rows) / len(present))
            jobs.append(("generate", "--lora", m["joint"], "--classes", ",".join(present),
                         "--per-class", per, "--guidance", 1, *common, "--json",
                         "--out", work / f"gen-joint-{n}"))  # fmt: skip
    parallel(jobs, 2)


def stage_segment(work: Path, sizes: list[int], mixed: list[int], seeds: str, epochs: int) -> None:
    # every split reads its own legend.json (the chips': colours, black ignored; the generated
    # pairs': class values), matched to TRAIN's classes by name
    common = ["--val", work / "chips-val", "--test", work / "chips-test", "--resolution", 32, "--epochs", epochs, "--batch-size", 16,
              "--seeds", seeds, "--patience", 3, "--json"]  # fmt: skip
    jobs = []
    for n in sizes:
        real = work / f"chips-train-{n}"
        arms = {"real": (real,), "maps": (work / f"gen-maps-{n}", "--real", real),
                "joint": (work / f"gen-joint-{n}", "--real", real)}  # fmt: skip
        for arm, train in arms.items():
            out = work / f"seg-{arm}-{n}"
            if (arm == "real" or n in mixed) and pending(out):
                jobs.append(("train-seg", *train, *common, "--out", out))
    parallel(jobs, 2)


def fidelity(work: Path, n: int, sizes: list[int]) -> dict[str, Any]:
    from geosynth.segment import segmenter_fidelity

    model = work / f"seg-real-{n}" / "seed-0" / "model.safetensors"
    out = {}
    sets = [("real TEST chips", work / "chips-test")]
    for k in sizes:
        sets += [(f"generated from real maps ({k} scenes)", work / f"gen-maps-{k}"),
                 (f"jointly generated ({k} scenes)", work / f"gen-joint-{k}")]  # fmt: skip
    for name, pairs in sets:
        r = segmenter_fidelity(model, pairs)
        out[name] = {k: r[k] for k in ("n", "miou", "pixel_accuracy")}
    return out


def grid(work: Path, n: int) -> None:
    """Eight real chips, eight pairs generated from real maps, eight jointly generated pairs,
    each image above its mask in legend colours: ``WORK/pairs.png``."""
    from geosynth.data import load_dataset
    from geosynth.viz import image_grid

    rows, labels = [], []
    for name in (f"chips-train-{n}", f"gen-maps-{n}", f"gen-joint-{n}"):
        ds = load_dataset(work / name)
        idx = list(range(0, len(ds), max(1, len(ds) // 8)))[:8]
        rows.append([ds.image(i).resize((48, 48)) for i in idx])
        rows.append([ds.legend.render(ds.map(i)).resize((48, 48), 0) for i in idx])
        labels += [name, "mask"]
    image_grid(rows, labels, cell=48).save(work / "pairs.png")


def report(work: Path, sizes: list[int], seeds: str, argv: list[str]) -> None:
    res: dict[str, Any] = {"seg": {}, "scenes": {}, "chips": {}}
    lines = ["| real scenes (chips) | arm | TRAIN pairs | TEST mIoU mean ± std | per seed |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for n in sizes:
        res["chips"][n] = chips_count(work / f"chips-train-{n}")
        for arm in ("real", "maps", "joint"):
            if not (work / f"seg-{arm}-{n}").is_dir():
                continue
            rep = json.loads((work / f"seg-{arm}-{n}" / "report.json").read_text())
            m = rep["test"]["miou"]
            per = [r["test"]["miou"] for r in rep["runs"]]
            res["seg"][f"{arm}-{n}"] = {"mean": m["mean"], "std": m["std"], "per_seed": per}
            extra = 0 if arm == "real" else chips_count(work / f"gen-{arm}-{n}")
            lines.append(f"| {n} ({res['chips'][n]}) | {arm} | {res['chips'][n]} real"
                         + (f" + {extra} generated" if extra else "")
                         + f" | {m['mean']:.3f} ± {m['std']:.3f} | "
                         + ", ".join(f"{v:.3f}" for v in per) + " |")  # fmt: skip
    mixed = [n for n in sizes if (work / f"gen-maps-{n}").is_dir()]
    fid = fidelity(work, max(sizes), mixed)
    res["fidelity"] = fid
    invalid = {}
    for n in mixed:
        meta = (work / f"gen-joint-{n}" / "metadata.jsonl").read_text().splitlines()
        rows = [json.loads(x) for x in meta]
        invalid[n] = sum(r["invalid_pixels"] for r in rows) / (len(rows) * 32 * 32)
    res["joint_invalid_fraction"] = invalid
    flines = ["| pairs scored | pairs | mIoU | pixel accuracy |", "| --- | --- | --- | --- |"]
    for name, r in fid.items():
        flines.append(f"| {name} | {r['n']} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} |")
    text = ("# Dubai: real-only against real + generated pairs\n\n"
            f"`python bench/validate_seg.py {' '.join(argv)}`, {time.time() - START:.0f} s; seeds "
            f"{seeds}.\n\n" + "\n".join(lines) + "\n\nMap fidelity (real-only segmenter, "
            f"{max(sizes)} scenes, seed 0):\n\n" + "\n".join(flines)
            + "\n\nJoint masks, share of pixels with an invalid bit code (written as ignore): "
            + ", ".join(f"{100 * v:.1f} % ({n} scenes)" for n, v in invalid.items()) + "\n")  # fmt: skip
    grid(work, min(mixed))
    (work / "report.md").write_text(text)
    (work / "results.json").write_text(json.dumps(res, indent=2))
    print(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("validate-seg-out"))
    ap.add_argument("--scenes", default="1,3", help="real TRAIN scenes per tile, per setting")
    ap.add_argument(
        "--mixed-scenes",
        default=None,
        help="the settings (scenes per tile) that also get the mixed arms (default: all)",
    )
    ap.add_argument("--unet-steps", type=int, default=300)
    ap.add_argument("--gen-steps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    if not (DUBAI / "Tile 1" / "masks").is_dir():
        print(f"the Dubai scenes are not at {DUBAI}", file=sys.stderr)
        return 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "legend.json").write_text(json.dumps(LEGEND, indent=2))
    per_tile = [int(x) for x in args.scenes.split(",")]
    sizes = [k * len(TRAIN_TILES) for k in per_tile]
    for k, n in zip(per_tile, sizes, strict=True):
        src = scenes(work / f"scenes-train-{n}", {t: list(range(k)) for t in TRAIN_TILES})
        tile(src, work / f"chips-train-{n}")  # with legend.json, read by every later step
    tile(scenes(work / "scenes-val", {"Tile 4": [0, 1]}), work / "chips-val")
    tile(scenes(work / "scenes-test", {"Tile 5": [0, 1, 2]}), work / "chips-test")
    log(f"chips: TRAIN {[chips_count(work / f'chips-train-{n}') for n in sizes]}, VAL "
        f"{chips_count(work / 'chips-val')}, TEST {chips_count(work / 'chips-test')}")  # fmt: skip
    mixed = (
        sizes
        if args.mixed_scenes is None
        else [int(x) * len(TRAIN_TILES) for x in args.mixed_scenes.split(",")]
    )
    models = stage_models(work, sizes, mixed, args.unet_steps)
    stage_generate(work, models, args.gen_steps)
    mixed = (
        sizes
        if args.mixed_scenes is None
        else [int(x) * len(TRAIN_TILES) for x in args.mixed_scenes.split(",")]
    )
    stage_segment(work, sizes, mixed, args.seeds, args.epochs)
    report(work, sizes, args.seeds, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
