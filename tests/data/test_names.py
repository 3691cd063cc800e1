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


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        ("a satellite photo of a {}", "AnnualCrop", "a satellite photo of an annual crop"),
        ("a satellite photo of a {}", "Industrial", "a satellite photo of an industrial"),
        ("a satellite photo of a {}", "Forest", "a satellite photo of a forest"),
        (
            "a satellite photo of a {}",
            "university_campus",
            "a satellite photo of a university campus",
        ),
        ("A {} seen from above", "urban", "An urban seen from above"),
        ("an aerial view of {}", "orchard", "an aerial view of orchard"),  # no "a" before {}
        ("{{a}} {}", "orchard", "{a} orchard"),  # an escaped brace is not the field
    ],
)
def test_prompts_choose_a_or_an(template: str, name: str, expected: str) -> None:
    from geosynth.data.names import fill_prompt

    assert fill_prompt(template, prompt_name(name)) == expected


def test_generation_keeps_old_cards_prompts_and_old_plans() -> None:
    """A LoRA card from before articles were chosen learnt "a annual crop": generation fills its
    template literally; a job no article changes records the plan earlier versions wrote."""
    from geosynth.diffusion.sampling.spec import GenerationSpec

    spec = GenerationSpec("m", ["AnnualCrop", "Forest"], 1, "a satellite photo of a {}")
    assert spec.prompt("AnnualCrop") == "a satellite photo of an annual crop"
    assert spec.plan()["articles"] is True
    old = GenerationSpec("m", ["AnnualCrop"], 1, "a satellite photo of a {}", articles=False)
    assert old.prompt("AnnualCrop") == "a satellite photo of a annual crop"
    assert "articles" not in GenerationSpec("m", ["Forest"], 1, "a photo of a {}").plan()
