"""torch.distributed helpers shared by the steps that split work across processes.

geosynth never starts processes itself: ``torchrun`` or ``accelerate launch`` do, and set
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. Work is split into contiguous row ranges, one per rank, so
results can be put back together in order and equal a single-process run. Every helper is a no-op
in a single process, so library code calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_size()[0] == 0


def launched_size() -> int:
    """WORLD_SIZE as set by torchrun / accelerate launch (1 when not launched by them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device) -> bool:
    """Join the process group a launcher described in the environment, with NCCL for CUDA
    devices and gloo otherwise; returns whether this run is distributed. Safe to call twice."""
    if launched_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """On CUDA, the GPU of this process (LOCAL_RANK) unless an index was given explicitly."""
    if device.type == "cuda" and device.index is None and launched_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def row_range(n: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """The contiguous rows ``[start, stop)`` of ``n`` that ``rank`` owns; sizes differ by at
    most one, earlier ranks take the extra rows."""
    r, s = rank_and_size()
    rank = r if rank is None else rank
    size = s if size is None else size
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's ``local`` rows (from :func:`row_range` over ``n``) in rank order,
    on every rank. Ranks hold different row counts, so blocks are padded for the collective."""
    size = rank_and_size()[1]
    if size == 1:
        return local
    longest = row_range(n, 0, size)[1]
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    lengths = [stop - start for start, stop in (row_range(n, r, size) for r in range(size))]
    return torch.cat([p[:length] for p, length in zip(parts, lengths, strict=True)])


def all_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    """``sum``, ``min`` or ``max`` of ``t`` over ranks, returned on every rank. Booleans are
    reduced as integers (``max`` is logical or), which every backend supports."""
    if rank_and_size()[1] == 1:
        return t
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    work = t.to(torch.int32) if t.dtype == torch.bool else t.clone()
    dist.all_reduce(work, op=ops[op])
    return work.bool() if t.dtype == torch.bool else work


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache), the others after it, from its result."""
    rank, size = rank_and_size()
    if size > 1 and rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if size > 1 and rank == 0:
            dist.barrier()


def patient_group() -> Any:
    """A gloo group whose collectives wait up to a week, or None in a single process. Every rank
    must call it at the same point (it is collective). For waits where ranks finish uneven work
    (one rank's shards take an hour longer): the default group's timeout (30 min; 10 min on
    NCCL) would abort the ranks that finished first."""
    if rank_and_size()[1] == 1:
        return None
    return dist.new_group(backend="gloo", timeout=timedelta(days=7))


def wait_for_all(group: Any) -> None:
    """Barrier on a :func:`patient_group` (nothing in a single process)."""
    if group is not None:
        dist.barrier(group=group)
