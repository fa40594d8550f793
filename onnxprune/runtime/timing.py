"""The one timer: wall time of runs interleaved across models, and of the phases of a compress run.

:func:`time_interleaved` times runners (one inference each) in blocks of :data:`BLOCK` runs, the models
taking turns block by block with the starting model rotating, so slow drift of the machine (clock boost,
thermal throttling, noisy neighbours) is spread over all models alike; with several models each block
begins with one untimed run that absorbs the switch between sessions. Every run is timed on its own with
:func:`time.perf_counter`, the garbage collector paused. :class:`PhaseClock` sums the wall time of named
phases (the report's "wall time" line).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpecError
from .sessions import Runner

BLOCK = 5  # timed runs of one model in a row before the next model takes its turn


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_interleaved(runners: Sequence[Runner], warmup: int, repeats: int) -> list[np.ndarray]:
    """Seconds of each of ``repeats`` timed runs, per runner; runners take turns in blocks of BLOCK."""
    for runner in runners:
        for _ in range(warmup):
            runner()
    times: list[list[float]] = [[] for _ in runners]
    settle = len(runners) > 1
    with gc_paused():
        for block, start in enumerate(range(0, repeats, BLOCK)):
            count = min(BLOCK, repeats - start)
            shift = block % len(runners)
            for i in [*range(shift, len(runners)), *range(shift)]:
                times[i] += _time_block(runners[i], count, settle)
    return [np.asarray(t) for t in times]


def _time_block(runner: Runner, count: int, settle: bool) -> list[float]:
    """Seconds of ``count`` runs in a row, after one untimed run when ``settle``."""
    if settle:
        runner()
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        runner()
        out.append(time.perf_counter() - t0)
    return out


def check_settings(batch_sizes: Sequence[int], threads: int | None, warmup: int, repeats: int) -> list[int]:
    """The distinct batch sizes; a SpecError for settings that cannot be timed."""
    batches = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not batches or any(b < 1 for b in batches):
        raise SpecError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if threads is not None and threads < 1:
        raise SpecError(f"threads must be >= 1, got {threads}")
    if warmup < 0 or repeats < 1:
        raise SpecError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    return batches


@dataclass
class PhaseClock:
    """Wall seconds per named phase; a phase entered twice adds up."""

    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start


__all__ = ["BLOCK", "PhaseClock", "Runner", "check_settings", "gc_paused", "time_interleaved"]
