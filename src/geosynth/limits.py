"""What every numeric parameter may be: one table for the library's checks and the CLI's options.

A number outside its meaning (a negative learning rate, 0 steps, a probability of 2) or not a
number at all (NaN, an infinity) must never run: NaN passes every ``<`` / ``>`` test, so an
unchecked ``--offset-noise nan`` trains a LoRA of NaNs and exits 0. :data:`LIMITS` says, per
parameter name (the library's names; an option means one thing in every command, docs/cli.md),
which values mean something. Library functions call :func:`check_numbers` on what they are
given (``lr=-1.0: must be > 0``); the command line applies the same table to every numeric
option while it parses (``geosynth.cli.options.guard_numbers``), so a bad value is refused in
one line with exit code 2 before anything is loaded or written. A numeric option without an
entry here fails ``tests/cli/test_numeric_options.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from geosynth.errors import GeosynthError


@dataclass(frozen=True)
class Limit:
    """A finite number in ``[low, high]`` (an open end with ``low_open`` / ``high_open``; None:
    unbounded on that side). ``integer``: whole numbers only (the CLI's int options are so
    already; this is for library callers)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``in [0, 1)``, or ``any finite number``."""
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return "any finite number"

    def help_text(self) -> str:
        """The range as click shows ranges in ``--help`` (``x>0``, ``0<=x<1``)."""
        low = "" if self.low is None else f"{_num(self.low)}{'<' if self.low_open else '<='}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='}{_num(self.high)}"
        if low and not high:  # one-sided: click's own spelling, x>=1
            return f"x{'>' if self.low_open else '>='}{_num(self.low or 0)}"
        return f"{low}x{high}" if low or high else "finite"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused (``must be > 0``), or None when it is fine."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number {self.describe()}"
        if not math.isfinite(value):
            kind = "a whole number" if self.integer else "a finite number"
            if self.low is None and self.high is None:
                return f"must be {kind}"
            return f"must be {kind} {self.describe()}"
        if self.integer and float(value) != int(value):
            return f"must be a whole number {self.describe()}"
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        too_high = self.high is not None and (
            value >= self.high if self.high_open else value > self.high
        )
        return f"must be {self.describe()}" if too_low or too_high else None


def _num(x: float) -> str:
    if x == 2**63 - 1:
        return "2**63-1"
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(x)


POSITIVE = Limit(0, low_open=True)  # rates, strengths that 0 would switch off or break
NON_NEGATIVE = Limit(0)  # 0 means "off" / "none"
COUNT = Limit(1, integer=True)  # steps, images, batch sizes, k
ZERO_OR_MORE = Limit(0, integer=True)  # counts where 0 means "none" (workers, VAE steps)
PROBABILITY = Limit(0, 1)
BELOW_ONE = Limit(0, 1, high_open=True)  # fractions where 1 would leave nothing
FINITE = Limit()

#: Parameter name -> what it may be. Names are the library's (``rank``) and, where the command
#: line calls an option otherwise (``--lora-rank``), that option's parameter name as well.
LIMITS: dict[str, Limit] = {
    # seeds: torch and numpy take 0 .. 2**63 - 1
    "seed": Limit(0, 2**63 - 1, integer=True),
    "seeds": Limit(0, 2**63 - 1, integer=True),  # each of them
    # sizes and counts
    "shots": COUNT,
    "real_shots": COUNT,
    "per_class": COUNT,
    "per_map": COUNT,
    "batch_size": COUNT,
    "eval_batch_size": COUNT,
    "resolution": COUNT,
    "size": COUNT,
    "stride": COUNT,
    "steps": COUNT,
    "epochs": COUNT,
    "max_steps": COUNT,
    "grad_accum": COUNT,
    "checkpoint_every": COUNT,
    "map_tokens": COUNT,
    "tokens": COUNT,
    "k": COUNT,
    "rarity_k": COUNT,
    "restarts": COUNT,
    "limit": COUNT,
    "part_size": COUNT,
    "nprobe": COUNT,
    "patience": COUNT,
    "kid_subsets": COUNT,
    "kid_subset_size": Limit(2, integer=True),
    "glcm_levels": Limit(2, 256, integer=True),
    "kl_bins": Limit(2, integer=True),
    "rank": COUNT,
    "lora_rank": COUNT,
    "workers": ZERO_OR_MORE,
    "vae_steps": ZERO_OR_MORE,
    # a fixed timestep of the training schedule (0 .. T-1; T is checked against the scheduler)
    "leak_timestep": ZERO_OR_MORE,
    # rates, strengths and weights
    "lr": POSITIVE,
    "head_lr": POSITIVE,
    "alpha": POSITIVE,
    "lora_alpha": POSITIVE,
    "snr_gamma": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "offset_noise": NON_NEGATIVE,
    "mixup": NON_NEGATIVE,
    "cutmix": NON_NEGATIVE,
    # a fraction of a training image's distance to its nearest other training image
    "copy_threshold": POSITIVE,
    # classifier-free guidance scale: <= 1 is no guidance with class prompts (as in diffusers);
    # over a map, 0 is the blank-map prediction (geosynth.diffusion.sampling.mapgen)
    "guidance": NON_NEGATIVE,
    "looks": Limit(1),  # speckle looks: 1 is single-look, more is smoother
    # probabilities and fractions
    "lora_dropout": BELOW_ONE,
    "dropout": PROBABILITY,
    "map_dropout": PROBABILITY,
    "metadata_dropout": PROBABILITY,
    "warmup_ratio": BELOW_ONE,
    "warmup_fraction": BELOW_ONE,
    "label_smoothing": BELOW_ONE,
    "real_weight": PROBABILITY,
    "min_confidence": PROBABILITY,
    "max_nodata": PROBABILITY,
    "max_ignore": PROBABILITY,
    # a level in dB: any finite number
    "amplitude_db_floor": FINITE,
    "db_floor": FINITE,
}


def check_number(name: str, value: Any, limit: Limit | None = None) -> None:
    """Refuse ``value`` (or any element of a list) for parameter ``name`` unless ``limit``
    (default: :data:`LIMITS`'s entry, else any finite number) allows it:
    ``GeosynthError("lr=-1.0: must be > 0")``."""
    rule = limit or LIMITS.get(name, FINITE)
    for v in value if isinstance(value, list | tuple) else [value]:  # a list: each element
        why = rule.problem(v)
        if why is not None:
            shown = f"{value!r}" if v is value else f"{value!r} ({v!r})"
            raise GeosynthError(f"{name}={shown}: {why}")


def check_numbers(**values: Any) -> None:
    """:func:`check_number` for each ``name=value`` given; None (not set) passes."""
    for name, value in values.items():
        if value is not None:
            check_number(name, value)


def check_fields(obj: Any) -> None:
    """:func:`check_number` for each field of the dataclass ``obj`` that :data:`LIMITS` names
    and that holds a number (None and other types are left to the caller's own checks)."""
    from dataclasses import fields

    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in LIMITS and isinstance(value, int | float) and not isinstance(value, bool):
            check_number(f.name, value)
