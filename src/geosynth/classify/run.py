"""``train-clf`` as a library call: one training per seed, TEST evaluated once per seed at the
end, mean and std over seeds, and the output folder (report, models, confusion PNGs).

Output ``OUT/``: ``report.json``; ``confusion.png`` (TEST, summed over seeds);
``seed-S/model.safetensors`` (the selected checkpoint's trainable tensors) and
``seed-S/confusion.png``; ``provenance.json``. While running, ``OUT.parts/`` holds the plan and
per-seed checkpoints; ``resume=True`` continues from it, and it is removed once ``OUT`` is
written (atomically, as a whole).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosynth import faults
from geosynth.artifacts import Provenance, atomic_path, json_text, write_json
from geosynth.artifacts import write_provenance as _write_provenance
from geosynth.classify.augment import NATIVE_AUGMENT_PARAMS
from geosynth.classify.checkpoint import load_seed_result, save_classifier, save_seed_result
from geosynth.classify.data import DatasetRef, Splits, load_splits
from geosynth.classify.evaluation import evaluate
from geosynth.classify.metrics import aggregate_seeds, classification_metrics
from geosynth.classify.model import ModelSpec, build_classifier
from geosynth.classify.plot import confusion_png
from geosynth.classify.train import TrainConfig, make_accelerator, train_classifier
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers
from geosynth.progress import Track, no_track
from geosynth.runtime import check_report_to, logs_dir, tracker_config


def parts_dir(out: Path) -> Path:
    """Where an unfinished run keeps its state: ``OUT.parts`` next to ``OUT``."""
    return out.parent / f"{out.name}.parts"


def _plan(spec: ModelSpec, cfg: TrainConfig, seeds: list[int], splits: Splits) -> dict[str, Any]:
    return {
        "model": spec.to_dict(),
        "config": cfg.to_dict(),
        "seeds": seeds,
        "data": splits.fingerprints(),
    }


def _prepare_parts(out: Path, plan: dict[str, Any], resume: bool) -> Path:
    parts = parts_dir(out)
    plan_path = parts / "plan.json"
    normalised = json.loads(json_text(plan, default=str))
    if parts.exists():
        if not resume:
            raise GeosynthError(
                f"{parts}: an interrupted run's state is there; pass resume=True to continue it "
                "or remove the folder to start over"
            )
        if plan_path.exists() and json.loads(plan_path.read_text()) != normalised:
            raise GeosynthError(
                f"resume=True: {plan_path} was written with other settings or data; "
                "re-run with the same arguments or remove the folder"
            )
    parts.mkdir(parents=True, exist_ok=True)
    write_json(plan_path, normalised)
    return parts


def run_seed(
    seed: int,
    spec: ModelSpec,
    cfg: TrainConfig,
    splits: Splits,
    *,
    parts: Path,
    resume: bool,
    accelerator: Any,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one seed (selection on VAL), then evaluate TEST exactly once with the selected
    checkpoint. A finished seed's result is kept in ``parts`` and reused on resume."""
    seed_dir = parts / f"seed-{seed}"
    done = seed_dir / "result"
    if resume and done.exists():
        log(f"seed {seed}: already finished, reusing its result")
        return load_seed_result(done)
    seed_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # LoRA and head initialisation
    model = build_classifier(spec, splits.train.class_names, splits.train.prompt_names)
    result = train_classifier(
        model,
        splits.train,
        splits.val,
        cfg,
        seed=seed,
        real=splits.real,
        state_dir=seed_dir,
        resume=resume,
        accelerator=accelerator,
        track=track,
        log=log,
        on_epoch_end=on_epoch_end,
    )
    model = accelerator.unwrap_model(model)
    # The one and only look at TEST for this seed, after every choice has been made on VAL.
    test = evaluate(
        model,
        splits.test,
        batch_size=cfg.eval_batch_size,
        workers=cfg.loader_workers,
        accelerator=accelerator,
        track=track,
        description=f"seed {seed}: test",
    )
    log(f"seed {seed}: selected epoch {result.best_epoch}, test top-1 {test['top1']:.4f}")
    record = {
        "seed": seed,
        "selected_epoch": result.best_epoch,
        "selected_by": f"val {cfg.select}",
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "val": result.best_val,
        "test": test,
        "history": result.history,
        "state": model.trainable_state(),
        "model": model.describe(),
    }
    save_seed_result(done, record)
    faults.stage("train-clf:seed")
    return record


def zero_shot(
    spec: ModelSpec, splits: Splits, cfg: TrainConfig, *, accelerator: Any, track: Track = no_track
) -> dict[str, Any]:
    """CLIP's text-initialised head without any training, on VAL and TEST (Table 3's zero-shot
    row)."""
    if not spec.is_clip:
        raise GeosynthError("zero_shot=True: needs backbone='clip' (a timm head is untrained)")
    head_spec = ModelSpec(**{**spec.to_dict(), "mode": "head"})
    model = build_classifier(head_spec, splits.train.class_names, splits.train.prompt_names)
    model = model.to(accelerator.device).eval()
    kw = {
        "batch_size": cfg.eval_batch_size,
        "workers": cfg.loader_workers,
        "accelerator": accelerator,
    }
    return {
        "seed": None,
        "selected_epoch": 0,
        "selected_by": "none (zero-shot)",
        "stopped_early": False,
        "resumed_from_epoch": None,
        "val": evaluate(model, splits.val, track=track, description="zero-shot: val", **kw),
        "test": evaluate(model, splits.test, track=track, description="zero-shot: test", **kw),
        "history": [],
        "state": None,
        "model": model.describe(),
    }


def run_train_clf(
    splits: Splits,
    spec: ModelSpec,
    cfg: TrainConfig,
    out: str | Path,
    *,
    seeds: list[int],
    provenance: Provenance,
    resume: bool = False,
    zero_shot_only: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    report_to: str | None = None,
    logging_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train and evaluate for every seed (or zero-shot), write ``out`` and return the report.

    ``report_to`` (``tensorboard`` / ``wandb``, accelerate's trackers) logs every epoch's
    record of every seed as ``seed-S/<metric>`` at step = epoch, into ``logging_dir`` (default
    ``OUT.logs``, beside the output)."""
    out = Path(out)
    check_report_to(report_to)
    if out.exists() and not out.is_dir():
        raise GeosynthError(f"out={str(out)!r}: is a file (expected a directory)")
    if out.is_dir() and any(out.iterdir()) and not (out / "provenance.json").exists():
        raise GeosynthError(f"out={str(out)!r}: a non-empty folder that geosynth did not write")
    if not seeds:
        raise GeosynthError("`seeds`: give at least one seed")
    accelerator = make_accelerator(
        cfg.precision,
        device=cfg.device,
        report_to=report_to,
        logging_dir=logs_dir(out, logging_dir) if report_to else None,
    )
    if report_to and not zero_shot_only:
        accelerator.init_trackers(
            "geosynth-train-clf",
            config=tracker_config({**_config(cfg, spec), "seeds": seeds, **spec.to_dict()}),
        )

    def epoch_hook(seed: int) -> Callable[[int, dict[str, Any]], None] | None:
        """Log a seed's epoch record to the trackers, then call the caller's hook."""
        if not report_to:
            return on_epoch_end

        def hook(epoch: int, record: dict[str, Any]) -> None:
            values = {f"seed-{seed}/{k}": v for k, v in record.items() if k != "epoch"}
            accelerator.log(values, step=epoch)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)

        return hook

    class_names = splits.train.class_names
    runs: list[dict[str, Any]] = []
    parts = None
    if zero_shot_only:
        runs.append(zero_shot(spec, splits, cfg, accelerator=accelerator, track=track))
    else:
        parts = _prepare_parts(out, _plan(spec, cfg, seeds, splits), resume)
        try:
            for seed in seeds:
                runs.append(
                    run_seed(
                        seed,
                        spec,
                        cfg,
                        splits,
                        parts=parts,
                        resume=resume,
                        accelerator=accelerator,
                        track=track,
                        log=log,
                        on_epoch_end=epoch_hook(seed),
                    )
                )
        except GeosynthError:
            # Bad input found before any epoch finished (an unreadable image, say): nothing
            # worth resuming, so leave no state that would demand --resume next time.
            if accelerator.is_main_process and not any(parts.glob("seed-*/last")):
                shutil.rmtree(parts, ignore_errors=True)
            raise
        finally:
            # Not accelerator.end_training(): that also ends the process group, which the
            # rest of this call still waits on under accelerate launch.
            for tracker in accelerator.trackers:
                tracker.finish()
    summed = np.sum([np.asarray(r["test"]["confusion"]) for r in runs], axis=0)
    report: dict[str, Any] = {
        "class_names": class_names,
        "data": splits.describe(),
        "real_weight": cfg.real_weight if splits.real is not None else None,
        "model": runs[0]["model"],
        "config": _config(cfg, spec),
        "zero_shot": zero_shot_only,
        "seeds": [] if zero_shot_only else seeds,
        "selection": "checkpoint and early stopping chosen on VAL only; TEST evaluated once per "
        "seed, after training",
        "test": aggregate_seeds([r["test"] for r in runs], class_names),
        "val": aggregate_seeds([r["val"] for r in runs], class_names),
        "test_confusion_summed": summed.tolist(),
        "test_summed": {
            k: v
            for k, v in classification_metrics(summed, class_names).items()
            if k not in ("confusion",)
        },
        "runs": [{k: v for k, v in r.items() if k not in ("state", "model")} for r in runs],
    }
    if accelerator.is_main_process:
        _write_output(out, report, runs, spec, splits, provenance)
        faults.stage("train-clf:output")
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)
    accelerator.wait_for_everyone()
    return report


def _config(cfg: TrainConfig, spec: ModelSpec) -> dict[str, Any]:
    """The training config as reported; multi-band input gets its own augmentations."""
    out = cfg.to_dict()
    if spec.bands is not None and cfg.augment:
        out["augment_params"] = NATIVE_AUGMENT_PARAMS
    return out


def _write_output(
    out: Path,
    report: dict[str, Any],
    runs: list[dict[str, Any]],
    spec: ModelSpec,
    splits: Splits,
    provenance: Provenance,
) -> None:
    names = report["class_names"]
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for r in runs:
            if r["state"] is None:
                continue
            sdir = tmp / f"seed-{r['seed']}"
            sdir.mkdir()
            prov = Provenance(
                command=provenance.command,
                inputs=provenance.inputs,
                seeds={"seed": r["seed"]},
                argv=provenance.argv,
                started=provenance.started,
            )
            save_classifier(
                sdir / "model.safetensors",
                r["state"],
                spec,
                names,
                prov,
                extra={
                    "selected_epoch": str(r["selected_epoch"]),
                    "prompt_names": json_text(splits.train.prompt_names),
                },
            )
            r["model_file"] = f"seed-{r['seed']}/model.safetensors"
            confusion_png(
                r["test"]["confusion"],
                names,
                sdir / "confusion.png",
                f"TEST, seed {r['seed']}: top-1 {r['test']['top1']:.3f}",
            )
        for run_entry, r in zip(report["runs"], runs, strict=True):
            if "model_file" in r:
                run_entry["model_file"] = r["model_file"]
        t = report["test"]["top1"]
        confusion_png(
            report["test_confusion_summed"],
            names,
            tmp / "confusion.png",
            f"TEST, summed over {len(runs)} run(s): top-1 {t['mean']:.3f} ± {t['std']:.3f}",
        )
        write_json(tmp / "report.json", report)
        _write_provenance(tmp, provenance)


def train_and_test(
    train: DatasetRef,
    val: DatasetRef,
    test: DatasetRef,
    out: str | os.PathLike[str],
    *,
    real: DatasetRef | None = None,
    spec: ModelSpec | Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    split: str | None = None,
    classes: Sequence[str] | None = None,
    shots: int | None = None,
    real_shots: int | None = None,
    class_map: Mapping[str, str] | str | os.PathLike[str] | None = None,
    bands: str | None = None,
    resume: bool = False,
    zero_shot: bool = False,
    provenance: Provenance | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    report_to: str | None = None,
    logging_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """What ``geosynth train-clf`` does: load and align the splits (:func:`load_splits`; shots
    drawn with the first seed), train ``spec`` (default: CLIP ViT-B-16 with LoRA) with
    ``config`` once per seed, select on VAL, evaluate TEST once per seed, and write ``out``
    (see :func:`run_train_clf`); returns the report.

    Native data (16-bit, float, multi-band) or ``bands`` (``all``, indices or band names) make
    the model read those bands standardised with TRAIN's statistics, which needs a timm
    backbone. ``zero_shot`` evaluates CLIP's text-initialised head without training.
    ``resume`` continues an interrupted run from ``OUT.parts`` with the same settings.
    ``report_to`` logs every epoch to an experiment tracker (see :func:`run_train_clf`)."""
    from geosynth.data.multiband import band_input, is_native

    check_report_to(report_to)
    spec = ModelSpec(**spec) if isinstance(spec, Mapping) else spec or ModelSpec()
    if not spec.is_clip:  # the open_clip model and the class prompts are CLIP's only
        spec = replace(spec, model="", prompt_template="")
    config = TrainConfig(**config) if isinstance(config, Mapping) else config or TrainConfig()
    seeds = list(seeds)
    check_numbers(shots=shots, real_shots=real_shots, seeds=seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise GeosynthError(f"seeds={seeds}: expected distinct integers, e.g. [0, 1, 2]")
    if zero_shot and not spec.is_clip:
        raise GeosynthError("zero_shot=True: needs backbone='clip' (a timm head is untrained)")
    if spec.is_clip and "{}" not in spec.prompt_template:
        raise GeosynthError(f"prompt_template={spec.prompt_template!r}: must contain {{}}")
    splits = load_splits(
        train,
        val,
        test,
        real,
        split=split,
        classes=classes,
        shots=shots,
        real_shots=real_shots,
        class_map=class_map,
        seed=seeds[0],
    )
    if bands is not None or is_native(splits.train):
        # Native data never goes through 8 bits: the selected bands, standardised on TRAIN.
        if spec.is_clip:
            raise GeosynthError(
                f"`bands`: {splits.train.source} holds native (non 8-bit) or multi-band data; "
                "use backbone='timm:NAME' (CLIP's image tower takes 8-bit RGB)"
            )
        spec = replace(spec, bands=band_input(splits.train, bands or "all", what="bands").to_dict())
    if provenance is None:
        provenance = Provenance.start(
            "train-clf",
            seeds={f"seed_{s}": s for s in seeds},
            model=spec.to_dict(),
            config=config.to_dict(),
        )
        for role in ("train", "val", "test", "real"):
            ds = getattr(splits, role)
            if ds is not None:
                provenance.inputs[f"{role}:{ds.source}"] = ds.fingerprint()
    return run_train_clf(
        splits,
        spec,
        config,
        Path(out),
        seeds=seeds,
        provenance=provenance,
        resume=resume,
        zero_shot_only=zero_shot,
        track=track,
        log=log,
        on_epoch_end=on_epoch_end,
        report_to=report_to,
        logging_dir=logging_dir,
    )
