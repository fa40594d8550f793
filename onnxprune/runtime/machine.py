"""Where a run happens: the machine (CPU, GPU, versions) and this process's place in a torchrun job.

One record, :class:`MachineInfo`: benchmark and profile reports carry it whole, the compress report its
software versions and CPU (:meth:`MachineInfo.environment`). Torch is never imported: its version comes
from the installed package's metadata, so the ONNX side stays torch-free.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import SpecError


@dataclass(frozen=True)
class MachineInfo:
    """Where the numbers were taken. ``threads`` None means onnxruntime's default."""

    cpu: str
    cores: int | None
    usable_cores: int | None
    gpu: str | None
    onnxruntime: str
    providers: tuple[str, ...]
    threads: int | None
    python: str
    platform: str
    date: str

    @classmethod
    def collect(cls, providers: Sequence[str] = (), threads: int | None = None) -> MachineInfo:
        import onnxruntime as ort  # here: ``onnxprune env`` reads the CPU where ORT is not installed

        return cls(
            cpu=cpu_model(),
            cores=os.cpu_count(),
            usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            gpu=gpu_model() if "cuda" in providers else None,
            onnxruntime=ort.__version__,
            providers=tuple(providers),
            threads=threads,
            python=platform.python_version(),
            platform=platform.platform(),
            date=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["providers"] = list(self.providers)
        return d

    def record(self, settings: Mapping[str, Any], **results: Any) -> dict[str, Any]:
        """A measurement's JSON: this machine, the ``settings`` and the ``results`` by name."""
        return {"machine": self.to_dict(), "settings": dict(settings), **results}

    def headed(self, text: str, machine: bool) -> str:
        """``text`` under the :meth:`summary` line when ``machine``."""
        return f"{self.summary()}\n{text}" if machine else text

    def summary(self) -> str:
        """One line: CPU (cores), GPU, onnxruntime version, threads, date."""
        parts = [f"CPU {self.cpu} ({self.usable_cores} of {self.cores} cores usable)"]
        if self.gpu:
            parts.append(f"GPU {self.gpu}")
        parts += [
            f"onnxruntime {self.onnxruntime}",
            f"threads {self.threads if self.threads else 'default'}",
            self.date,
        ]
        return " | ".join(parts)

    def environment(self) -> dict[str, str]:
        """The software versions and the CPU, as the compress report and benchmark JSON record them."""
        env = {
            "python": self.python,
            "onnx": onnx.__version__,
            "onnxruntime": self.onnxruntime,
            "numpy": np.__version__,
            "machine": platform.machine(),
            "cpu": self.cpu,
        }
        # versions without importing the packages: the ONNX side stays torch-free; openvino is optional
        for package in ("torch", "openvino"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                env[package] = importlib.metadata.version(package)
        return env


def environment() -> dict[str, str]:
    """:meth:`MachineInfo.environment` of this machine."""
    return MachineInfo.collect().environment()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(text: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (``avx2``, ``avx512f``, ...): the ``flags`` line of /proc/cpuinfo (x86;
    ``Features`` on ARM) of ``text``, else of this machine; empty where there is none."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def cpu_isa() -> str:
    """The widest x86 vector ISA of this CPU that MLAS dispatches on: 'avx512f', 'avx2' or 'baseline'."""
    flags = cpu_flags()
    return next((isa for isa in ("avx512f", "avx2") if isa in flags), "baseline")


def gpu_model() -> str | None:
    """Name of the CUDA device the benchmark uses, from nvidia-smi; None where that is not available."""
    from .sessions import CUDA_PROVIDER_OPTIONS

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    device = CUDA_PROVIDER_OPTIONS.get("device_id", "0")
    try:
        out = subprocess.run(
            [exe, f"--id={device}", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


# --------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class JobContext:
    """This process's place in the job: rank, world size, local rank (its GPU index under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs, writes outputs and checkpoints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SpecError(f"environment variable {name}={raw!r} is not an integer") from None


def job_context() -> JobContext:
    """The job as torchrun describes it in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (default: 1 process)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise SpecError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return JobContext(rank, world, _env_int("LOCAL_RANK", rank))


__all__ = [
    "JobContext",
    "MachineInfo",
    "cpu_flags",
    "cpu_isa",
    "cpu_model",
    "environment",
    "gpu_model",
    "job_context",
]
