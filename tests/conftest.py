"""Session fixtures: toy data and tiny models are built once; the suite never touches a hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from dataclasses import dataclass
from pathlib import Path

import pytest

from geosynth.cli.main import main
from geosynth.toy import make_toy_dataset, make_toy_models, make_toy_sdxl_pipeline

REPO = Path(__file__).resolve().parents[1]
EUROSAT = Path(os.environ.get("GEOSYNTH_EUROSAT", REPO.parent / "shared" / "data" / "eurosat-rgb"))
EUROSAT_MS = Path(
    os.environ.get("GEOSYNTH_EUROSAT_MS", REPO.parent / "shared" / "data" / "eurosat-ms")
)
DUBAI = Path(
    os.environ.get("GEOSYNTH_DUBAI", REPO.parent / "shared" / "data" / "aerial-seg" / "dubai")
)
#: The six mask colours of the Dubai scenes, as aerial-seg/README.md lists them (not as the
#: dataset's own classes.json does).
DUBAI_LEGEND = {
    "classes": [
        {"name": "Building", "color": "#3C1098"},
        {"name": "Land (unpaved area)", "color": "#8429F6"},
        {"name": "Road", "color": "#6EC1E4"},
        {"name": "Vegetation", "color": "#FEDD3A"},
        {"name": "Water", "color": "#E2A929"},
        {"name": "Unlabeled", "color": "#9B9B9B"},
    ]
}


@pytest.fixture(scope="session")
def eurosat() -> Path:
    """The real EuroSAT-RGB sample (train/val/test/pool image folders)."""
    if not (EUROSAT / "train").is_dir():
        pytest.skip(f"real EuroSAT images not found at {EUROSAT} (set GEOSYNTH_EUROSAT)")
    return EUROSAT


@pytest.fixture(scope="session")
def eurosat_ms() -> Path:
    """The real EuroSAT-MS sample (13-band uint16 GeoTIFFs; train/val/pool folders)."""
    if not (EUROSAT_MS / "train").is_dir():
        pytest.skip(f"real EuroSAT-MS images not found at {EUROSAT_MS} (set GEOSYNTH_EUROSAT_MS)")
    return EUROSAT_MS


@pytest.fixture(scope="session")
def dubai() -> Path:
    """The real Dubai aerial scenes with land-cover masks (Tile N/images, Tile N/masks)."""
    if not (DUBAI / "Tile 1" / "masks").is_dir():
        pytest.skip(f"real Dubai scenes not found at {DUBAI} (set GEOSYNTH_DUBAI)")
    return DUBAI


@pytest.fixture(scope="session")
def dubai_legend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's six colours as a legend.json."""
    import json

    path = tmp_path_factory.mktemp("legend") / "legend.json"
    path.write_text(json.dumps(DUBAI_LEGEND))
    return path


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy imagefolder: 5 classes x 6 images, 32 px."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", per_class=6, seed=0)


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD, DINOv2 and CLIP models (short VAE training keeps the fixture fast)."""
    return make_toy_models(tmp_path_factory.mktemp("models"), vae_steps=40)


@pytest.fixture(scope="session")
def toy_sdxl(tmp_path_factory: pytest.TempPathFactory, toy_models: dict[str, Path]) -> Path:
    """The tiny SDXL-shaped pipeline (two text encoders, size conditioning), built once with
    the toy SD's trained VAE (the same architecture; no second VAE training)."""
    out = tmp_path_factory.mktemp("sdxl") / "sdxl"
    return make_toy_sdxl_pipeline(out, vae_from=toy_models["sd"])


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``geosynth ARGS...`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
