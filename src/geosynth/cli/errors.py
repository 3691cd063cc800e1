"""Library errors, spelled with the running command's flags: the one place where parameter
names become CLI options.

Library messages name parameters as Python does (``k=0: must be at least 1``, or a bare
parameter in backticks, `` `unet_config` ``); see :mod:`geosynth.errors`. For the command that
was running, every parameter it declares is rewritten to its option (``--k 0: ...``,
``--unet-config``); names it does not declare are left as they are. A command module whose
library parameter feeds an option of another name declares ``LIBRARY_PARAMS = {"out": "--plots"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# name=value, the value quoted ('...' / "...") or a run up to whitespace or , ; : ) ; or `name`;
# or a name compared with a number (`per_class >= 1`), which becomes the option alone
_PARAM = re.compile(
    r"(?<![\w.\-/])([a-z_][a-z0-9_]*)="
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;:)]+)"
    r"|`([a-z_][a-z0-9_]*)`"
    r"|(?<![\w.\-/`])([a-z_][a-z0-9_]*)(?= ?(?:>=|<=|<|>) ?-?\d)"
)


def param_flags(command: Any, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parameter name -> click parameter of ``command`` (a click/Typer command), with the
    command module's ``LIBRARY_PARAMS`` renames (name -> flag text) on top."""
    params = [p for p in getattr(command, "params", []) if p.name]
    table: dict[str, Any] = {p.name: p for p in params}
    for name, flag in (overrides or {}).items():
        # the command's own parameter behind that flag, so switches read as switches
        owner = [p for p in params if flag in (*p.opts, *p.secondary_opts)]
        table[name] = owner[0] if owner else flag
    return table


def _flag_text(param: Any) -> str:
    if isinstance(param, str):
        return param
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        # Typer's vendored click arguments may lack ``human_readable_name``: their metavar
        return str(getattr(param, "human_readable_name", None) or param.name.upper())
    return opts[0]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")
    return value


def to_cli(message: str, table: Mapping[str, Any]) -> str:
    """``message`` with the known parameters written as the command's options."""

    def swap(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name not in table:
            return m.group(0)
        param = table[name]
        flag = _flag_text(param)
        if m.group(3) or m.group(4):  # `name`, or name >= 1: the option alone
            return flag
        value = _unquote(m.group(2))
        if getattr(param, "is_flag", False) and value in ("True", "False"):
            secondary = [o for o in getattr(param, "secondary_opts", []) if o.startswith("--")]
            if value == "True":
                return flag
            return secondary[0] if secondary else f"{flag} off"
        return f"{flag} {value}"

    return _PARAM.sub(swap, message)


def in_flags(text: str, command: Callable[..., Any], overrides: Mapping[str, str]) -> str:
    """``text`` (a library warning) with the parameters of the command function ``command``
    written as its options, as its errors are shown (before the click command exists)."""
    import inspect

    table: dict[str, Any] = {
        n: "--" + n.replace("_", "-") for n in inspect.signature(command).parameters
    }
    return to_cli(text, {**table, **overrides})
