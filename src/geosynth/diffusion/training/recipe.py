"""Fine-tuning hyper-parameters, with the DataDream recipe (Kim et al., ECCV 2024; seed 000,
section 5 and appendix A.2) as the defaults, and their consistency checks.

DataDream: LoRA rank 16, alpha 16 on the UNet attention projections and the text encoder's
attention projections; AdamW at 1e-4 with a cosine schedule; 200 epochs of batch 8 at 512 px;
prompts "a satellite photo of a {class}". The warm-up length is not given in the paper; we warm
up over the first 5% of steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from geosynth.data.metadata import parse_metadata_fields
from geosynth.defaults import PROMPT_TEMPLATE
from geosynth.diffusion.mapcond import MapCondition
from geosynth.diffusion.training.objective import OFFSET_CONVENTIONS, PREDICTION_TYPES, offset_std
from geosynth.errors import GeosynthError
from geosynth.limits import COUNT, PROBABILITY, check_number, check_numbers
from geosynth.runtime import PRECISIONS, tracker_config

MODES = ("lora", "full", "frozen")
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: ``lora_targets`` presets: which UNet projections get LoRA.
LORA_TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    # DataDream (seed 000): every attention projection, self- and cross-attention.
    "attention": UNET_TARGETS,
    # 2LoRA (seed 001, section 3.2): the cross-attention Q, K, V projections only.
    "cross-attention-qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
    # Attention plus the transformer blocks' feed-forward layers (GEGLU input and output).
    "attention-ff": (*UNET_TARGETS, "ff.net.0.proj", "ff.net.2"),
}


def resolve_lora_targets(spec: str) -> tuple[str, ...]:
    """A preset name, or comma-separated UNet module names (suffixes of the module paths, as
    peft matches them: ``to_q``, ``attn2.to_k``, ``ff.net.2``)."""
    if spec in LORA_TARGET_PRESETS:
        return LORA_TARGET_PRESETS[spec]
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    bad = [
        n for n in names if not all(part.isidentifier() or part.isdigit() for part in n.split("."))
    ]
    if not names or bad:
        raise GeosynthError(
            f"lora_targets={spec!r}: expected one of {', '.join(LORA_TARGET_PRESETS)} or "
            "comma-separated module names such as to_q,attn2.to_k"
        )
    return names


def check_lora_targets(module, targets: tuple[str, ...], what: str = "UNet") -> None:
    """Every target must name at least one module (peft would silently skip some and fail on
    none with a long message)."""
    names = [n for n, _ in module.named_modules()]
    for t in targets:
        if not any(n == t or n.endswith("." + t) for n in names):
            raise GeosynthError(
                f"`lora_targets`: no module of the {what} is named '{t}' (presets: "
                f"{', '.join(LORA_TARGET_PRESETS)}; names like to_q, attn2.to_k, ff.net.2)"
            )


# LoRA on the VAE decoder or encoder: its attention projections and its ResNet convolutions (each
# has a single attention block, so convolutions carry most of what it can learn).
VAE_DECODER_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


def parse_init_lora(spec: str) -> tuple[str, float]:
    """``DIR`` or ``DIR:weight`` (a LoRA merged into the base first, 2LoRA)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0
        if not math.isfinite(weight):
            raise GeosynthError(f"init_loras={spec!r}: the weight must be a finite number")
        return head, weight
    return spec, 1.0


@dataclass
class Recipe:
    """Everything that decides what a fine-tuning run computes (recorded in the card)."""

    #: None: "full" with a map condition (it changes the UNet's input), else "lora"
    unet: str | None = None
    #: None: "frozen" with a map condition, else "lora"
    text_encoder: str | None = None
    vae_decoder: str = "frozen"
    vae_encoder: str = "frozen"
    learn_token: str | None = None
    token_init: str = "satellite"
    rank: int = 16
    alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "attention"  # a LORA_TARGET_PRESETS name or module names, as given
    unet_targets: tuple[str, ...] = UNET_TARGETS  # what lora_targets resolves to
    text_targets: tuple[str, ...] = TEXT_TARGETS
    lr: float = 1e-4
    weight_decay: float = 1e-2
    optimizer: str = "adamw"  # or adamw8bit (bitsandbytes, CUDA): geosynth.diffusion.training.optim
    warmup_ratio: float = 0.05
    lr_schedule: str = "cosine"
    epochs: int = 200
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    resolution: int | None = None
    flip: bool = True
    offset_noise: float = 0.0
    offset_noise_convention: str = "std"  # std: s = value; variance: s = sqrt(value) (Eq. 3)
    prediction_type: str | None = None  # None: the base scheduler's own
    snr_gamma: float | None = None
    zero_terminal_snr: bool = False
    prompt_template: str = PROMPT_TEMPLATE
    init: str = "pretrained"
    unet_config: str | None = None
    #: ``(DIR, weight)`` pairs, or ``"DIR[:weight]"`` strings (weight 1.0 by default)
    init_loras: list[tuple[str, float]] = field(default_factory=list)
    seed: int = 0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    checkpoints_kept: int = 2
    maps: MapCondition | None = None  # semantic-map conditioning (seed 004), see .mapcond
    #: DiffusionSat's metadata fields the UNet conditions on (None: none), see .metatrain
    metadata: list[str] | None = None
    metadata_dropout: float = 0.1  # per field and image, as DiffusionSat trains
    #: generate each image's mask with it (SatSynth), see geosynth.diffusion.joint
    joint_masks: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.maps, dict):
            self.maps = MapCondition(**self.maps)
        conditioned = self.maps is not None or self.joint_masks
        if self.unet is None:
            self.unet = "full" if conditioned else "lora"
        if self.text_encoder is None:
            self.text_encoder = "frozen" if conditioned else "lora"
        self.init_loras = [
            parse_init_lora(x) if isinstance(x, str) else (str(x[0]), float(x[1]))
            for x in self.init_loras
        ]
        if self.metadata is not None:
            self.metadata = list(parse_metadata_fields(self.metadata))
        # ``lora_targets`` is what users set; ``unet_targets`` follows it unless given as well.
        if tuple(self.unet_targets) == UNET_TARGETS:
            self.unet_targets = resolve_lora_targets(self.lora_targets)

    def check(self) -> None:
        """Reject contradictory settings with one line naming the field and its value."""
        if self.mixed_precision not in PRECISIONS:
            raise GeosynthError(
                f"mixed_precision={self.mixed_precision!r}: expected {', '.join(PRECISIONS)}"
            )
        for name in ("unet", "text_encoder", "vae_decoder", "vae_encoder"):
            if getattr(self, name) not in MODES:
                raise GeosynthError(f"{name}={getattr(self, name)!r}: expected one of {MODES}")
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise GeosynthError(
                f"prediction_type={self.prediction_type!r}: expected one of {PREDICTION_TYPES}"
            )
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise GeosynthError(
                "zero_terminal_snr=True needs prediction_type='v_prediction' (epsilon cannot be "
                "predicted from pure noise at the last timestep)"
            )
        if tuple(self.unet_targets) != resolve_lora_targets(self.lora_targets):
            raise GeosynthError(
                f"lora_targets={self.lora_targets!r} and unet_targets={list(self.unet_targets)} "
                "disagree; set unet_targets=resolve_lora_targets(lora_targets)"
            )
        if self.init not in ("pretrained", "scratch"):
            raise GeosynthError(f"init={self.init!r}: expected pretrained or scratch")
        if self.init == "scratch":
            if not self.unet_config:
                raise GeosynthError("init='scratch' needs `unet_config` (a UNet config JSON file)")
            if self.unet != "full":
                raise GeosynthError("init='scratch' trains the whole UNet: use unet='full'")
            if self.init_loras:
                raise GeosynthError(
                    "`init_loras` cannot be merged into a UNet trained from scratch"
                )
        elif self.unet_config:
            raise GeosynthError("`unet_config` is only used with init='scratch'")
        if self.maps is not None:
            self.maps.check()
            if self.unet != "full":
                raise GeosynthError(
                    "map conditioning changes the UNet's input and trains it whole: use unet='full'"
                )
            if self.maps.text == "instead" and self.text_encoder != "frozen":
                raise GeosynthError(
                    "text='instead' (of the map condition) leaves the text encoder unused: use "
                    "text_encoder='frozen'"
                )
        if self.metadata is not None:
            if self.maps is not None:  # maps rebuild the UNet; metadata joins its time embedding
                raise GeosynthError("`metadata` and map conditioning cannot be combined in one run")
            if self.joint_masks:
                raise GeosynthError("`metadata` and joint_masks=True cannot be combined in one run")
            check_number("metadata_dropout", self.metadata_dropout, PROBABILITY)
        if self.joint_masks:
            if self.maps is not None:
                raise GeosynthError(
                    "joint_masks=True generates the masks; it cannot also be conditioned on maps "
                    f"(condition={self.maps.condition!r})"
                )
            if self.unet != "full":
                raise GeosynthError(
                    "joint_masks=True widens the UNet's input and output and trains it whole: "
                    "use unet='full'"
                )
            if self.trains_vae:
                raise GeosynthError(
                    "joint_masks=True keeps the VAE frozen (the mask channels are not VAE "
                    "latents): use vae_decoder='frozen' and vae_encoder='frozen'"
                )
        if self.nothing_trained:
            raise GeosynthError("nothing to train: every component is frozen and no `learn_token`")
        check_numbers(
            rank=self.rank,
            alpha=self.alpha,
            lora_dropout=self.lora_dropout,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            max_steps=self.max_steps,
            # epochs count only without max_steps
            epochs=self.epochs if self.max_steps is None else None,
            batch_size=self.batch_size,
            grad_accum=self.grad_accum,
            resolution=self.resolution,
            offset_noise=self.offset_noise,
            snr_gamma=self.snr_gamma,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )
        check_number("checkpoints_kept", self.checkpoints_kept, COUNT)
        for path, weight in self.init_loras:
            if not math.isfinite(weight):
                raise GeosynthError(
                    f"init_loras: the weight of {path} must be finite, not {weight}"
                )
        if self.offset_noise_convention not in OFFSET_CONVENTIONS:
            raise GeosynthError(
                f"offset_noise_convention={self.offset_noise_convention!r}: expected std or "
                "variance"
            )
        if self.prompt_template.count("{}") != 1:
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: needs exactly one '{{}}' for the "
                "class name"
            )
        try:
            self.prompt_template.format("x")
        except (IndexError, KeyError, ValueError):
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: does not format; use '{{}}' for "
                "the class name and '{{{{'/'}}}}' for literal braces"
            ) from None
        if self.learn_token is not None and (
            not self.learn_token.strip() or " " in self.learn_token
        ):
            raise GeosynthError(f"learn_token={self.learn_token!r}: expected one word like <sar>")

    @property
    def nothing_trained(self) -> bool:
        modes = (self.unet, self.text_encoder, self.vae_decoder, self.vae_encoder)
        return all(m == "frozen" for m in modes) and self.learn_token is None

    @property
    def offset_std(self) -> float:
        """Standard deviation of the channel offset the trainer adds to the noise."""
        return offset_std(self.offset_noise, self.offset_noise_convention)

    @property
    def uses_lora(self) -> bool:
        return "lora" in (self.unet, self.text_encoder, self.vae_decoder, self.vae_encoder)

    @property
    def trains_vae(self) -> bool:
        return self.vae_decoder != "frozen" or self.vae_encoder != "frozen"

    @property
    def template(self) -> str:
        """The prompt template as trained: a learned token goes before the class name unless
        the template already places it."""
        if self.learn_token and self.learn_token not in self.prompt_template:
            return self.prompt_template.replace("{}", f"{self.learn_token} {{}}")
        return self.prompt_template

    def tracker_config(self) -> dict[str, int | float | str | bool]:
        """The recipe as flat scalars, as experiment trackers (TensorBoard hparams) take them."""
        return tracker_config(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unet_targets"] = list(self.unet_targets)
        d["text_targets"] = list(self.text_targets)
        d["init_loras"] = [{"path": p, "weight": w} for p, w in self.init_loras]
        if self.maps is None:  # text-only recipes keep the dict (and resume checks) they had
            del d["maps"]
        if self.metadata is None:  # so do recipes without metadata
            del d["metadata"], d["metadata_dropout"]
        if not self.joint_masks:
            del d["joint_masks"]
        return d
