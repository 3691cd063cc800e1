"""``generate --maps`` refuses the options it does not support, naming each, before anything
loads; the library refuses the same parameters in its own terms (``--resume`` and ``--shard``
are supported: tests/diffusion/sampling/test_generated_pairs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geosynth.errors import GeosynthError

CASES = [
    (["--noise", "leak-aligned"], "--noise leak-aligned"),
    (["--channel-means", "means.safetensors"], "--channel-means means.safetensors"),
    (["--radiometry", "auto"], "--radiometry auto"),
    (["--controlnet", "cn/"], "--controlnet cn/"),
    (["--classes", "water,forest"], "--classes water,forest"),
    (["--per-class", "3"], "--per-class 3"),
    (["--no-fuse-lora"], "--no-fuse-lora"),
    (["--fuse-lora"], "--fuse-lora"),
]


@pytest.mark.parametrize("extra,named", CASES, ids=[c[1] for c in CASES])
def test_generate_maps_refuses_what_it_would_ignore(
    cli, tmp_path: Path, extra: list[str], named: str
) -> None:
    out = tmp_path / "out"
    res = cli(
        "generate", "--maps", tmp_path / "maps", "--lora", tmp_path / "m", "--out", out, *extra
    )
    assert res.code == 2, res.err
    assert res.err.startswith(f"error: {named}:"), res.err
    assert "--maps" in res.err and len(res.err.strip().splitlines()) == 1
    assert not out.exists()


def test_load_map_generation_refuses_in_library_terms(tmp_path: Path) -> None:
    from geosynth.diffusion.sampling.mapgen import load_map_generation

    with pytest.raises(GeosynthError, match=r"^noise='leak-aligned': .*`maps`"):
        load_map_generation(tmp_path / "maps", noise="leak-aligned")
    with pytest.raises(GeosynthError, match=r"^per_class=3: .*`maps`"):
        load_map_generation(tmp_path / "maps", per_class=3)
