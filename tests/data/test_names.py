import pytest

from geosynth.data.names import prompt_name, safe_dirname


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AnnualCrop", "annual crop"),
        ("sea_lake", "sea lake"),
        ("SeaLake", "sea lake"),
        ("HerbaceousVegetation", "herbaceous vegetation"),
        ("SARShip", "sar ship"),
        ("bulk-carrier", "bulk carrier"),
        ("forest", "forest"),
        ("  Dense_residential ", "dense residential"),
    ],
)
def test_prompt_name(raw: str, expected: str) -> None:
    assert prompt_name(raw) == expected


def test_safe_dirname_removes_separators() -> None:
    assert safe_dirname("a/b") == "a_b"
    assert safe_dirname("..") not in {"..", "."}
