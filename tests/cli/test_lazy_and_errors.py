"""Start-up cost and the error mapper: `geosynth --help` imports no command, each command's
listed help is its own, and library errors come out in the running command's flags."""

import importlib
import subprocess
import sys

import pytest
import typer

from geosynth.cli.errors import param_flags, to_cli
from geosynth.cli.main import COMMANDS, load_command


def test_help_and_version_import_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from geosynth.cli.main import main\n"
        "for args in (['--help'], ['--version']):\n"
        "    assert main(args) == 0\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'torchvision', 'transformers', "
        "'numpy', 'geosynth.data', 'geosynth.diffusion') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    module_name, attr, listed = COMMANDS[name]
    obj = getattr(importlib.import_module(f"geosynth.cli.{module_name}"), attr)
    own = obj.info.help if isinstance(obj, typer.Typer) else obj.__doc__
    first = " ".join((own or "").strip().split("\n\n")[0].split())
    assert first == listed


def test_library_parameters_become_the_commands_flags() -> None:
    from geosynth.cli.finetune import LIBRARY_PARAMS

    table = param_flags(load_command("finetune"), LIBRARY_PARAMS)
    msg = "rank=0 / alpha=16.0: must be positive; init='scratch' needs `unet_config` (see x=1)"
    assert to_cli(msg, table) == (
        "--lora-rank 0 / --lora-alpha 16.0: must be positive; --init scratch needs --unet-config "
        "(see x=1)"
    )
    # a switch reads as the flag; paths keep their text; unknown names stay as written
    assert to_cli("resume=True: nothing to resume", table) == "--resume: nothing to resume"
    assert to_cli("out='/a b/c': exists", table) == "--out /a b/c: exists"
    assert to_cli("https://x.org/a=b", table) == "https://x.org/a=b"
    # a name compared with a number is the option alone; a plain word is left as it is
    assert to_cli("needs epochs >= 1 and lr > 0", table) == "needs --epochs >= 1 and --lr > 0"
    assert to_cli("the epochs ran", table) == "the epochs ran"


def test_module_renames_win(tmp_path) -> None:
    table = param_flags(load_command("rarity"), {"out": "--plots"})
    assert to_cli(f"out={str(tmp_path)!r}: is a file", table) == f"--plots {tmp_path}: is a file"


def test_a_library_error_reaches_the_shell_in_flags(cli, tmp_path) -> None:
    res = cli("toy", "data", "--out", tmp_path / "d", "--classes", "Nowhere")
    assert res.code == 2
    assert "--classes" in res.err and "classes=" not in res.err, res.err
    assert not (tmp_path / "d").exists()
