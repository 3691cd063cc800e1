"""The demo: every pipeline step that exists, run on toy data and tiny models, with a report.

Each step is a function that takes the :class:`DemoRun` and adds a markdown section and metrics;
later steps (fine-tuning, generation, classification) append themselves to :data:`STEPS`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geosynth import __version__
from geosynth.artifacts import Provenance, atomic_path, load_embeddings, write_json
from geosynth.data import export_dataset, load_dataset
from geosynth.data.stats import class_color_stats
from geosynth.diffusion import decode_latents, encode_latents, images_to_tensor, load_sd_pipeline
from geosynth.features import create_extractor
from geosynth.features.embed import embed_dataset, embed_shards
from geosynth.metrics.rarity import rarity_report
from geosynth.toy import make_toy_dataset, make_toy_models, make_toy_shards
from geosynth.viz import image_grid


@dataclass
class DemoRun:
    """Paths, report sections and metrics shared by the demo's steps."""

    out: Path
    seed: int = 0
    size: int = 32
    log: Callable[[str], None] = print
    paths: dict[str, Path] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def step_toy_data(run: DemoRun) -> None:
    """A 'real' toy pool and its 8-shot subset, the few-shot set the later steps learn from."""
    pool = make_toy_dataset(run.out / "toy-pool", per_class=40, size=run.size, seed=run.seed)
    ds = load_dataset(pool, shots=8, seed=run.seed)
    prov = Provenance.start("data export", seeds={"seed": run.seed}, selection=ds.selection)
    fewshot = export_dataset(ds, run.out / "toy-8shot", prov)
    run.paths.update(pool=pool, fewshot=fewshot)
    stats = class_color_stats(ds)
    run.metrics["fewshot_color"] = stats
    grid = image_grid(
        [
            [ds.image(i) for i in range(len(ds)) if ds.samples[i].label == c]
            for c in range(len(ds.class_names))
        ],
        ds.class_names,
    )
    grid.save(run.out / "fewshot.png")
    rows = "\n".join(
        f"| {r['class_name']} | {r['images']} | "
        + " / ".join(f"{v:.3f}" for v in r["mean_rgb"])
        + " |"
        for r in stats
    )
    run.sections.append(
        "## Toy data\n\n"
        f"`geosynth toy data` wrote a pool of {len(load_dataset(pool))} images; "
        "`geosynth data export --shots 8` took the 8-shot set below.\n\n"
        "![8-shot toy set](fewshot.png)\n\n"
        "| class | images | mean R / G / B |\n| --- | --- | --- |\n" + rows + "\n"
    )


def step_toy_models(run: DemoRun) -> None:
    """Tiny SD, DINOv2 and CLIP models; the SD autoencoder's reconstructions of the 8-shot set."""
    models = make_toy_models(run.out / "toy-models", size=run.size, seed=run.seed)
    run.paths.update({f"model_{k}": v for k, v in models.items()})
    pipe = load_sd_pipeline(models["sd"], device="cpu")
    ds = load_dataset(run.paths["fewshot"])
    firsts = [
        next(i for i, s in enumerate(ds.samples) if s.label == c)
        for c in range(len(ds.class_names))
    ]
    images = [ds.image(i) for i in firsts]
    pixels = images_to_tensor(images, run.size)
    recon = decode_latents(pipe.vae, encode_latents(pipe.vae, pixels))
    l1 = float((images_to_tensor(recon, run.size) - pixels).abs().mean())
    run.metrics["vae_recon_l1"] = round(l1, 4)
    image_grid([[a, b] for a, b in zip(images, recon, strict=True)], ds.class_names).save(
        run.out / "vae-recon.png"
    )
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    run.sections.append(
        "## Toy models\n\n"
        f"`geosynth toy model` built a Stable-Diffusion-shaped pipeline (UNet {n_params:,} "
        "parameters, SD 2.1-base scheduler settings) plus tiny DINOv2 and CLIP models. "
        f"Its autoencoder reconstructs toy images with mean L1 {l1:.3f} (on [-1, 1]): "
        "original left, reconstruction right.\n\n![VAE reconstructions](vae-recon.png)\n"
    )


def _num(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def step_rarity(run: DemoRun) -> None:
    """Rarity of the 8-shot set against a LAION stand-in that lacks water and desert scenes."""
    laion = make_toy_shards(
        run.out / "toy-laion",
        classes=["forest", "cropland", "urban", "snow"],
        n_shards=2,
        per_shard=60,
        size=run.size,
        seed=run.seed + 100,
        corrupt=[(1, 7)],
    )
    extractor = create_extractor(str(run.paths["model_dinov2"]), device="cpu")
    ref_path = run.out / "toy-laion.safetensors"
    prov = Provenance.start("embed", seeds={"seed": run.seed})
    shards = embed_shards(extractor, laion, ref_path, provenance=prov)
    target = embed_dataset(extractor, load_dataset(run.paths["fewshot"]))
    report = rarity_report(
        load_embeddings(ref_path), target, per_class=True, names=("toy-laion", "toy-8shot")
    )
    write_json(run.out / "rarity.json", report)
    run.metrics["rarity"] = report["metrics"]
    rows = "\n".join(
        f"| {name} | {s['density']:.2f} | {_num(s['rarity_mean'])} | "
        f"{s['rarity_fraction_inside']:.2f} |"
        for name, s in report["per_class"].items()
    )
    run.sections.append(
        "## Rarity\n\n"
        f"`geosynth embed` streamed {shards['samples']} images from 2 webdataset shards of a "
        "LAION stand-in holding only forest, cropland, urban and snow scenes "
        f"({shards['corrupt_skipped']} corrupt sample skipped); `geosynth rarity --per-class` "
        "compared the 8-shot set to it with the tiny DINOv2 (k=5, rarity k=3). Classes the "
        "reference lacks (water, desert) should show low density and few samples inside any "
        "reference ball; rarity is n/a when no sample lies inside one.\n\n"
        "| class | density | rarity mean | inside |\n| --- | --- | --- | --- |\n" + rows + "\n"
    )


def step_finetune(run: DemoRun) -> None:
    """A DataDream-style LoRA (UNet + text encoder, rank 16) with offset noise on the 8-shot set."""
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe

    out = run.out / "toy-lora"
    recipe = Recipe(
        resolution=run.size,
        batch_size=8,
        max_steps=120,
        lr=5e-3,
        offset_noise=0.05,
        seed=run.seed,
        checkpoint_every=60,
    )
    summary = finetune(
        load_dataset(run.paths["fewshot"]),
        out,
        recipe,
        model=str(run.paths["model_sd"]),
        overwrite=True,
        log=run.log,
    )
    card = summary["cards"]["all"]
    run.paths["lora"] = out
    rows = [line.split(",") for line in (out / "loss.csv").read_text().splitlines()[1:]]
    first = sum(float(r[2]) for r in rows[:10]) / 10
    run.metrics["finetune"] = {
        "steps": card["steps"],
        "loss_first_10": round(first, 4),
        "final_loss": round(card["final_loss"], 4),
    }
    run.sections.append(
        "## Fine-tuning\n\n"
        f"`geosynth finetune` trained a rank-16 LoRA on the toy UNet and text encoder "
        f"({card['steps']} steps of batch 8 at {run.size} px, AdamW with a cosine schedule, "
        "offset noise L = 0.05) on the 8-shot set. Mean loss of the first 10 steps "
        f"{first:.3f}, of the last epoch {card['final_loss']:.3f}.\n\n"
        "![loss curve](toy-lora/loss.png)\n"
    )


def step_generate(run: DemoRun) -> None:
    """Channel means of the 8-shot set, then the same seeds with Gaussian and leak-aligned noise."""
    from geosynth.artifacts import save_channel_means
    from geosynth.diffusion import class_channel_means, load_generation, load_vae

    fewshot = load_dataset(run.paths["fewshot"])
    sd = run.paths["model_sd"]
    cm = class_channel_means(load_vae(sd), fewshot, resolution=run.size, vae_source=str(sd))
    means_path = run.out / "channel-means.safetensors"
    save_channel_means(means_path, cm, provenance=Provenance.start("channel-means"))
    grids, stats = {}, {}
    for noise in ("gaussian", "leak-aligned"):
        gen = load_generation(
            model=str(sd),
            classes=fewshot.class_names,
            per_class=4,
            prompt_template="a satellite photo of a {}",
            steps=20,
            seed=run.seed,
            noise=noise,
            channel_means=means_path if noise == "leak-aligned" else None,
            loras=[run.paths["lora"]],
            device="cpu",
        )
        out = run.out / f"synth-{noise}"
        if out.exists():  # a rerun of the demo into the same folder replaces its own output
            shutil.rmtree(out)
        gen.run(out, batch_size=4)
        synth = load_dataset(out)
        grids[noise] = [
            [synth.image(i) for i in range(len(synth)) if synth.samples[i].label == c]
            for c in range(len(synth.class_names))
        ]
        stats[noise] = class_color_stats(synth)
        run.paths[f"synth_{noise}"] = out
    real = {r["class_name"]: r["mean_rgb"] for r in run.metrics["fewshot_color"]}
    errs = {}
    for noise, st in stats.items():
        err = sum(
            abs(a - b)
            for r in st
            for a, b in zip(r["mean_rgb"], real[r["class_name"]], strict=True)
        )
        errs[noise] = round(err / (3 * len(st)), 4)
    rows = [[*g, *lk] for g, lk in zip(grids["gaussian"], grids["leak-aligned"], strict=True)]
    image_grid(rows, fewshot.class_names).save(run.out / "generated.png")
    run.metrics["generate_mean_rgb_error"] = errs
    run.sections.append(
        "## Generation\n\n"
        "`geosynth channel-means` encoded the 8-shot set with the toy VAE; `geosynth generate` "
        "then drew 4 images per class from the same per-image seeds with Gaussian noise (left "
        "four) and leak-aligned noise (right four), 20 PNDM steps, with the toy LoRA. The toy "
        "UNet started random and its LoRA saw 120 steps, so the images show mostly what the "
        "starting noise carries: leak-aligned noise brings each class's mean latent, hence its "
        "colour. Mean absolute "
        "error of per-class mean RGB against the real 8-shot set: "
        f"Gaussian {errs['gaussian']:.3f}, leak-aligned {errs['leak-aligned']:.3f}.\n\n"
        "![Gaussian (left) vs leak-aligned (right)](generated.png)\n"
    )


def step_plora(run: DemoRun) -> None:
    """pLoRA on the 8-shot set: 3 DINOv2 clusters, a rank-4 LoRA each, per-class mixtures."""
    from geosynth.diffusion import load_generation
    from geosynth.diffusion.training.recipe import Recipe
    from geosynth.plora import build_plora

    fewshot = load_dataset(run.paths["fewshot"])
    # Embedded here rather than through the embeddings cache, which lives outside the demo.
    extractor = create_extractor(str(run.paths["model_dinov2"]), device="cpu")
    emb = embed_dataset(extractor, fewshot)
    out = run.out / "toy-plora"
    if out.exists():
        shutil.rmtree(out)
    recipe = Recipe(rank=4, alpha=4, resolution=run.size, max_steps=20, lr=5e-3, seed=run.seed)
    sd = str(run.paths["model_sd"])
    summary = build_plora(
        fewshot,
        out,
        k=3,
        embeddings=emb,
        feature_model="toy dinov2",
        seed=run.seed,
        train=True,
        model=sd,
        recipe=recipe,
    )["summary"]
    gen = load_generation(
        model=sd,
        lora_weights=out / "weights.json",
        per_class=2,
        prompt_template="a satellite photo of a {}",
        steps=20,
        seed=run.seed,
        device="cpu",
    )
    synth = run.out / "synth-plora"
    if synth.exists():
        shutil.rmtree(synth)
    gen.run(synth, batch_size=2)
    run.paths["synth_plora"] = synth
    run.metrics["plora"] = {"inertia": round(summary["inertia"], 4), "counts": summary["counts"]}
    header = " | ".join(f"cluster {j}" for j in range(3))
    rows = "\n".join(
        f"| {c} | "
        + " | ".join(
            f"{n} ({w:.2f})"
            for n, w in zip(summary["counts"][i], summary["weights"][i], strict=True)
        )
        + " |"
        for i, c in enumerate(summary["class_names"])
    )
    run.sections.append(
        "## Prototype LoRAs (pLoRA)\n\n"
        "`geosynth cluster-plora` clustered the 8-shot set in the tiny DINOv2's feature space "
        "(K-Means, k = 3, 10 restarts), trained a rank-4 LoRA per cluster (20 steps each) and "
        "`generate --lora-weights` mixed them per class (into `synth-plora/`). Images per "
        "class and cluster, with the class's mixing weight:\n\n"
        f"| class | {header} |\n| --- | --- | --- | --- |\n{rows}\n"
    )


def step_evaluate(run: DemoRun) -> None:
    """Both generated sets against the real toy pool: FID, PRDC, colour, amplitude, texture, CLIP."""
    from geosynth.metrics.evaluate import EvalOptions, evaluate
    from geosynth.metrics.evaluate_plots import write_plots

    opts = EvalOptions(
        features=str(run.paths["model_dinov2"]),
        k=3,
        rarity_k=3,
        kid_subsets=20,
        vae=str(run.paths["model_sd"]),
        resolution=run.size,
        clip_model=f"local-dir:{run.paths['model_clip']}",
        seed=run.seed,
        use_cache=False,
    )
    reports = {}
    for noise in ("gaussian", "leak-aligned"):
        result = evaluate(str(run.paths[f"synth_{noise}"]), str(run.paths["pool"]), opts)
        reports[noise] = result.report
        write_json(run.out / f"evaluate-{noise}.json", result.report)
        if noise == "leak-aligned":
            plots = run.out / "evaluate-plots"
            with atomic_path(plots) as tmp:
                write_plots(result.report, result.scans, tmp)
    run.metrics["evaluate"] = {n: r["summary"]["overall"] for n, r in reports.items()}
    keys = (
        ("fid", "FID"),
        ("kid", "KID"),
        ("density", "density"),
        ("coverage", "coverage"),
        ("color_error", "colour error"),
        ("latent_color_error", "latent error"),
        ("amplitude_w1", "amplitude W1"),
        ("glcm_distance", "GLCM distance"),
        ("clip_score", "CLIP score"),
    )
    rows = "\n".join(
        f"| {label} | "
        + " | ".join(_num(reports[n]["summary"]["overall"][key]) for n in reports)
        + " |"
        for key, label in keys
    )
    real_clip = reports["gaussian"]["summary"]["overall"]["clip_score_real"]
    run.sections.append(
        "## Evaluation\n\n"
        "`geosynth evaluate` compared each generated set with the real toy pool "
        f"({reports['gaussian']['n_real']} images): FID and KID in the tiny DINOv2's feature "
        "space, density and coverage (k=3), the mean absolute error of per-class mean colour "
        "(pixels, 0..1) and of per-class mean VAE latents, the Wasserstein-1 distance of "
        "luminance, a GLCM texture distance and the toy CLIP's score "
        f"(real images score {_num(real_clip)}). With 4 images per class and a barely trained "
        "UNet the numbers only show the machinery; the colour columns show what leak-aligned "
        "noise fixes. Per-class bars and real/synthetic grids (leak-aligned) are in "
        "`evaluate-plots/`.\n\n"
        "| metric | Gaussian | leak-aligned |\n| --- | --- | --- |\n" + rows + "\n\n"
        "![real (upper row) and leak-aligned synthetic (lower row) per class]"
        "(evaluate-plots/real-vs-synthetic.png)\n"
    )


def step_train_clf(run: DemoRun) -> None:
    """train-clf on the leak-aligned and Gaussian synthetic sets and on the real 8-shot set,
    selected on toy VAL images and scored once on toy TEST images (disjoint parts of the pool),
    plus the zero-shot CLIP head: a toy Table 3."""
    from geosynth.classify import ModelSpec, TrainConfig, train_and_test

    pool = load_dataset(run.paths["pool"])
    # The pool images outside the 8-shot set (drawn as step_toy_data drew it): per class, the
    # first 12 by key for VAL and the rest for TEST, so no split shares an image.
    fewshot_keys = set(load_dataset(run.paths["pool"], shots=8, seed=run.seed).keys)
    by_class: dict[int, list[int]] = {}
    for i in sorted(range(len(pool)), key=lambda i: pool.samples[i].key):
        if pool.samples[i].key not in fewshot_keys:
            by_class.setdefault(pool.samples[i].label, []).append(i)
    val = pool.subset([i for ix in by_class.values() for i in ix[:12]], role="val")
    test = pool.subset([i for ix in by_class.values() for i in ix[12:]], role="test")
    spec = ModelSpec(model=str(run.paths["model_clip"]), mode="lora")
    cfg = TrainConfig(epochs=6, batch_size=10, lr=1e-2, workers=0)
    sources = {
        "zero-shot": run.paths["fewshot"],
        "synthetic, leak-aligned": run.paths["synth_leak-aligned"],
        "synthetic, Gaussian": run.paths["synth_gaussian"],
        "real 8-shot": run.paths["fewshot"],
    }
    results, rows = {}, []
    # The toy CLIP is tiny: one thread avoids a second one spinning on a busy shared core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, train_path in sources.items():
            train = load_dataset(train_path)
            out = run.out / f"clf-{name.replace(', ', '-').replace(' ', '-')}"
            report = train_and_test(
                train,
                val,
                test,
                out,
                spec=spec,
                config=cfg,
                seeds=[run.seed],
                zero_shot=name == "zero-shot",
            )
            r = report["runs"][0]
            results[name] = round(r["test"]["top1"], 4)
            rows.append(
                f"| {name} | {len(train) if name != 'zero-shot' else 0} | "
                f"{r['selected_epoch']} | {r['val']['top1']:.3f} | {r['test']['top1']:.3f} | "
                f"{r['test']['macro_f1']:.3f} |"
            )
            if name == "synthetic, leak-aligned":
                shutil.copyfile(out / "confusion.png", run.out / "clf-confusion.png")
    finally:
        torch.set_num_threads(threads)
    run.metrics["train_clf_test_top1"] = results
    chance = 1 / len(pool.class_names)
    run.sections.append(
        "## Classifier\n\n"
        "`geosynth train-clf` adapted the toy CLIP with LoRA (rank 16, alpha 32, query and value "
        f"projections of both towers; {cfg.epochs} epochs) on each training set, chose the "
        f"epoch on {len(val)} toy VAL images and scored it once on {len(test)} toy TEST images "
        f"(chance {chance:.2f}). The toy CLIP is untrained, so zero-shot is near chance; the "
        "toy UNet is untrained too, so synthetic images teach only the colour that "
        "leak-aligned noise puts into them.\n\n"
        "| training set | images | epoch (by VAL) | VAL top-1 | TEST top-1 | TEST macro-F1 |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        "![TEST confusion, leak-aligned synthetic](clf-confusion.png)\n"
    )


def step_maps(run: DemoRun) -> None:
    """Seed 004 in miniature: a UNet from scratch conditioned on land-cover maps (concat), against
    the same UNet trained with blank maps; per-map fidelity of images from held-out maps."""
    from geosynth.data.paired import attach_maps
    from geosynth.diffusion import load_map_generation
    from geosynth.diffusion.mapcond import MapCondition
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe
    from geosynth.metrics.paired import fidelity_report
    from geosynth.toy.paired import make_toy_paired_dataset

    # Two classes whose colours the tiny toy VAE reconstructs faithfully (see the tests).
    pair_classes = ["water", "desert"]
    train = make_toy_paired_dataset(
        run.out / "pairs-train", n=24, size=run.size, seed=run.seed, classes=pair_classes
    )
    val = make_toy_paired_dataset(
        run.out / "pairs-val", n=10, size=run.size, seed=run.seed + 1, classes=pair_classes
    )
    unet_cfg = json.loads((run.paths["model_sd"] / "unet" / "config.json").read_text())
    cfg_path = run.out / "map-unet.json"
    cfg_path.write_text(json.dumps({k: v for k, v in unet_cfg.items() if not k.startswith("_")}))
    ds = attach_maps(load_dataset(train))
    scores, samples = {}, {}
    for name, dropout in (("map", 0.1), ("blank", 1.0)):
        recipe = Recipe(
            unet="full",
            text_encoder="frozen",
            init="scratch",
            unet_config=str(cfg_path),
            resolution=run.size,
            batch_size=8,
            max_steps=MAP_STEPS,
            lr=2e-3,
            lr_schedule="constant",
            warmup_ratio=0.0,
            seed=run.seed,
            checkpoint_every=10_000,
            maps=MapCondition(condition="concat", dropout=dropout),
        )
        model = run.out / f"map-ldm-{name}"
        finetune(ds, model, recipe, model=str(run.paths["model_sd"]), overwrite=True, log=run.log)
        mapgen = load_map_generation(
            val,
            model=str(run.paths["model_sd"]),
            loras=[model],
            per_map=1,
            steps=20,
            guidance=2.0,
            seed=run.seed,
            device="cpu",
        )
        gen = run.out / f"map-synth-{name}"
        if gen.exists():  # a rerun of the demo into the same folder replaces its own output
            shutil.rmtree(gen)
        mapgen.run(gen, batch_size=10)
        synth = attach_maps(load_dataset(gen))
        scores[name] = fidelity_report(synth, ds)
        samples[name] = synth
    legend = ds.legend
    assert legend is not None
    rows = [
        [legend.render(samples["map"].map(i)) for i in range(6)],
        [samples["map"].image(i) for i in range(6)],
        [samples["blank"].image(i) for i in range(6)],
    ]
    image_grid(rows, ["map", "map-conditioned", "blank-map model"]).save(run.out / "maps.png")
    run.metrics["maps"] = {
        name: {"mean_fidelity": round(r["mean"], 4), "chance": round(r["chance"], 4)}
        for name, r in scores.items()
    }
    m, b = scores["map"]["mean"], scores["blank"]["mean"]
    run.sections.append(
        "## Generating from semantic maps (seed 004)\n\n"
        f"`finetune --condition concat` trained a toy UNet from scratch ({MAP_STEPS} steps) on 24 "
        "procedural water/desert maps and the images rendered from them; the same UNet trained with "
        "blank maps (`--map-dropout 1`) is the control. From 10 held-out maps, "
        "`generate --maps` made one image each. Per-map fidelity (share of pixels whose colour is "
        f"nearest to their map class's mean real colour): {m:.2f} with maps, {b:.2f} with blank "
        f"maps (chance {scores['map']['chance']:.2f}).\n\n"
        "![maps, map-conditioned images, blank-map images](maps.png)\n"
    )


#: optimiser steps of the demo's map-conditioned runs
MAP_STEPS = 100


def _mean_db(ds: Any, units: str = "power") -> dict[str, list[float]]:
    """Per class, the mean backscatter of each polarisation in dB (10 log10 of mean power);
    ``units="db"``: the files hold dB (real Sentinel-1 products), brought to power first."""
    import numpy as np

    per: dict[str, list[np.ndarray]] = {}
    for i in range(len(ds)):
        arr = ds.raster(i).array.astype(np.float64)
        arr = 10 ** (arr / 10) if units == "db" else arr
        per.setdefault(ds.class_names[ds.samples[i].label], []).append(arr.mean(axis=(1, 2)))
    return {
        c: [round(float(v), 2) for v in 10 * np.log10(np.mean(rows, 0))] for c, rows in per.items()
    }


def step_sar(run: DemoRun) -> None:
    """Toy dual-pol SAR in native units: channel-means, finetune and generate through the default
    radiometry, synthetic GeoTIFFs in float32 linear power like the real chips."""
    from geosynth.artifacts import save_channel_means
    from geosynth.data.load import apply_radiometry
    from geosynth.data.radiometry import Radiometry
    from geosynth.diffusion import class_channel_means, load_generation, load_vae
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe
    from geosynth.metrics.evaluate import EvalOptions, evaluate
    from geosynth.toy.real_sar import sar_chips

    sar_dir = run.out / "sar-chips"
    if sar_dir.exists():
        shutil.rmtree(sar_dir)
    # Real SSL4EO-S12 chips when ../shared is present, else the procedural toy.
    sar_dir, sar_kind = sar_chips(sar_dir, run.size, run.seed, stride=2 * run.size)
    notes: list[str] = []
    real = apply_radiometry(load_dataset(sar_dir), "auto", notes.append)
    assert real.radiometry is not None
    sd = str(run.paths["model_sd"])
    cm = class_channel_means(load_vae(sd), real, resolution=run.size, vae_source=sd)
    means_path = run.out / "sar-channel-means.safetensors"
    save_channel_means(means_path, cm, provenance=Provenance.start("channel-means"))
    recipe = Recipe(resolution=run.size, batch_size=8, max_steps=40, lr=5e-3, seed=run.seed)
    lora_dir = run.out / "toy-sar-lora"
    card = finetune(real, lora_dir, recipe, model=sd, overwrite=True, log=lambda _: None)
    card = card["cards"]["all"]
    # Classes, prompt template and radiometry come from the LoRA's card.
    gen = load_generation(
        model=sd,
        loras=[lora_dir],
        per_class=4,
        steps=20,
        seed=run.seed,
        noise="leak-aligned",
        channel_means=means_path,
        device="cpu",
    )
    out = run.out / "synth-sar"
    if out.exists():
        shutil.rmtree(out)
    gen.run(out, batch_size=4)
    synth = load_dataset(out, radiometry=card["radiometry"])
    run.paths.update(sar=sar_dir, synth_sar=out)
    units = real.radiometry.units
    # SAR metrics on the GeoTIFFs themselves, in dB, with bins and GLCM levels from the real set.
    # Real Sentinel-1 products hold dB already: their native units are the dB space.
    scale = "linear" if units == "db" else "db"
    sar_eval = evaluate(
        str(out), str(sar_dir), EvalOptions(sections=("amplitude", "glcm"), amplitude_scale=scale)
    ).report
    real_db, synth_db = _mean_db(real, units), _mean_db(synth, units)
    first = synth.raster(0)
    amp = sar_eval["amplitude"]
    # dB data compared in its own units: the mean difference is the shift in dB.
    amp["shift_db"] = amp["mean_difference"] if units == "db" else amp["shift_db"]
    run.metrics["sar"] = {
        "radiometry": Radiometry.from_dict(card["radiometry"]).describe(),
        "synthetic_dtype": first.dtype,
        "synthetic_bands": first.band_names,
        "real_mean_db": real_db,
        "synthetic_mean_db": synth_db,
        "amplitude_w1_db": amp["wasserstein1"],
        "amplitude_kl": amp["kl_log_amplitude"],
        "shift_db": amp["shift_db"],
        "glcm_distance": sar_eval["glcm"].get("distance"),
    }
    grid = [
        [real.image(i) for i in range(len(real)) if real.samples[i].label == c][:4]
        + [synth.image(i) for i in range(len(synth)) if synth.samples[i].label == c]
        for c in range(len(real.class_names))
    ]
    image_grid(grid, real.class_names).save(run.out / "sar.png")
    rows = "\n".join(
        f"| {c} | {real_db[c][0]:.1f} / {real_db[c][1]:.1f} | "
        f"{synth_db[c][0]:.1f} / {synth_db[c][1]:.1f} |"
        for c in real.class_names
    )
    run.sections.append(
        "## SAR in native units\n\n"
        f"SAR data: {sar_kind}; {len(real)} GeoTIFFs. No spec was given, so the default for float 2-band data was used "
        f"(printed once: {notes[0] if notes else 'none'}). channel-means, a "
        f"{card['steps']}-step LoRA and leak-aligned generation all ran through it; the "
        "generated images were written back through its inverse as "
        f"{first.dtype} GeoTIFFs with bands {', '.join(first.band_names or [])}, beside 8-bit "
        "previews. Mean backscatter per class, VV / VH in dB:\n\n"
        "| class | real | synthetic (leak-aligned) |\n| --- | --- | --- |\n" + rows + "\n\n"
        f"`evaluate` on the GeoTIFFs in dB (bins from the real set): amplitude W1 "
        f"{amp['wasserstein1']:.2f} dB, KL {amp['kl_log_amplitude']:.3f}, mean shift "
        f"{amp['shift_db']:+.2f} dB (synthetic minus real).\n\n"
        "![real (left four) and synthetic (right four) SAR, false colour VV, VH, VV-VH]"
        "(sar.png)\n"
    )


STEPS: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("toy data", step_toy_data),
    ("toy models", step_toy_models),
    ("rarity", step_rarity),
    ("finetune", step_finetune),
    ("generate", step_generate),
    ("sar", step_sar),
    ("plora", step_plora),
    ("evaluate", step_evaluate),
    ("train-clf", step_train_clf),
    ("maps", step_maps),
]


def run_demo(
    out: str | os.PathLike[str] = "demo-out",
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Run every demo step into ``out`` and write ``report.md`` and ``metrics.json``."""
    torch.manual_seed(seed)
    run = DemoRun(out=Path(out), seed=seed, log=log)
    run.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name, step in STEPS:
        log(f"demo: {name} ...")
        t0 = time.perf_counter()
        step(run)
        timings[name] = round(time.perf_counter() - t0, 2)
    run.metrics["seconds"] = timings
    report = (
        f"# geosynth demo (version {__version__})\n\n"
        "Every step that geosynth has, on procedural toy data and tiny models "
        f"(seed {seed}). Timings in seconds: {json.dumps(timings)}.\n\n" + "\n".join(run.sections)
    )
    with atomic_path(run.out / "report.md") as tmp:
        tmp.write_text(report)
    write_json(run.out / "metrics.json", run.metrics)
    return run.out / "report.md"
