"""Sidecar metadata tables (CSV / JSON lines keyed by file) and the values users ask a model
for: what they add, and the one-line errors for what cannot be right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geosynth.data import load_dataset
from geosynth.data.metadata import parse_metadata_fields, parse_metadata_values
from geosynth.errors import GeosynthError
from tests.cli.test_main import _one_line_error


def _table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_table_adds_fields_and_extra_columns(toy_data, cli, tmp_path) -> None:
    table = _table(
        tmp_path / "side.csv",
        "file_name,lat,lon,gsd,cloud_cover,date,country\n"
        "water/000000.png,25.2,55.3,0.5,0.1,2023-06-01,AE\n"
        "./forest/000001.png,,-3.5,,,2019:07:01 10:30:00,ES\n",
    )
    ds = load_dataset(toy_data, metadata_table=table)
    by_key = {s.key: ds.metadata(i) for i, s in enumerate(ds.samples)}
    a = by_key["water/000000.png"]
    assert (a.lat, a.lon, a.gsd, a.cloud_cover, a.date) == (25.2, 55.3, 0.5, 0.1, "2023-06-01")
    assert a.extra == {"country": "AE"} and a.sources["lat"] == "metadata_table"
    b = by_key["forest/000001.png"]
    assert b.lat is None and b.lon == -3.5 and b.date == "2019-07-01T10:30:00"
    assert by_key["water/000001.png"].extra == {}
    # a class subset keeps the table's rows of the classes kept
    sub = load_dataset(toy_data, metadata_table=table, classes=["water"])
    assert sub.metadata(0).lat == 25.2
    res = cli("data", "info", toy_data, "--metadata-table", table, "--json", "--by-sample")
    assert res.code == 0, res.err
    fields = json.loads(res.out)["metadata"]["fields"]
    rows = json.loads(res.out)["metadata"]["by_sample"]
    assert all(list(r)[2:] == list(fields) for r in rows)  # every row has every field
    assert fields["lat"] == {
        "known": 1, "missing": 29, "min": 25.2, "max": 25.2, "sources": {"metadata_table": 1}
    }  # fmt: skip
    assert fields["country"]["known"] == 2 and fields["country"]["distinct"] == 2
    assert fields["date"]["min"] == "2019-07-01T10:30:00"
    table_out = cli("data", "info", toy_data, "--metadata-table", table, "--by-sample").out
    assert "metadata (30 samples" in table_out and "metadata_table (1)" in table_out
    assert "metadata by sample" in table_out and "2019-07-01T10:30:00" in table_out


def test_jsonl_table_with_split_prefixes(tmp_path) -> None:
    from geosynth.toy import make_toy_dataset

    root = tmp_path / "ds"
    make_toy_dataset(root / "train", per_class=2, classes=["water", "forest"])
    make_toy_dataset(root / "val", per_class=2, classes=["water", "forest"])
    rows = [
        {"file_name": "train/water/000000.png", "lat": 10.0, "date": "2020-01-02"},
        {"file_name": "val/water/000000.png", "lat": 20.0},  # another split's row: left out
        {"file_name": "forest/000000.png", "lat": 30.0, "tags": ["a", "b"]},
    ]
    table = _table(root / "meta.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset(root, split="train", metadata_table=table)
    got = {s.key: ds.metadata(i) for i, s in enumerate(ds.samples)}
    assert got["water/000000.png"].lat == 10.0
    assert got["forest/000000.png"].extra == {"tags": ["a", "b"]}
    # unprefixed rows are relative to the split chosen
    assert load_dataset(root, split="val", metadata_table=table).metadata_table == {
        "water/000000.png": {"lat": 20.0},
        "forest/000000.png": {"lat": 30.0, "tags": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("file_name,lat\nwater/nope.png,1\n", ["line 2 names 'water/nope.png'", "not a sample"]),
        ("file_name,lat\nwater/000000.png,95\n", ["line 2: lat='95'", "between -90 and 90"]),
        ("file_name,date\nwater/000000.png,2023-13-01\n", ["date='2023-13-01'", "not a date"]),
        ("file_name,cloud_cover\nwater/000000.png,35\n", ["cloud_cover='35'", "percentages"]),
        ("file_name,gsd\nwater/000000.png,0\n", ["gsd='0'", "must be positive"]),
        ("path,lat\nwater/000000.png,1\n", ["no 'file_name' column", "path, lat"]),
        ("file_name,lat\nwater/000000.png,1\nwater/000000.png,2\n", ["line 3 repeats"]),
    ],
)
def test_bad_tables_are_one_line_errors(toy_data, cli, tmp_path, text, needles) -> None:
    table = _table(tmp_path / "bad.csv", text)
    _one_line_error(cli("data", "info", toy_data, "--metadata-table", table),
                    f"--metadata-table {table}", *needles)  # fmt: skip


def test_missing_table_file(toy_data, cli, tmp_path) -> None:
    _one_line_error(
        cli("data", "info", toy_data, "--metadata-table", tmp_path / "none.csv"),
        "--metadata-table",
        "cannot read it",
    )


def test_user_values_parse_into_diffusionsat_fields() -> None:
    got = parse_metadata_values("lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01")
    assert got == {"lat": 25.2, "lon": 55.3, "gsd": 0.5, "year": 2023.0, "month": 6.0, "day": 1.0}
    assert parse_metadata_values({"month": 7, "cloud_cover": 0}) == {
        "month": 7.0,
        "cloud_cover": 0.0,
    }
    assert parse_metadata_fields("gsd, lat,lon,date") == (
        "lon", "lat", "gsd", "year", "month", "day"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "allowed", "match"),
    [
        ("lat=95", None, r"`metadata`: lat='95': must be between -90 and 90"),
        ("date=2023-02-30", None, r"`metadata`: date='2023-02-30': not a date"),
        ("month=13", None, r"month='13': must be a whole number 1\.\.12"),
        ("altitude=3", None, r"unknown field 'altitude'"),
        ("lat", None, r"'lat' is not FIELD=VALUE"),
        ("lat=1,lat=2", None, r"lat is given twice"),
        ("date=2020-01-01,year=2020", None, r"year is given twice"),
        ("lat=1,cloud_cover=0.2", ("lon", "lat", "gsd"), r"not trained with cloud_cover"),
        ("date=2020-01-01", ("lon", "lat"), r"not trained with year, month, day"),
    ],
)
def test_bad_user_values(spec, allowed, match) -> None:
    with pytest.raises(GeosynthError, match=match):
        parse_metadata_values(spec, allowed=allowed)


def test_bad_field_lists() -> None:
    with pytest.raises(GeosynthError, match="unknown field 'height'"):
        parse_metadata_fields("lon,height")
    with pytest.raises(GeosynthError, match="'year' is named twice"):
        parse_metadata_fields("date,year")
    with pytest.raises(GeosynthError, match="names no field"):
        parse_metadata_fields("")
