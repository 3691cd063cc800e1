"""generate: kills at every stage boundary (finalize included), changed settings on resume,
colliding and reserved class names, set-up errors that leave nothing behind, concurrent shards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.cli.main import main
from geosynth.diffusion.sampling.generate import previews_dir
from tests.reliability.conftest import SRC, leftovers, run_subprocess, tree_bytes

STAGES = [
    "generate:plan",
    "generate:image@2",
    "generate:row@3",
    "generate:finalize:metadata",
    "generate:finalize:sheets",
    "generate:finalize:provenance",
    "generate:finalize:parts",
]


@pytest.fixture(scope="module")
def base(toy_models) -> list[str]:
    return [
        "generate",
        *("--model", str(toy_models["sd"]), "--classes", "water,desert"),
        *("--per-class", "2", "--steps", "2", "--batch-size", "2"),
    ]


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel-gen") / "ref"
    assert main([*base, "--out", str(out)]) == 0
    return out


def _same_output(out: Path, reference: Path) -> None:
    """The dataset and its previews folder, byte for byte."""
    assert tree_bytes(out) == tree_bytes(reference)
    assert tree_bytes(previews_dir(out)) == tree_bytes(previews_dir(reference))
    assert sorted(p.name for p in previews_dir(out).glob("*.png")) == ["desert.png", "water.png"]


def _one_line_error(res) -> None:
    assert res.code == 2, res.err
    assert len(res.err.strip().splitlines()) == 1, res.err


@pytest.mark.parametrize("stage", STAGES)
def test_kill_at_any_stage_then_resume_gives_the_same_bytes(
    stage, base, reference, killed, cli, tmp_path
) -> None:
    out = tmp_path / "out"
    killed(stage, *base, "--out", out)
    res = cli(*base, "--out", out, "--resume")
    assert res.code == 0, res.err
    # the new images and the folder's total (a resume used to report the new ones only)
    assert re.search(
        rf"generated [0-4] new images, 4 in {re.escape(str(out))} \(complete\)", res.err
    )
    _same_output(out, reference)
    assert leftovers(out) == [] and leftovers(tmp_path) == []
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["extra"]["spec"]["classes"] == ["water", "desert"]


def test_real_kill_in_finalize_then_resume(base, reference, tmp_path) -> None:
    """Defect 3: a kill while finalizing left '.parts/finalizing'; resume said 'complete' but
    never wrote metadata.jsonl or the provenance."""
    out = tmp_path / "out"
    died = run_subprocess(*base, "--out", out, fault="generate:finalize:metadata")
    assert died.returncode == 137, died.stderr
    done = run_subprocess(*base, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    _same_output(out, reference)
    assert (out / "provenance.json").is_file() and leftovers(out) == []


def test_an_error_while_finalizing_is_repaired_by_resume(
    base, reference, cli, tmp_path, monkeypatch
) -> None:
    """Defect 3, with an error instead of a kill: resume reported "complete" but never wrote
    the provenance (and, killed earlier, metadata.jsonl)."""
    out = tmp_path / "out"

    def broken(*_a, **_k):
        raise KeyboardInterrupt  # Ctrl-C while the contact sheets are drawn

    with monkeypatch.context() as m:
        m.setattr("geosynth.diffusion.sampling.store.image_grid", broken)
        assert cli(*base, "--out", out).code == 130
    res = cli(*base, "--out", out, "--resume")
    assert res.code == 0, res.err
    _same_output(out, reference)
    assert (out / "provenance.json").is_file() and leftovers(out) == []


def test_torn_row_and_temporaries_are_cleaned_by_one_resume(
    base, reference, killed, cli, tmp_path
) -> None:
    out = tmp_path / "out"
    killed("generate:row@2", *base, "--out", out)
    rows = out / ".parts" / "rows-0-of-1.jsonl"
    with rows.open("a") as fh:
        fh.write('{"file_name": "water/0000')  # a row cut short by the kill
    (out / "water" / ".000001.png.tmp-999-deadbeef").write_bytes(b"half a png")
    res = cli(*base, "--out", out, "--resume")
    assert res.code == 0, res.err
    _same_output(out, reference)
    assert leftovers(out) == []


def test_resume_of_a_finished_output_checks_the_settings(base, reference, cli) -> None:
    """Defect 4: --resume on a finished output ignored changed settings and reported success."""
    before = tree_bytes(reference)
    for extra, name in (
        (["--seed", "1"], "seed"),
        (["--steps", "3"], "steps"),
        (["--guidance", "3"], "guidance"),
        (["--scheduler", "ddim"], "scheduler"),
    ):
        res = cli(*base, "--out", reference, *extra, "--resume")
        _one_line_error(res)
        assert "other settings" in res.err and f"{name} " in res.err, res.err
    res = cli(*[a if a != "water,desert" else "water,forest" for a in base], "--out", reference)
    _one_line_error(res)
    res = cli(
        *[a if a != "water,desert" else "water,forest" for a in base],
        "--out",
        reference,
        "--resume",
    )
    _one_line_error(res)
    assert "classes" in res.err
    res = cli(*base, "--out", reference, "--resume", "--json")  # same settings: a no-op
    assert (
        res.code == 0
        and json.loads(res.out)["complete"] is True
        and json.loads(res.out)["generated"] == 0
        and json.loads(res.out)["images"] == 4
    )
    assert tree_bytes(reference) == before


@pytest.mark.parametrize(
    ("classes", "expect"),
    [
        ("a/b,a_b", "same folder"),
        ("Forest,forest", "same folder"),
        ("water,.parts", "reserved"),
        ("water,metadata.jsonl", "reserved"),
        ("water,README.md", "reserved"),
        (".hidden,water", "reserved"),
    ],
)
def test_colliding_and_reserved_class_names_are_refused(
    classes, expect, base, cli, tmp_path
) -> None:
    """Defect 6: names that sanitise to one folder overwrote each other; reserved ones broke
    the layout."""
    args = [a if a != "water,desert" else classes for a in base]
    res = cli(*args, "--out", tmp_path / "out")
    _one_line_error(res)
    assert expect in res.err
    assert not (tmp_path / "out").exists()


def test_bad_setup_leaves_nothing_and_the_corrected_command_runs(
    base, reference, cli, tmp_path
) -> None:
    """Defect 8: a set-up failure exited 1 and/or left OUT/.parts, so the corrected command
    needed --resume or a manual delete."""
    out = tmp_path / "out"
    for bad in (
        ["--resolution", "30"],
        ["--prompt-template", "a photo of {x}"],
        ["--prompt-template", "a photo of {"],
        ["--prompt-template", "no placeholder"],
        ["--seed", "-1"],
        ["--seed", str(2**64)],
    ):
        res = cli(*base, "--out", out, *bad)
        _one_line_error(res)
        assert not out.exists(), bad
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    _one_line_error(cli(*base, "--out", a_file))
    assert a_file.read_text() == "mine"
    res = cli(*base, "--out", out)  # the corrected command: no --resume, no cleanup
    assert res.code == 0, res.err
    _same_output(out, reference)


def test_concurrent_shards_into_one_output_without_resume(base, reference, tmp_path) -> None:
    """Defect 12: shards started at once needed --resume (the second saw a non-empty OUT)."""
    out = tmp_path / "out"

    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "geosynth", *base, "--out", str(out), "--shard", f"{i}/3"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert (out / "metadata.jsonl").read_bytes() == (reference / "metadata.jsonl").read_bytes()
    for row in map(json.loads, (out / "metadata.jsonl").read_text().splitlines()):
        a = np.asarray(Image.open(out / row["file_name"])).astype(int)
        b = np.asarray(Image.open(reference / row["file_name"])).astype(int)
        assert np.abs(a - b).max() <= 1  # other batch grouping: within one grey level
    assert leftovers(out) == []


def test_a_shard_rerun_without_resume_is_refused(base, cli, tmp_path) -> None:
    out = tmp_path / "out"
    assert cli(*base, "--out", out, "--shard", "0/2").code == 0
    res = cli(*base, "--out", out, "--shard", "0/2")
    _one_line_error(res)
    assert "--resume" in res.err
    res = cli(*base, "--out", out, "--shard", "1/2", "--seed", "5")
    _one_line_error(res)
    assert "seed 0 -> 5" in res.err
    assert cli(*base, "--out", out, "--shard", "1/2").code == 0
    assert (out / "metadata.jsonl").is_file() and leftovers(out) == []
    shutil.rmtree(out)
