"""The PyTorch runtimes of the latency benchmark: same outputs as ORT, rows beside ORT's, skips named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from onnxprune.errors import SpecError
from onnxprune.runtime import benchmark as bench_module
from onnxprune.runtime.benchmark import bench
from onnxprune.runtime.sessions import ProviderUnavailableError, input_specs, make_session, random_feeds
from onnxprune.train.runtime import load_module, torch_devices, torch_runner
from tests.train.graphs import cnn, run_ort


@pytest.mark.parametrize("batch", [1, 3])
def test_torch_runner_computes_what_ort_computes(batch: int) -> None:
    model = cnn()
    feeds = random_feeds(input_specs(make_session(model, "cpu", 1)), batch, None, "cnn")
    module, names = load_module(model)
    out = torch_runner(module, names, feeds, "cpu", "torch")()
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), run_ort(model, feeds[names[0]]), rtol=1e-4, atol=1e-5)


def test_torch_runner_rejects_unknown_runtime_and_device() -> None:
    model = cnn()
    feeds = random_feeds(input_specs(make_session(model, "cpu", 1)), 1, None, "cnn")
    module, names = load_module(model)
    with pytest.raises(ValueError, match="unknown torch runtime 'jax'"):
        torch_runner(module, names, feeds, "cpu", "jax")
    if "cuda" not in torch_devices():
        with pytest.raises(ProviderUnavailableError, match="torch cannot run on 'cuda'"):
            torch_runner(module, names, feeds, "cuda", "torch")


def _fast(models: list[Any], **kwargs: Any) -> bench_module.BenchReport:
    return bench(models, batch_sizes=(2,), providers=["cpu"], warmup=1, repeats=3, **kwargs)


def test_bench_times_ort_and_torch_side_by_side() -> None:
    report = _fast([cnn(), cnn(seed=1)], names=["a", "b"], runtimes=("ort", "torch"))
    keys = [(r.runtime, r.model, r.provider, r.batch) for r in report.rows]
    assert keys == [
        ("ort", "a", "cpu", 2),
        ("ort", "b", "cpu", 2),
        ("torch", "a", "cpu", 2),
        ("torch", "b", "cpu", 2),
    ]
    assert report.row("b", "cpu", 2, "torch").speedup == pytest.approx(
        report.row("a", "cpu", 2, "torch").median_ms / report.row("b", "cpu", 2, "torch").median_ms
    )
    header = report.format_table().splitlines()[0].split()
    assert header[:3] == ["model", "runtime", "provider"]
    assert report.settings["runtimes"] == ["ort", "torch"] and report.settings["skipped"] == []


def test_unknown_runtime_is_an_error() -> None:
    with pytest.raises(
        SpecError, match="unknown runtime 'tvm' \\(known: ort, torch, torch-compile, openvino\\)"
    ):
        _fast([cnn()], runtimes=("tvm",))


def test_a_model_torch_cannot_run_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxprune.train.runtime as rt

    real = rt.torch_runner

    def failing_for_b(module: Any, names: Any, feeds: Any, device: str, runtime: str) -> Any:
        if module is modules["b"]:
            raise RuntimeError("dynamo cannot trace this\nmore")
        return real(module, names, feeds, device, runtime)

    modules: dict[str, Any] = {}
    real_load = rt.load_module

    def remembering_load(src: Any) -> Any:
        loaded = real_load(src)
        modules["a" if not modules else "b"] = loaded[0]
        return loaded

    monkeypatch.setattr(rt, "torch_runner", failing_for_b)
    monkeypatch.setattr(rt, "load_module", remembering_load)
    report = _fast([cnn(), cnn(seed=1)], names=["a", "b"], runtimes=("torch",))
    assert [r.model for r in report.rows] == ["a"]
    assert report.settings["skipped"] == ["b on torch cpu batch 2: RuntimeError: dynamo cannot trace this"]
