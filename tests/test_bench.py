"""The latency benchmark on tiny synthetic models (CPU provider, few repeats)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import DataError, InvalidModelError, SpecError
from onnxprune.graph.inputs import ModelInput
from onnxprune.runtime.benchmark import BenchReport, bench
from onnxprune.runtime.sessions import (
    CUDA_PROVIDER_OPTIONS,
    ProviderUnavailableError,
    available_providers,
    cuda_graph_enabled,
    parse_provider_options,
    provider_chain,
    random_feeds,
)
from onnxprune.runtime.timing import BLOCK, time_interleaved

FLOAT = TensorProto.FLOAT
# the module, not the ``onnxprune.runtime.benchmark`` function the package exports under the same name
bench_module = importlib.import_module("onnxprune.runtime.benchmark")


def _model(
    nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _mlp(hidden: int, batch: int | str = "N") -> onnx.ModelProto:
    """x[batch, 16] -> MatMul(hidden) -> Relu -> MatMul(4)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, hidden)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((hidden, 4)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [batch, 16])], inits)


def _conv(dims: list[int | str]) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)
    return _model([node], [helper.make_tensor_value_info("x", FLOAT, dims)], [w])


def _fast(models: list[Any], **kwargs: Any) -> BenchReport:
    """``bench`` on the CPU with one warm-up run and three timed runs, unless told otherwise."""
    settings: dict[str, Any] = {"providers": ["cpu"], "warmup": 1, "repeats": 3, **kwargs}
    return bench(models, **settings)


@pytest.fixture(scope="module")
def report() -> BenchReport:
    return _fast([_mlp(64), _mlp(16)], batch_sizes=(1, 4), names=["dense", "pruned"])


def test_one_row_per_model_provider_batch_with_sane_statistics(report: BenchReport) -> None:
    keys = [(r.model, r.provider, r.batch) for r in report.rows]
    assert keys == [("dense", "cpu", 1), ("pruned", "cpu", 1), ("dense", "cpu", 4), ("pruned", "cpu", 4)]
    for r in report.rows:
        assert r.runs == 3
        assert 0 < r.median_ms <= r.p90_ms
        assert r.mean_ms > 0
        assert r.throughput == pytest.approx(r.batch * 1000 / r.median_ms)
        assert r.speedup > 0


def test_speedup_is_relative_to_first_model(report: BenchReport) -> None:
    for batch in (1, 4):
        dense, pruned = report.row("dense", "cpu", batch), report.row("pruned", "cpu", batch)
        assert dense.speedup == 1.0
        assert pruned.speedup == pytest.approx(dense.median_ms / pruned.median_ms)


def test_to_dict_is_json_serializable_and_records_the_machine(report: BenchReport) -> None:
    d = json.loads(json.dumps(report.to_dict()))

    assert len(d["results"]) == 4
    assert d["results"][0]["model"] == "dense"
    assert d["machine"]["onnxruntime"]
    assert d["machine"]["cpu"]
    assert d["machine"]["providers"] == ["cpu"]
    assert d["machine"]["date"]
    assert d["settings"]["repeats"] == 3
    assert d["settings"]["batch_sizes"] == [1, 4]


def test_table_names_every_model_and_is_aligned(report: BenchReport) -> None:
    table = report.format_table()
    lines = table.splitlines()

    assert len(lines) == 1 + len(report.rows)
    assert all(("dense" in line) != ("pruned" in line) for line in lines[1:])
    assert len({len(line) for line in lines}) == 1  # right-aligned last column: equal widths
    assert report.format_table(machine=True).splitlines()[1:] == lines


def test_plot_writes_a_png(report: BenchReport, tmp_path: Path) -> None:
    path = report.plot(tmp_path / "latency.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paths_and_protos_mix_and_names_default_to_stems(tmp_path: Path) -> None:
    path = tmp_path / "dense.onnx"
    onnx.save(_mlp(32), path)

    result = _fast([path, str(path), _mlp(8)], batch_sizes=(2,))

    assert [r.model for r in result.rows] == ["dense", "dense#1", "g"]


def test_default_providers_are_all_available() -> None:
    result = _fast([_mlp(8)], batch_sizes=(1,), providers=None)

    assert sorted({r.provider for r in result.rows}) == sorted(available_providers())
    assert len(result.rows) == len(available_providers())


def test_dynamic_non_batch_dim_needs_input_shape() -> None:
    model = _conv(["N", 3, "H", "W"])

    with pytest.raises(DataError, match="input_shape"):
        _fast([model], batch_sizes=(1,))
    with_batch = _fast([model], batch_sizes=(2,), input_shape=(1, 3, 8, 8))
    without_batch = _fast([model], batch_sizes=(2,), input_shape=(3, 8, 8))
    assert with_batch.rows[0].batch == without_batch.rows[0].batch == 2


@pytest.mark.parametrize(
    ("model", "input_shape", "message"),
    [
        (_mlp(8, batch=1), None, "fixed batch size of 1"),
        (_conv(["N", 3, 8, 8]), (1, 5, 8, 8), "fixed to 3"),
        (_conv(["N", 3, 8, 8]), (8, 8), "does not fit"),
    ],
)
def test_inputs_that_cannot_be_built_raise(
    model: onnx.ModelProto, input_shape: tuple[int, ...] | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        _fast([model], batch_sizes=(4,), input_shape=input_shape)


def test_several_inputs_get_data_of_their_declared_type_and_shape() -> None:
    specs = [
        ModelInput("x", np.dtype(np.float32), ("batch", 8)),
        ModelInput("ids", np.dtype(np.int64), ("batch", 5)),
        ModelInput("mask", np.dtype(np.bool_), (None, 5)),
    ]

    feeds = random_feeds(specs, 3, None, "m")

    assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
        "x": (np.float32, (3, 8)),
        "ids": (np.int64, (3, 5)),
        "mask": (np.bool_, (3, 5)),
    }
    assert set(np.unique(feeds["ids"])) <= {0, 1}


def test_multi_input_model_runs() -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    inputs = [helper.make_tensor_value_info(n, FLOAT, ["N", 8]) for n in ("a", "b")]

    result = _fast([_model(nodes, inputs, [])], batch_sizes=(3,))

    assert len(result.rows) == 1
    assert result.rows[0].median_ms > 0


def test_models_take_turns_in_rotating_blocks() -> None:
    calls: list[str] = []
    runners = [lambda: calls.append("a"), lambda: calls.append("b")]

    times = time_interleaved(runners, warmup=2, repeats=2 * BLOCK)

    assert [len(t) for t in times] == [2 * BLOCK, 2 * BLOCK]
    assert all((t >= 0).all() for t in times)
    turn = ["a"] * (BLOCK + 1), ["b"] * (BLOCK + 1)  # each block starts with one untimed settle run
    assert calls == ["a", "a", "b", "b", *turn[0], *turn[1], *turn[1], *turn[0]]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"providers": ["tpu"]}, ProviderUnavailableError),
        ({"batch_sizes": (0,)}, SpecError),
        ({"names": ["a", "b"]}, SpecError),
        ({"repeats": 0}, SpecError),
        ({"threads": 0}, SpecError),
    ],
)
def test_bad_settings_raise(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        _fast([_mlp(8)], **{"batch_sizes": (1,), "warmup": 0, "repeats": 1, **kwargs})


@pytest.mark.skipif("cuda" in available_providers(), reason="CUDA is available here")
def test_unavailable_cuda_raises_instead_of_falling_back() -> None:
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        _fast([_mlp(8)], batch_sizes=(1,), providers=["cuda"])


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="no such model file"):
        _fast([tmp_path / "missing.onnx"])


def test_bench_and_costs_import_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, onnxprune.runtime.benchmark, onnxprune.graph.macs, onnxprune.runtime.sessions; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


def test_provider_options_parse_key_value_pairs() -> None:
    assert parse_provider_options(["prefer_nhwc=1", " enable_cuda_graph = True "]) == {
        "prefer_nhwc": "1",
        "enable_cuda_graph": "True",
    }
    assert cuda_graph_enabled({"enable_cuda_graph": "True"})
    assert not cuda_graph_enabled({"prefer_nhwc": "1"})


@pytest.mark.parametrize("item", ["prefer_nhwc", "=1", "prefer_nhwc="])
def test_a_provider_option_without_key_or_value_is_a_spec_error(item: str) -> None:
    with pytest.raises(SpecError, match="is not KEY=VALUE"):
        parse_provider_options([item])


def test_cuda_options_extend_the_defaults_and_keep_the_cpu_fallback() -> None:
    chain = provider_chain("cuda", {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"})
    cuda, options = chain[0]
    assert cuda == "CUDAExecutionProvider" and chain[1:] == ["CPUExecutionProvider"]
    assert options == {**CUDA_PROVIDER_OPTIONS, "prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"}
    assert provider_chain("cpu", {"prefer_nhwc": "1"}) == ["CPUExecutionProvider"]


@pytest.mark.parametrize("graphs", [True, False])
def test_cuda_graphs_get_outputs_preallocated_from_a_cpu_run(
    monkeypatch: pytest.MonkeyPatch, graphs: bool
) -> None:
    """With enable_cuda_graph the runner gets output templates of the right shape; without, none.

    The CUDA session and runner are stood in for by CPU ones: what is checked is the plumbing.
    """
    seen: list[dict[str, np.ndarray] | None] = []
    real_session, real_runner = bench_module.load_session, bench_module.make_runner

    def cpu_session(model: Any, name: str, provider: str, threads: Any, cuda_options: Any = None) -> Any:
        return real_session(model, name, "cpu", threads)

    def recording_runner(sess: Any, feeds: dict[str, np.ndarray], provider: str, fixed: Any = None) -> Any:
        seen.append(fixed)
        return real_runner(sess, feeds, "cpu")

    monkeypatch.setattr(bench_module, "load_session", cpu_session)
    monkeypatch.setattr(bench_module, "make_runner", recording_runner)
    monkeypatch.setattr(bench_module, "choose_providers", lambda providers: ["cuda"])
    options = {"enable_cuda_graph": "1"} if graphs else {}
    report = bench([_mlp(8), _mlp(4)], batch_sizes=(3,), warmup=0, repeats=1, cuda_options=options)

    assert len(seen) == 2 and report.settings["cuda_options"] == options
    if graphs:
        assert all(f is not None and f["y"].shape == (3, 4) and f["y"].dtype == np.float32 for f in seen)
    else:
        assert seen == [None, None]
