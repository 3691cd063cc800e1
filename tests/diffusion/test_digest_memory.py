"""The weight digest reads safetensors files in bounded chunks: the same digest as hashing the
loaded tensors (pinned, so existing LoRA cards stay valid), without the file's size in memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from geosynth.diffusion import tensorfile
from geosynth.diffusion.identity import describe_cost, files_digest, model_digest, state_digest

REPO = Path(__file__).resolve().parents[2]
#: The digest of _state() as geosynth computed it before the bounded reader (safetensors'
#: memory-mapped get_tensor, then .to(float32)): a change here invalidates every LoRA card.
PINNED = "ec875bbc68c53519acf8dcabe9151f347fe978bea9a02f1c44d948041cbcba47"


def _values(n: int, dtype: torch.dtype) -> torch.Tensor:
    """Deterministic values in every torch version (exact float64 arithmetic, then one cast)."""
    return (torch.arange(n, dtype=torch.float64) * 0.37 % 5 - 2.5).to(dtype)


def _state() -> dict[str, torch.Tensor]:
    """Every dtype the digest meets (integers and position ids are left out of it)."""
    return {
        "down.0.weight": _values(6 * 5 * 3 * 3, torch.float32).reshape(6, 5, 3, 3),
        "down.0.bias": _values(6, torch.float16),
        "mid.norm.weight": _values(77, torch.bfloat16).reshape(7, 11),
        "mid.scale": _values(13, torch.float64),
        "f8": _values(9, torch.float8_e4m3fn),
        "zero_d": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
        "steps": torch.arange(10),
        "text_model.embeddings.position_ids": torch.arange(77)[None],
        "text_model.final_layer_norm.weight": _values(32, torch.float32),
    }


@pytest.mark.parametrize("chunk", [6, 8, tensorfile.CHUNK])  # 6: elements split
def test_bounded_reader_gives_the_pinned_digest(tmp_path, monkeypatch, chunk) -> None:
    """Any read size (elements split across reads included) and any sharding: one digest, equal
    to hashing the loaded tensors and to the value from before the bounded reader."""
    monkeypatch.setattr(tensorfile, "CHUNK", chunk)
    state = _state()
    whole = tmp_path / "model.safetensors"
    save_file(state, whole)
    names = sorted(state)
    save_file({k: state[k] for k in names[::2]}, tmp_path / "a.safetensors")
    save_file({k: state[k] for k in names[1::2]}, tmp_path / "b.safetensors")
    assert state_digest(load_file(whole)) == PINNED
    assert files_digest([whole]) == PINNED
    assert files_digest([tmp_path / "a.safetensors", tmp_path / "b.safetensors"]) == PINNED


def test_tensor_reads_and_byte_ranges(tmp_path) -> None:
    state = _state()
    path = tmp_path / "m.safetensors"
    save_file(state, path)
    f = tensorfile.TensorFile(path)
    for key, t in state.items():
        assert torch.equal(f.tensor(key), t)
    w = state["down.0.weight"]
    part = b"".join(bytes(c) for c in f.float32_chunks("down.0.weight", 4 * 45, 4 * 90))
    assert np.array_equal(np.frombuffer(part, np.float32), w[1].reshape(-1).numpy())


def test_cost_is_reported_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pipe"
    for c, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                    ("text_encoder", "model")):  # fmt: skip
        (folder / c).mkdir(parents=True)
        save_file(_state(), folder / c / f"{name}.safetensors")
    first: dict = {}
    digest = model_digest(folder, cost=first)
    assert digest == {"unet": PINNED, "vae": PINNED, "text_encoder": PINNED}
    assert first["cached"] is False and first["seconds"] >= 0
    assert first["bytes"] == sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    again: dict = {}
    assert model_digest(folder, cost=again) == digest and again["cached"] is True
    # The log line finetune prints: only when the weights were hashed.
    assert "MB hashed in" in (describe_cost(first) or "") and describe_cost(again) is None


def test_peak_memory_stays_bounded(tmp_path) -> None:
    """Hashing a 256 MB file raises the process's peak RSS by far less than the file (memory
    mapping it, as before, added all of it)."""
    path = tmp_path / "big.safetensors"
    n = 8
    size = 32 << 20  # 8 tensors of 32 MB
    header = {f"w{i}": {"dtype": "F32", "shape": [size // 4], "data_offsets": [i * size, (i + 1) * size]}
              for i in range(n)}  # fmt: skip
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        block = np.linspace(-1, 1, size // 4, dtype=np.float32).tobytes()
        for _ in range(n):
            fh.write(block)
    script = textwrap.dedent(f"""
        import resource, torch
        from pathlib import Path
        from geosynth.diffusion.identity import files_digest
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        files_digest([Path({str(path)!r})])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    growth = int(res.stdout.split()[-1])
    assert growth < 80 << 20, f"peak RSS grew by {growth / 2**20:.0f} MB for a 256 MB file"


def test_views_of_a_file_tensor_hash_like_the_view(tmp_path) -> None:
    """What a single-file conversion may do to a tensor (split, index, transpose) is hashed from
    the file as the view itself would be; a computed tensor is no view (None: hashed loaded)."""
    from geosynth.diffusion.identity import _view_part

    w = _values(6 * 10, torch.bfloat16).reshape(6, 10)
    path = tmp_path / "m.safetensors"
    save_file({"w": w}, path)
    f = tensorfile.TensorFile(path)
    meta = torch.empty(6, 10, dtype=torch.bfloat16, device="meta")
    sources = {id(meta): (f, "w")}
    for view, real in ((meta.chunk(3)[1], w.chunk(3)[1]), (meta[2:, 3], w[2:, 3]),
                       (meta.T, w.T), (meta, w)):  # fmt: skip
        part = _view_part(view, sources)
        assert part is not None and part.shape == tuple(real.shape)
        got = b"".join(bytes(memoryview(c).cast("B")) for c in part.values())
        assert got == real.float().contiguous().numpy().tobytes()
    assert _view_part(meta * 2, sources) is None
