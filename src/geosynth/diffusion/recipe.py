"""Fine-tuning hyper-parameters, with the DataDream recipe (Kim et al., ECCV 2024; seed 000,
section 5 and appendix A.2) as the defaults, and their consistency checks.

DataDream: LoRA rank 16, alpha 16 on the UNet attention projections and the text encoder's
attention projections; AdamW at 1e-4 with a cosine schedule; 200 epochs of batch 8 at 512 px;
prompts "a satellite photo of a {class}". The warm-up length is not given in the paper; we warm
up over the first 5% of steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from geosynth.defaults import PROMPT_TEMPLATE
from geosynth.diffusion.objective import PREDICTION_TYPES
from geosynth.errors import GeosynthError

MODES = ("lora", "full", "frozen")
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# LoRA on the VAE decoder: its attention projections and its ResNet convolutions (the decoder
# has a single attention block, so convolutions carry most of what it can learn).
VAE_DECODER_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")


@dataclass
class Recipe:
    """Everything that decides what a fine-tuning run computes (recorded in the card)."""

    unet: str = "lora"
    text_encoder: str = "lora"
    vae_decoder: str = "frozen"
    learn_token: str | None = None
    token_init: str = "satellite"
    rank: int = 16
    alpha: float = 16.0
    lora_dropout: float = 0.0
    unet_targets: tuple[str, ...] = UNET_TARGETS
    text_targets: tuple[str, ...] = TEXT_TARGETS
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_ratio: float = 0.05
    lr_schedule: str = "cosine"
    epochs: int = 200
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    resolution: int | None = None
    flip: bool = True
    offset_noise: float = 0.0
    prediction_type: str | None = None  # None: the base scheduler's own
    snr_gamma: float | None = None
    zero_terminal_snr: bool = False
    prompt_template: str = PROMPT_TEMPLATE
    init: str = "pretrained"
    unet_config: str | None = None
    init_loras: list[tuple[str, float]] = field(default_factory=list)
    seed: int = 0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    checkpoints_kept: int = 2

    def check(self) -> None:
        """Reject contradictory settings with one line naming the option."""
        for name in ("unet", "text_encoder", "vae_decoder"):
            if getattr(self, name) not in MODES:
                flag = "--train-" + name.replace("_", "-")
                raise GeosynthError(f"{flag} {getattr(self, name)}: expected one of {MODES}")
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise GeosynthError(
                f"--prediction-type {self.prediction_type}: expected one of {PREDICTION_TYPES}"
            )
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise GeosynthError(
                "--zero-terminal-snr needs --prediction-type v_prediction (epsilon cannot be "
                "predicted from pure noise at the last timestep)"
            )
        if self.init not in ("pretrained", "scratch"):
            raise GeosynthError(f"--init {self.init}: expected pretrained or scratch")
        if self.init == "scratch":
            if not self.unet_config:
                raise GeosynthError("--init scratch needs --unet-config FILE")
            if self.unet != "full":
                raise GeosynthError("--init scratch trains the whole UNet: use --train-unet full")
            if self.init_loras:
                raise GeosynthError("--init-lora cannot be merged into a UNet trained from scratch")
        elif self.unet_config:
            raise GeosynthError("--unet-config is only used with --init scratch")
        if self.nothing_trained:
            raise GeosynthError("nothing to train: every component is frozen and no --learn-token")
        if self.rank < 1 or self.alpha <= 0:
            raise GeosynthError(f"--rank {self.rank} / --alpha {self.alpha}: must be positive")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise GeosynthError("--batch-size and --grad-accum must be at least 1")
        if self.epochs < 1 and not self.max_steps:
            raise GeosynthError(f"--epochs {self.epochs}: must be at least 1")
        if self.offset_noise < 0:
            raise GeosynthError(f"--offset-noise {self.offset_noise}: must be >= 0")
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise GeosynthError(f"--snr-gamma {self.snr_gamma}: must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise GeosynthError(f"--warmup-ratio {self.warmup_ratio}: expected 0 <= r < 1")
        if self.prompt_template.count("{}") != 1:
            raise GeosynthError(
                f"--prompt-template {self.prompt_template!r}: needs exactly one '{{}}' for the "
                "class name"
            )
        try:
            self.prompt_template.format("x")
        except (IndexError, KeyError, ValueError):
            raise GeosynthError(
                f"--prompt-template {self.prompt_template!r}: does not format; use '{{}}' for "
                "the class name and '{{{{'/'}}}}' for literal braces"
            ) from None
        if not 0 <= self.seed <= 2**63 - 1:
            raise GeosynthError(f"--seed {self.seed}: expected an integer in [0, 2**63 - 1]")
        if self.resolution is not None and self.resolution < 1:
            raise GeosynthError(f"--resolution {self.resolution}: expected a positive size")
        if self.learn_token is not None and (
            not self.learn_token.strip() or " " in self.learn_token
        ):
            raise GeosynthError(f"--learn-token {self.learn_token!r}: expected one word like <sar>")

    @property
    def nothing_trained(self) -> bool:
        modes = (self.unet, self.text_encoder, self.vae_decoder)
        return all(m == "frozen" for m in modes) and self.learn_token is None

    @property
    def uses_lora(self) -> bool:
        return "lora" in (self.unet, self.text_encoder, self.vae_decoder)

    @property
    def template(self) -> str:
        """The prompt template as trained: a learned token goes before the class name unless
        the template already places it."""
        if self.learn_token and self.learn_token not in self.prompt_template:
            return self.prompt_template.replace("{}", f"{self.learn_token} {{}}")
        return self.prompt_template

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unet_targets"] = list(self.unet_targets)
        d["text_targets"] = list(self.text_targets)
        d["init_loras"] = [{"path": p, "weight": w} for p, w in self.init_loras]
        return d
