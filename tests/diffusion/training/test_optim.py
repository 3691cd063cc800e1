"""The 8-bit optimiser switch: refused in one line where it cannot run, before anything loads."""

from __future__ import annotations

import pytest
import torch

from geosynth.diffusion.training.optim import check_optimizer, make_optimizer
from geosynth.errors import GeosynthError


def test_unknown_and_cpu_8bit_are_one_line_errors() -> None:
    with pytest.raises(GeosynthError, match=r"^optimizer='sgd': expected one of adamw, adamw8bit$"):
        check_optimizer("sgd", torch.device("cpu"))
    with pytest.raises(GeosynthError, match=r"^optimizer='adamw8bit': .*need a CUDA GPU"):
        check_optimizer("adamw8bit", torch.device("cpu"))
    check_optimizer("adamw", torch.device("cpu"))
    p = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer("adamw", [{"params": [p], "weight_decay": 0.0}], 1e-3)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == 1e-3


def test_cli_refuses_8bit_on_cpu_before_writing(cli, toy_models, toy_data, tmp_path) -> None:
    out = tmp_path / "lora"
    res = cli("finetune", toy_data, "--model", toy_models["sd"], "--device", "cpu",
              "--optimizer", "adamw8bit", "--out", out)  # fmt: skip
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert "--optimizer" in res.err or "optimizer=" in res.err
    assert not out.exists()
