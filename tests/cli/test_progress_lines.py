"""Progress where stderr is a log or a pipe: no blank lines, and long work prints a plain line
every few percent (count, rate, elapsed, remaining, status) instead of a bar a file cannot redraw.
"""

from __future__ import annotations

import pytest

from geosynth.cli.output import LineProgress, LiveProgress, message, track


def test_no_blank_lines_around_progress_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    for _ in track(range(3), 3, "images"):
        pass
    message("wrote 3 images")
    for _ in track(iter(range(2)), None, "shards"):
        message("inside")
    assert capsys.readouterr().err == "wrote 3 images\ninside\ninside\n"


def test_a_line_every_five_percent_and_ten_seconds() -> None:
    now = [0.0]
    lines: list[str] = []
    p = LineProgress("images", 400, write=lines.append, clock=lambda: now[0])
    for i in range(400):
        now[0] += 1.0  # one image a second: 5% = 20 s, so a line every 20 images
        p.status = f"step {i + 1}"
        p.advance()
    p.close()
    assert len(lines) == 21, lines
    assert lines[0] == "images: 20/400 (5%), 1/s, 0:00:20 elapsed, about 0:06:20 left, step 20"
    assert lines[-1] == "images: 400/400 (100%), 1/s, done in 0:06:40, step 400"


def test_quick_work_prints_nothing_and_slow_unknown_work_a_heartbeat() -> None:
    now = [0.0]
    lines: list[str] = []
    quick = LineProgress("x", 100, write=lines.append, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 0.01
        quick.advance()
    quick.close()
    assert lines == []
    slow = LineProgress("shards", None, write=lines.append, clock=lambda: now[0])
    for _ in range(25):
        now[0] += 1.0
        slow.advance()
    slow.close()
    assert lines == ["shards: 10, 1/s, 0:00:10 elapsed", "shards: 20, 1/s, 0:00:20 elapsed",
                     "shards: 25, 1/s, done in 0:00:25"]  # fmt: skip


def test_live_status_reaches_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import geosynth.cli.output as output

    lines: list[str] = []
    now = [0.0]
    fake = functools.partial(LineProgress, write=lines.append, clock=lambda: now[0])
    monkeypatch.setattr(output, "LineProgress", fake)
    live = LiveProgress()
    for i in live.track(range(40), 40, "finetune"):
        now[0] += 1.0
        live.status(f"loss {1 / (i + 1):.2f}")
    assert lines[-1] == "finetune: 40/40 (100%), 1/s, done in 0:00:40, loss 0.03", lines
