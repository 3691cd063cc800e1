"""The image-folder writer refuses misuse with a GeosynthError that says what to do, also under
``python -O`` (which strips ``assert``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from PIL import Image
from geosynth.artifacts import Provenance
from geosynth.data.writer import ImageFolderWriter
from geosynth.errors import GeosynthError
w = ImageFolderWriter(sys.argv[1], ["water"], Provenance.start("test"))
for call in (
    lambda: w.add(Image.new("RGB", (4, 4)), 0),
    lambda: w.add_raster(None, 0),
):
    try:
        call()
    except GeosynthError as e:
        print("refused:", e)
    else:
        print("accepted")
"""


def test_writing_outside_the_with_block_is_refused_under_python_O(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    res = subprocess.run(
        [sys.executable, "-O", "-c", SCRIPT, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stderr
    assert len(lines) == 2, res.stdout + res.stderr
    for line in lines:
        assert line.startswith("refused:") and "context manager" in line, line
    assert not (tmp_path / "out").exists()
