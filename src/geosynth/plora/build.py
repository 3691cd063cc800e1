"""pLoRA as a library call: :func:`build_plora` clusters a dataset, writes one dataset per
cluster, the assignments and the per-class mixing weights (the ``lora_weights`` file that
:func:`geosynth.diffusion.sampling.load_generation` reads), and optionally fine-tunes the K
cluster LoRAs; :func:`cluster_plora` and :func:`train_clusters` are its two halves.

Layout of ``OUT``::

    clusters/cluster_<j>/     imagefolder of the cluster's images, class labels kept
    assignments.json          every sample's cluster, the seed and the inertia
    weights.json              bias-score weights (seed 001's pLoRA)
    weights-uniform.json      1/K for every cluster (the paper's pLoRA with a dagger)
    loras/cluster_<j>/        the cluster LoRAs, once trained (``train_loras=True``, or one
                              fine-tuning run per cluster dataset)
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.artifacts import Embeddings, Provenance, atomic_path, write_json, write_provenance
from geosynth.data import check_source, export_dataset, load_dataset
from geosynth.data.dataset import ImageDataset
from geosynth.defaults import FEATURE_MODEL, PROMPT_TEMPLATE, SD_MODEL
from geosynth.diffusion.loras import CARD_FILE
from geosynth.diffusion.training.recipe import Recipe
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers
from geosynth.plora.clustering import kmeans
from geosynth.plora.weights import bias_weights, count_table, uniform_weights
from geosynth.progress import Track, no_track
from geosynth.runtime import model_ref, recorded_ref


def cluster_name(j: int) -> str:
    return f"cluster_{j}"


def check_features(emb: Embeddings, ds: ImageDataset, where: str) -> np.ndarray:
    """Embeddings rows must be the dataset's samples, in order; ``where`` names them in errors
    (``embeddings='e.safetensors'``)."""
    x = emb.embeddings.numpy()
    if len(x) != len(ds):
        raise GeosynthError(
            f"{where}: {len(x)} embeddings for {len(ds)} images; embed the same dataset "
            "(same `split`, `classes`, `shots` and `seed`)"
        )
    if emb.labels is not None and emb.class_names is not None:
        theirs = [emb.class_names[int(i)] for i in emb.labels]
        ours = [ds.class_names[s.label] for s in ds.samples]
        if theirs != ours:
            raise GeosynthError(f"{where}: its labels do not match the dataset's samples")
    if not np.isfinite(x).all():
        raise GeosynthError(f"{where}: embeddings contain NaN or Inf")
    return x


def _mixture(names: list[str], w: np.ndarray) -> dict[str, dict[str, float]]:
    return {
        c: {cluster_name(j): float(w[i, j]) for j in range(w.shape[1])} for i, c in enumerate(names)
    }


def cluster_plora(
    ds: ImageDataset,
    features: np.ndarray,
    out: str | os.PathLike[str],
    *,
    k: int,
    seed: int = 0,
    restarts: int = 10,
    feature_model: str = "",
    provenance: Provenance | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Cluster, export and write the weights; returns the summary (counts, weights, inertia).
    ``model``: the base model the cluster LoRAs are trained for, recorded with its family in
    the weights files (``generate`` refuses them for a model of another family)."""
    ds.check_nonempty()
    res = kmeans(features, k, seed=seed, restarts=restarts)
    labels = [s.label for s in ds.samples]
    counts = count_table(labels, res.assignments.tolist(), len(ds.class_names), k)
    b, w = bias_weights(counts)
    names = list(ds.class_names)
    prov = provenance or Provenance.start("cluster-plora", seeds={"seed": seed})
    loras = {cluster_name(j): f"loras/{cluster_name(j)}" for j in range(k)}
    common: dict[str, Any] = {"loras": loras, "class_names": names, "k": k}
    if model is not None:
        from geosynth.diffusion.family import detect_family

        common |= {
            "base_model": recorded_ref(model),
            "family": detect_family(model).name,
        }
    weights = {
        **common,
        "variant": "bias-score",
        "weights": _mixture(names, w),
        "bias_scores": _mixture(names, b),
        "counts": {
            c: {cluster_name(j): int(counts[i, j]) for j in range(k)} for i, c in enumerate(names)
        },
    }
    uniform = {
        **common,
        "variant": "uniform",
        "weights": _mixture(names, uniform_weights(len(names), k)),
    }
    assignments = {
        "k": k,
        "seed": res.seed,
        "restarts": restarts,
        "inertia": res.inertia,
        "feature_model": feature_model,
        "samples": [
            {"key": s.key, "class": names[s.label], "cluster": int(a)}
            for s, a in zip(ds.samples, res.assignments, strict=True)
        ],
    }
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for j in range(k):
            idx = [i for i, a in enumerate(res.assignments) if a == j]
            sub = ds.subset(idx, cluster=j)
            present = [c for i, c in enumerate(names) if counts[i, j] > 0]
            sub = sub.select_classes(present)
            export_dataset(
                sub, tmp / "clusters" / cluster_name(j), Provenance.start("cluster-plora")
            )
        write_json(tmp / "assignments.json", assignments)
        write_json(tmp / "weights.json", weights)
        write_json(tmp / "weights-uniform.json", uniform)
        write_provenance(tmp, prov)
    return {
        "out": str(out),
        "k": k,
        "inertia": res.inertia,
        "seed": res.seed,
        "class_names": names,
        "counts": counts.tolist(),
        "weights": w.tolist(),
    }


def train_clusters(
    out: str | os.PathLike[str],
    model: str,
    recipe: Recipe,
    *,
    track: Track = no_track,
    log: Callable[[str], None] = print,
    device: str | None = None,
    compile_unet: bool = False,
) -> list[Path]:
    """Fine-tune one LoRA per cluster (skipping finished ones; an interrupted one resumes);
    ``device`` and ``compile_unet`` as for :func:`geosynth.diffusion.training.finetune.finetune`."""
    from geosynth.diffusion.training.finetune import finetune, parts_dir

    out = Path(out)
    k = json.loads((out / "assignments.json").read_text())["k"]
    done = []
    for j in range(k):
        dest = out / "loras" / cluster_name(j)
        if (dest / CARD_FILE).is_file():
            log(f"{cluster_name(j)}: already trained")
        else:
            log(f"{cluster_name(j)}: training")
            finetune(
                load_dataset(out / "clusters" / cluster_name(j)),
                dest,
                recipe,
                model=model,
                resume=parts_dir(dest).exists(),
                track=track,
                log=log,
                device=device,
                compile_unet=compile_unet,
            )
        done.append(dest)
    return done


def build_plora(
    dataset: ImageDataset | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    k: int = 4,
    features: str = FEATURE_MODEL,
    embeddings: str | os.PathLike[str] | Embeddings | None = None,
    feature_model: str | None = None,
    restarts: int = 10,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    train_loras: bool = False,
    resume: bool = False,
    model: str = SD_MODEL,
    recipe: Recipe | Mapping[str, Any] | None = None,
    device: str | None = None,
    compile_unet: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """What ``geosynth cluster-plora`` does: cluster every image of ``dataset`` regardless of
    class (K-Means with ``k``, ``restarts``, ``seed``) in the space of ``features`` (an
    extractor spec; embeddings are cached) or of given ``embeddings`` (rows = the dataset's
    images; ``feature_model`` names their space in ``assignments.json``, by default the
    extractor spec or the embeddings file), write ``out`` (see :func:`cluster_plora`), and with ``train_loras`` fine-tune one LoRA
    per cluster on ``model`` with ``recipe`` (see :func:`train_clusters`; ``compile_unet``
    torch.compiles their UNet).

    ``resume`` keeps the clusters of an existing ``out`` and trains what is missing; without
    it ``out`` must be new. Returns ``{"out", "summary", "trained"}``: the clustering summary
    (None when kept), and the trained LoRA directories."""
    from geosynth.artifacts import load_embeddings
    from geosynth.features.resolve import resolve_embeddings

    check_numbers(k=k, restarts=restarts, shots=shots, seed=seed)
    if not isinstance(dataset, ImageDataset):
        check_source(dataset, "dataset")  # inputs before any model
    if not isinstance(embeddings, Embeddings):
        check_source(embeddings, "embeddings")
    if train_loras:
        from geosynth.diffusion.family import detect_family

        model_ref(model)
        detect_family(model)  # a family geosynth does not run: refused before any clustering
    out = Path(out)
    if isinstance(recipe, Mapping):
        recipe = Recipe(**recipe)
    recipe = recipe or Recipe(rank=4, alpha=4.0, seed=seed)
    recipe.check()
    if train_loras and recipe.init_loras:
        from geosynth.diffusion.training.finetune import check_init_loras

        check_init_loras(recipe, model)  # made for this model: said before any clustering
    summary = None
    if resume and (out / "assignments.json").is_file():
        log(f"keeping the clusters in {out}")
    else:
        if out.exists():
            raise GeosynthError(
                f"out={str(out)!r}: already exists; choose a new path (or pass resume=True)"
            )
        names = list(classes) if classes else None
        if isinstance(dataset, ImageDataset):
            ds, source = dataset, str(dataset.source)
        else:
            source = str(dataset)
            ds = load_dataset(
                source,
                split=split,
                classes=names,
                shots=shots,
                seed=seed,
                radiometry="auto",
                log=log,
            )
        if embeddings is not None:
            if isinstance(embeddings, Embeddings):
                emb, where, name = embeddings, "`embeddings`", "embeddings"
            else:
                emb = load_embeddings(embeddings)
                where, name = f"embeddings={str(embeddings)!r}", str(embeddings)
            x = check_features(emb, ds, where)
        else:
            emb = resolve_embeddings(
                source,
                features=features,
                split=split,
                classes=names,
                shots=shots,
                seed=seed,
                device=device,
                track=track,
                log=log,
                dataset=ds,
            )
            x = check_features(emb, ds, f"features={features!r}")
            name = features
        feature_model = feature_model or name
        prov = Provenance.start("cluster-plora", seeds={"seed": seed}, features=feature_model)
        prov.inputs[f"dataset:{source}"] = ds.fingerprint()
        summary = cluster_plora(
            ds,
            x,
            out,
            k=k,
            seed=seed,
            restarts=restarts,
            feature_model=feature_model,
            provenance=prov,
            model=model if train_loras else None,
        )
    trained = (
        train_clusters(
            out, model, recipe, track=track, log=log, device=device, compile_unet=compile_unet
        )
        if train_loras
        else []
    )
    return {
        "out": str(out),
        "summary": summary,
        "trained": [str(p) for p in trained],
        "clusters": [cluster_name(j) for j in range(k)],
        "commands": finetune_commands(out, model, recipe, compile_unet=compile_unet),
    }


def finetune_commands(
    out: Path, model: str, recipe: Recipe, *, compile_unet: bool = False
) -> list[str]:
    """One ``geosynth finetune`` command per cluster (the same training as ``--train-loras``),
    to run on a cluster scheduler."""
    k = json.loads((out / "assignments.json").read_text())["k"]
    cmds = []
    for j in range(k):
        args = ["geosynth", "finetune", str(out / "clusters" / cluster_name(j))]
        args += ["--model", model, "--lora-rank", str(recipe.rank)]
        args += ["--lora-alpha", str(recipe.alpha)]
        args += ["--epochs", str(recipe.epochs), "--batch-size", str(recipe.batch_size)]
        args += ["--lr", str(recipe.lr), "--seed", str(recipe.seed)]
        if recipe.max_steps:
            args += ["--max-steps", str(recipe.max_steps)]
        if recipe.resolution:
            args += ["--resolution", str(recipe.resolution)]
        if recipe.offset_noise:
            args += ["--offset-noise", str(recipe.offset_noise)]
            if recipe.offset_noise_convention != "std":
                args += ["--offset-noise-convention", recipe.offset_noise_convention]
        if recipe.prompt_template != PROMPT_TEMPLATE:
            args += ["--prompt-template", recipe.prompt_template]
        if recipe.lora_targets != "attention":
            args += ["--lora-targets", recipe.lora_targets]
        for path, weight in recipe.init_loras:
            args += ["--init-lora", f"{path}:{weight}"]
        if compile_unet:
            args += ["--compile"]
        args += ["--out", str(out / "loras" / cluster_name(j))]
        cmds.append(shlex.join(args))
    return cmds
