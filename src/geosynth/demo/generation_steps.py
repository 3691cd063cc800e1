"""The demo's data and generation steps: toy data and models, rarity, fine-tuning, generation and
prototype LoRAs. Each step does the work through the library, then adds its markdown section."""

from __future__ import annotations

import shutil

from geosynth.artifacts import Provenance, load_embeddings, write_json
from geosynth.data import export_dataset, load_dataset
from geosynth.data.stats import class_color_stats
from geosynth.demo.state import DemoRun, fmt_num
from geosynth.diffusion import decode_latents, encode_latents, images_to_tensor, load_sd_pipeline
from geosynth.features import create_extractor
from geosynth.features.embed import embed_dataset
from geosynth.features.shard_embed import embed_shards
from geosynth.metrics.rarity import rarity_report
from geosynth.toy import make_toy_dataset, make_toy_models, make_toy_shards
from geosynth.viz import image_grid


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
        f"| {name} | {s['density']:.2f} | {fmt_num(s['rarity_mean'])} | "
        f"{s['rarity_fraction_inside']:.2f} |"
        for name, s in report["per_class"].items()
    )
    run.sections.append(
        "## Rarity\n\n"
        f"`geosynth embed` streamed {shards['samples']} images from 2 webdataset shards of a "
        "LAION stand-in holding only forest, cropland, urban and snow scenes "
        f"({shards['corrupt_skipped']} corrupt sample skipped); `geosynth rarity --by-class` "
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
        train_loras=True,
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
