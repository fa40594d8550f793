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
