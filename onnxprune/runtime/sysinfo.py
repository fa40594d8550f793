"""What a bug report needs (``onnxprune env``): package versions, ONNX Runtime's providers, the CPU and
its vector ISA, the GPUs.

Versions come from the installed packages' metadata, so nothing heavy is imported (torch never is) and
it works where a package is missing — ``env`` is what to run when something does not import. The ISA
flags matter for the numbers: ORT's CPU kernels pick AVX2 or AVX-512 code paths, and its int8 kernels
are fast only with VNNI (AVX512-VNNI or AVX-VNNI) or AMX.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..extras import NO_ONNXRUNTIME, installed

# the distributions a report names (absent ones are left out); onnxruntime-gpu is the CUDA build
PACKAGES = (
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "torch",
    "torchvision",
    "onnx2torch",
    "openvino",
    "matplotlib",
)
# report name -> /proc/cpuinfo flag: x86 ('flags') and Arm ('Features')
X86_ISA = {
    "AVX2": "avx2",
    "FMA": "fma",
    "AVX-512": "avx512f",
    "AVX512-VNNI": "avx512_vnni",
    "AVX512-BF16": "avx512_bf16",
    "AVX-VNNI": "avx_vnni",
    "AMX-INT8": "amx_int8",
}
ARM_ISA = {"DOTPROD": "asimddp", "I8MM": "i8mm", "SVE": "sve"}


def package_versions() -> dict[str, str]:
    """onnxprune's version, Python's and those of :data:`PACKAGES` that are installed."""
    from .. import __version__

    out = {"onnxprune": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The flags of the first CPU in ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def isa(flags: set[str], machine: str | None = None) -> dict[str, bool]:
    """Which extensions of :data:`X86_ISA` (or :data:`ARM_ISA` on Arm) the CPU has, by report name."""
    arm = (machine or platform.machine()).lower() in ("aarch64", "arm64")
    return {name: flag in flags for name, flag in (ARM_ISA if arm else X86_ISA).items()}


def ort_providers() -> list[str] | None:
    """ONNX Runtime's available execution providers; None when it is not installed."""
    if not installed("onnxruntime"):
        return None
    import onnxruntime as ort

    return list(ort.get_available_providers())


def gpus() -> list[str]:
    """Each NVIDIA GPU as 'name, driver D, M MiB' from nvidia-smi; empty where there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run([exe, *query], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        name, driver, memory = ([*(p.strip() for p in line.split(",")), "", ""])[:3]
        rows.append(f"{name}, driver {driver}, {memory} MiB")
    return rows


def system_info() -> dict[str, Any]:
    """Everything :func:`format_info` prints, as JSON-ready values."""
    from .machine import cpu_model

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "versions": package_versions(),
        "platform": platform.platform(),
        "onnxruntime_providers": ort_providers(),
        "cpu": {
            "model": cpu_model(),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "usable_cores": usable,
            "isa": isa(cpu_flags()),
        },
        "gpus": gpus(),
    }


def format_info(info: dict[str, Any]) -> str:
    """Plain text, one fact per line, for pasting into a bug report."""
    versions = info["versions"]
    providers = info["onnxruntime_providers"]
    cpu = info["cpu"]
    has = [name for name, present in cpu["isa"].items() if present]
    lacks = [name for name, present in cpu["isa"].items() if not present]
    lines = [f"{name:16s} {version}" for name, version in versions.items()]
    if "torch" not in versions:
        lines.append("torch            not installed (training: pip install 'onnxprune[train]')")
    lines += [
        f"{'platform':16s} {info['platform']}",
        f"{'ORT providers':16s} "
        + (", ".join(providers) if providers is not None else f"none: {NO_ONNXRUNTIME}"),
        f"{'CPU':16s} {cpu['model']} ({cpu['machine']}, {cpu['usable_cores']} of {cpu['cores']} cores "
        "usable)",
        f"{'CPU ISA':16s} {', '.join(has) or 'none of the listed'}"
        + (f" (no {', '.join(lacks)})" if lacks else ""),
        f"{'GPU':16s} {'; '.join(info['gpus']) or 'none (no nvidia-smi)'}",
    ]
    return "\n".join(lines)


__all__ = [
    "ARM_ISA",
    "PACKAGES",
    "X86_ISA",
    "cpu_flags",
    "format_info",
    "gpus",
    "isa",
    "ort_providers",
    "system_info",
]
