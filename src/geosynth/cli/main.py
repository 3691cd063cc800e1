"""The ``geosynth`` command: a Typer app, one module per subcommand, uniform errors.

Exit codes: 0 success; 2 bad usage or bad input (one line naming the argument or file); 1 an
unexpected internal error (one line, or the traceback with ``--debug``).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import click
import typer

from geosynth import __version__
from geosynth.cli import (
    channel_means,
    cluster_plora,
    correlate,
    data,
    demo,
    embed,
    finetune,
    generate,
    inspect,
    lora,
    rarity,
    toy,
)
from geosynth.cli import evaluate as evaluate_cmd
from geosynth.cli.train_clf import train_clf
from geosynth.errors import GeosynthError

app = typer.Typer(
    name="geosynth",
    help="Synthetic satellite, aerial and SAR training data with diffusion models, and the "
    "metrics to tell whether it is any good.\n\n"
    "Steps compose through files (image folders, safetensors); see docs/formats.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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


app.command("channel-means")(channel_means.channel_means)
app.command("finetune")(finetune.finetune)
app.command("cluster-plora")(cluster_plora.cluster_plora_cmd)
app.command("generate")(generate.generate)
app.command("embed")(embed.embed)
app.command("rarity")(rarity.rarity)
app.command("rarity-correlate")(correlate.rarity_correlate)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("train-clf")(train_clf)
app.add_typer(toy.app, name="toy")
app.add_typer(data.app, name="data")
app.add_typer(lora.app, name="lora")
app.command("inspect")(inspect.inspect_file)
app.command("demo")(demo.demo)


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
    return code


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
