"""The same ONNX model served by PyTorch, for :func:`onnxprune.runtime.benchmark.bench`'s runtime comparison.

``torch``: the model imported with onnx2torch (after the ONNX-side normalization compress uses), in
eval mode under ``torch.inference_mode``. ``torch-compile``: that module through ``torch.compile``
(default mode); its compilation happens in the warm-up runs, so it is never timed. On CUDA every run ends
with ``torch.cuda.synchronize()``, so a timed call includes the kernels and not only their launch; the
inputs are copied to the device once, like ORT's IO binding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import onnx
import torch

from ..graph.load import load_model, normalize
from ..runtime.sessions import ProviderUnavailableError
from .importer import import_model

TORCH_RUNTIMES = ("torch", "torch-compile")


def torch_devices() -> list[str]:
    """The devices torch can run on here, as bench's short provider names."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def load_module(model: onnx.ModelProto | str) -> tuple[torch.nn.Module, list[str]]:
    """The model as a torch module in eval mode, and its data input names in call order."""
    proto, _ = load_model(model)
    imported = import_model(normalize(proto).model)
    return imported.module.eval(), imported.input_names


def torch_runner(
    module: torch.nn.Module,
    input_names: list[str],
    feeds: Mapping[str, np.ndarray],
    device: str,
    runtime: str,
) -> Callable[[], object]:
    """A no-argument callable doing one inference of ``module`` on ``feeds`` (already on ``device``)."""
    if runtime not in TORCH_RUNTIMES:
        raise ValueError(f"unknown torch runtime {runtime!r} (known: {', '.join(TORCH_RUNTIMES)})")
    if device not in torch_devices():
        raise ProviderUnavailableError(f"torch cannot run on '{device}' here (available: {torch_devices()})")
    module = module.to(device)
    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])).to(device) for n in input_names)
    fn: Callable[..., object] = torch.compile(module) if runtime == "torch-compile" else module
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> object:
        with torch.inference_mode():
            out = fn(*args)
        sync()
        return out

    return run


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None: unchanged) for the block, then restored."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = [
    "TORCH_RUNTIMES",
    "load_module",
    "torch_devices",
    "torch_runner",
    "torch_threads",
]
