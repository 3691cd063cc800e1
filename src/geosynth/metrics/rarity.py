"""The rarity report: PRDC and rarity between a reference and a target embedding set, overall and
per target class, with everything the numbers depend on (k, set sizes, feature model);
:func:`rarity` is the whole step (``geosynth rarity``): any two sources in, the report out."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import torch

from geosynth.artifacts import Embeddings
from geosynth.defaults import FEATURE_MODEL
from geosynth.errors import GeosynthError
from geosynth.metrics.lifted import lifted_manifold_metrics
from geosynth.metrics.manifold import manifold_metrics
from geosynth.progress import Track, no_track


def check_features(emb: Embeddings, role: str, k: int) -> None:
    """Reject sets the metrics cannot be computed on, naming the set and the problem."""
    x = emb.embeddings
    if x.shape[0] == 0:
        raise GeosynthError(f"{role}: the set is empty")
    bad = (~torch.isfinite(x)).any(1)
    if bad.any():
        raise GeosynthError(f"{role}: {int(bad.sum())} rows contain NaN or Inf values")
    if x.shape[0] <= k:
        raise GeosynthError(f"{role}: k={k} must be smaller than the set size ({x.shape[0]})")


def _feature_model(emb: Embeddings) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key in ("feature_model", "preprocessing"):
        if key in emb.metadata:
            raw = emb.metadata[key]
            try:
                info[key] = json.loads(raw)
            except ValueError:
                info[key] = raw
    return info


def rarity_report(
    reference: Embeddings,
    target: Embeddings,
    *,
    k: int = 5,
    rarity_k: int = 3,
    per_class: bool = False,
    device: str | None = None,
    names: tuple[str, str] = ("reference", "target"),
    method: str = "blocked",
    approximate: bool = False,
    nprobe: int = 32,
) -> dict[str, Any]:
    """Metrics as a JSON-ready report: exact by the blocked pass (:mod:`.manifold`) or by lifted
    range searches (:mod:`.lifted`), or approximate (IVF range searches) when asked."""
    if k < 1 or rarity_k < 1:
        raise GeosynthError(f"k={k}, rarity_k={rarity_k}: both must be at least 1")
    kmax = max(k, rarity_k)
    check_features(reference, f"REFERENCE {names[0]}", kmax)
    check_features(target, f"TARGET {names[1]}", k)
    dr, dt = reference.embeddings.shape[1], target.embeddings.shape[1]
    if dr != dt:
        raise GeosynthError(
            f"feature dimensions differ: REFERENCE {names[0]} has {dr}, TARGET {names[1]} has {dt}"
        )
    fr, ft = _feature_model(reference), _feature_model(target)
    if (
        fr.get("feature_model")
        and ft.get("feature_model")
        and fr["feature_model"] != ft["feature_model"]
    ):
        raise GeosynthError(
            f"feature models differ: REFERENCE {names[0]} used {fr['feature_model']}, "
            f"TARGET {names[1]} used {ft['feature_model']}"
        )
    if per_class and (target.labels is None or target.class_names is None):
        raise GeosynthError(f"per_class=True: TARGET {names[1]} has no labels and class names")
    labels = target.labels if per_class else None
    num_classes = len(target.class_names) if per_class and target.class_names else None
    if method not in ("blocked", "lifted"):
        raise GeosynthError(f"method={method!r}: expected blocked or lifted")
    if approximate or method == "lifted":
        result = lifted_manifold_metrics(
            reference.embeddings,
            target.embeddings,
            k=k,
            rarity_k=rarity_k,
            target_labels=labels,
            num_classes=num_classes,
            approximate=approximate,
            nprobe=nprobe,
        )
        label = (
            f"APPROXIMATE (faiss IVF range search over lifted balls, nprobe={nprobe})"
            if approximate
            else "exact (lifted balls, one flat range search each, float64 re-checks)"
        )
    else:
        result = manifold_metrics(
            reference.embeddings,
            target.embeddings,
            k=k,
            rarity_k=rarity_k,
            target_labels=labels,
            num_classes=num_classes,
            device=device,
        )
        label = "exact (blocked float32 distances, float64 re-checks near ties)"
    report: dict[str, Any] = {
        "reference": names[0],
        "target": names[1],
        "k": k,
        "rarity_k": rarity_k,
        "n_reference": int(reference.embeddings.shape[0]),
        "n_target": int(target.embeddings.shape[0]),
        "feature_dim": dr,
        "feature_model": fr.get("feature_model") or ft.get("feature_model"),
        "preprocessing": fr.get("preprocessing") or ft.get("preprocessing"),
        "method": label,
        "approximate": approximate,
        "pairs_rechecked_float64": result.pairs_checked_in_float64,
        "metrics": result.summary(),
    }
    if per_class:
        assert labels is not None and target.class_names is not None
        report["per_class"] = {
            name: result.summary(mask=labels == c, cls=c)
            for c, name in enumerate(target.class_names)
            if bool((labels == c).any())
        }
        report["per_class_note"] = (
            "precision, density and rarity are averages over the class's targets; coverage and "
            "recall compare the whole reference with that class alone (recall with class-internal "
            "k-NN radii)"
        )
    return report


def rarity(
    target: str,
    reference: str,
    *,
    out: str | os.PathLike[str] | None = None,
    k: int = 5,
    rarity_k: int = 3,
    features: str = FEATURE_MODEL,
    per_class: bool = False,
    split: str | None = None,
    reference_split: str | None = None,
    classes: list[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    precision: str = "auto",
    method: str = "blocked",
    approximate: bool = False,
    nprobe: int = 32,
    use_cache: bool = True,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any] | None:
    """What ``geosynth rarity`` does: precision, recall, density, coverage and rarity of
    ``target`` (plays "fake") against ``reference`` (plays "real"), each an embeddings file, a
    dataset or a shard directory (embedded with ``features`` and cached). ``split``,
    ``classes`` and ``shots`` apply to the target, ``reference_split`` and ``limit`` (a subset of
    a shard directory) to the reference. The report is written to ``out`` (JSON + provenance)
    when given, and returned.

    Under torchrun / accelerate launch every rank calls this: the embedding and the exact passes
    split across the processes, and rank 0 writes and returns the report (the other ranks get
    None)."""
    from geosynth.artifacts import Provenance, write_json, write_provenance
    from geosynth.data import check_source
    from geosynth.distributed import init_from_env, is_main_process, local_device
    from geosynth.features.resolve import resolve_embeddings
    from geosynth.limits import check_numbers
    from geosynth.runtime import pick_device

    check_numbers(
        k=k,
        rarity_k=rarity_k,
        shots=shots,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        nprobe=nprobe,
    )
    check_source(target, "target")  # both inputs before a model embeds the first
    check_source(reference, "reference")
    dev = local_device(pick_device(device))
    init_from_env(dev)
    common: dict[str, Any] = dict(
        features=features,
        seed=seed,
        batch_size=batch_size,
        device=str(dev),
        precision=precision,
        use_cache=use_cache,
        track=track,
        log=log,
        distributed=True,  # datasets and shards are embedded by all ranks, into one cache entry
    )
    prov = Provenance.start("rarity", seeds={"seed": seed})
    tgt = resolve_embeddings(target, split=split, classes=classes, shots=shots, **common)
    ref = resolve_embeddings(reference, split=reference_split, limit=limit, **common)
    log(
        f"computing exact metrics: {ref.embeddings.shape[0]} reference x "
        f"{tgt.embeddings.shape[0]} target"
    )
    report = rarity_report(
        ref,
        tgt,
        k=k,
        rarity_k=rarity_k,
        per_class=per_class,
        device=str(dev),
        names=(reference, target),
        method=method,
        approximate=approximate,
        nprobe=nprobe,
    )
    if not is_main_process():
        return None
    if out is not None:
        write_json(out, report)
        write_provenance(out, prov)
    return report
