"""Run files: ``--config FILE`` on every command, and replaying a recorded run.

A config file gives option values by name; options given on the command line win. Accepted:

* TOML (``.toml``) or YAML (``.yaml`` / ``.yml``): option names as keys, with dashes or
  underscores (``offset-noise = 0.05``, ``lora_rank: 4``); positional arguments by their name
  (``dataset = "eurosat/"``). A table named after the command (``[finetune]``) is used when
  present, so one file can hold several steps. Lists become comma-separated values, or repeated
  options where the option repeats (``--lora``).
* A record of an earlier run: an output directory (its ``provenance.json``), a
  ``*.provenance.json`` sidecar, a LoRA card ``geosynth.json`` (the ``provenance.json`` beside
  it), or any JSON with an ``argv``. The recorded command line is parsed by the command itself;
  ``--out`` and the flags that never change what a run writes (``--resume``, ``--json``, ...)
  are not taken from it.

``geosynth replay RECORD --out NEW`` runs a recorded command again into NEW.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
import typer._click as click

from geosynth.artifacts import NEUTRAL_FLAGS, NEUTRAL_OPTIONS
from geosynth.errors import GeosynthError

#: Options never taken from a recorded run: where it wrote, and the flags that do not change
#: output (the parameter names of artifacts' NEUTRAL_FLAGS / NEUTRAL_OPTIONS), and --config.
NOT_REPLAYED = {f.removeprefix("--").replace("-", "_") for f in NEUTRAL_FLAGS | NEUTRAL_OPTIONS} | {
    "config"
}


def record_file(path: Path) -> Path | None:
    """The provenance JSON a path stands for, or None when it is not a run record."""
    if path.is_dir():
        found = path / "provenance.json"
        return found if found.is_file() else None
    if path.name == "geosynth.json":
        beside = path.parent / "provenance.json"
        return beside if beside.is_file() else None
    if path.suffix == ".json":
        return path
    sidecar = path.with_name(path.name + ".provenance.json")
    return sidecar if sidecar.is_file() else None


def recorded_argv(path: Path) -> list[str]:
    """The command line (``geosynth CMD ...``) an output was written by."""
    record = record_file(path)
    if record is None:
        raise GeosynthError(
            f"{path}: no run record (expected a geosynth output with provenance.json)"
        )
    try:
        data = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GeosynthError(f"{record}: not a readable JSON run record ({exc})") from None
    argv = data.get("argv") if isinstance(data, dict) else None
    if not isinstance(argv, list) or len(argv) < 2 or not all(isinstance(a, str) for a in argv):
        raise GeosynthError(f"{record}: records no command line ('argv')")
    return ["geosynth", *argv[1:]]


def _from_record(path: Path, command: click.Command, name: str) -> dict[str, Any]:
    argv = recorded_argv(path)[1:]
    words = name.split()
    if argv[: len(words)] != words:
        raise GeosynthError(
            f"{path}: records `geosynth {' '.join(argv[: len(words)])}`, not `geosynth {name}`"
        )
    ctx = command.make_context(name, argv[len(words) :], resilient_parsing=True)
    sources = {p.name: ctx.get_parameter_source(p.name) for p in command.params if p.name}
    return {
        key: value
        for key, value in ctx.params.items()
        if key not in NOT_REPLAYED and sources.get(key) == click.core.ParameterSource.COMMANDLINE
    }


def _read_table(path: Path, name: str) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(f"{path}: cannot parse ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GeosynthError(f"{path}: expected a table of option = value")
    for key in (name, name.replace(" ", "-"), name.replace(" ", ".")):
        if isinstance(data.get(key), dict):
            return dict(data[key])
    return data


def _coerce(param: click.Parameter, value: Any) -> Any:
    if param.multiple:
        return list(value) if isinstance(value, list | tuple) else [value]
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


def config_defaults(path: Path, command: click.Command, name: str) -> dict[str, Any]:
    """Option values (parameter name -> value) that ``path`` gives ``command``."""
    if not path.exists():
        raise GeosynthError(f"{path}: no such config file")
    if path.is_dir() or path.suffix == ".json":
        return _from_record(path, command, name)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise GeosynthError(
            f"{path}: expected a .toml, .yaml or .json file, or an output directory"
        )
    params = {p.name: p for p in command.params if p.name}
    out: dict[str, Any] = {}
    for key, value in _read_table(path, name).items():
        pname = str(key).replace("-", "_")
        if pname not in params or pname == "config":
            known = ", ".join(sorted(k.replace("_", "-") for k in params if k != "config"))
            raise GeosynthError(f"{path}: unknown option '{key}' for `geosynth {name}` ({known})")
        out[pname] = _coerce(params[pname], value)
    return out


def _load(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    """``--config`` callback: the file's values become the command's defaults."""
    if value is None or ctx.resilient_parsing:
        return
    name = ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
    defaults = config_defaults(Path(value), ctx.command, name)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    _record(ctx.command, len(name.split()), defaults)


def _record(command: click.Command, depth: int, values: dict[str, Any]) -> None:
    """Write the file's values into the recorded command line as the options they stand for
    (right after the command words), leaving out those given on the command line, which win.
    ``--config`` itself is then left out of outputs' metadata, so a run configured from a file
    and the same run spelled out get the same metadata, and a replay needs no file."""
    from geosynth.invocation import current_argv, set_argv

    argv = current_argv()
    given = {a.split("=", 1)[0] for a in argv[1 + depth :] if a.startswith("--")}
    tokens: list[str] = []
    for p in command.params:
        if p.name not in values or p.param_type_name != "option":
            continue
        if given & {*p.opts, *p.secondary_opts}:
            continue
        flag = next(o for o in p.opts if o.startswith("--"))
        value = values[p.name]
        if getattr(p, "is_flag", False):
            off = [o for o in p.secondary_opts if o.startswith("--")]
            tokens += [flag] if value else off[:1]
        else:
            for v in value if p.multiple else [value]:
                tokens += [flag, str(v)]
    positional = [
        str(values[p.name])
        for p in command.params
        if p.param_type_name == "argument" and p.name in values
    ]
    set_argv([*argv[: 1 + depth], *positional, *tokens, *argv[1 + depth :]])


def _config_param() -> click.Parameter:
    """A Typer-built ``--config`` option (Typer's own parameter class, so help and parsing
    behave as for every other option)."""
    app = typer.Typer()

    @app.command()
    def _command(
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                metavar="FILE",
                is_eager=True,
                expose_value=False,
                callback=_load,
                help="Option values from a TOML/YAML file or a recorded run (an output directory, "
                "its provenance.json or geosynth.json); options given here win.",
            ),
        ] = None,
    ) -> None:
        pass

    return typer.main.get_command(app).params[0]


def add_config_option(command: click.Command) -> None:
    """Give ``command`` a ``--config FILE`` whose values are defaults that flags override."""
    if not any(p.name == "config" for p in command.params):
        command.params.insert(0, _config_param())
