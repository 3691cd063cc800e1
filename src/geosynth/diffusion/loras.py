"""LoRA directories and the LoRA set of a job: which LoRAs, at which weights, for which class.

A LoRA directory holds ``pytorch_lora_weights.safetensors`` (diffusers format) and, when geosynth
wrote it, a card ``geosynth.json`` with ``base_model``, ``class_names`` and ``prompt_template``.
``geosynth finetune`` may also leave full components (``unet/``, ``text_encoder/`` +
``tokenizer/``, ``vae/``), a learned token (``learned_embeds.safetensors``), scheduler settings
the model was trained for, and the LoRA stack it was trained on top of (:func:`expand_stacks`).
:func:`resolve_loras` builds a job's :class:`LoraSet` from a stack, a per-class directory and a
``weights.json`` mixture; :mod:`geosynth.diffusion.adapters` puts a set on a loaded pipeline.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.defaults import SD_MODEL
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    from geosynth.diffusion.family import ModelFamily

LORA_FILE = "pytorch_lora_weights.safetensors"
CARD_FILE = "geosynth.json"
TOKEN_FILE = "learned_embeds.safetensors"
#: Fully trained components a finetune output may hold (``text_encoder_2``: SDXL's second).
COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


@dataclass(frozen=True)
class Lora:
    """One LoRA directory, its adapter name in the pipeline and its default weight."""

    path: Path
    weight: float
    name: str

    @property
    def card(self) -> dict[str, Any]:
        p = self.path / CARD_FILE
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def has_weights(self) -> bool:
        """False for a finetune output that trained only full components or a token."""
        return (self.path / LORA_FILE).is_file()

    @property
    def family(self) -> str | None:
        """The model family it was made for: its card's ``base_family``, else what its weights
        tell (:func:`~geosynth.diffusion.family.files.lora_file_family`), else None."""
        from geosynth.diffusion.family.files import lora_file_family

        recorded = self.card.get("base_family")
        if recorded:
            return str(recorded)
        return lora_file_family(self.path / LORA_FILE) if self.has_weights else None


def _adapter_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", path.name) or "lora"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def parse_lora(spec: str, taken: set[str], arg: str = "loras") -> Lora:
    """``DIR`` or ``DIR:weight`` (the weight defaults to 1.0); ``arg`` names the parameter the
    spec came from, for errors."""
    path_text, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            path_text = head
        except ValueError:
            pass
    if not math.isfinite(weight):
        raise GeosynthError(f"{arg}={spec!r}: the weight must be a finite number")
    path = Path(path_text)
    if not (path / LORA_FILE).is_file() and not (path / CARD_FILE).is_file():
        raise GeosynthError(f"{arg}={spec!r}: {path / LORA_FILE} does not exist")
    check_values(path, f"{arg}={spec!r}")
    return Lora(path, weight, _adapter_name(path, taken))


def check_values(path: Path, where: str) -> None:
    """Refuse a LoRA directory whose LoRA or learned-token weights hold NaN or infinities (what a
    diverged run writes): applied, they turn every image black or into NaN without an error.
    ``where`` names the parameter that gave it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from geosynth.artifacts import check_finite

    for name in (LORA_FILE, TOKEN_FILE):
        f = path / name
        if not f.is_file():
            continue
        try:
            tensors = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as exc:
            raise GeosynthError(
                f"{where}: {f} is not a readable safetensors file ({exc})"
            ) from None
        check_finite(tensors, f"{where}: {f}")


def check_base(
    lora: Lora, model: str, arg: str = "loras", family: ModelFamily | None = None
) -> None:
    """A LoRA made for another model family (an SD 2.1 LoRA on SDXL, or the reverse), or
    trained on other weights, is an error. The family is the card's (or read from the LoRA's
    weights) against ``model``'s (``family``, when already detected). Cards record the base
    model's weight digest (:mod:`geosynth.diffusion.identity`), so the same weights under any
    path, hub id, mirror or single file are accepted; cards from before digests fall back to
    comparing the model strings, with a note."""
    from geosynth.diffusion.family import check_family, detect_family
    from geosynth.diffusion.identity import differing, model_digest, short

    made_for = lora.family
    if made_for is not None:
        fam = family or detect_family(model)
        check_family(made_for, fam, f"{arg}={str(lora.path)!r}", model)
    card = lora.card
    base, recorded = card.get("base_model"), card.get("base_digest")
    if base is None and recorded is None:
        return
    if recorded:
        digest = model_digest(model)
        if digest is not None:
            comp = differing(dict(recorded), digest)
            if comp is not None:
                raise GeosynthError(
                    f"{arg}={str(lora.path)!r}: trained for base model '{base}' "
                    f"({short(recorded, comp)}), not model={str(model)!r} ({short(digest, comp)})"
                )
            return
    elif base is not None:
        logging.getLogger("geosynth").warning(
            "note: %s's card predates weight digests: checking the base model by name only",
            lora.path,
        )
    if base is not None and not _same_name(str(base), str(model)):
        raise GeosynthError(
            f"{arg}={str(lora.path)!r}: trained for base model '{base}', not model={str(model)!r}"
        )


def _same_name(a: str, b: str) -> bool:
    """Model strings naming the same thing: equal, or the same existing directory."""
    if a.rstrip("/") == b.rstrip("/"):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


@dataclass(frozen=True)
class LoraWeights:
    """A per-class mixture file (``weights.json``, as ``cluster-plora`` writes it):
    ``{"loras": {name: dir}, "weights": {class: {name: w}}, "class_names": [...]}``.
    Directories are resolved against the file's folder; every LoRA a class names is listed."""

    path: Path
    loras: dict[str, Path]
    weights: dict[str, dict[str, float]]
    class_names: list[str] | None
    #: the family of the model its LoRAs were trained for (None: not recorded)
    family: str | None = None

    @classmethod
    def read(cls, path: str | os.PathLike[str], arg: str = "lora_weights") -> LoraWeights:
        """Parse and check the file (the one reader of the format)."""
        path = Path(path)
        where = f"{arg}={str(path)!r}"
        if not path.is_file():
            raise GeosynthError(f"{where}: no such file")
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise GeosynthError(f"{where}: not JSON ({exc})") from None
        try:
            loras = {
                str(name): (Path(rel) if Path(rel).is_absolute() else path.parent / rel)
                for name, rel in dict(data.get("loras", {})).items()
            }
            weights = {
                str(c): {str(k): float(v) for k, v in w.items()} for c, w in data["weights"].items()
            }
            bad = [(c, k) for c, w in weights.items() for k, v in w.items() if not math.isfinite(v)]
            if bad:
                raise ValueError(f"class '{bad[0][0]}': weight of '{bad[0][1]}' is not finite")
            names = data.get("class_names")
            class_names = None if names is None else [str(c) for c in names]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GeosynthError(
                f"{where}: expected {{'loras': {{name: dir}}, 'weights': "
                f"{{class: {{name: weight}}}}}} ({exc})"
            ) from None
        for name, d in loras.items():
            if not (d / LORA_FILE).is_file():
                raise GeosynthError(f"{where}: LoRA '{name}' not found at {d}")
            check_values(d, where)
        for c, w in weights.items():
            unknown = sorted(set(w) - set(loras))
            if unknown:
                raise GeosynthError(
                    f"{where}: class '{c}' names unknown LoRA '{unknown[0]}' "
                    f"(known: {', '.join(sorted(loras))})"
                )
        if class_names is not None:
            extra = [c for c in weights if c not in class_names]
            if extra:
                raise GeosynthError(
                    f"{where}: weights for unknown class '{extra[0]}' "
                    f"(its class_names: {', '.join(class_names)})"
                )
        family = data.get("family")
        return cls(path, loras, weights, class_names, None if family is None else str(family))

    @property
    def classes(self) -> list[str]:
        """The classes the file is for: its ``class_names``, else the classes it weights."""
        return list(self.class_names or self.weights)


def expand_stacks(stack: list[Lora], extra: list[Lora], taken: set[str]) -> list[Lora]:
    """The stack with the LoRAs that cards say were merged before training
    (``finetune --init-lora``) added once, at their recorded weights, unless already listed:
    before the stacked LoRA that needs them, and for per-class or pLoRA LoRAs (``extra``, e.g.
    cluster LoRAs trained on a stage-1 LoRA) at the front, applied to every class."""
    listed = {item.path.resolve() for item in stack + extra}
    out: list[Lora] = []

    def required(item: Lora) -> None:
        for entry in item.card.get("stack", []):
            path = Path(entry["path"])
            if path.resolve() not in listed:
                listed.add(path.resolve())
                spec = f"{path}:{float(entry['weight'])}"
                out.append(parse_lora(spec, taken, f"the stack of {item.path}: loras"))

    for item in extra:
        required(item)
    for item in stack:
        required(item)
        out.append(item)
    return out


#: A LoRA of a stack: ``"DIR"``, ``"DIR:weight"``, a path, or ``(path, weight)``.
LoraRef = str | os.PathLike[str] | tuple[str | os.PathLike[str], float]


PathLike = str | os.PathLike[str]


def _lora_text(ref: LoraRef) -> str:
    if isinstance(ref, tuple):
        return f"{ref[0]}:{float(ref[1])}"
    return str(ref)


@dataclass
class LoraSet:
    """The LoRAs of one generation job and how each class weights them.

    ``stack`` is applied to every class at its weights (the LoRAs given, preceded by those their
    cards say they were trained on top of); ``per_class`` LoRAs (a per-class directory, a
    mixture file) are off unless a class's entry of ``class_weights`` turns them on."""

    stack: list[Lora] = field(default_factory=list)
    per_class: list[Lora] = field(default_factory=list)
    class_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the LoRAs the caller named (their cards give the defaults, not stage-1 LoRAs they pull in)
    named: list[Lora] = field(default_factory=list)
    #: classes a per-class directory or a mixture file defines (None: neither was given)
    classes: list[str] | None = None
    lora_dir: Path | None = None
    lora_weights: Path | None = None
    #: the base model the job loads: the one given, else the one the LoRA cards record
    model: str = ""
    #: the LoRA whose card named ``model`` when none was given (None: it was given)
    model_from: Lora | None = None

    @property
    def all(self) -> list[Lora]:
        return self.stack + self.per_class

    @property
    def card(self) -> dict[str, Any]:
        """The first card among the named LoRAs (class names, prompt template)."""
        return next((x.card for x in self.named if x.card), {})

    @property
    def map_model(self) -> Lora | None:
        """The named map-conditioned model, if any."""
        return next((x for x in self.named if x.card.get("map_condition")), None)

    @property
    def joint_model(self) -> Lora | None:
        """The named model that generates masks with its images (``joint_masks``), if any."""
        return next((x for x in self.named if x.card.get("joint_masks")), None)

    def check_classes(self, classes: Sequence[str]) -> None:
        """Every class needs its mixture / its per-class LoRA."""
        missing = [c for c in classes if c not in self.class_weights]
        if missing and self.lora_weights is not None:
            raise GeosynthError(
                f"lora_weights={str(self.lora_weights)!r}: no mixture for class '{missing[0]}'"
            )
        if missing and self.lora_dir is not None:
            raise GeosynthError(
                f"lora_dir={str(self.lora_dir)!r}: no LoRA for class '{missing[0]}'"
            )

    def spec_loras(self) -> dict[str, dict[str, Any]]:
        """The set as :class:`GenerationSpec` records it: name -> path, weight, stack."""
        return {
            x.name: {"path": str(x.path), "weight": x.weight, "stack": x in self.stack}
            for x in self.all
        }


def resolve_loras(
    model: PathLike | None,
    loras: Sequence[LoraRef] = (),
    *,
    lora_dir: PathLike | None = None,
    lora_weights: PathLike | None = None,
) -> LoraSet:
    """The LoRA set of a job: the stack ``loras``, one LoRA per class from the sub-directories of
    ``lora_dir`` (named by class), and the per-class mixtures of a ``weights.json`` file
    (``lora_weights``, from ``cluster-plora``). Every LoRA must be trained for ``model``, which
    is checked first (a local path that does not exist is named as such, not as a mismatch);
    None: the base model the first card that records one names (else the default model), kept
    in the set's ``model`` and ``model_from``."""
    from geosynth.runtime import model_ref

    if model is not None:
        model_ref(model)
    taken: set[str] = set()
    given = [parse_lora(_lora_text(s), taken, "loras") for s in loras]
    out = LoraSet(named=list(given))
    mix: LoraWeights | None = None
    if lora_dir is not None:
        out.lora_dir = Path(lora_dir)
        if not out.lora_dir.is_dir():
            raise GeosynthError(f"lora_dir={str(lora_dir)!r}: no such directory")
        for sub in sorted(p for p in out.lora_dir.iterdir() if p.is_dir()):
            item = parse_lora(str(sub), taken, "lora_dir")
            out.per_class.append(item)
            out.class_weights[sub.name] = {item.name: 1.0}
        out.classes = list(out.class_weights)
    if lora_weights is not None:
        mix = LoraWeights.read(lora_weights)
        out.lora_weights = mix.path
        for name, path in mix.loras.items():
            if name in taken:
                raise GeosynthError(
                    f"lora_weights={str(mix.path)!r}: LoRA name '{name}' is already used by "
                    "another LoRA of this job"
                )
            taken.add(name)
            out.per_class.append(Lora(path, 0.0, name))
        for c, w in mix.weights.items():
            out.class_weights.setdefault(c, {}).update(w)
        out.classes = mix.classes  # the mixture's classes win over a per-class directory's
    out.named += out.per_class
    out.stack = expand_stacks(given, out.per_class, taken)
    if model is None:
        out.model_from = next((x for x in out.named if x.card.get("base_model")), None)
        model = SD_MODEL if out.model_from is None else str(out.model_from.card["base_model"])
        model_ref(model)
    out.model = str(model)
    family = None
    if mix is not None and mix.family is not None:
        from geosynth.diffusion.family import check_family, detect_family

        family = detect_family(out.model)
        check_family(mix.family, family, f"lora_weights={str(mix.path)!r}", out.model)
    for item in out.all:
        if family is None and item.family is not None:
            from geosynth.diffusion.family import detect_family

            family = detect_family(out.model)
        check_base(item, out.model, family=family)
    return out
