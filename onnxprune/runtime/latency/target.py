"""The target a latency is measured on: ``PROVIDER:BATCH`` (``cpu:32``, ``cuda:8``: ONNX Runtime;
``openvino:32``: OpenVINO on the CPU) plus the settings the model is served with (intra-op threads, ORT's
graph optimization level). :data:`~.backends.BACKENDS` says what runs each provider.

A target names what a timing depends on besides the layer itself, so it is also the cache's key
(:meth:`Target.key`): the provider, the device (CPU model and its widest vector ISA; the GPU's name), the
runtime's version (onnxruntime's, or openvino's), the batch, the threads and the optimization level.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SpecError
from ..machine import cpu_isa, cpu_model, gpu_model
from .backends import BACKENDS, OPT_LEVELS, Backend


@dataclass(frozen=True)
class Target:
    """Where the model will serve: provider ('cpu', 'cuda', 'openvino'), batch, threads (None: the
    runtime's default) and ORT's graph optimization level (a key of :data:`OPT_LEVELS`)."""

    provider: str
    batch: int
    threads: int | None = None
    opt_level: str = "all"

    def __str__(self) -> str:
        return f"{self.provider}:{self.batch}"

    @property
    def backend(self) -> Backend:
        """What runs this target (:data:`~.backends.BACKENDS`)."""
        return BACKENDS[self.provider]

    def device(self) -> str:
        """The device as the cache key names it: CPU model and ISA, or the GPU's name."""
        if self.backend.device == "cuda":
            return f"gpu {gpu_model() or 'unknown'}"
        return f"cpu {cpu_model()} [{cpu_isa()}]"

    def key(self) -> dict[str, object]:
        """Everything a layer's timing on this target depends on, besides the layer."""
        runtime, version = self.backend.version()
        return {
            "provider": self.provider,
            "device": self.device(),
            runtime: version,
            "batch": self.batch,
            "threads": self.threads,
            "opt_level": self.opt_level,
        }


def parse_target(
    text: str, threads: int | None = None, opt_level: str = "all", check_installed: bool = True
) -> Target:
    """``'cpu:32'`` -> ``Target('cpu', 32)``; one-line errors for an unknown provider, a bad batch, an
    unknown optimization level, or (``check_installed``) a provider not installed (an onnxruntime build
    without it; OpenVINO missing: the error names the extra)."""
    provider, sep, batch = str(text).strip().lower().partition(":")
    known = ", ".join(f"{p}:B" for p in BACKENDS)
    if not sep or provider not in BACKENDS:
        raise SpecError(f"unknown target {text!r} (known: {known}, B the batch size)")
    if not batch.isdigit() or int(batch) < 1:
        raise SpecError(f"invalid target {text!r}: the batch after ':' must be a positive integer")
    if opt_level not in OPT_LEVELS:
        raise SpecError(f"unknown optimization level {opt_level!r} (known: {', '.join(OPT_LEVELS)})")
    if threads is not None and threads < 1:
        raise SpecError(f"threads must be >= 1, got {threads}")
    if check_installed:
        BACKENDS[provider].check(str(text))
    return Target(provider, int(batch), threads, opt_level)


__all__ = ["OPT_LEVELS", "Target", "parse_target"]
