"""The demo's measuring steps and its other modalities: the evaluation report, a downstream
classifier, map-conditioned generation and SAR. Each step does the work through the library, then
adds its markdown section."""

from __future__ import annotations

import json
import shutil
from typing import Any

import torch

from geosynth.artifacts import Provenance, atomic_path, write_json
from geosynth.artifacts.jsontext import json_text
from geosynth.data import load_dataset
from geosynth.demo.state import DemoRun, fmt_num
from geosynth.viz import image_grid


def step_evaluate(run: DemoRun) -> None:
    """Both generated sets against the real toy pool: FID, PRDC, colour, amplitude, texture, CLIP."""
    from geosynth.metrics.evaluate_plots import write_plots
    from geosynth.metrics.evaluation import EvalOptions, evaluate

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
        + " | ".join(fmt_num(reports[n]["summary"]["overall"][key]) for n in reports)
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
        f"(real images score {fmt_num(real_clip)}). With 4 images per class and a barely trained "
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
    cfg_path.write_text(json_text({k: v for k, v in unet_cfg.items() if not k.startswith("_")}))
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
    from geosynth.metrics.evaluation import EvalOptions, evaluate
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
    # Real Sentinel-1 products hold dB already: evaluate knows and compares them as stored.
    sar_eval = evaluate(
        str(out), str(sar_dir), EvalOptions(sections=("amplitude", "glcm"), amplitude_scale="db")
    ).report
    real_db, synth_db = _mean_db(real, units), _mean_db(synth, units)
    first = synth.raster(0)
    amp = sar_eval["amplitude"]
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
