"""Every numeric option of every command, given NaN, inf, -1 and 0: refused while parsing (one
line, exit code 2, so nothing runs and nothing is written) unless the value means something,
and then it is on the allow-list below with the reason. Commands and options are found by
walking the command table, so a new command or option is covered without editing this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer._click as click

from geosynth.cli.main import leaf_commands, main
from geosynth.cli.options import option_limit
from geosynth.limits import LIMITS

VALUES = ("nan", "inf", "-1", "0")

#: (option, value) -> why the value is meaningful. Same option, same meaning in every command.
ACCEPTED = {
    ("--seed", "0"): "seed 0 is a seed like any other",
    ("--workers", "0"): "0 data-loader workers: images are decoded in the main process",
    ("--vae-steps", "0"): "0 steps: the toy VAE keeps its initial weights",
    ("--leak-timestep", "0"): "timestep 0 of the training schedule exists",
    ("--weight-decay", "0"): "no weight decay",
    ("--offset-noise", "0"): "no offset noise (the default)",
    ("--mixup", "0"): "mixup off (the default)",
    ("--cutmix", "0"): "CutMix off (the default)",
    ("--guidance", "0"): "no classifier-free guidance (diffusers' convention; over a map: the "
    "blank-map prediction)",
    ("--lora-dropout", "0"): "no dropout",
    ("--map-dropout", "0"): "never a blank map",
    ("--metadata-dropout", "0"): "no metadata field dropped",
    ("--warmup-ratio", "0"): "no warm-up",
    ("--label-smoothing", "0"): "no label smoothing (the default)",
    ("--real-weight", "0"): "the real set gets weight 0 in the loss mix",
    ("--min-confidence", "0"): "keep every class prediction",
    ("--max-nodata", "0"): "keep only chips without any nodata",
    ("--max-ignore", "0"): "keep only chips without any ignored mask pixel",
    ("--amplitude-db-floor", "-1"): "a dB floor is any level",
    ("--amplitude-db-floor", "0"): "a dB floor is any level",
}


def _numeric_options() -> list[tuple[list[str], click.Command, click.Parameter]]:
    import importlib

    from geosynth.cli.main import COMMANDS

    out = []
    for words, cmd in leaf_commands():
        module = importlib.import_module(f"geosynth.cli.{COMMANDS[words[0]][0]}")
        library = getattr(module, "LIBRARY_PARAMS", {})
        for p in cmd.params:
            if option_limit(p, library) is not None:
                out.append((words, cmd, p))
    return out


def _flag(p: click.Parameter) -> str:
    return next(o for o in p.opts if o.startswith("--"))


def test_every_numeric_option_declares_its_range() -> None:
    import importlib

    from geosynth.cli.main import COMMANDS

    missing = []
    for words, _, p in _numeric_options():
        library = getattr(
            importlib.import_module(f"geosynth.cli.{COMMANDS[words[0]][0]}"), "LIBRARY_PARAMS", {}
        )
        names = [p.name] + [n for n, f in library.items() if f in p.opts]
        if not any(n in LIMITS for n in names):
            missing.append(f"{' '.join(words)} {_flag(p)}")
    assert not missing, f"numeric options without an entry in geosynth.limits.LIMITS: {missing}"


def test_nan_inf_negative_and_zero_are_refused_unless_meaningful() -> None:
    accepted, wrongly_accepted, bad_refusals = set(), [], []
    options = _numeric_options()
    assert len(options) > 50  # the walk found the commands' options
    for words, cmd, p in options:
        flag = _flag(p)
        for value in VALUES:
            try:
                cmd.make_context(" ".join(words), [flag, value])
            except click.exceptions.MissingParameter:
                pass  # a required argument is missing: the value itself was accepted
            except click.exceptions.BadParameter as exc:
                if exc.param is not p:  # refused for another reason: not this option's check
                    bad_refusals.append(f"{' '.join(words)} {flag} {value}: {exc.format_message()}")
                    continue
                text = exc.format_message()
                if exc.exit_code != 2 or "\n" in text or not text:
                    bad_refusals.append(f"{' '.join(words)} {flag} {value}: {text!r}")
                continue
            if (flag, value) in ACCEPTED:
                accepted.add((flag, value))
            else:
                wrongly_accepted.append(f"{' '.join(words)} {flag} {value}")
    assert not bad_refusals, bad_refusals
    assert not wrongly_accepted, f"accepted without a reason in ACCEPTED: {wrongly_accepted}"
    stale = sorted(set(ACCEPTED) - accepted)
    assert not stale, f"ACCEPTED lists values no option accepts any more: {stale}"


def test_defaults_are_within_their_ranges() -> None:
    for words, _, p in _numeric_options():
        limit = option_limit(p)
        if p.default is not None and limit is not None:
            assert limit.problem(p.default) is None, f"{' '.join(words)} {_flag(p)} {p.default}"


@pytest.mark.parametrize(
    "args",
    [
        ["finetune", "DATA", "--offset-noise", "nan"],
        ["finetune", "DATA", "--lr", "-1"],
        ["finetune", "DATA", "--max-steps", "0"],
        ["generate", "--guidance", "nan"],
        ["generate", "--guidance", "-3"],
    ],
)
def test_refused_in_one_line_with_exit_2_and_nothing_written(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and args[-2] in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_value_is_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("offset-noise = nan\n")
    code = main(["finetune", "DATA", "--config", str(cfg), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--offset-noise" in err and "finite" in err, err
