"""Hardware-aware kept-channel counts: round a pruning group's kept count to a multiple (``--align N``).

``--align auto`` (the default) is the *target's* step (:func:`auto_alignment`): on ORT CPU the NCHWc
block MLAS uses on this machine (:func:`nchwc_block`: 16 with AVX-512F, 8 with AVX2, 1 otherwise — no
blocked kernels, nothing to align to), 8 on CUDA, 32 when the model will run int8. ``--align 1`` keeps
exact ratios. :class:`Alignment` carries the step and the reason, which the log and the report print.

Runtimes run convolutions fastest when channel counts fit their vector widths / tile sizes. This module
is the rule that turns a kept count into an aligned one (:func:`aligned_keep`) and the default multiple
per execution provider (:data:`DEFAULT_ALIGN`, :func:`default_alignment`). ONNX side, torch-free; pure
integer arithmetic but for :func:`auto_alignment`, which reads the CPU's flags.

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
* ``openvino`` (OpenVINO on the CPU, ``--on openvino:B``): ``auto`` takes the same block as ORT CPU, 16
  with AVX-512F and 8 with AVX2 — the channel blocks of oneDNN's blocked layouts (nChw16c / nChw8c),
  which OpenVINO's CPU plugin runs convolutions in. A hypothesis, not measured yet.
* ``cuda`` = 8 — not measured (no GPU here): NVIDIA's convolution performance guide asks for input and
  output channel counts divisible by 8 for FP16 and by 4 for TF32 for cuDNN to use Tensor Cores; 8
  satisfies both. A hypothesis to verify on a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import gcd

DEFAULT_ALIGN: dict[str, int] = {
    "cpu": 8,
    "cuda": 8,
}
"""Execution provider (short name, as in :mod:`onnxprune.runtime.benchmark`) -> a fixed channel multiple:
the step of dead-channel removal (:mod:`onnxprune.graph.dead`), machine-independent so reference runs
reproduce anywhere. ``--align auto`` reads the machine instead (:func:`auto_alignment`)."""


def default_alignment(provider: str) -> int:
    """The default channel multiple for ``provider`` ('cpu', 'cuda'; case-insensitive); 1 (no alignment)
    for a provider without a default."""
    return DEFAULT_ALIGN.get(provider.strip().lower(), 1)


INT8_ALIGN = 32
"""int8 kernels (VNNI, DP4A, Tensor Core IMMA) consume channels in blocks of 32 (4 bytes x 8 lanes)."""


@dataclass(frozen=True)
class Alignment:
    """The channel multiple of a run and why: ``step`` 1 = exact ratios."""

    step: int
    reason: str
    auto: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "reason": self.reason, "auto": self.auto}


def nchwc_block(flags: Iterable[str]) -> int:
    """MLAS's NCHWc block for a CPU with these /proc/cpuinfo ``flags``: 16 floats (one 512-bit register)
    with AVX-512F, 8 (256 bits) with AVX2, 1 without (MLAS then runs no blocked convolution)."""
    have = {f.lower() for f in flags}
    if "avx512f" in have:
        return 16
    if "avx2" in have:
        return 8
    return 1


def auto_alignment(
    provider: str = "cpu", flags: Iterable[str] | None = None, int8: bool = False
) -> Alignment:
    """``--align auto`` for a model served on ``provider`` ('cpu', 'cuda'): see the module docstring.

    ``flags``: the CPU's feature flags (None: this machine's, :func:`onnxprune.runtime.machine.cpu_flags`).
    ``int8``: the model will be quantized to int8 (the hook of a quantize setting): 32 on every provider.
    """
    name = provider.strip().lower()
    if int8:
        return Alignment(INT8_ALIGN, f"auto: int8 model ({INT8_ALIGN}-channel int8 kernel blocks)", True)
    if name == "cuda":
        return Alignment(
            DEFAULT_ALIGN["cuda"], "auto: CUDA (Tensor Core convolutions want multiples of 8)", True
        )
    if name not in ("cpu", "openvino"):
        return Alignment(1, f"auto: no known step for provider {provider!r}", True)
    if flags is None:
        from ..runtime.machine import cpu_flags  # lazy: the config layer reads the machine only here

        flags = cpu_flags()
    have = {f.lower() for f in flags}
    block = nchwc_block(have)
    isa = "AVX-512F" if "avx512f" in have else "AVX2" if "avx2" in have else "no AVX2"
    if name == "openvino":  # oneDNN's blocked layouts: nChw16c with AVX-512, nChw8c with AVX2 (not measured)
        return Alignment(block, f"auto: OpenVINO CPU (oneDNN) channel block {block} ({isa})", True)
    return Alignment(block, f"auto: ORT CPU NCHWc block {block} ({isa})", True)


def alignment_of(
    value: int | str | None,
    provider: str = "cpu",
    flags: Iterable[str] | None = None,
    int8: bool = False,
) -> Alignment:
    """``--align`` as given (None: not given = ``'auto'``) -> :class:`Alignment`; ValueError when bad."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return auto_alignment(provider, flags, int8)
    step = resolve_alignment(value, provider)
    return Alignment(step, "exact ratios (--align 1)" if step == 1 else f"given: --align {step}")


def resolve_alignment(value: int | str, provider: str = "cpu") -> int:
    """``--align`` as given -> the channel multiple: ``'auto'`` is :func:`auto_alignment` of
    ``provider`` (the runtime the model is for, on this machine), an integer >= 1 is itself.

    Raises ValueError naming the value otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return auto_alignment(provider).step
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


__all__ = [
    "DEFAULT_ALIGN",
    "INT8_ALIGN",
    "Alignment",
    "aligned_keep",
    "alignment_of",
    "auto_alignment",
    "default_alignment",
    "nchwc_block",
    "resolve_alignment",
]
