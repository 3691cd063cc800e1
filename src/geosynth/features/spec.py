"""Feature model specs: the grammar, the factory that builds the extractor a spec names, and the
fingerprint of the weights it loads (kept with the grammar, so embedding and caching both use it).

Model specs (``features``; the CLI's ``--model`` / ``--features``):

* ``dinov2-small|base|large|giant`` -> ``facebook/dinov2-*`` (transformers, CLS token);
* ``hf:ID_OR_DIR`` or any hub id / directory with a transformers config -> transformers image model;
* ``open_clip:NAME/PRETRAINED`` (``open_clip:ViT-B-16/openai``), ``open_clip:local-dir:DIR``,
  ``open_clip:hf-hub:ID`` -> the open_clip image tower;
* ``timm:NAME`` (pretrained weights from the hub), ``timm:local-dir:DIR`` -> a timm backbone's
  pooled features;
* ``inception`` / ``inception:WEIGHTS.pth`` -> the FID Inception-v3 pool3 features (torch-fidelity);
* ``clf:PATH`` -> the image features of a ``train-clf`` classifier (its output, a ``seed-S``
  folder or ``model.safetensors``), before its head.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from geosynth.data.multiband import BandInput
from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor
from geosynth.runtime import pick_device, pick_dtype, resolve_precision

DINOV2_ALIASES = {
    f"dinov2-{s}": f"facebook/dinov2-{s}" for s in ("small", "base", "large", "giant")
}


def create_extractor(
    features: str,
    *,
    device: str | None = None,
    precision: str = "auto",
    bands: BandInput | None = None,
) -> FeatureExtractor:
    """Build the extractor the spec ``features`` names (see the module docstring), on GPU in
    reduced precision when one is present (``precision`` auto -> fp16 on CUDA, fp32 on CPU).
    ``bands``: read those bands of native data (timm backbones only, built with ``in_chans``)."""
    spec = features
    if bands is not None and not spec.startswith("timm:"):
        raise GeosynthError(
            f"features={spec!r}: multi-band input (`bands`) needs a timm:NAME model (built with "
            "in_chans); this one takes 8-bit RGB"
        )
    dev = pick_device(device)
    dtype = pick_dtype(resolve_precision(precision, dev), dev)
    if spec.startswith("open_clip:"):
        from geosynth.features.openclip import OpenClipExtractor

        return OpenClipExtractor(spec, spec.removeprefix("open_clip:"), dev, dtype)
    if spec == "inception" or spec.startswith("inception:"):
        from geosynth.features.inception import InceptionExtractor

        weights = spec.partition(":")[2] or None
        return InceptionExtractor(spec, weights, dev, dtype)
    if spec.startswith("clf:"):
        from geosynth.features.classifier import ClassifierExtractor

        return ClassifierExtractor(spec, spec.removeprefix("clf:"), dev, dtype)
    if spec.startswith("timm:"):
        from geosynth.features.timm_backbone import TimmExtractor

        return TimmExtractor(spec, spec.removeprefix("timm:"), dev, dtype, bands=bands)
    from geosynth.features.transformers_model import TransformersExtractor

    ref = DINOV2_ALIASES.get(spec, spec.removeprefix("hf:"))
    return TransformersExtractor(spec, ref, dev, dtype)


#: Spec prefixes in front of a model path (see the module docstring).
_PATH_PREFIXES = ("open_clip:local-dir:", "timm:local-dir:", "inception:", "hf:", "clf:")


def model_fingerprint(spec: str) -> str:
    """A fingerprint of the weights a feature spec loads when they are local files: every file's
    relative path, size, modification time and a hash of its first MiB (hashing gigabytes of
    weights on every lookup would cost more than it saves; replacing a checkpoint changes at
    least its mtime). Hub ids, which name immutable published weights here, give "hub"."""
    ref = spec
    for prefix in _PATH_PREFIXES:
        if spec.startswith(prefix):
            ref = spec.removeprefix(prefix)
            break
    path = Path(ref)
    if not path.exists():
        return "hub"
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        st = f.stat()
        with f.open("rb") as fh:
            head = hashlib.blake2b(fh.read(1 << 20), digest_size=16).hexdigest()
        rel = f.name if f == path else f.relative_to(path).as_posix()
        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}:{head};".encode())
    return h.hexdigest()
