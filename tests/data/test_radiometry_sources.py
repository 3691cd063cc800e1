"""A recorded radiometry can be reused: every artifact that records a spec gives it back to
``--radiometry``, ``data info`` reads a generated folder's ``radiometry.json`` instead of
refitting, and band names come from one place (a spec that names bands a file lacks says what
to add)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.artifacts import ChannelMeans, Provenance, save_channel_means
from geosynth.data import load_dataset
from geosynth.data.bandnames import EUROSAT_MS_BANDS
from geosynth.data.multiband import band_input
from geosynth.data.radiometry import Radiometry
from geosynth.data.radiometry_sources import bind, load_radiometry
from geosynth.data.raster import Raster, write_raster
from geosynth.data.stats import band_stats
from geosynth.errors import GeosynthError
from geosynth.metrics.pixels import scan_images

CLASSES = ("Forest", "SeaLake")


def _write(root: Path, arrays: dict[str, list[Raster]]) -> Path:
    for name, rasters in arrays.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(rasters):
            write_raster(root / name / f"{i}.tif", r)
    return root


@pytest.fixture(scope="module")
def ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EuroSAT-MS-like chips: 13 unnamed uint16 bands (reflectance x 10000)."""
    rng = np.random.default_rng(0)
    return _write(
        tmp_path_factory.mktemp("ms"),
        {
            c: [Raster(rng.integers(200, 3000, (13, 16, 16)).astype(np.uint16)) for _ in range(2)]
            for c in CLASSES
        },
    )


@pytest.fixture(scope="module")
def spec(ms: Path) -> Radiometry:
    s2 = {"kind": "optical", "bands": ["B04", "B03", "B02"], "file_bands": "eurosat-ms"}
    return Radiometry.from_dict({**s2, "percentiles": [1, 99]}).resolve(load_dataset(ms))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, ms: Path, spec: Radiometry) -> Path:
    """What `generate` writes from such data: 3-band uint16 B04, B03, B02 GeoTIFFs (here the
    true-colour bands of the real chips themselves), with the 13-band spec they were written
    through as radiometry.json."""
    ds = load_dataset(str(ms))
    root = _write(
        tmp_path_factory.mktemp("gen") / "synth",
        {
            c: [
                Raster(ds.raster(i).array[[3, 2, 1]], ["B04", "B03", "B02"])
                for i, s in enumerate(ds.samples)
                if ds.class_names[s.label] == c
            ]
            for c in CLASSES
        },
    )
    (root / "radiometry.json").write_text(json.dumps(spec.to_dict()))
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, spec: Radiometry) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    lora = root / "lora"
    lora.mkdir()
    card = {"format": "geosynth-lora/1", "base_model": "sd", "base_digest": {"unet": "0"}}
    (lora / "geosynth.json").write_text(json.dumps({**card, "radiometry": spec.to_dict()}))
    rgb = root / "rgb-lora"
    rgb.mkdir()
    (rgb / "geosynth.json").write_text(json.dumps({**card, "radiometry": None}))
    cm = ChannelMeans(torch.zeros(2, 4), list(CLASSES), metadata={"radiometry": spec.to_json()})
    save_channel_means(root / "means.safetensors", cm, provenance=Provenance.start("test"))
    plain = root / "spec.json"
    plain.write_text(spec.to_json())
    return {"lora": lora, "rgb": rgb, "means": root / "means.safetensors", "spec": plain}


def test_every_artifact_that_records_a_spec_gives_it_back(
    spec: Radiometry, artifacts: dict[str, Path], generated: Path
) -> None:
    given = [
        artifacts["lora"],
        artifacts["lora"] / "geosynth.json",
        artifacts["means"],
        generated,
        generated / "radiometry.json",
        artifacts["spec"],
        spec.to_json(),
        json.dumps({"radiometry": spec.to_dict(), "other": 1}),  # a record holding one
    ]
    for value in given:
        assert load_radiometry(str(value)).to_json() == spec.to_json(), value
    with pytest.raises(GeosynthError, match="records no radiometry"):
        load_radiometry(str(artifacts["rgb"]))
    with pytest.raises(GeosynthError, match="without a recorded spec"):
        load_radiometry(str(artifacts["lora"].parent))


def test_radiometry_option_takes_a_lora_folder_and_a_channel_means_file(
    cli, ms: Path, spec: Radiometry, artifacts: dict[str, Path]
) -> None:
    for value in (artifacts["lora"], artifacts["means"]):
        res = cli("data", "info", ms, "--radiometry", value, "--json")
        assert res.code == 0, res.err
        assert json.loads(res.out)["radiometry"]["ranges"] == [list(r) for r in spec.ranges]


def test_data_info_on_a_generated_folder_uses_its_radiometry_json(
    cli, generated: Path, spec: Radiometry
) -> None:
    res = cli("data", "info", generated, "--json")
    assert res.code == 0, res.err
    rad = json.loads(res.out)["radiometry"]
    # the recorded spec (fitted on the 13-band training data), not a default refitted here
    assert rad["ranges"] == [list(r) for r in spec.ranges] and rad["file_bands"] == "eurosat-ms"
    assert rad["band_names"] == ["B04", "B03", "B02"] and rad["band_count"] == 3
    assert "recorded in" in res.err and "default" not in res.err


def test_a_recorded_spec_applies_by_band_name_to_other_files(
    ms: Path, generated: Path, spec: Radiometry
) -> None:
    """The generated 3-band set and the 13-band set through one spec: the same B04 value maps
    to the same model input in both."""
    on_gen = bind(spec, load_dataset(str(generated)))
    on_ms = bind(spec, load_dataset(str(ms)))
    assert on_ms.to_json() == spec.to_json()  # the data it was made on: unchanged
    assert on_gen.ranges == spec.ranges and on_gen.band_count == 3
    value = np.full((16, 16), 1234, np.uint16)
    three = Raster(np.stack([value, value + 1, value + 2]), ["B04", "B03", "B02"])
    thirteen = np.zeros((13, 16, 16), np.uint16)
    thirteen[3], thirteen[2], thirteen[1] = value, value + 1, value + 2
    np.testing.assert_array_equal(on_gen.forward(three), on_ms.forward(Raster(thirteen)))


def test_a_spec_naming_bands_the_file_does_not_name_says_what_to_add(cli, ms: Path) -> None:
    bare = '{"kind": "optical", "bands": ["B04", "B03", "B02"], "percentiles": [1, 99]}'
    res = cli("data", "info", ms, "--radiometry", bare)
    assert res.code == 2
    assert 'add "file_bands": "eurosat-ms" to the spec' in res.err
    assert len(res.err.strip().splitlines()) == 1, res.err


def test_band_names_are_the_same_everywhere(ms: Path) -> None:
    """data info, --bands and evaluate's pixel metrics name the unnamed 13 bands alike."""
    ds = load_dataset(str(ms))
    assert [b["name"] for b in band_stats(ds)["bands"]] == list(EUROSAT_MS_BANDS)
    bi = band_input(ds, "B04,B03,B02")
    assert bi.bands == (3, 2, 1) and bi.names == ("B04", "B03", "B02")
    scan = scan_images(ds, greyscale=False)
    assert scan.channels == list(EUROSAT_MS_BANDS) and scan.bands == list(EUROSAT_MS_BANDS)


def test_filter_reads_a_generated_set_and_its_13_band_real_set_through_one_spec(
    cli, ms: Path, generated: Path, toy_models, tmp_path: Path
) -> None:
    """`filter --real` embeds both sets through the generated set's spec (it refused the 3-band
    files against the 13-band spec they record before): true-colour copies of the real chips
    are all on the real manifold."""
    out = tmp_path / "kept"
    res = cli(
        "filter", generated, "--real", ms, "--features", toy_models["dinov2"], "--k", "1",
        "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    assert (out / "radiometry.json").is_file()
    assert len(load_dataset(str(out))) == len(load_dataset(str(generated)))
