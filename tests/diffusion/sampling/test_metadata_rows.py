"""What each generated image asks for: literal values, tables of rows, and the refusals."""

from __future__ import annotations

import pytest

from geosynth.diffusion.sampling.metadata import asked, columns, resolve_rows, row_for
from geosynth.errors import GeosynthError

FIELDS = ("lon", "lat", "gsd", "year", "month", "day")


def _rows(**kw):
    base = dict(metadata=None, metadata_from=None, shuffle=False, fields=FIELDS, seed=0)
    return resolve_rows(**{**base, "classes": ["a", "b"], **kw})


def test_literal_values_for_every_image() -> None:
    rows = _rows(metadata="lat=25.2,lon=55.3,date=2023-06-01")
    assert row_for(rows, "b", 7)["values"] == {
        "lat": 25.2, "lon": 55.3, "year": 2023.0, "month": 6.0, "day": 1.0,
    }  # fmt: skip
    assert columns(row_for(rows, "a", 0), 32) == {"lon": 55.3, "lat": 25.2, "date": "2023-06-01"}


def test_a_table_cycles_its_rows_and_keeps_class_rows_to_their_class(tmp_path) -> None:
    table = tmp_path / "places.csv"
    table.write_text("lat,lon,class_name\n10,20,\n30,40,b\n-5,,\n")
    rows = _rows(metadata=str(table))
    assert [row_for(rows, "a", i)["values"]["lat"] for i in range(4)] == [10, -5, 10, -5]
    assert [row_for(rows, "b", i)["values"]["lat"] for i in range(3)] == [10, 30, -5]
    assert "lon" not in row_for(rows, "a", 1)["values"]  # empty cell: unknown (0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"lat": 95}\n')
    with pytest.raises(GeosynthError, match=r"line 1.*lat=95: must be between -90 and 90"):
        _rows(metadata=str(bad))


def test_gsd_of_a_real_chip_is_scaled_to_the_generated_pixel() -> None:
    row = {"values": {"gsd": 10.0, "lat": 3.0}, "side": 64, "source": "x.tif"}
    assert asked(row, 32)["gsd"] == 20.0  # 64 px at 10 m seen as 32 px
    assert columns(row, 32)["metadata_from"] == "x.tif"


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(metadata="cloud_cover=0.3"), "not trained with cloud_cover"),
        (dict(metadata="lat=1", fields=None), "no metadata embedding"),
        (dict(metadata="lat=1", metadata_from="real/"), "give one of them"),
        (dict(shuffle=True), "needs `metadata_from`"),
        (dict(metadata="lat=1", shuffle=True), "needs `metadata_from`"),
        (dict(metadata="month=13"), "whole number 1..12"),
    ],
)
def test_refusals(kw, words) -> None:
    with pytest.raises(GeosynthError, match=words):
        _rows(**kw)
