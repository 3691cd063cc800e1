"""Every diffusion step at a model family's real size (exact configs, random weights) on the CPU:
the runs of bench/realsize.py (also bench/sd21_cpu.py's), as slow tests, so that a fault that
only shows at the real size (a shape, a dtype, memory) fails ``make test-all``. One case per
entry of ``FAMILIES``; times and peak memory are printed (``-s``) and recorded in
docs/benchmarks.md, never asserted.

``GEOSYNTH_REAL_SIZE_MODELS=DIR`` keeps the built pipelines in ``DIR/<family>`` between sessions
(SD 2.1-base: 5.2 GB, SDXL base: 13.9 GB); without it they are built in the test's temporary
folder. A family whose steps need more free memory than this machine has (``Family.ram_gb``) or
more disk than is free is skipped with the reason. Run times on 2 cores: SD 2.1 about 2.5 min
idle, 25 min shared; SDXL (17 GB of RAM, 15 GB of disk) 62 min shared (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_realsize():
    spec = importlib.util.spec_from_file_location("realsize", REPO / "bench" / "realsize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["realsize"] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


realsize = _load_realsize()


def _gib_available() -> float:
    """MemAvailable (GiB), or infinity where /proc/meminfo does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(realsize.FAMILIES))
def test_every_step_at_real_size(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    family = realsize.FAMILIES[name]
    keep = os.environ.get("GEOSYNTH_REAL_SIZE_MODELS")
    model = Path(keep) / name if keep else tmp_path / name
    built = (model / "model_index.json").is_file()
    disk = shutil.disk_usage(model.parent if model.parent.exists() else tmp_path).free / 1e9
    need_disk = (0 if built else family.weights_gb) + 1.5  # + LoRAs, outputs, toy models
    if disk < need_disk:
        pytest.skip(f"{name} at real size needs {need_disk:.0f} GB of free disk, {disk:.1f} here")
    if _gib_available() * 1.074 < family.ram_gb:  # GiB -> GB
        pytest.skip(f"{name} at real size needs about {family.ram_gb:.0f} GB of free memory")
    work = tmp_path / "work"
    rows = realsize.run(family, work, model=model, skip_done=False)
    plan = realsize.plan(family, model, work, 64, 2)
    assert [r.name for r in rows] == [s.name for s in plan]
    with capsys.disabled():
        print(f"\n{name}\n{realsize.table(rows, 64, 2)}")

    # What each step wrote reads back and names the real-size model.
    import torch
    from safetensors.torch import load_file

    from geosynth.artifacts import load_channel_means
    from geosynth.diffusion.identity import model_digest

    monkeypatch.setenv("GEOSYNTH_CACHE", str(work / "cache"))  # the runs' digest cache
    digest = model_digest(model)
    assert digest is not None
    classes = sorted(p.name for p in (work / "data").iterdir() if p.is_dir())
    for c in classes:
        card = json.loads((work / "ft-finetune" / c / "geosynth.json").read_text())
        assert card["base_digest"] == digest and card["steps"] == 2
    for out in ["ft-gc", *(f"ft-gc-{p}" for p in family.precisions)]:
        card = json.loads((work / out / "geosynth.json").read_text())
        assert card["base_digest"] == digest and card["steps"] == 2
        assert card["base_family"] == family.detected
        # A LoRA on every text encoder of the family, float32 factors whatever the precision.
        lora = load_file(work / out / "pytorch_lora_weights.safetensors")
        assert {t.dtype for t in lora.values()} == {torch.float32}
        assert all(torch.isfinite(t).all() for t in lora.values())
        for te in card["lora_targets"]["text_encoders"]:
            assert any(k.startswith(f"{te}.") for k in lora), te
    means = load_channel_means(work / "means.safetensors")
    assert sorted(means.class_names) == classes
    assert json.loads(means.metadata["model_digest"]) == digest
    rows_out = (work / "synth" / "metadata.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["class_name"] for r in rows_out) == classes
    assert (work / "plora" / "weights.json").is_file()
