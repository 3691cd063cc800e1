"""The ``geosynth`` command: a Typer app, one module per subcommand, uniform errors.

Exit codes: 0 success; 2 bad usage or bad input (one line naming the argument or file); 1 an
unexpected internal error (one line, or the traceback with ``--debug``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Annotated

import click
import typer
import typer._click as _click  # Typer's vendored click: the classes its commands are built from
from typer.core import TyperCommand, TyperGroup

from geosynth import __version__
from geosynth.errors import GeosynthError

#: Every command: (module under geosynth.cli, attribute, one-line help). Modules are imported
#: only when their command runs (or shows its own help): importing them all pulls in torch,
#: diffusers and torchvision, which took longer than `import torch, diffusers` itself, and
#: `geosynth --help` / `--version` need none of it. tests/cli/test_main.py checks that each
#: line here matches the command's own first docstring line.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "channel-means": (
        "channel_means",
        "channel_means",
        "Per-class means of the VAE latents (x scaling_factor) of a dataset: x0_cls of "
        "leak-aligned noise.",
    ),
    "finetune": (
        "finetune",
        "finetune",
        "Fine-tune Stable Diffusion on a (few-shot) dataset: the DataDream LoRA recipe by default.",
    ),
    "cluster-plora": (
        "cluster_plora",
        "cluster_plora_cmd",
        "Cluster all images regardless of class, and mix one LoRA per cluster per class.",
    ),
    "generate": (
        "generate",
        "generate",
        "Generate images per class with a (LoRA-adapted) diffusion model.",
    ),
    "embed": (
        "embed",
        "embed",
        "Embed every image of a dataset, or of a directory of webdataset shards, with a feature "
        "model.",
    ),
    "rarity": (
        "rarity",
        "rarity",
        "Precision, recall, density, coverage and rarity of TARGET against REFERENCE.",
    ),
    "rarity-correlate": (
        "correlate",
        "rarity_correlate",
        "Pearson correlation between a rarity metric and accuracy gaps across datasets.",
    ),
    "evaluate": (
        "evaluate",
        "evaluate",
        "FID/KID, precision/recall/density/coverage/rarity, colour fidelity (pixels and VAE "
        "latents), amplitude distances, GLCM texture and CLIP score of SYNTH against REAL.",
    ),
    "filter": (
        "filter",
        "filter_cmd",
        "Keep the generated images worth training on: drop memorised copies, off-class and "
        "off-manifold samples, and cap each class.",
    ),
    "train-clf": (
        "train_clf",
        "train_clf",
        "Train a classifier on TRAIN (synthetic, real, or mixed with --real), select it on VAL, "
        "evaluate it once on TEST: top-1, per-class precision / recall / F1, macro-F1, confusion.",
    ),
    "train-seg": (
        "train_seg",
        "train_seg",
        "Train a segmentation model on image/mask pairs (real, synthetic, or mixed with --real), "
        "select it on VAL, evaluate it once on TEST: mIoU, per-class IoU, confusion.",
    ),
    "inspect": (
        "inspect",
        "inspect_file",
        "Show the tensors (name, shape, dtype) and metadata of a safetensors file.",
    ),
    "replay": (
        "replay",
        "replay",
        "Run a recorded command again, into a new output: same inputs, options and seeds.",
    ),
    "demo": ("demo", "demo", "Run every existing step on toy data and tiny models, with a report."),
    "toy": ("toy", "app", "Toy data and tiny models that run the whole pipeline on 2 CPU cores."),
    "data": ("data", "app", "Inspect datasets, write K-shot subsets, cut scenes into chips."),
    "lora": (
        "lora",
        "app",
        "Convert LoRAs between geosynth's diffusers layout and the kohya / A1111 / ComfyUI file.",
    ),
}


def _prepare(command: _click.Command, name: str, overrides: dict[str, str]) -> None:
    """Give ``command`` (and a group's subcommands) ``--config`` and make it re-raise library
    errors in its own flags."""
    from geosynth.cli.config import add_config_option
    from geosynth.cli.errors import param_flags, to_cli
    from geosynth.cli.options import guard_numbers

    subcommands = getattr(command, "commands", None)
    if subcommands:
        for sub_name, sub in subcommands.items():
            _prepare(sub, f"{name} {sub_name}", overrides)
        return
    if name != "replay":
        add_config_option(command)
    guard_numbers(command, overrides)
    plain_invoke = command.invoke
    table = param_flags(command, overrides)

    def invoke(ctx: _click.Context) -> object:
        try:
            return plain_invoke(ctx)
        except GeosynthError as exc:
            raise GeosynthError(to_cli(str(exc), table)) from exc

    command.invoke = invoke  # type: ignore[method-assign]


def load_command(name: str) -> _click.Command:
    """Import a command's module and build its click command (Typer settings as the root's)."""
    import importlib

    module_name, attr, _ = COMMANDS[name]
    module = importlib.import_module(f"geosynth.cli.{module_name}")
    obj = getattr(module, attr)
    if isinstance(obj, typer.Typer):
        obj.rich_markup_mode = None  # plain click help: option names are never cut (see below)
        command: _click.Command = typer.main.get_group(obj)
    else:
        single = typer.Typer(
            add_completion=False,
            pretty_exceptions_enable=False,
            rich_markup_mode=None,
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    _prepare(command, name, dict(getattr(module, "LIBRARY_PARAMS", {})))
    return command


def leaf_commands() -> list[tuple[list[str], _click.Command]]:
    """Every command that runs (``["toy", "data"]`` for a group's subcommand), loaded: what
    tests and docs walk to see every option."""
    out: list[tuple[list[str], _click.Command]] = []
    for name in COMMANDS:
        cmd = load_command(name)
        subs = getattr(cmd, "commands", None) or {}
        out += [([name, sub], c) for sub, c in subs.items()] if subs else [([name], cmd)]
    return out


class _Deferred(TyperCommand):
    """A command listed by name and one-line help; its module loads when it is invoked."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: _click.Context | None = None, **extra
    ) -> _click.Context:
        return load_command(self.name or "").make_context(info_name, args, parent, **extra)


class LazyGroup(TyperGroup):
    """The root group: commands listed from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return _Deferred(cmd_name, help=COMMANDS[cmd_name][2])


app = typer.Typer(
    name="geosynth",
    cls=LazyGroup,
    help="Synthetic satellite, aerial and SAR training data with diffusion models, and the "
    "metrics to tell whether it is any good.\n\n"
    "Steps compose through files (image folders, safetensors); see docs/formats.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"geosynth {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="GEOSYNTH_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """geosynth command line."""
    _state["debug"] = debug


def quiet_libraries() -> None:
    """Silence third-party progress bars and info logs; geosynth prints its own progress."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map outcomes to exit codes; returns the code (and exits when run as a
    script through the console entry point)."""
    quiet_libraries()
    args = sys.argv[1:] if argv is None else argv
    from geosynth.invocation import set_argv

    set_argv(["geosynth", *args])
    debug = "--debug" in args or os.environ.get("GEOSYNTH_DEBUG", "") not in ("", "0")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="geosynth", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except (typer.Exit, click.exceptions.Exit) as exc:
        code = exc.exit_code
    except (typer.TyperException, click.ClickException) as exc:
        # Typer vendors its own click; both kinds of usage error carry exit_code 2.
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        if exc.format_message():  # empty when a group was called without a command
            click.echo(f"error: {exc.format_message()}{where}", err=True)
        code = getattr(exc, "exit_code", 2)
    except (typer.Abort, click.exceptions.Abort):
        click.echo("aborted", err=True)
        code = 130
    except GeosynthError as exc:
        if debug or _state["debug"]:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        code = 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except Exception as exc:
        if debug or _state["debug"]:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"internal error: {type(exc).__name__}: {first} (re-run with --debug for the traceback)",
            err=True,
        )
        code = 1
    finally:
        _close_process_group()
    return code


def _close_process_group() -> None:
    """Under torchrun / accelerate launch, tear the process group down before the interpreter
    does: gloo's threads destroyed during interpreter shutdown can abort a rank (SIGABRT,
    "terminate called without an active exception") after its work is done."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    # a group already broken by another rank's failure has nothing left to close
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
