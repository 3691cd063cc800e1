"""``--precision auto`` does what the commands' help says: fp32 off CUDA; fp16 on every CUDA GPU;
for classifier training bf16 where the GPU computes it natively, else fp16 (no GPU is needed:
the CUDA query is replaced)."""

from __future__ import annotations

import pytest
import torch

from geosynth.runtime import accelerate_precision, pick_dtype, resolve_precision

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_on_each_device_kind(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    asked: list[bool] = []

    def supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native_bf16 or including_emulation  # older GPUs emulate bf16: not enough

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", cpu, prefer_bf16=True) == "fp32"
    assert resolve_precision("auto", torch.device("meta")) == "fp32"  # any non-CUDA device
    assert resolve_precision("auto", CUDA) == "fp16"  # inference and finetune, every GPU
    want = "bf16" if native_bf16 else "fp16"
    assert resolve_precision("auto", CUDA, prefer_bf16=True) == want  # train-clf
    assert accelerate_precision("auto", CUDA, prefer_bf16=True) == want
    assert asked == [False, False]  # native support only
    # explicit choices are kept; the CPU computes in fp32 whatever is asked
    assert resolve_precision("bf16", CUDA) == "bf16" and resolve_precision("fp16", cpu) == "fp16"
    assert pick_dtype("bf16", cpu) == torch.float32 and pick_dtype("auto", CUDA) == torch.float16


def test_help_says_what_auto_does(cli) -> None:
    for cmd in ("embed", "generate", "finetune"):
        text = " ".join(cli(cmd, "--help").out.split())
        assert "auto: fp32 on the CPU" in text and "fp16" in text and "every CUDA GPU" in text
    text = " ".join(cli("train-clf", "--help").out.split())
    assert "bf16 mixed precision where it is native" in text and "else fp16" in text
