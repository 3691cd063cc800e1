"""The scores ``geosynth filter`` decides on, one per criterion: a classifier's confidence in
the intended class (off-class samples: a ``train-clf`` classifier, or zero-shot CLIP with the
class prompts) and the distance to the real set's k-NN balls
(off-manifold samples). Copy distances come from :mod:`geosynth.metrics.memorisation`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from geosynth.data import ImageDataset
from geosynth.data.names import fill_prompt, prompt_name
from geosynth.defaults import PROMPT_TEMPLATE
from geosynth.errors import GeosynthError


def parse_classifier(spec: str) -> str:
    """The train-clf output a ``clf:DIR`` spec names (``clf:`` is the vocabulary of
    ``--features``; a bare directory is accepted too)."""
    return spec[4:] if spec.startswith("clf:") else spec


CLIP_PREFIX = "clip:"


@dataclass
class ClassifierModel:
    """A loaded off-class classifier, split where the work can be spread: ``prepare`` turns one
    image into the model's input (it runs in data-loader workers), ``forward`` scores a batch
    of prepared inputs against each image's intended class (a synthetic-set label) and returns
    (confidence, float64; predicted class, an index into ``names``)."""

    names: list[str]
    prepare: Callable[[Image.Image], torch.Tensor]
    forward: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    about: dict[str, Any]
    weights: str  # fingerprint of the classifier's local files (part of a resumable plan)


def load_classifier_model(
    ds: ImageDataset,
    classifier: str,
    *,
    prompt_template: str = PROMPT_TEMPLATE,
    device: str = "cpu",
) -> ClassifierModel:
    """``clip:REF`` is zero-shot CLIP (:func:`clip_model`), anything else a train-clf output
    (:func:`trained_model`)."""
    if classifier.startswith(CLIP_PREFIX):
        return clip_model(
            ds, classifier.removeprefix(CLIP_PREFIX), prompt_template=prompt_template, device=device
        )
    return trained_model(ds, classifier, device=device)


def clip_model(
    ds: ImageDataset, ref: str, *, prompt_template: str = PROMPT_TEMPLATE, device: str = "cpu"
) -> ClassifierModel:
    """Zero-shot CLIP: softmax over the synthetic set's class prompts of the model's scaled
    image-prompt cosines (CLIP's own zero-shot classifier, its learned ``logit_scale``
    included), read at each image's intended class. ``ref`` is any open_clip reference
    (``NAME/PRETRAINED``, ``hf-hub:ID``, ``local-dir:DIR`` or a model directory)."""
    from geosynth.features.spec import model_fingerprint
    from geosynth.metrics.clipscore import ClipScorer

    if "{}" not in prompt_template:
        raise GeosynthError(
            f"prompt_template={prompt_template!r}: needs {{}} where the class name goes"
        )
    if not ref:
        raise GeosynthError(
            "classifier='clip:': name an open_clip model after 'clip:' (e.g. "
            "clip:ViT-B-16/openai, clip:hf-hub:ID, clip:DIR)"
        )
    try:
        scorer = ClipScorer.load(ref, device=device)
    except GeosynthError as exc:  # the loader names clip_model; this parameter is classifier
        raise GeosynthError(
            str(exc).replace(f"clip_model={ref!r}", f"classifier={CLIP_PREFIX + ref!r}")
        ) from None
    names = list(ds.class_names)
    text = scorer.text_features(
        [fill_prompt(prompt_template, prompt_name(c)) for c in names]
    ).double()
    scale = (
        float(scorer.model.logit_scale.detach().exp())
        if hasattr(scorer.model, "logit_scale")
        else 100.0  # CLIP's trained scale, for a model without one
    )

    def prepare(image: Image.Image) -> torch.Tensor:
        return scorer.preprocess(image.convert("RGB"))

    @torch.inference_mode()
    def forward(pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = scorer.model.encode_image(pixels.to(scorer.device)).float()
        image = torch.nn.functional.normalize(f, dim=-1).cpu()
        probs = (scale * image.double() @ text.T).softmax(dim=1)
        return probs.gather(1, labels.unsqueeze(1)).squeeze(1), probs.argmax(dim=1)

    about = {"clip": ref, "prompt_template": prompt_template, "classes": names, "scale": scale}
    return ClassifierModel(names, prepare, forward, about, model_fingerprint(ref))


def trained_model(ds: ImageDataset, classifier: str, *, device: str = "cpu") -> ClassifierModel:
    """Softmax probability of each image's intended class under a ``geosynth train-clf``
    classifier, and the class it predicts. Every class of ``ds`` must be one of the
    classifier's (matched by name): otherwise the confidence means nothing."""
    from geosynth.backbones import eval_transform
    from geosynth.classify.checkpoint import load_classifier
    from geosynth.features.classifier import classifier_file
    from geosynth.features.spec import model_fingerprint

    path = classifier_file(parse_classifier(classifier))
    model = load_classifier(path).to(device).eval()
    names = list(model.class_names)
    present = sorted({ds.class_names[label] for label in ds.labels})
    missing = [c for c in present if c not in names]
    if len(missing) == len(present):
        raise GeosynthError(
            f"classifier={classifier!r}: trained on {', '.join(names)}; no class in common with "
            f"the synthetic set ({', '.join(present)})"
        )
    if missing:
        raise GeosynthError(
            f"classifier={classifier!r}: does not know class(es) {', '.join(missing)} of the "
            f"synthetic set (it was trained on {', '.join(names)})"
        )
    column = torch.tensor([names.index(c) if c in names else 0 for c in ds.class_names])
    tf = eval_transform(model.image_size, model.mean, model.std, model.interpolation)

    def prepare(image: Image.Image) -> torch.Tensor:
        return tf(image.convert("RGB"))

    @torch.no_grad()
    def forward(pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = model(pixels.to(device)).double().softmax(dim=1).cpu()
        conf = probs.gather(1, column[labels].unsqueeze(1)).squeeze(1)
        return conf, probs.argmax(dim=1)

    about = {"path": str(path), "classes": names, "backbone": model.spec.backbone}
    return ClassifierModel(names, prepare, forward, about, model_fingerprint(str(path)))


def manifold_ratio(
    synth: torch.Tensor,
    synth_labels: list[int],
    real: torch.Tensor,
    real_labels: list[int],
    *,
    k: int,
) -> torch.Tensor:
    """For each generated embedding, ``min_j d(x, r_j) / radius_k(r_j)`` over the real
    embeddings ``r_j`` of the same class (labels already aligned by name): at most 1 means
    inside some real k-NN ball, the PRDC notion of 'on the real manifold'. ``inf`` for classes
    with no more than ``k`` real images (no ball can be formed)."""
    from geosynth.metrics.knn import knn_sqradii

    out = torch.full((synth.shape[0],), float("inf"), dtype=torch.float64)
    s_lab, r_lab = torch.tensor(synth_labels), torch.tensor(real_labels)
    for c in sorted(set(synth_labels)):
        ridx = torch.nonzero(r_lab == c).flatten()
        sidx = torch.nonzero(s_lab == c).flatten()
        if ridx.numel() <= k or sidx.numel() == 0:
            continue
        r = real[ridx].double()
        radii = knn_sqradii(real[ridx], [k])[k].sqrt()
        d = torch.cdist(synth[sidx].double(), r)
        out[sidx] = (d / radii.clamp_min(1e-12).unsqueeze(0)).min(dim=1).values
    return out
