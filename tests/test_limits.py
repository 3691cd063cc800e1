"""The library refuses numbers outside their meaning, naming the parameter (library callers get
what the command line gets at parse time), before anything is loaded or written."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import geosynth
from geosynth.errors import GeosynthError
from geosynth.limits import LIMITS, Limit, check_number


@pytest.mark.parametrize(
    ("limit", "good", "bad"),
    [
        (Limit(0, low_open=True), [1e-9, 3.0], [0, -1, math.nan, math.inf]),
        (Limit(0, 1, high_open=True), [0, 0.5], [1, -0.1, math.nan]),
        (Limit(1, integer=True), [1, 7], [0, 1.5, math.inf]),
        (Limit(), [-5.0, 0, 1e300], [math.nan, -math.inf]),
    ],
)
def test_limit(limit: Limit, good: list[float], bad: list[float]) -> None:
    assert all(limit.problem(v) is None for v in good)
    assert all(limit.problem(v) for v in bad)


def test_messages_name_the_parameter() -> None:
    with pytest.raises(GeosynthError, match=r"^lr=-1\.0: must be > 0$"):
        check_number("lr", -1.0)
    with pytest.raises(GeosynthError, match=r"^offset_noise=nan: must be a finite number >= 0$"):
        check_number("offset_noise", math.nan)
    with pytest.raises(GeosynthError, match=r"^seeds=\[0, -1\] \(-1\): must be in"):
        check_number("seeds", [0, -1])
    assert LIMITS["guidance"].problem(0) is None


def test_front_doors_refuse_before_doing_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (lambda: geosynth.generate(out, guidance=math.nan), "guidance=nan"),
        (lambda: geosynth.generate(out, steps=0), "steps=0"),
        (lambda: geosynth.generate(out, batch_size=0), "batch_size=0"),
        (lambda: geosynth.tile_scenes([tmp_path], out, 8, max_nodata=math.nan), "max_nodata=nan"),
        (lambda: geosynth.rarity(str(tmp_path), str(tmp_path), k=0), "k=0"),
        (lambda: geosynth.embed(str(tmp_path), out, features="x", workers=-1), "workers=-1"),
    ]
    for call, needle in cases:
        with pytest.raises(GeosynthError, match=re.escape(needle)):
            call()
    assert list(tmp_path.iterdir()) == []


def test_class_prompts_refuse_guidance_that_diffusers_ignores() -> None:
    from geosynth.diffusion.sampling.spec import GenerationSpec

    spec = GenerationSpec("m", ["water"], 1, "a photo of a {}", guidance=0.5)
    with pytest.raises(GeosynthError, match="between 0 and 1 no guidance"):
        spec.check()
    for g in (0.0, 1.0, 7.5):
        GenerationSpec("m", ["water"], 1, "a photo of a {}", guidance=g).check()


def test_radiometry_db_floor_must_be_finite() -> None:
    from geosynth.data.radiometry import Radiometry

    spec = '{"kind": "sar", "bands": ["VV"], "ranges": [[-30, 5]], "db_floor": NaN}'
    with pytest.raises(GeosynthError, match="db_floor nan"):
        Radiometry.parse(spec)
