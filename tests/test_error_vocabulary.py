"""Library errors speak of parameters, not CLI flags (issue 16, docs: ERRORS convention).

Every module under ``src/geosynth`` outside ``cli/`` is read as source (AST, no import) and every
string that can end up in a ``GeosynthError`` message is checked: the literal parts of the
arguments of ``GeosynthError(...)``, the values given to or defaulted for the parameters that
name a parameter in an error (``what=``, ``arg=``, ``where=``), and any argument that is a bare
flag such as ``"--model"``. None may contain a CLI flag (``--name``) or a ``geosynth <command>``
string; the CLI maps ``name=value`` and ``` `name` ``` to its own flags in one place.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from geosynth.errors import GeosynthError

SRC = Path(__file__).resolve().parents[1] / "src" / "geosynth"

# a flag, except pip's own in an install hint ("pip install --force-reinstall ...")
FLAG = re.compile(r"(?<![\w-])(?<!pip install )--[a-z]")
BARE_FLAG = re.compile(r"--[a-z][\w-]*")
#: Keyword parameters whose value names the parameter an error is about.
NAMING_PARAMS = ("what", "arg", "where")


def _command_names() -> list[str]:
    """Every top-level ``geosynth`` command (``toy``, ``finetune``, ...), from the CLI itself."""
    from geosynth.cli.main import COMMANDS

    return sorted(COMMANDS, key=len, reverse=True)


def _library_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "cli")


def _is_error_call(node: ast.Call) -> bool:
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return name == "GeosynthError"


def _message_parts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every literal string that can reach an error message."""
    roots: list[ast.AST] = []
    bare: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _is_error_call(node):
                roots.extend([*node.args, *(k.value for k in node.keywords)])
            roots.extend(k.value for k in node.keywords if k.arg in NAMING_PARAMS)
            bare.extend(
                a
                for a in [*node.args, *(k.value for k in node.keywords)]
                if isinstance(a, ast.Constant)
                and isinstance(a.value, str)
                and BARE_FLAG.fullmatch(a.value)
            )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            positional = [*a.posonlyargs, *a.args]
            pairs = list(
                zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True)
            )
            pairs += [
                (p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None
            ]
            roots.extend(d for p, d in pairs if p.arg in NAMING_PARAMS)
    parts = [
        (n.lineno, n.value)
        for root in roots
        for n in ast.walk(root)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    return parts + [(n.lineno, n.value) for n in bare]


def _violations(source: str, commands: list[str]) -> list[tuple[int, str]]:
    command = re.compile(r"\bgeosynth (?:" + "|".join(map(re.escape, commands)) + r")\b")
    return [
        (line, text)
        for line, text in _message_parts(ast.parse(source))
        if FLAG.search(text) or command.search(text)
    ]


def test_no_cli_flags_in_library_errors() -> None:
    commands = _command_names()
    assert {"finetune", "generate", "train-clf", "cluster-plora"} <= set(commands)
    found = []
    for path in _library_modules():
        rel = path.relative_to(SRC).as_posix()
        found += [
            f"{rel}:{line}: {text!r}" for line, text in _violations(path.read_text(), commands)
        ]
    assert not found, "library errors naming CLI flags or commands:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'raise GeosynthError(f"--k {k}: must be at least 1")',
        'raise GeosynthError("use a smaller " + "--k")',
        'def f(ref, what="--model"): pass',
        'load_with(loader, ref, "--model")',
        'check(x, arg="--init-lora")',
        'raise GeosynthError(f"run `geosynth finetune` first ({x})")',
    ],
)
def test_the_check_catches_flag_messages(source: str) -> None:
    """The walk itself: each of these spellings is reported."""
    assert _violations(source, ["finetune"])


@pytest.mark.parametrize(
    "source",
    [
        'raise GeosynthError(f"k={k}: must be at least 1; use a smaller `k`")',
        'raise GeosynthError(f"{out}: exists and is not a geosynth output")',
        'x = ["--resume", "--overwrite"]  # recorded argv, not a message',
        'raise GeosynthError(f"x: {a - -b}")',
    ],
)
def test_the_check_passes_parameter_messages(source: str) -> None:
    assert not _violations(source, ["finetune"])


#: an instruction naming what to give: "pass pad", "needs per_class" (then a bare word)
INSTRUCTION = re.compile(
    r"\b(?:pass|passing|set|give|use|without|needs?)\s+([a-z][a-z0-9_]*)\b(?![=`(\w])"
)


def _bare_parameters(source: str) -> list[tuple[int, str]]:
    """(line, text) of error messages that tell the user to give a parameter of the module by
    its bare name ("or pass pad"): the CLI cannot map a bare word to its flag (only ``name=value``,
    `` `name` `` and ``name >= 1``), so the user reads a flag that does not exist."""
    tree = ast.parse(source)
    params = {
        x.arg
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        for x in [*n.args.posonlyargs, *n.args.args, *n.args.kwonlyargs]
    } - {"self", "cls"}
    return [
        (line, text)
        for line, text in _message_parts(tree)
        for m in INSTRUCTION.finditer(text)
        if m.group(1) in params and not text[m.end() :].lstrip().startswith((">", "<"))
    ]


def test_library_errors_name_parameters_so_the_cli_can_map_them() -> None:
    found = []
    for path in _library_modules():
        rel = path.relative_to(SRC).as_posix()
        found += [f"{rel}:{line}: {text!r}" for line, text in _bare_parameters(path.read_text())]
    assert not found, "bare parameter names in error instructions:\n" + "\n".join(found)
    bad = 'def tile(pad=False):\n    raise GeosynthError("too small; pass pad")'
    assert _bare_parameters(bad)
    assert not _bare_parameters(bad.replace("pass pad", "pass `pad`"))


def test_kmeans_names_k_as_a_parameter() -> None:
    from geosynth.plora.clustering import kmeans

    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    with pytest.raises(GeosynthError) as bad:
        kmeans(x, 0)
    assert str(bad.value) == "k=0: must be at least 1"
    with pytest.raises(GeosynthError) as big:
        kmeans(x, 7)
    assert str(big.value) == "k=7: larger than the number of samples (6)"


def test_recipe_names_its_fields() -> None:
    from geosynth.diffusion.training.recipe import Recipe

    cases = {
        "k0": (Recipe(rank=0), "rank=0: must be >= 1"),
        "on": (Recipe(offset_noise=-0.1), "offset_noise=-0.1: must be >= 0"),
        "nan": (Recipe(offset_noise=float("nan")), "offset_noise=nan: must be a finite number"),
        "lr": (Recipe(lr=-1.0), "lr=-1.0: must be > 0"),
        "ms": (Recipe(max_steps=0), "max_steps=0: must be >= 1"),
        "pt": (Recipe(prediction_type="x0"), "prediction_type='x0': expected one of"),
        "zt": (
            Recipe(zero_terminal_snr=True, prediction_type="epsilon"),
            "zero_terminal_snr=True needs prediction_type='v_prediction'",
        ),
        "sc": (Recipe(init="scratch"), "init='scratch' needs `unet_config`"),
    }
    for recipe, expected in cases.values():
        with pytest.raises(GeosynthError) as err:
            recipe.check()
        assert str(err.value).startswith(expected)
        assert "--" not in str(err.value)


def test_model_reference_names_the_parameter(tmp_path: Path) -> None:
    from geosynth.runtime import model_ref

    missing = tmp_path / "nope"
    with pytest.raises(GeosynthError) as err:
        model_ref(missing)
    assert str(err.value) == f"model={str(missing)!r}: no such model directory"
    with pytest.raises(GeosynthError, match=r"^vae='"):
        model_ref(missing, what="vae")
