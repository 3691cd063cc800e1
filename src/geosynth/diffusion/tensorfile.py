"""A safetensors file's tensors read in bounded memory: plain reads through the header's offsets.

``safe_open`` and ``load_file`` map the whole file into memory; every page a reader touches then
counts in the process's resident set until the mapping is closed, so hashing a 5 GB checkpoint
that way adds 5 GB to the peak of whatever step is running. :class:`TensorFile` reads the JSON
header itself and then streams a tensor's bytes (or any byte range of them) in chunks of at most
:data:`CHUNK` bytes with ordinary ``read`` calls: the file's pages go to the kernel's page cache,
which the kernel reclaims at will and which is not part of the process's memory.

safetensors stores every tensor C-contiguous and little-endian, at ``data_offsets`` counted from
the end of the header (docs: https://huggingface.co/docs/safetensors, "Format").
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Bytes read (and converted) at a time: memory stays about 3x this whatever the file's size.
CHUNK = 16 << 20
#: safetensors dtype names -> torch dtype attribute names (those torch may lack are skipped).
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class Entry:
    """One tensor's place in the file: dtype, shape and absolute byte range."""

    dtype: str  # the safetensors name (``F32``, ``BF16``, ...)
    shape: tuple[int, ...]
    start: int
    stop: int

    def torch_dtype(self) -> torch.dtype | None:
        """The torch dtype, or None for a dtype this torch does not know."""
        import torch

        name = _DTYPES.get(self.dtype)
        return None if name is None else getattr(torch, name, None)


class TensorFile:
    """The tensors of one safetensors file, read on demand without memory-mapping it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self.path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header: dict[str, Any] = json.loads(fh.read(size))
        header.pop("__metadata__", None)
        base = 8 + size
        self.entries = {
            key: Entry(
                e["dtype"],
                tuple(int(n) for n in e["shape"]),
                *(base + o for o in e["data_offsets"]),
            )
            for key, e in header.items()
        }

    def keys(self) -> list[str]:
        return list(self.entries)

    def chunks(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[memoryview]:
        """Bytes ``start:stop`` of tensor ``key``'s data, in chunks of at most :data:`CHUNK`
        bytes; each chunk is only valid until the next one is read."""
        e = self.entries[key]
        first, last = e.start + start, e.start + (e.stop - e.start if stop is None else stop)
        buf = bytearray(min(CHUNK, max(last - first, 0)))
        view = memoryview(buf)
        with self.path.open("rb", buffering=0) as fh:
            fh.seek(first)
            pos = first
            while pos < last:
                n = fh.readinto(view[: min(CHUNK, last - pos)])
                if not n:
                    raise OSError(f"{self.path}: truncated (tensor {key!r} ends past the file)")
                yield view[:n]
                pos += n

    def float32_chunks(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        """Like :meth:`chunks`, each chunk as float32 values (torch's conversion, so the bytes
        equal ``tensor.to(torch.float32)``'s); for floating-point tensors."""
        import torch

        e = self.entries[key]
        dtype = e.torch_dtype()
        assert dtype is not None and dtype.is_floating_point, (key, e.dtype)
        size = dtype.itemsize
        pending = b""
        for chunk in self.chunks(key, start, stop):
            if dtype == torch.float32 and not pending and len(chunk) % size == 0:
                yield chunk
                continue
            # A short read can split an element: carry its first bytes into the next chunk.
            data = pending + bytes(chunk) if pending else chunk
            whole = len(data) - len(data) % size
            pending = bytes(data[whole:])
            if whole:
                yield _as_float32(data[:whole], dtype)
        if pending:
            raise OSError(f"{self.path}: tensor {key!r} is not a whole number of elements")

    def tensor(self, key: str) -> torch.Tensor:
        """All of tensor ``key`` (one tensor in memory, read without a mapping)."""
        import torch

        e = self.entries[key]
        dtype = e.torch_dtype()
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {key!r} has dtype {e.dtype}, unknown to torch")
        buf = bytearray(e.stop - e.start)
        with self.path.open("rb", buffering=0) as fh:
            fh.seek(e.start)
            if fh.readinto(buf) != len(buf):
                raise OSError(f"{self.path}: truncated (tensor {key!r} ends past the file)")
        if not buf:
            return torch.empty(e.shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(e.shape)


def _as_float32(data: Any, dtype: torch.dtype) -> np.ndarray:
    import torch

    return torch.frombuffer(bytearray(data), dtype=dtype).to(torch.float32).numpy()
