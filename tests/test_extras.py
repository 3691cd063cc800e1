"""Optional dependencies: the extras in pyproject.toml match geosynth.extras, and a missing
package fails where it is needed with one line that names the extra to install."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from geosynth.data.raster import Raster, read_raster, write_raster
from geosynth.errors import GeosynthError
from geosynth.extras import OPTIONAL, require

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _names(requirements: list[str]) -> set[str]:
    """Normalised distribution names of requirement strings (``open_clip_torch>=2`` -> ``open-clip-torch``)."""
    return {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def test_extras_match_pyproject() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = _names(project["dependencies"])
    extras = {k: _names(v) for k, v in project["optional-dependencies"].items()}
    for module, (package, extra) in OPTIONAL.items():
        assert _norm(package) in extras[extra], f"{module}: {package} not in [{extra}]"
        assert _norm(package) not in core, f"{package} is optional but also a core dependency"
    assert extras["all"] == extras["geo"] | extras["eval"]
    assert extras["all"] <= extras["dev"]
    # Nothing in an extra that the table does not explain (dev's tools aside).
    assert extras["geo"] | extras["eval"] | extras["optim8bit"] == {
        _norm(p) for p, _ in OPTIONAL.values()
    }


@pytest.fixture
def missing(monkeypatch: pytest.MonkeyPatch):
    """Make ``import NAME`` (and its submodules) fail as if the package were not installed."""

    def hide(name: str) -> None:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, key)
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises

    return hide


def _one_line(exc: pytest.ExceptionInfo[GeosynthError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_require_names_the_extra(missing) -> None:
    missing("open_clip")
    with pytest.raises(GeosynthError) as exc:
        require("open_clip", "features='open_clip:ViT-B-16'")
    assert _one_line(exc) == (
        "features='open_clip:ViT-B-16': needs the open_clip_torch package "
        "(pip install 'geosynth-toolkit[eval]')"
    )


def test_open_clip_features_missing(missing) -> None:
    from geosynth.features import create_extractor

    missing("open_clip")
    with pytest.raises(GeosynthError) as exc:
        create_extractor("open_clip:ViT-B-16", device="cpu")
    assert _one_line(exc).startswith("features='open_clip:ViT-B-16': needs the open_clip_torch")


def test_rasterio_missing(missing, tmp_path: Path) -> None:
    tif = write_raster(tmp_path / "a.tif", Raster(array=np.zeros((2, 4, 4), np.uint16)))
    missing("rasterio")
    with pytest.raises(GeosynthError) as exc:
        read_raster(tif)
    assert _one_line(exc) == (
        f"{tif} (GeoTIFF or 16-bit PNG): needs the rasterio package "
        "(pip install 'geosynth-toolkit[geo]')"
    )
    with pytest.raises(GeosynthError, match=r"\[geo\]"):
        write_raster(tmp_path / "b.tif", Raster(array=np.zeros((1, 4, 4), np.uint8)))
    assert not (tmp_path / "b.tif").exists()


def test_faiss_and_skimage_missing(missing) -> None:
    from geosynth.diffusion.sampling.control import canny_edges
    from geosynth.plora.clustering import kmeans

    missing("faiss")
    with pytest.raises(
        GeosynthError, match=r"faiss-cpu package \(pip install 'geosynth-toolkit\[eval\]'\)"
    ):
        kmeans(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32), 2)
    missing("skimage")
    from PIL import Image

    with pytest.raises(GeosynthError) as exc:
        canny_edges(Image.new("RGB", (8, 8)))
    assert _one_line(exc).startswith("control='canny': needs the scikit-image package")


def test_cli_maps_the_parameter(missing, cli, tmp_path: Path) -> None:
    """From the shell the message names the option, exits 2 and writes nothing."""
    missing("open_clip")
    res = cli("toy", "model", "--kind", "clip", "--out", tmp_path / "clip")
    assert res.code == 2
    assert res.err.strip().count("\n") == 0
    assert "needs the open_clip_torch package (pip install 'geosynth-toolkit[eval]')" in res.err
    assert not (tmp_path / "clip").exists()
