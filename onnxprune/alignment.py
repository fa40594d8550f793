"""Hardware-aware kept-channel counts: round a pruning group's kept count to a multiple (``--align N``).

Runtimes run convolutions fastest when channel counts fit their vector widths / tile sizes. This module
is the rule that turns a kept count into an aligned one (:func:`aligned_keep`) and the default multiple
per execution provider (:data:`DEFAULT_ALIGN`, :func:`default_alignment`). ONNX side: numpy-free and
torch-free, pure integer arithmetic.

Where the defaults come from:

* ``cpu`` — measured with ``benchmarks/run_align.py`` (VGG-16 and ResNet-50 from torchvision, every
  prunable group at 30 % width, ONNX Runtime CPU, 2 threads): see ``benchmarks/README.md``, section
  "Channel alignment (``--align``)", and ``benchmarks/results/align.json``.
* ``cuda`` — not measured here (no GPU): NVIDIA's convolution performance guide asks for input and
  output channel counts divisible by 8 for FP16 and by 4 for TF32 for cuDNN to run the convolution on
  Tensor Cores; 8 satisfies both. A hypothesis to verify on a GPU with the same script.
"""

from __future__ import annotations

from math import gcd

DEFAULT_ALIGN: dict[str, int] = {
    "cpu": 8,
    "cuda": 8,
}
"""Execution provider (short name, as in :mod:`onnxprune.bench`) -> default channel multiple."""


def default_alignment(provider: str) -> int:
    """The default channel multiple for ``provider`` ('cpu', 'cuda'; case-insensitive); 1 (no alignment)
    for a provider without a default."""
    return DEFAULT_ALIGN.get(provider.strip().lower(), 1)


def aligned_keep(keep: int, channels: int, width: int, multiple: int, minimum: int = 1) -> int:
    """The kept channel count of a group nearest ``keep`` whose kept *indices* are a multiple of ``multiple``.

    A group has ``channels`` channels, each owning ``width`` indices of its source tensor (1 for plain
    conv filters; ``width`` filters for a conv-group of a grouped Conv), so keeping ``k`` channels keeps
    ``k * width`` filters. The rule:

    1. ``multiple <= 1``: ``keep`` is returned unchanged.
    2. Bounds: ``lo = clamp(minimum, 1, channels)``, ``hi = channels``.
    3. ``keep >= channels``: ``channels`` (a group kept whole stays whole; its width is the model's own).
    4. ``k * width`` is a multiple of ``multiple`` exactly when ``k`` is a multiple of
       ``step = multiple // gcd(width, multiple)``. The aligned feasible counts are the multiples of
       ``step`` in ``[lo, hi]``. If there is at least one, the result is the one nearest ``keep``; on a
       tie (``keep`` half-way between two of them) the larger one.
    5. If there is none (``channels * width < multiple``, or ``step`` does not fit between ``lo`` and
       ``hi``), no count aligns: the result is the feasible count nearest ``keep``, i.e. ``keep``
       clamped to ``[lo, hi]`` — never 0.

    Examples: ``aligned_keep(19, 64, 1, 8) == 16`` (19 is nearer 16 than 24), ``aligned_keep(20, 64, 1, 8)
    == 24`` (tie, up), ``aligned_keep(2, 64, 1, 8) == 8`` (the smallest aligned count),
    ``aligned_keep(3, 6, 1, 8) == 3`` (6 channels cannot make 8), ``aligned_keep(3, 16, 2, 8) == 4``
    (4 conv-groups of 2 filters = 8 filters).

    Raises ValueError when ``channels`` or ``width`` is below 1.
    """
    if channels < 1 or width < 1:
        raise ValueError(f"need channels >= 1 and width >= 1, got channels={channels}, width={width}")
    if multiple <= 1:
        return keep
    lo, hi = min(max(minimum, 1), channels), channels
    if keep >= hi:
        return hi
    step = multiple // gcd(width, multiple)
    first = -(-lo // step) * step  # smallest multiple of step >= lo
    last = hi // step * step  # largest multiple of step <= hi
    if first > last:
        return min(max(keep, lo), hi)
    if keep <= first:
        return first
    if keep >= last:
        return last
    below = keep // step * step
    above = below if below == keep else below + step
    return above if above - keep <= keep - below else below


__all__ = ["DEFAULT_ALIGN", "aligned_keep", "default_alignment"]
