"""Output checks see the path the OS writes to: ``nope/../first`` (with ``nope`` missing) is
``first``, so a finished run or a user's folder there is refused as ``--out first`` is, and a
refused command leaves no ``nope/`` behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import tree_bytes


def test_output_path_resolves_dot_dot_like_the_os(tmp_path: Path) -> None:
    from geosynth.artifacts import output_path

    (tmp_path / "first").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deeper", target_is_directory=True)
    (tmp_path / "real" / "deeper").mkdir()
    assert output_path(tmp_path / "nope" / ".." / "first") == tmp_path / "first"
    assert output_path(tmp_path / "a" / "b" / ".." / ".." / "x") == tmp_path / "x"
    # through a symlink, ".." is the parent of its target, as the OS has it
    assert output_path(tmp_path / "link" / ".." / "x") == tmp_path / "real" / "x"
    assert output_path(tmp_path / "first" / "..") == tmp_path
    assert output_path(Path("plain") / "out") == Path("plain") / "out"  # untouched


def test_generate_into_a_finished_run_through_dot_dot_is_refused(
    cli, toy_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["generate", "--model", toy_models["sd"], "--classes", "water", "--per-class", "1"]
    base += ["--steps", "2", "--resolution", "32", "--batch-size", "1"]
    assert cli(*base, "--out", "first").code == 0
    before = tree_bytes(tmp_path / "first")
    res = cli(*base, "--out", "first", "--seed", "5")
    assert res.code == 2 and "finished" in res.err
    res = cli(*base, "--out", "nope/../first", "--seed", "5")
    assert res.code == 2, res.err
    assert "finished" in res.err and len(res.err.strip().splitlines()) == 1
    assert tree_bytes(tmp_path / "first") == before
    assert not (tmp_path / "nope").exists()


def test_toy_data_over_a_users_folder_through_dot_dot_is_refused(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a geosynth output")
    for out in ("mine", "nope/../mine"):
        res = cli("toy", "data", "--out", out, "--per-class", "1", "--size", "16")
        assert res.code == 2, (out, res.err)
        assert "not a geosynth output" in res.err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "nope").exists()
