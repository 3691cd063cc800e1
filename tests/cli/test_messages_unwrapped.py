"""Messages to a pipe or a log file are never wrapped: one message, one line, however long the
paths in it and whatever the terminal width, so logs can be searched line by line."""

from __future__ import annotations

import pytest

from geosynth.cli.output import message


@pytest.mark.parametrize("columns", ["80", "40", None])
def test_a_long_warning_stays_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    path = "/" + "/".join(f"a-rather-deep-folder-{i}" for i in range(12)) + "/means.safetensors"
    assert len(path) > 200
    text = f"warning: channel_means={path!r}: no VAE identity recorded (check skipped)"
    capsys.readouterr()
    message(text)
    err = capsys.readouterr().err
    assert err == text + "\n"
