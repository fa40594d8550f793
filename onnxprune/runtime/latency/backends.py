"""What runs a target's timings: one :class:`Backend` per target provider (``cpu``, ``cuda``, ``openvino``),
in the registry :data:`BACKENDS`.

A backend says which runtime and device serve the target (as ``bench`` names them: runtime ``ort`` on
``cpu`` / ``cuda``, runtime ``openvino`` on ``cpu``), which software version its timings depend on (the
cache key's ``onnxruntime`` or ``openvino`` entry), how to check it is installed (a one-line error), and
its runner factory: ``(model, feeds, target) -> Runner``, one inference per call, timed by the one timer
(:func:`onnxprune.runtime.timing.time_interleaved`). The layer table, the whole-model measurement and
the compress run's latency check all go through it; nothing else names a provider.

A backend whose profiler times each kernel as the model runs it (ORT on the CPU) also has a *profiled*
factory ``(model, feeds, target, prefix) -> (Runner, trace)``: the same runner with ORT's profiler on,
and a call that ends the profile and returns its events. The layer table reads from it the share of a
lone layer's kernels that are its own, not the layout reorders around it, and the latency model the
whole model's kernels by kind (:func:`.table.kernel_split`). ORT on CUDA times kernels on the host
(launches, not GPU time) and OpenVINO's counters are its own: there layers cost their wall time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from ...extras import require_openvino
from ..sessions import (
    PROVIDERS,
    ProviderUnavailableError,
    Runner,
    available_providers,
    make_runner,
    make_session,
)

if TYPE_CHECKING:
    from .target import Target

OPT_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
"""``--opt-level`` name -> ORT's graph optimization level (default 'all', ORT's own default; OpenVINO
has no such setting and ignores it)."""

RunnerFactory = Callable[[onnx.ModelProto, Mapping[str, np.ndarray], "Target"], Runner]
Trace = Callable[[], list[dict[str, Any]]]
ProfiledFactory = Callable[[onnx.ModelProto, Mapping[str, np.ndarray], "Target", str], tuple[Runner, Trace]]


@dataclass(frozen=True)
class Backend:
    """How a target provider is timed (see the module docstring)."""

    runtime: str  # bench's runtime name
    device: str  # bench's provider name
    version: Callable[[], tuple[str, str]]  # (cache-key entry, version)
    check: Callable[[str], None]  # raises a one-line error naming the target text when not usable
    runner: RunnerFactory
    profiled: ProfiledFactory | None = None  # kernel times as the model runs them (see above)


def _ort_runner(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], target: Target) -> Runner:
    sess = make_session(model, target.provider, target.threads, level=OPT_LEVELS[target.opt_level])
    return make_runner(sess, dict(feeds), target.provider)


def _ort_profiled(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], target: Target, prefix: str
) -> tuple[Runner, Trace]:
    level = OPT_LEVELS[target.opt_level]
    sess = make_session(model, target.provider, target.threads, level=level, profile_prefix=prefix)

    def trace() -> list[dict[str, Any]]:
        path = Path(sess.end_profiling())
        events: list[dict[str, Any]] = json.loads(path.read_text())
        path.unlink(missing_ok=True)
        return events

    return make_runner(sess, dict(feeds), target.provider), trace


def _ort_version() -> tuple[str, str]:
    return "onnxruntime", ort.__version__


def _ort_check(provider: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        if provider not in available_providers():
            have = ", ".join(available_providers())
            raise ProviderUnavailableError(
                f"target {text!r}: provider '{provider}' is not installed in this onnxruntime build "
                f"(available: {have}; for cuda: pip install onnxruntime-gpu)"
            )

    return check


def _openvino_runner(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], target: Target) -> Runner:
    from ..openvino import openvino_runner

    return openvino_runner(model, feeds, target.threads)


def _openvino_version() -> tuple[str, str]:
    from ..openvino import openvino_version

    return "openvino", openvino_version()


def _openvino_check(text: str) -> None:
    require_openvino()  # the one-line error naming the extra


BACKENDS: dict[str, Backend] = {
    **{
        p: Backend("ort", p, _ort_version, _ort_check(p), _ort_runner, _ort_profiled if p == "cpu" else None)
        for p in PROVIDERS
    },
    "openvino": Backend("openvino", "cpu", _openvino_version, _openvino_check, _openvino_runner),
}
"""Target provider -> its backend."""


__all__ = ["BACKENDS", "OPT_LEVELS", "Backend", "ProfiledFactory", "RunnerFactory", "Trace"]
