"""Data order and multi-process (torchrun / DistributedDataParallel) plumbing for training.

Data order: every epoch's permutation is a pure function of (seed, phase, epoch), so a run resumed from a
checkpoint replays the interrupted epoch exactly (skipping the steps already done), and N processes see the
same global batches as one process. Global batch ``i`` is ``perm[i·B : (i+1)·B]``; rank ``r`` of ``W`` takes
the contiguous ``r``-th slice of it (``B / W`` samples). This is what DistributedSampler does for the sample
set of a batch, with the order of a 1-process run, and it can start mid-epoch.

Processes: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`session` joins the process
group (gloo on CPU, nccl on CUDA) and leaves it on exit, also on error. Training code asks :func:`context`
which rank it is. DDP averages the gradients, so every rank holds the same weights after every step; the
ADMM Z/U updates are then computed on every rank from those weights (no broadcast needed) and
:func:`check_same` verifies the premise cheaply after each Z-step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..errors import SpecError
from ..runtime.machine import JobContext as Context
from ..runtime.machine import job_context as env_context

__all__ = ["Context", "EpochBatches", "check_same", "context", "env_rank", "mean", "session"]

log = logging.getLogger("onnxprune.distributed")

PHASES = {"admm": 0, "finetune": 1}


def env_rank() -> int:
    """This process's rank (0 outside torchrun); only rank 0 writes outputs."""
    return env_context().rank


def context() -> Context:
    """The current process group's view when one is up, else the environment's (1 process by default)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), env_context().local_rank)
    return Context()


@contextmanager
def session(device: str) -> Iterator[Context]:
    """Join the torchrun process group for the block (none when ``WORLD_SIZE`` <= 1) and leave it after.

    A group someone else started is used as is and left up.
    """
    ctx = env_context()
    if not ctx.distributed or dist.is_initialized():
        yield context()
        return
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            found = torch.cuda.device_count()
            raise SpecError(f"LOCAL_RANK {ctx.local_rank} but torch sees {found} CUDA devices")
        torch.cuda.set_device(ctx.local_rank)
    try:
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world)
    except (ValueError, RuntimeError) as e:  # e.g. WORLD_SIZE set without torchrun's MASTER_ADDR/PORT
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecError(f"cannot join the process group of {ctx.world} processes: {first}") from None
    if ctx.main:
        log.info("distributed: %d processes, backend %s", ctx.world, backend)
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def mean(values: list[float], ctx: Context, device: torch.device) -> list[float]:
    """Per-rank values averaged over the ranks (no-op for 1 process)."""
    if not ctx.distributed or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / ctx.world).tolist()


def check_same(tensors: list[torch.Tensor], ctx: Context, what: str) -> None:
    """Raise unless every rank holds the same ``tensors`` (min and max of a float64 checksum agree)."""
    if not ctx.distributed:
        return
    device = tensors[0].device if tensors else torch.device("cpu")  # nccl reduces CUDA tensors only
    with torch.no_grad():
        s = sum(
            (t.double().sum() + t.double().abs().sum() for t in tensors),
            torch.zeros((), dtype=torch.float64, device=device),
        )
        both = torch.stack([s, -s])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if float(both[0]) != -float(both[1]):
        raise RuntimeError(f"ranks disagree on {what} (checksums {float(both[0])!r} vs {-float(both[1])!r})")


# -- data order ----------------------------------------------------------------------------------------
def permutation(n: int, seed: int, phase: str, epoch: int) -> np.ndarray:
    """The epoch's sample order: a pure function of (seed, phase, epoch)."""
    return np.random.default_rng([seed % 2**63, PHASES[phase], epoch]).permutation(n)


class EpochBatches(Sampler[list[int]]):
    """This rank's share of each global batch of an epoch, from ``skip`` global batches on.

    The last global batch may be short; with several ranks one holding fewer than ``world`` samples is
    dropped (a rank must not get an empty batch). Call :meth:`set_epoch` before iterating.
    """

    def __init__(self, n: int, batch: int, seed: int, phase: str, ctx: Context) -> None:
        if batch % ctx.world:
            raise SpecError(f"batch_size {batch} is not divisible by the {ctx.world} processes")
        self.n, self.batch, self.seed, self.phase, self.ctx = n, batch, seed, phase, ctx
        self.epoch, self.skip = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.batch)
        return full + int(rest >= self.ctx.world)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return max(self.steps_per_epoch - self.skip, 0)

    def weight(self, i: int, local: int) -> float:
        """Factor on global batch ``i``'s mean loss over this rank's ``local`` samples such that DDP's
        gradient average is the gradient of the global batch mean (ranks may hold unequal shares)."""
        size = min(self.batch, self.n - i * self.batch)
        return local * self.ctx.world / size

    def __iter__(self) -> Iterator[list[int]]:
        perm = permutation(self.n, self.seed, self.phase, self.epoch)
        for i in range(self.skip, self.steps_per_epoch):
            chunk = perm[i * self.batch : (i + 1) * self.batch]
            yield np.array_split(chunk, self.ctx.world)[self.ctx.rank].tolist()
