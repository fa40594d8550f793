"""aligned_keep: the kept count rounded to a multiple of kept indices; the provider defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.config.alignment import (
    DEFAULT_ALIGN,
    INT8_ALIGN,
    aligned_keep,
    alignment_of,
    auto_alignment,
    default_alignment,
    nchwc_block,
    resolve_alignment,
)
from onnxprune.runtime import machine

CASES = st.tuples(
    st.integers(-5, 300),  # keep
    st.integers(1, 256),  # channels
    st.sampled_from([1, 1, 1, 2, 3, 4, 6, 8, 12, 32]),  # width
    st.sampled_from([1, 2, 3, 4, 8, 16, 32, 64]),  # multiple
    st.integers(-2, 40),  # minimum
)


def bounds(channels: int, minimum: int) -> tuple[int, int]:
    return min(max(minimum, 1), channels), channels


def aligned_counts(channels: int, width: int, multiple: int, minimum: int) -> list[int]:
    """Brute force: every count in bounds whose kept indices are a multiple of ``multiple``."""
    lo, hi = bounds(channels, minimum)
    return [k for k in range(lo, hi + 1) if (k * width) % multiple == 0]


@settings(max_examples=3000, deadline=None)
@given(CASES)
def test_within_bounds_and_never_zero(case: tuple[int, int, int, int, int]) -> None:
    keep, channels, width, multiple, minimum = case
    if multiple <= 1:
        return
    k = aligned_keep(keep, channels, width, multiple, minimum)
    lo, hi = bounds(channels, minimum)
    assert lo <= k <= hi
    assert k >= 1


@settings(max_examples=3000, deadline=None)
@given(CASES)
def test_aligned_and_nearest_when_feasible(case: tuple[int, int, int, int, int]) -> None:
    keep, channels, width, multiple, minimum = case
    if multiple <= 1 or keep >= channels:
        return
    k = aligned_keep(keep, channels, width, multiple, minimum)
    feasible = aligned_counts(channels, width, multiple, minimum)
    if not feasible:
        # nothing aligns: the in-bounds count nearest keep
        lo, hi = bounds(channels, minimum)
        assert k == min(max(keep, lo), hi)
        return
    assert (k * width) % multiple == 0
    assert k in feasible
    best = min(abs(c - keep) for c in feasible)
    assert abs(k - keep) == best
    # ties go up: no aligned feasible count at the same distance above k
    assert not any(c > k and abs(c - keep) == best for c in feasible)


@settings(max_examples=1000, deadline=None)
@given(CASES)
def test_identity_for_multiple_one(case: tuple[int, int, int, int, int]) -> None:
    keep, channels, width, _, minimum = case
    assert aligned_keep(keep, channels, width, 1, minimum) == keep
    assert aligned_keep(keep, channels, width, 0, minimum) == keep


@settings(max_examples=1000, deadline=None)
@given(CASES)
def test_idempotent(case: tuple[int, int, int, int, int]) -> None:
    keep, channels, width, multiple, minimum = case
    k = aligned_keep(keep, channels, width, multiple, minimum)
    assert aligned_keep(k, channels, width, multiple, minimum) == k


@settings(max_examples=1000, deadline=None)
@given(st.integers(1, 512), st.sampled_from([2, 4, 8, 16, 32]))
def test_already_aligned_keep_is_unchanged(channels: int, multiple: int) -> None:
    for keep in range(multiple, channels + 1, multiple):
        assert aligned_keep(keep, channels, 1, multiple) == keep


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 256), st.integers(0, 300), st.sampled_from([2, 4, 8, 16]))
def test_monotone_in_keep(channels: int, keep: int, multiple: int) -> None:
    assert aligned_keep(keep, channels, 1, multiple) <= aligned_keep(keep + 1, channels, 1, multiple)


@pytest.mark.parametrize(
    ("keep", "channels", "width", "multiple", "minimum", "expected"),
    [
        (19, 64, 1, 8, 1, 16),  # nearer 16 than 24
        (20, 64, 1, 8, 1, 24),  # half-way: up
        (21, 64, 1, 8, 1, 24),
        (24, 64, 1, 8, 1, 24),  # already aligned
        (2, 64, 1, 8, 1, 8),  # the smallest aligned count, not 0
        (0, 64, 1, 8, 1, 8),
        (-3, 64, 1, 8, 1, 8),
        (63, 64, 1, 8, 1, 64),
        (70, 64, 1, 8, 1, 64),  # above channels: channels
        (64, 64, 1, 8, 1, 64),
        (38, 128, 1, 8, 1, 40),  # round(0.3 * 128) = 38 -> 40
        (38, 128, 1, 16, 1, 32),  # 38 is nearer 32 than 48
        (40, 128, 1, 16, 1, 48),  # tie: up
        (154, 512, 1, 8, 1, 152),  # round(0.3 * 512) = 154 -> 152
        (154, 512, 1, 32, 1, 160),
        (19, 64, 1, 4, 1, 20),
        (3, 6, 1, 8, 1, 3),  # 6 channels cannot make 8: keep, in bounds
        (9, 6, 1, 8, 1, 6),
        (0, 6, 1, 8, 1, 1),  # never 0
        (9, 10, 1, 8, 1, 8),
        (10, 10, 1, 8, 1, 10),  # a group kept whole stays whole
        (3, 16, 2, 8, 1, 4),  # conv-groups of 2 filters: 4 groups = 8 filters
        (5, 16, 2, 8, 1, 4),  # 5 groups = 10 filters: 4 (8) and 8 (16): 4 is nearer
        (6, 16, 2, 8, 1, 8),  # tie between 4 and 8: up
        (2, 16, 3, 8, 1, 8),  # width 3: only multiples of 8 conv-groups align (24 filters)
        (2, 7, 3, 8, 1, 2),  # ... none of 7 does: keep
        (5, 40, 4, 8, 1, 6),  # width 4: even counts
        (3, 64, 1, 8, 10, 16),  # minimum 10: the smallest aligned count >= 10
        (3, 12, 1, 8, 10, 10),  # minimum 10, 12 channels: no aligned count in [10, 12] -> clamp to 10
        (3, 5, 1, 8, 9, 5),  # minimum above channels: channels
        (5, 12, 1, 1, 1, 5),
        (99, 12, 1, 1, 1, 99),  # multiple 1: unchanged, even out of range
    ],
)
def test_examples(keep: int, channels: int, width: int, multiple: int, minimum: int, expected: int) -> None:
    assert aligned_keep(keep, channels, width, multiple, minimum) == expected


def test_thirty_percent_of_torchvision_widths() -> None:
    """The counts run_align.py uses: 30 % of VGG-16 / ResNet-50 widths at multiples 8 and 16."""
    got = {c: aligned_keep(round(0.3 * c), c, 1, 8) for c in (64, 128, 256, 512, 1024, 2048)}
    assert got == {64: 16, 128: 40, 256: 80, 512: 152, 1024: 304, 2048: 616}
    got16 = {c: aligned_keep(round(0.3 * c), c, 1, 16) for c in (64, 128, 256, 512)}
    assert got16 == {64: 16, 128: 32, 256: 80, 512: 160}


@pytest.mark.parametrize("bad", [(5, 0, 1, 8), (5, 8, 0, 8), (5, -1, 1, 8)])
def test_rejects_empty_groups_and_widths(bad: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        aligned_keep(*bad)


def test_defaults() -> None:
    assert set(DEFAULT_ALIGN) >= {"cpu", "cuda"}
    assert all(isinstance(v, int) and v >= 1 for v in DEFAULT_ALIGN.values())
    assert default_alignment("cpu") == DEFAULT_ALIGN["cpu"]
    assert default_alignment("CUDA") == DEFAULT_ALIGN["cuda"]
    assert default_alignment("tensorrt-someday") == 1
    assert DEFAULT_ALIGN["cuda"] % 8 == 0  # FP16 Tensor Core convolutions want channels divisible by 8


def test_module_does_not_import_torch() -> None:
    code = "import sys, onnxprune.config.alignment; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("value", "provider", "expected"),
    [
        ("auto", "cpu", nchwc_block(machine.cpu_flags())),
        ("AUTO", "cuda", DEFAULT_ALIGN["cuda"]),
        ("auto", "tpu", 1),
        (4, "cpu", 4),
        ("16", "cuda", 16),
        (1, "cpu", 1),
    ],
)
def test_resolve_alignment(value: int | str, provider: str, expected: int) -> None:
    assert resolve_alignment(value, provider) == expected


@pytest.mark.parametrize("value", [0, -8, "eight", "", True, 2.5])
def test_resolve_alignment_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="align must be a positive integer or 'auto'"):
        resolve_alignment(value)  # type: ignore[arg-type]


AVX512 = "processor\t: 0\nmodel name\t: Fake Xeon\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
SSE = "processor\t: 0\nflags\t\t: fpu sse2 sse4_2\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n"


@pytest.mark.parametrize(("cpuinfo", "step"), [(AVX512, 16), (AVX2, 8), (SSE, 1), (ARM, 1), ("", 1)])
def test_auto_resolves_from_the_cpuinfo_flags(cpuinfo: str, step: int, monkeypatch, tmp_path) -> None:
    flags = machine.cpu_flags(cpuinfo)
    assert nchwc_block(flags) == step
    got = auto_alignment("cpu", flags)
    assert got.step == step and got.auto and "NCHWc block" in got.reason
    # this machine's flags are read from /proc/cpuinfo: the same text through the real reader
    real_path = machine.Path
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    monkeypatch.setattr(machine, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert auto_alignment("cpu").step == step == resolve_alignment("auto", "cpu")
    assert alignment_of(None, "cpu").step == step  # not given = auto


def test_auto_on_cuda_and_int8_and_explicit_values() -> None:
    assert auto_alignment("cuda", frozenset()).step == 8
    assert auto_alignment("cpu", machine.cpu_flags(AVX2), int8=True).step == INT8_ALIGN == 32
    assert auto_alignment("cuda", frozenset(), int8=True).step == 32
    exact = alignment_of(1, "cpu")
    assert exact.step == 1 and not exact.auto and "exact ratios" in exact.reason
    assert alignment_of("4", "cuda").step == 4
    with pytest.raises(ValueError, match="align must be"):
        alignment_of("fast")


def test_the_report_and_log_say_which_alignment_and_why(caplog) -> None:
    import logging

    from onnxprune import compress
    from onnxprune.pipeline import TrainOptions
    from tests.builders import vgg_like

    def run(**kwargs):
        with caplog.at_level(logging.INFO, logger="onnxprune"):
            return compress(
                vgg_like(), "filter:0.5", "random", method="magnitude", train=TrainOptions(finetune_epochs=0),
                bench_batches=(), quiet=True, **kwargs,
            ).report  # fmt: skip

    step = nchwc_block(machine.cpu_flags())
    report = run()
    got = report.config["alignment"]
    assert got["step"] == step and got["auto"] and "NCHWc block" in got["reason"]
    assert f"align  {step}: auto" in report.format()
    assert f"align {step}: auto" in caplog.text
    # every pruned group is aligned unless it has fewer filters than the step, and those are listed
    small = [g for g in report.groups if g["prunable"] and g["kept"] < g["channels"] and g["kept"] % step]
    assert len(got["unaligned"]) == len(small)
    assert all(g["channels"] < step for g in small)
    exact = run(align=1)
    assert exact.config["alignment"] == {"step": 1, "reason": "exact ratios (--align 1)", "auto": False,
                                         "unaligned": []}  # fmt: skip
    assert "align  1: exact ratios" in exact.format()


@pytest.mark.parametrize(("cpuinfo", "step"), [(AVX512, 16), (AVX2, 8)])
def test_with_auto_no_pruned_conv_keeps_an_unaligned_width(cpuinfo: str, step: int, monkeypatch) -> None:
    from onnx import numpy_helper

    from onnxprune import compress
    from onnxprune.pipeline import TrainOptions
    from tests.test_budget import wide

    flags = machine.cpu_flags(cpuinfo)
    monkeypatch.setattr(machine, "cpu_flags", lambda text=None: flags)
    dense = wide(24)  # 24, 48, 48, 24 filters: none a multiple of 16 whole
    full = {n.name: n for n in dense.graph.node if n.op_type == "Conv"}
    for ratio in (0.3, 0.5, 0.7):
        result = compress(
            dense, f"filter:{ratio}", "random", method="magnitude", train=TrainOptions(finetune_epochs=0),
            bench_batches=(), quiet=True,
        )  # fmt: skip
        assert result.report.config["alignment"]["step"] == step
        weights = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
        convs = [n for n in result.model.graph.node if n.op_type == "Conv" and n.name in full]
        assert convs
        for node in convs:
            filters = weights[node.input[1]].shape[0]
            assert filters % step == 0, (ratio, node.name, filters)


def test_a_run_that_quantizes_aligns_auto_to_the_int8_step() -> None:
    from onnxprune import compress
    from onnxprune.pipeline import TrainOptions
    from tests.builders import vgg_like

    report = compress(
        vgg_like(), "filter:0.5", "random", method="magnitude", train=TrainOptions(finetune_epochs=0),
        bench_batches=(), quiet=True, quantize="int8",
    ).report  # fmt: skip
    got = report.config["alignment"]
    assert got["step"] == INT8_ALIGN and got["auto"] and "int8" in got["reason"]
