"""What the demo's steps share: the output paths, the markdown sections and the metrics of one run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DemoRun:
    """Paths, report sections and metrics shared by the demo's steps."""

    out: Path
    seed: int = 0
    size: int = 32
    log: Callable[[str], None] = print
    paths: dict[str, Path] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def fmt_num(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"
