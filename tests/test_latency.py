"""The latency model (onnxprune.runtime.latency): targets, layers as ORT runs them, the cached table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.runtime.latency import (
    LatencyCache,
    Target,
    build_latency_model,
    find_layers,
    group_widths,
    layer_graph,
    parse_target,
)
from onnxprune.runtime.latency import table as table_module
from onnxprune.runtime.sessions import ProviderUnavailableError, available_providers
from tests.builders import vgg_like
from tests.test_cli import assert_one_line_error, run

SHAPE = (1, 3, 8, 8)


@pytest.fixture(scope="module")
def model_and_plan():
    base = normalize(vgg_like()).model
    return base, analyze(base, SHAPE)


def test_parse_target_and_its_errors() -> None:
    assert parse_target("cpu:32", threads=2) == Target("cpu", 32, 2, "all")
    assert parse_target(" CPU:1 ").batch == 1
    for bad, needle in [
        ("tpu:1", "unknown target 'tpu:1'"),
        ("cpu", "unknown target"),
        ("cpu:0", "positive"),
    ]:
        with pytest.raises(SpecError, match=needle):
            parse_target(bad)
    with pytest.raises(SpecError, match="optimization level"):
        parse_target("cpu:1", opt_level="max")
    if "cuda" not in available_providers():
        with pytest.raises(ProviderUnavailableError, match="not installed"):
            parse_target("cuda:8")


def test_cli_bad_targets_are_one_line_errors(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    out = tmp_path / "t.json"
    code, text = run(["latency", model, "--on", "tpu:1", "--json", out])
    assert_one_line_error(code, text, "unknown target 'tpu:1'")
    assert not out.exists()
    if "cuda" not in available_providers():
        code, text = run(["latency", model, "--on", "cuda:8", "--json", out])
        assert_one_line_error(code, text, "provider 'cuda' is not installed")
        assert not out.exists()


def test_layers_carry_their_fusions_and_coupling(model_and_plan) -> None:
    base, plan = model_and_plan
    layers = find_layers(base, plan, SHAPE)
    assert [x.op_type for x in layers] == ["Conv", "Conv", "Conv", "Gemm", "Gemm"]
    # Conv-BN-Relu: BN folds into the bias, Relu fuses; the last Gemm has no activation
    assert all(x.bias for x in layers) and layers[0].activation is not None
    assert layers[0].activation.op_type == "Relu" and layers[-1].activation is None
    # a layer's input is narrowed by the group its producer prunes, its output by its own
    assert layers[0].shrink_in == {} and set(layers[1].shrink_in) == set(layers[0].shrink_out)
    channels = {g.name: g.channels for g in plan.groups}
    g0 = next(iter(layers[0].shrink_out))
    assert layers[1].lengths({g0: 3}, channels) == (3, layers[1].full[1])
    assert layers[0].lengths({g0: 3}, channels) == (layers[0].full[0], 3)


def test_each_layer_alone_runs_at_other_widths(model_and_plan) -> None:
    base, plan = model_and_plan
    for layer in find_layers(base, plan, (4, 3, 8, 8)):
        full_in, full_out = layer.full
        for len_in, len_out in [(full_in, full_out), (max(1, full_in // 2), max(1, full_out // 2))]:
            graph = layer_graph(layer, len_in, len_out)
            onnx.checker.check_model(graph, full_check=True)
            sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
            shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
            (y,) = sess.run(None, {"x": np.ones(shape, np.float32)})
            channel_axis = 1 if layer.op_type == "Conv" else y.ndim - 1
            assert y.shape[channel_axis] == len_out and y.shape[0] == 4
            if layer.activation is not None and layer.activation.op_type == "Relu":
                assert (y >= 0).all()


def test_a_cached_table_is_read_back_without_measuring(model_and_plan, tmp_path, monkeypatch) -> None:
    base, plan = model_and_plan
    calls: list[int] = []
    real = table_module.time_interleaved

    def counted(runners, warmup, repeats):
        calls.append(len(runners))
        return real(runners, warmup, repeats)

    monkeypatch.setattr(table_module, "time_interleaved", counted)
    target = Target("cpu", 2, 1)
    widths = {g.name: group_widths(g, 2, 3) for g in plan.prunable}
    assert all(
        w[-1] == g.channels and w == sorted(w) for g, w in zip(plan.prunable, widths.values(), strict=True)
    )

    def build():
        cache = LatencyCache.open(target, tmp_path / "cache")
        return build_latency_model(base, plan, SHAPE, target, widths, cache, repeats=2, model_repeats=2)

    first = build()
    first_calls = len(calls)
    assert first.measured > 0 and first_calls > 1 and list((tmp_path / "cache").glob("*.json"))
    calls.clear()
    second = build()
    assert second.measured == 0
    assert calls == [1]  # only the whole model is timed again: every layer timing came from the cache
    assert second.times == first.times
    # the prediction at full width is the measurement (the remainder is their difference)
    assert second.predict({}) == pytest.approx(second.measured_ms)
    smallest = {g: w[0] for g, w in widths.items()}
    rows = second.to_dict(smallest)["layers"]
    assert all(r["widths"][1] <= r["full"][1] for r in rows)
    # another target (batch) is another cache entry: measured again
    other = LatencyCache.open(Target("cpu", 3, 1), tmp_path / "cache")
    assert other.entries == {}


def _trace(nodes: dict[str, tuple[str, list[int]]], runs: int) -> list[dict]:
    """An ORT profile trace: ``runs`` model runs, each node (name -> (op, µs per run)) once per run."""
    events = []
    for r in range(runs):
        events.append({"cat": "Session", "name": "model_run", "dur": 100})
        for name, (op, durations) in nodes.items():
            args = {"op_name": op, "provider": "CPUExecutionProvider"}
            events.append({"cat": "Node", "name": f"{name}_kernel_time", "dur": durations[r], "args": args})
    return events


def test_a_trace_splits_into_the_layers_own_kernels_and_the_reorders_around_it() -> None:
    nodes = {
        "ReorderInput": ("ReorderInput", [50, 3, 4, 3]),
        "y_nchwc": ("Conv", [90, 40, 44, 42]),
        "ReorderOutput": ("ReorderOutput", [9, 2, 2, 3]),
    }
    split = table_module.kernel_split(_trace(nodes, 4), skip=1)  # the first run left out
    assert split.layers == pytest.approx(0.042) and split.reorders == pytest.approx(0.003 + 0.002)
    assert split.other == 0 and split.own == pytest.approx(0.042)
    nodes["act"] = ("HardSwish", [7, 5, 5, 5])  # an activation ORT did not fuse: the graph's own, no layer
    split = table_module.kernel_split(_trace(nodes, 4), skip=1)
    assert split.other == pytest.approx(0.005) and split.own == pytest.approx(0.047)


def test_a_lone_layer_costs_its_wall_time_less_the_reorders_around_it(model_and_plan, tmp_path) -> None:
    """ORT on the CPU profiles kernels: a conv in MLAS's blocked layout runs between a ReorderInput and a
    ReorderOutput when alone; the layer's cost is its wall time (less the Run call) times its own share."""
    base, plan = model_and_plan
    layer = find_layers(base, plan, SHAPE)[1]  # a conv fed by a conv
    target = Target("cpu", 8, 1)  # a batch whose reorders take more than a few µs
    cache = LatencyCache.open(target, tmp_path)
    pair = (32, 32)
    cost = cache.layer_times(layer, [pair])[pair]
    key = table_module.entry_key(layer, *pair)
    wall = cache.entries[key] - cache.overhead_ms
    own, reorders = cache.entries[key + table_module.OWN], cache.entries[key + table_module.REORDERED]
    assert own > 0
    if reorders >= table_module.MIN_REORDERS_MS:  # a CPU with MLAS's NCHWc kernels (AVX2 / AVX-512)
        assert cost == pytest.approx(max(0.0, wall) * own / (own + reorders)) and cost < wall
    else:  # a split of a few µs is not taken out
        assert cost == pytest.approx(max(0.0, wall))
    # a cache written before the split (wall times only) is timed again for it
    del cache.entries[key + table_module.OWN]
    before = cache.measured
    cache.layer_times(layer, [pair])
    assert cache.measured == before + 1 and key + table_module.OWN in cache.entries


def test_cli_prints_the_table_and_predicts_a_pruned_model(tmp_path: Path) -> None:
    from tests.builders import preview

    model, pruned, out = tmp_path / "m.onnx", tmp_path / "p.onnx", tmp_path / "t.json"
    onnx.save(vgg_like(), str(model))
    onnx.save(preview(vgg_like(), "filter:0.5").model, str(pruned))
    args = ["latency", model, "--on", "cpu:2", "--threads", "1", "--points", "2", "--repeats", "2"]
    code, text = run([*args, "--align", "1", "--cache", tmp_path / "c", "--pruned", pruned, "--json", out])
    assert code == 0, text
    saved = json.loads(out.read_text())
    assert saved["align"] == 1 and saved["target"] == "cpu:2" and len(saved["layers"]) == 5
    assert saved["predicted_full_ms"] == pytest.approx(saved["measured_ms"])
    widths = saved["pruned"]["widths"]
    outs = [(widths[x["layer"]][1], x["full"][1]) for x in saved["layers"] if x["layer"] in widths]
    assert outs and all(k <= n for k, n in outs) and any(k < n for k, n in outs)
    assert saved["pruned"]["measured_ms"] > 0 and "predicted" in text and "measured" in text
    assert "whole model: measured" in text
