"""What a generation job is: its settings (:class:`GenerationSpec`, recorded in the output and
compared on resume), the per-image seeds, and the job list of each shard."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from geosynth.artifacts import (
    DIR_PROVENANCE_NAME,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import CARD_NAME
from geosynth.data.folder import METADATA_NAME
from geosynth.data.names import fill_prompt, prompt_name, safe_dirname
from geosynth.data.radiometry_sources import RADIOMETRY_FILE as RADIOMETRY_NAME
from geosynth.errors import GeosynthError
from geosynth.limits import check_fields

PARTS = ".parts"


#: Names the output layout uses at its top level; no class folder may take one of them.
RESERVED = {PARTS, METADATA_NAME, DIR_PROVENANCE_NAME, RADIOMETRY_NAME, CARD_NAME}


MAX_SEED = 2**63 - 1


def image_seed(seed: int, class_name: str, index: int) -> int:
    """A 63-bit seed for one image, stable across runs and machines."""
    h = hashlib.blake2b(f"{seed}|{class_name}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


@dataclass
class GenerationSpec:
    """Everything that determines the images (and nothing that only affects speed)."""

    model: str
    classes: list[str]
    per_class: int
    prompt_template: str
    steps: int = 50
    guidance: float = 2.0
    scheduler: str | None = None
    seed: int = 0
    noise: str = "gaussian"
    leak_timestep: int | None = None
    resolution: int | None = None
    loras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> path, weight, stack
    class_lora_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    channel_means: dict[str, list[float]] = field(default_factory=dict)
    controlnet: str | None = None
    control: str | None = None  # canny | image
    control_images: str | None = None
    radiometry: dict[str, Any] | None = None  # native-unit output through this spec's inverse
    model_digest: dict[str, str] | None = None  # the base weights (geosynth.diffusion.identity)
    #: "an" before a vowel ("a satellite photo of an annual crop"); False fills the template
    #: literally, as a LoRA trained before geosynth chose articles was trained
    articles: bool = True
    family: str | None = None  # the base model's family (geosynth.diffusion.family)
    #: the fields the model's metadata embedding conditions on, and per class the rows its
    #: images ask for (.metadata); class_counts: images per class where not per_class (one
    #: per real sample with metadata_from)
    metadata_fields: list[str] | None = None
    metadata_rows: dict[str, list[dict[str, Any]]] | None = None
    class_counts: dict[str, int] = field(default_factory=dict)

    def count(self, class_name: str) -> int:
        """How many images ``class_name`` gets."""
        return self.class_counts.get(class_name, self.per_class)

    def prompt(self, class_name: str) -> str:
        return fill_prompt(self.prompt_template, prompt_name(class_name), articles=self.articles)

    def check(self) -> None:
        """Refuse settings that would fail or corrupt the output later, before anything is
        written: class folders that collide or clash with the layout, a prompt template that
        does not format, out-of-range numbers."""
        if not self.classes:
            raise GeosynthError("`classes`: give at least one class name")
        seen: dict[str, str] = {}
        for c in self.classes:
            d = safe_dirname(c)
            if d in RESERVED or d.startswith("."):
                raise GeosynthError(
                    f"class name '{c}': its folder '{d}' is reserved by the output layout "
                    f"(names starting with '.' and {', '.join(sorted(RESERVED))}); rename the class"
                )
            other = seen.get(d.casefold())
            if other is not None:
                what = "the same" if other == c else f"the same folder as '{other}'"
                raise GeosynthError(
                    f"class name '{c}': gives {what} ('{d}'; folders are compared ignoring case "
                    "for case-insensitive file systems); class names must map to distinct folders"
                )
            seen[d.casefold()] = c
        try:
            probe = self.prompt_template.format("CLASS")
        except (IndexError, KeyError, ValueError) as exc:
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: does not format ({exc!r}); expected "
                "text with one {} where the class name goes, e.g. 'a satellite photo of a {}'"
            ) from None
        if "CLASS" not in probe:
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: has no {{}} for the class name"
            )
        check_fields(self)
        if 0 < self.guidance < 1:
            # diffusers guides only above 1: 0.5 would make the images of 1 under another name
            raise GeosynthError(
                f"guidance={self.guidance}: between 0 and 1 no guidance is applied (diffusers "
                "guides only above 1); give 1 (or 0) for none, or a value above 1"
            )

    def plan(self) -> dict[str, Any]:
        """The settings as JSON data (what ``plan.json`` and the provenance record). ``articles``
        is left out when no class's prompt depends on it, so such plans are those of earlier
        versions (their outputs resume and replay as before)."""
        plan = json.loads(json_text(asdict(self)))
        if self.prompts_literal == [self.prompt(c) for c in self.classes]:
            del plan["articles"]
        for key in ("metadata_fields", "metadata_rows", "class_counts"):
            if not plan[key]:  # plans without metadata stay those of earlier versions
                del plan[key]
        return plan

    @property
    def prompts_literal(self) -> list[str]:
        """The class prompts with the template filled literally (no article chosen)."""
        return [
            fill_prompt(self.prompt_template, prompt_name(c), articles=False) for c in self.classes
        ]

    def weights_for(self, class_name: str) -> dict[str, float]:
        """Adapter weights for a class: stacked LoRAs at their weight, the others at 0, then the
        class's own mixture (pLoRA weights or its per-class LoRA) on top."""
        w = {n: float(info["weight"]) if info["stack"] else 0.0 for n, info in self.loras.items()}
        w.update(self.class_lora_weights.get(class_name, {}))
        return w


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); under ``accelerate launch`` the process rank and count by default."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return int(os.environ.get("RANK", "0")), max(world, 1)
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise GeosynthError(f"shard={text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise GeosynthError(f"shard={text!r}: need 0 <= i < n")
    return i, n


def all_jobs(spec: GenerationSpec) -> list[tuple[str, int]]:
    return [(c, i) for c in spec.classes for i in range(spec.count(c))]


def shard_jobs(spec: GenerationSpec, shard: tuple[int, int]) -> list[tuple[str, int]]:
    """Jobs of shard i of n: every n-th job, so shards are disjoint and cover all jobs."""
    i, n = shard
    return [job for k, job in enumerate(all_jobs(spec)) if k % n == i]
