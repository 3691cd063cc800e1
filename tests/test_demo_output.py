"""``geosynth demo --out DIR`` replaces only its own sub-folders: a folder that is not a demo
output is refused before anything in it is touched."""

from __future__ import annotations

from pathlib import Path


def test_demo_refuses_a_folder_that_is_not_a_demo_output(cli, tmp_path: Path) -> None:
    out = tmp_path / "project"
    (out / "toy-sar").mkdir(parents=True)
    (out / "toy-sar" / "mine.txt").write_text("the user's")
    (out / "synth-gaussian").mkdir()
    (out / "synth-gaussian" / "keep.png").write_bytes(b"png")
    res = cli("demo", "--out", out)
    assert res.code == 2, res.err
    assert "not an earlier demo's output" in res.err and str(out) in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert (out / "toy-sar" / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in out.rglob("*")) == sorted(
        ["toy-sar", "mine.txt", "synth-gaussian", "keep.png"]
    )


def test_demo_refuses_a_file_as_its_folder(cli, tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.write_text("a file")
    res = cli("demo", "--out", out)
    assert res.code == 2 and "is a file" in res.err, res.err
    assert out.read_text() == "a file"
