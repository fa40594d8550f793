"""Hardware-aware kept-channel counts: round a pruning group's kept count to a multiple (``--align N``).

Runtimes run convolutions fastest when channel counts fit their vector widths / tile sizes. This module
is the rule that turns a kept count into an aligned one (:func:`aligned_keep`) and the default multiple
per execution provider (:data:`DEFAULT_ALIGN`, :func:`default_alignment`). ONNX side: numpy-free and
torch-free, pure integer arithmetic.

Where the defaults come from:

* ``cpu`` = 8 — measured with ``python -m benchmarks.run_align`` (torchvision VGG-16 and ResNet-50 at 224x224,
  groups at 30 % width, ONNX Runtime 1.32 CPU, 2 threads, AVX2): with unrounded counts ORT runs the pruned
  convs in its plain NCHW path instead of MLAS's blocked NCHWc kernels, and aligning to 8 brings them all
  back (VGG-16 batch 32: 7.2x -> 10.1x faster than dense; ResNet-50, every group: 5.3x -> 9.8x); 16 and
  32 gain nothing more per MAC there, 4 gets part of it. 8 is MLAS's NCHWc block on SSE/AVX/AVX2 x86; on
  AVX-512 machines the block is 16: measured there (Intel Xeon, same script, ``--tag xeon_avx512``),
  16 beats 8 on the wide models (VGG-16 batch 32: 8.2x -> 9.5x; 8 leaves extra reorders) but loses on
  the tiny VGG-style reference (rounding 7 filters up to 16 costs more than it saves), so 8 stays the
  default and ``--align 16`` is the choice for wide models on AVX-512. See
  ``benchmarks/README.md``, "Channel alignment (``--align``)", and ``benchmarks/results/align.json``.
* ``cuda`` = 8 — not measured (no GPU here): NVIDIA's convolution performance guide asks for input and
  output channel counts divisible by 8 for FP16 and by 4 for TF32 for cuDNN to use Tensor Cores; 8
  satisfies both. A hypothesis to verify on a GPU.
"""

from __future__ import annotations

from math import gcd

DEFAULT_ALIGN: dict[str, int] = {
    "cpu": 8,
    "cuda": 8,
}
"""Execution provider (short name, as in :mod:`onnxprune.runtime.benchmark`) -> default channel multiple."""


def default_alignment(provider: str) -> int:
    """The default channel multiple for ``provider`` ('cpu', 'cuda'; case-insensitive); 1 (no alignment)
    for a provider without a default."""
    return DEFAULT_ALIGN.get(provider.strip().lower(), 1)


def resolve_alignment(value: int | str, provider: str = "cpu") -> int:
    """``--align`` as given -> the channel multiple: ``'auto'`` is :func:`default_alignment` of
    ``provider`` (the runtime the model is for), an integer >= 1 is itself.

    Raises ValueError naming the value otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return default_alignment(provider)
        if not text.isdigit():
            raise ValueError(f"align must be a positive integer or 'auto', not {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"align must be a positive integer or 'auto', not {value!r}")
    return value


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


__all__ = ["DEFAULT_ALIGN", "aligned_keep", "default_alignment", "resolve_alignment"]
