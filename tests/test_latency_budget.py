"""--target-speedup / --target-latency: the allocation on a latency table, and the one-line errors."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import onnx
import pytest

from onnxprune.config.alignment import Alignment
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.graph.macs import node_keys
from onnxprune.pipeline.latency_budget import allocate_latency, charged, owners
from onnxprune.runtime.latency import (
    LatencyCache,
    Target,
    build_latency_model,
    find_layers,
    group_widths,
    layer_graph,
)
from onnxprune.runtime.latency import model as model_module
from onnxprune.runtime.latency import table as table_module
from onnxprune.runtime.latency.table import KernelSplit
from tests.builders import vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run

SHAPE = (1, 3, 8, 8)


def fake_ms(graph: onnx.ModelProto) -> float:
    """A deterministic stand-in for the timer: MACs of the layer, in steps of 4 output channels (a
    latency that is a step function of width), plus a fixed cost."""
    w = next(t for t in graph.graph.initializer if t.name == "w")
    dims = list(w.dims)
    dims[0] = math.ceil(dims[0] / 4) * 4
    return 0.01 + 1e-4 * math.prod(dims)


@pytest.fixture
def fake_timer(monkeypatch):
    """Wall times and kernel times alike from :func:`fake_ms`, no reorders around a lone layer; the whole
    model 0.25 ms, its profile :data:`MODEL_KERNELS` beyond its layers' own (NCHWc block: 4)."""

    def timed(graphs, shapes, target, warmup, repeats):
        return [0.0 if g.graph.name == "overhead" else fake_ms(g) for g in graphs]

    def split(graphs, *args):
        return [KernelSplit(fake_ms(g), lone_reorders(g), 0.0) for g in graphs]

    def whole(model, *args, **kwargs):
        own = sum(fake_ms(layer_graph(x, *x.full)) for x in find_layers(model, analyze(model, SHAPE), SHAPE))
        return KernelSplit(own + MODEL_KERNELS.layers, MODEL_KERNELS.reorders, MODEL_KERNELS.other)

    monkeypatch.setattr(table_module, "_time_models", timed)
    monkeypatch.setattr(table_module, "_kernel_split", split)
    monkeypatch.setattr(model_module, "time_model", lambda *a, **k: 0.25)
    monkeypatch.setattr(model_module, "profile_split", whole)
    monkeypatch.setattr(model_module, "auto_alignment", lambda provider: Alignment(1, "test"))


BLOCK = 4  # the NCHWc block of the test of the charging (the allocation tests: 1, every count aligned)
MODEL_KERNELS = KernelSplit(0.01, 0.005, 0.02)  # in the model: layers 0.01 ms slower than alone, ...


def lone_reorders(graph: onnx.ModelProto) -> float:
    """The fake reorders around a lone conv (NCHWc), none around a Gemm."""
    return 0.02 if graph.graph.node[0].op_type == "Conv" else 0.0


@pytest.fixture
def table(fake_timer, tmp_path):
    return _table(tmp_path)


def _table(tmp_path):
    base = normalize(vgg_like()).model
    plan = analyze(base, SHAPE)
    widths = {g.name: group_widths(g, 1, 4) for g in plan.prunable}
    target = Target("cpu", 1, 1)
    lm = build_latency_model(base, plan, SHAPE, target, widths, LatencyCache.open(target, tmp_path))
    return lm, widths


def values_of(widths):
    """Importance: concave in the kept fraction, different per group."""
    return {
        g: [-(i + 1) * (1 - k / w[-1]) ** 0.5 for k in w] for i, (g, w) in enumerate(sorted(widths.items()))
    }


@pytest.mark.parametrize("speedup", [1.2, 1.5, 1.8])
def test_allocation_fits_the_budget_and_is_near_the_brute_force_optimum(table, speedup: float) -> None:
    lm, widths = table
    values = values_of(widths)
    budget = lm.measured_ms / speedup
    assert lm.predict({g: w[0] for g, w in widths.items()}) <= budget  # reachable
    keep = allocate_latency(lm, widths, values, budget)
    assert lm.predict(keep) <= budget + 1e-9
    assert all(keep[g] in w for g, w in widths.items())

    def worth(k):
        return sum(values[g][widths[g].index(k[g])] for g in widths)

    groups = list(widths)
    feasible = [
        dict(zip(groups, combo, strict=True))
        for combo in itertools.product(*(widths[g] for g in groups))
        if lm.predict(dict(zip(groups, combo, strict=True))) <= budget + 1e-9
    ]
    best = max(worth(k) for k in feasible)
    assert worth(keep) >= best - 0.05 * abs(best) - 1e-9  # HALP's charging is a near-optimal heuristic
    # no group can be widened one step and still fit: the budget is used
    for g, w in widths.items():
        j = w.index(keep[g])
        if j + 1 < len(w):
            wider = {**keep, g: w[j + 1]}
            assert lm.predict(wider) > budget or values[g][j + 1] <= values[g][j]


def test_the_rest_of_the_model_is_charged_by_what_each_layer_writes_and_keeps(
    fake_timer, monkeypatch, tmp_path
) -> None:
    """T(k) = R0 + s·Σ_l [c_l(k) + R_o·a_l(k)/A + ρ·a_l(k)·u_l(k) + R_w·w_l(k)/W], computed here from the
    fakes: a lone conv's reorders (:func:`lone_reorders`) give ρ per element moved (its input and output)
    and are taken out of its cost; the whole model's profile (:data:`MODEL_KERNELS` beyond its layers'
    own) gives, in wall ms, R_w (its layers' excess) and R_o (the rest, with the reorders ρ does not
    explain); a_l = len_out·o_l (o_l: batch·H·W of a conv, batch of a Gemm, from ONNX's shape inference)."""
    monkeypatch.setattr(model_module, "auto_alignment", lambda provider: Alignment(BLOCK, "test"))
    lm, widths = _table(tmp_path)
    base = normalize(vgg_like()).model
    inferred = onnx.shape_inference.infer_shapes(base).graph
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.value_info}
    dims |= {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.output}
    nodes = dict(zip(node_keys(base.graph.node), base.graph.node, strict=True))
    for layer in lm.layers:
        shape = dims[nodes[layer.key].output[0]]  # batch dynamic (0): the table's batch is SHAPE[0]
        assert layer.out_size == SHAPE[0] * (math.prod(shape[2:]) if layer.op_type == "Conv" else 1)
    alone = {x.key: layer_graph(x, *x.full) for x in lm.layers}
    own_full = sum(fake_ms(g) for g in alone.values())
    for x in lm.layers:  # a lone conv's cost: its wall time less its reorders' share
        wall, own = fake_ms(alone[x.key]), fake_ms(alone[x.key])
        assert lm.cost_ms(x, *x.full) == pytest.approx(wall * own / (own + lone_reorders(alone[x.key])))
    convs = [x for x in lm.layers if x.op_type == "Conv"]
    moved = sum(math.prod(x.input_shape) + x.full[1] * x.out_size for x in convs)
    to_wall = 0.25 / (own_full + MODEL_KERNELS.total)
    rho = to_wall * 0.02 * len(convs) / moved
    off_block = [x for x in convs if x.full[1] % BLOCK]
    assert off_block and len(off_block) < len(lm.layers)
    explained = rho * sum(x.full[1] * x.out_size for x in off_block)
    reorders = to_wall * MODEL_KERNELS.reorders
    if explained > reorders:
        rho, explained = rho * reorders / explained, reorders
    rest_o = to_wall * MODEL_KERNELS.other + reorders - explained
    rest_w = to_wall * MODEL_KERNELS.layers
    assert lm.remainder_ms == 0 and lm.weight_ms == pytest.approx(rest_w)
    assert lm.shared_ms == pytest.approx(rest_o) and lm.reorder_rate == pytest.approx(rho)
    written = sum(x.full[1] * x.out_size for x in lm.layers)
    weights = sum(math.prod(x.weight_shape) for x in lm.layers)
    costs_full = sum(lm.cost_ms(x, *x.full) for x in lm.layers)
    scale = 0.25 / (costs_full + rest_o + explained + rest_w)
    assert lm.scale == pytest.approx(scale)
    assert lm.predict({}) == pytest.approx(0.25)  # the measurement at full width

    def expected(keep):
        total = 0.0
        for x in lm.layers:
            len_in, len_out = x.lengths(keep, lm.channels)
            total += lm.cost_ms(x, len_in, len_out) + rest_o * len_out * x.out_size / written
            if x.op_type == "Conv" and len_out % BLOCK:
                total += rho * len_out * x.out_size
            total += rest_w * math.prod(x.weight_shape) * len_in * len_out / (x.full[0] * x.full[1] * weights)
        return scale * total

    for keep in ({g: w[0] for g, w in widths.items()}, {g: w[-2] for g, w in widths.items()}):
        assert lm.predict(keep) == pytest.approx(expected(keep))


def test_every_layer_is_charged_to_one_group_and_costs_add_up(table) -> None:
    lm, widths = table
    owner = owners(lm, list(widths))
    assert set(owner) == {x.key for x in lm.layers} and all(g in widths for g in owner.values() if g)
    full = {g: w[-1] for g, w in widths.items()}
    costs, constant = charged(lm, widths, owner, full)
    total = constant + sum(c[-1] for c in costs.values())
    assert total == pytest.approx(lm.predict(full))


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    return path


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--target-speedup", "2", "--on", "cpu:1", "-s", "filter:0.5"], "--sparsity and --target-speedup"),
        (
            ["--target-speedup", "2", "--on", "cpu:1", "--target-macs", "0.5"],
            "--target-macs and --target-speedup",
        ),
        (["--target-latency", "1", "--on", "cpu:1", "-s", "filter:0.5"], "--sparsity and --target-latency"),
        (["--target-speedup", "2"], "need --on PROVIDER:BATCH"),
        (["--target-speedup", "2", "--target-latency", "1", "--on", "cpu:1"], "conflict: give one"),
        (["--target-speedup", "2", "--on", "tpu:1"], "unknown target 'tpu:1'"),
    ],
)
def test_conflicting_or_bad_latency_targets_are_one_line_errors(tmp_path: Path, extra, needle) -> None:
    out = tmp_path / "p.onnx"
    code, text = run(["compress", _model(tmp_path), *extra, "-o", out, *PREVIEW])
    assert_one_line_error(code, text, needle)
    assert not out.exists()


@pytest.mark.torch
def test_an_unreachable_target_names_the_best_speedup(tmp_path: Path) -> None:
    out, cache = tmp_path / "p.onnx", tmp_path / "cache"
    args = ["--target-speedup", "1000", "--on", "cpu:2", "--latency-threads", "1", "--latency-cache", cache]
    code, text = run(["compress", _model(tmp_path), *args, "-o", out, *PREVIEW])
    assert_one_line_error(code, text, "the best achievable speedup is")
    assert not out.exists()


@pytest.mark.torch
def test_compress_to_a_speedup_reports_predicted_and_measured(tmp_path: Path) -> None:
    out, report, cache = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "cache"
    args = ["--target-latency", "1e9", "--on", "cpu:2", "--latency-threads", "1", "--latency-cache", cache]
    code, text = run(["compress", _model(tmp_path), *args, "-o", out, "--report", report, *PREVIEW])
    assert code == 0, text
    saved = json.loads(report.read_text())
    budget = saved["latency_budget"]
    assert budget["predicted_ms"] <= budget["budget_ms"]
    kept = {g["name"]: g["kept"] for g in saved["groups"]}
    assert all(kept[g["name"]] == g["kept"] == g["channels"] for g in budget["groups"])  # no constraint
    measured = saved["latency"]["latency_target"]
    assert measured["target"] == "cpu:2" and measured["dense_ms"] > 0 and measured["pruned_ms"] > 0
    assert "latency budget on cpu:2" in text and saved["sparsity"].startswith("target-latency")


def test_layers_measuring_more_than_the_model_are_scaled_down(fake_timer, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(model_module, "time_model", lambda *a, **k: 0.1)  # less than the layers' ~0.19 ms
    base = normalize(vgg_like()).model
    plan = analyze(base, SHAPE)
    widths = {g.name: group_widths(g, 1, 4) for g in plan.prunable}
    target = Target("cpu", 1, 1)
    lm = build_latency_model(base, plan, SHAPE, target, widths, LatencyCache.open(target, tmp_path))
    assert 0 < lm.scale < 1 and lm.remainder_ms == 0 and lm.notes
    assert lm.predict({}) == pytest.approx(0.1)
    assert 0 < lm.predict({g: w[0] for g, w in widths.items()}) < 0.1


def test_a_missed_prediction_is_checked_on_the_target_and_reaimed(table, monkeypatch) -> None:
    """The runtime runs every pruned structure 30 % slower than the table predicts: the first choice
    misses the budget when timed, the budget is re-aimed by the miss, and the structure kept is one that
    measured within it — the most valuable of those."""
    from onnxprune.pipeline import latency_check
    from onnxprune.runtime.latency.report import pruned_lengths

    lm, widths = table
    values = values_of(widths)
    base = normalize(vgg_like()).model
    plan = analyze(base, SHAPE)

    def true_ms(model: onnx.ModelProto) -> float:
        lengths = pruned_lengths(lm, model)
        return lm.remainder_ms + sum(lm.layer_ms(x, *lengths.get(x.key, x.full)) for x in lm.layers)

    def timed(models, shape, target, repeats):
        dense, pruned = models
        return [true_ms(dense), 1.3 * true_ms(pruned)]

    monkeypatch.setattr(latency_check, "measure_models", timed)
    budget = lm.measured_ms / 1.5
    smallest = lm.predict({g: w[0] for g, w in widths.items()})
    first = allocate_latency(lm, widths, values, budget)
    keep, checks, chosen = latency_check.check_and_reaim(
        base, plan, lm, SHAPE,
        budget_of=lambda dense_ms: dense_ms / 1.5,
        allocate=lambda aim: allocate_latency(lm, widths, values, aim),
        worth=lambda k: sum(values[g][widths[g].index(n)] for g, n in k.items()),
        first=first, smallest_ms=smallest,
    )  # fmt: skip
    assert not checks[0].fits and checks[0].measured_ms == pytest.approx(1.3 * lm.predict(first))
    assert len(checks) >= 2 and checks[1].aim_ms < checks[0].aim_ms
    assert checks[chosen].fits and keep != first
    assert checks[chosen].worth == max(c.worth for c in checks if c.fits)
    assert checks[chosen].measured_ms == pytest.approx(1.3 * lm.predict(keep))


def test_widths_off_the_grid_are_timed_exactly(monkeypatch, tmp_path) -> None:
    """An unaligned width runs slower than the aligned grid point above it: the grid reading misses that,
    the exact timing of the structure's own widths does not (and is cached)."""

    def timed(graphs, shapes, target, warmup, repeats):
        out = []
        for g in graphs:
            if g.graph.name == "overhead":
                out.append(0.0)
                continue
            dims = list(next(t for t in g.graph.initializer if t.name == "w").dims)
            out.append(1e-4 * math.prod(dims) + (0.05 if dims[0] % 2 else 0.0))  # odd widths: slow
        return out

    monkeypatch.setattr(table_module, "_time_models", timed)
    monkeypatch.setattr(
        table_module, "_kernel_split", lambda graphs, *a: [KernelSplit(1.0, 0.0, 0.0)] * len(graphs)
    )
    monkeypatch.setattr(model_module, "time_model", lambda *a, **k: 0.5)
    monkeypatch.setattr(model_module, "profile_split", lambda *a, **k: KernelSplit(1.0, 0.0, 0.0))
    base = normalize(vgg_like()).model
    plan = analyze(base, SHAPE)
    widths = {g.name: group_widths(g, 2, 4) for g in plan.prunable}  # even counts only
    target = Target("cpu", 1, 1)
    cache = LatencyCache.open(target, tmp_path)
    lm = build_latency_model(base, plan, SHAPE, target, widths, cache)
    layer = next(x for x in lm.layers if x.op_type == "Conv" and x.shrink_out)
    odd = (layer.full[0], layer.full[1] - 1)
    on_grid = lm.layer_ms(layer, *odd)  # the even grid point above: no penalty
    assert lm.measure_exactly({layer.key: odd, lm.layers[-1].key: lm.layers[-1].full}, cache) == 1
    assert lm.layer_ms(layer, *odd) > on_grid + 0.04 * lm.scale
    assert lm.measure_exactly({layer.key: odd}, cache) == 0 and cache.measured == lm.measured + 1
