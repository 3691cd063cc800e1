"""LoRA directories and the LoRA set of a job (geosynth.diffusion.loras), on plain folders: no
model is loaded, only the files and cards that decide which LoRA applies where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from geosynth.diffusion.loras import (
    CARD_FILE,
    LORA_FILE,
    check_base,
    parse_lora,
    resolve_loras,
)
from geosynth.errors import GeosynthError


def _lora(path: Path, card: dict | None = None) -> Path:
    path.mkdir(parents=True)
    # a readable weights file (its values are checked when read); no real adapter needed here
    save_file({"unet.a.lora_A.weight": torch.zeros(2, 2)}, str(path / LORA_FILE))
    if card is not None:
        (path / CARD_FILE).write_text(json.dumps(card))
    return path


def test_parse_lora_reads_a_weight_and_names_adapters_uniquely(tmp_path) -> None:
    a = _lora(tmp_path / "my-lora")
    taken: set[str] = set()
    first = parse_lora(f"{a}:0.5", taken)
    second = parse_lora(str(a), taken)
    assert (first.path, first.weight) == (a, 0.5)
    assert (second.path, second.weight) == (a, 1.0)
    assert (first.name, second.name) == ("my_lora", "my_lora_2")


def test_parse_lora_names_the_parameter_and_the_missing_file(tmp_path) -> None:
    with pytest.raises(GeosynthError, match=r"^lora='.*nope': .*pytorch_lora_weights"):
        parse_lora(str(tmp_path / "nope"), set(), arg="lora")


def test_check_base_refuses_a_lora_of_another_model(tmp_path) -> None:
    item = parse_lora(str(_lora(tmp_path / "l", {"base_model": "sd-a/"})), set())
    check_base(item, "sd-a")  # a trailing slash is the same model
    with pytest.raises(GeosynthError, match="trained for base model 'sd-a/', not model='sd-b'"):
        check_base(item, "sd-b")


def test_resolve_loras_per_class_dir_and_mixture(tmp_path) -> None:
    stack = _lora(tmp_path / "style", {"base_model": "sd"})
    per_class = tmp_path / "per-class"
    _lora(per_class / "forest")
    _lora(per_class / "river")
    clusters = tmp_path / "plora"
    _lora(clusters / "c0")
    _lora(clusters / "c1")
    weights = clusters / "weights.json"
    weights.write_text(
        json.dumps(
            {
                "loras": {"c0": "c0", "c1": "c1"},
                "weights": {"forest": {"c0": 0.75, "c1": 0.25}, "lake": {"c1": 1.0}},
                "class_names": ["forest", "lake"],
            }
        )
    )
    lset = resolve_loras("sd", [f"{stack}:0.8"], lora_dir=per_class, lora_weights=weights)
    assert [(x.name, x.weight) for x in lset.stack] == [("style", 0.8)]
    assert sorted(x.name for x in lset.per_class) == ["c0", "c1", "forest", "river"]
    assert lset.classes == ["forest", "lake"]  # the mixture's classes win
    assert lset.class_weights["forest"] == {"forest": 1.0, "c0": 0.75, "c1": 0.25}
    assert lset.card == {"base_model": "sd"}
    lset.check_classes(["forest", "lake"])
    with pytest.raises(GeosynthError, match="no mixture for class 'desert'"):
        lset.check_classes(["desert"])
    assert lset.spec_loras()["style"] == {"path": str(stack), "weight": 0.8, "stack": True}


def test_resolve_loras_refuses_a_mixture_name_taken_by_another_lora(tmp_path) -> None:
    _lora(tmp_path / "c0")
    clusters = tmp_path / "plora"
    _lora(clusters / "c0")
    weights = clusters / "weights.json"
    weights.write_text(json.dumps({"loras": {"c0": "c0"}, "weights": {"a": {"c0": 1.0}}}))
    with pytest.raises(GeosynthError, match="LoRA name 'c0' is already used"):
        resolve_loras("sd", [str(tmp_path / "c0")], lora_weights=weights)
