"""MAC budget (--target-macs): the closed-form MAC model, the probe, the allocation, the errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.config.recipe import parse_recipe
from onnxprune.config.sparsity import group_width
from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import prune_model
from onnxprune.graph.load import normalize
from onnxprune.graph.macmodel import MacModel, mac_model
from onnxprune.graph.macs import count_costs
from onnxprune.graph.probe import channel_norms, magnitude_mask, probe
from onnxprune.pipeline import TrainOptions, compress
from onnxprune.pipeline.budget import allocate, candidates, curve, min_width
from onnxprune.plan import PruningPlan
from tests.builders import GraphBuilder, vgg_like


def residual(width: int = 8) -> onnx.ModelProto:
    """Stem conv, two residual blocks tied to it through Add, a 1x1 projection, GAP, Gemm."""
    b = GraphBuilder((1, 3, 8, 8), seed=1)
    x = b.unary("Relu", b.bn(b.conv("input", width)))
    for _ in range(2):
        y = b.unary("Relu", b.conv(x, width + 2))
        x = b.unary("Relu", b.add(b.conv(y, width), x))
    x = b.unary("Relu", b.conv(x, 2 * width, k=1, stride=2))
    return b.build([b.gemm(b.flatten(b.gap(x)), 5)])


def concat() -> onnx.ModelProto:
    """Two branches concatenated into a conv, then a Reshape-flattened Gemm and a MatMul head."""
    b = GraphBuilder((1, 3, 8, 8), seed=2)
    left = b.unary("Relu", b.conv("input", 6))
    right = b.unary("Relu", b.conv("input", 5, k=1))
    x = b.maxpool(b.unary("Relu", b.conv(b.concat([left, right]), 7)))
    x = b.unary("Relu", b.gemm(b.reshape_flatten(x), 9))
    return b.build([b.matmul(x, 3)])


def wide(width: int = 32) -> onnx.ModelProto:
    """A VGG-ish chain with enough channels for MAC targets to be met within a few percent."""
    b = GraphBuilder((1, 3, 16, 16), seed=3)
    x = b.unary("Relu", b.conv("input", width))
    x = b.maxpool(b.unary("Relu", b.conv(x, width * 2)))
    x = b.maxpool(b.unary("Relu", b.conv(x, width * 2)))
    x = b.unary("Relu", b.conv(x, width))
    x = b.unary("Relu", b.gemm(b.flatten(b.gap(x)), 48))
    return b.build([b.gemm(x, 10)])


def _setup(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PruningPlan, MacModel, tuple[int, ...]]:
    model = normalize(model).model
    shape = tuple(d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim)
    plan = analyze(model, shape)
    return model, plan, mac_model(model, plan, count_costs(model, shape)), shape


def _random_masks(plan: PruningPlan, rng: np.random.Generator) -> dict[str, np.ndarray]:
    masks = {}
    for g in plan.prunable:
        keep = np.zeros(g.channels, dtype=bool)
        keep[rng.choice(g.channels, int(rng.integers(1, g.channels + 1)), replace=False)] = True
        for cover in g.cover_sets:
            if not keep[list(cover)].any():
                keep[cover[0]] = True
        masks[g.name] = keep
    return masks


@pytest.mark.parametrize("build", [vgg_like, residual, concat, wide])
def test_mac_model_equals_counting_the_pruned_graph(build) -> None:
    model, plan, mm, shape = _setup(build())
    assert mm.total == count_costs(model, shape).total_macs
    assert any(len(g.source_nodes) > 1 for g in plan.prunable) or build is not residual  # tied groups
    rng = np.random.default_rng(0)
    for _ in range(6):
        masks = _random_masks(plan, rng)
        pruned = prune_model(model, plan, masks)
        keep = {name: int(m.sum()) for name, m in masks.items()}
        assert mm.macs(keep) == pytest.approx(count_costs(pruned, shape).total_macs, rel=1e-12)
    assert mm.macs({}) == mm.total


def test_curve_interpolates_is_monotone_and_extends_below_the_probe() -> None:
    points = {0.75: 0.1, 0.5: 0.05, 0.25: 0.4}  # a noisy dip at 0.5 is lifted to 0.1
    assert curve(points, 1.0) == 0.0
    assert curve(points, 0.875) == pytest.approx(0.05)
    assert curve(points, 0.5) == pytest.approx(0.1)
    assert curve(points, 0.25) == pytest.approx(0.4)
    assert curve(points, 0.0) > curve(points, 0.1) > 0.4  # extended with the last slope
    grid = np.linspace(0, 1, 41)
    values = [curve(points, f) for f in grid]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert curve({0.5: -0.2}, 0.5) == 0.0  # a loss decrease counts as no cost


def test_candidates_respect_alignment_and_minimum_width() -> None:
    assert candidates(10, 1, 1, 1) == list(range(10, 0, -1))
    assert candidates(64, min_width(64, 0), 1, 8) == [64, 56, 48, 40, 32, 24, 16, 8]
    assert min_width(64, 0) == 7 and min_width(5, 0) == 1 and min_width(8, 3) == 3


@pytest.mark.parametrize("target", [0.2, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("build", [wide, residual])
def test_allocation_meets_the_target_with_random_sensitivities(build, target: float, seed: int) -> None:
    _, plan, mm, _ = _setup(build(32) if build is wide else build(16))
    rng = np.random.default_rng(seed)
    widths = {
        g.name: candidates(g.channels, min_width(g.channels, len(g.cover_sets)), 1, 1) for g in plan.prunable
    }
    sens = {g: {f: float(rng.uniform(0, 2) * (1 - f) ** 2) for f in (0.75, 0.5, 0.25, 0.1)} for g in widths}
    keep = allocate(mm, widths, sens, target)
    assert set(keep) == set(widths)
    assert all(widths[g][-1] <= k <= widths[g][0] for g, k in keep.items())
    assert mm.fraction(keep) == pytest.approx(target, rel=0.05)


def test_allocation_with_alignment_stays_aligned_and_near_the_target() -> None:
    _, plan, mm, _ = _setup(wide(32))
    widths = {
        g.name: candidates(g.channels, min_width(g.channels, len(g.cover_sets)), group_width(g), 8)
        for g in plan.prunable
    }
    keep = allocate(mm, widths, {g: {0.5: 0.1, 0.25: 0.3} for g in widths}, 0.4)
    assert all(k % 8 == 0 for k in keep.values())
    assert mm.fraction(keep) == pytest.approx(0.4, rel=0.05)


def two_branches() -> onnx.ModelProto:
    """Two identical branches (same MACs), summed: their first convs are independent groups."""
    b = GraphBuilder((1, 3, 8, 8), seed=4)
    a = b.conv(b.unary("Relu", b.conv("input", 24)), 4)
    c = b.conv(b.unary("Relu", b.conv("input", 24)), 4)
    return b.build([b.add(a, c)])


def test_a_sensitive_group_keeps_more_than_an_insensitive_one_of_equal_macs() -> None:
    _, plan, mm, _ = _setup(two_branches())
    branches = [g for g in plan.prunable if g.channels == 24]
    assert len(branches) == 2
    sensitive, insensitive = branches[0].name, branches[1].name
    widths = {g.name: candidates(24, min_width(24, 0), 1, 1) for g in branches}
    sens = {sensitive: {0.75: 1.0, 0.5: 3.0, 0.25: 6.0}, insensitive: {0.75: 0.01, 0.5: 0.03, 0.25: 0.1}}
    keep = allocate(mm, widths, sens, 0.6)
    assert keep[sensitive] > keep[insensitive]
    swapped = allocate(mm, widths, {sensitive: sens[insensitive], insensitive: sens[sensitive]}, 0.6)
    assert swapped[insensitive] > swapped[sensitive]


def test_an_unreachable_target_names_the_smallest_fraction() -> None:
    _, plan, mm, _ = _setup(wide(32))
    widths = {g.name: candidates(g.channels, min_width(g.channels, 0), 1, 1) for g in plan.prunable}
    smallest = mm.fraction({g: w[-1] for g, w in widths.items()})
    with pytest.raises(SpecError, match=f"smallest achievable MAC fraction is {smallest:.4f}"):
        allocate(mm, widths, {}, smallest / 2)
    assert allocate(mm, widths, {}, 1.0) == {g: w[0] for g, w in widths.items()}


def test_probe_masks_by_norm_and_measures_loss_increase() -> None:
    model, plan, _, _ = _setup(vgg_like())
    g = plan.prunable[0]
    norms = channel_norms(model, g)
    mask = magnitude_mask(norms, 3)
    assert mask.sum() == 3 and norms[mask].min() >= norms[~mask].max()
    assert magnitude_mask(np.array([3.0, 2.0, 1.0, 0.5]), 1, [(2, 3)]).tolist() == [True, False, True, False]
    x = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 4, 64)
    names = [g.name for g in plan.prunable]
    labeled = probe(model, plan, names, x, y, (0.5, 0.25))
    assert labeled.loss == "cross-entropy" and labeled.samples == 64
    assert set(labeled.increase) == set(names) and all(
        set(r) == {0.5, 0.25} for r in labeled.increase.values()
    )
    unlabeled = probe(model, plan, names[:1], x, None, (1.0, 0.5))
    assert unlabeled.loss == "relative squared error" and unlabeled.base_loss == 0.0
    assert unlabeled.increase[names[0]][1.0] == 0.0 and unlabeled.increase[names[0]][0.5] > 0.0


def _run(model: onnx.ModelProto, **kwargs):
    return compress(
        model,
        data="random",
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        bench_batches=(),
        quiet=True,
        **kwargs,
    )


@pytest.mark.torch
def test_compress_with_a_mac_budget_reports_target_achieved_and_probe(tmp_path) -> None:
    result = _run(wide(32), target_macs=0.4, align=1, report_path=tmp_path / "r.json")
    budget = result.report.budget
    assert budget is not None
    t = result.report.totals
    assert budget["achieved_macs"] == pytest.approx(t["macs_after"] / t["macs_before"])
    assert budget["achieved_macs"] == pytest.approx(budget["predicted_macs"], rel=1e-9)
    assert budget["achieved_macs"] == pytest.approx(0.4, rel=0.05)
    kept = {g["name"]: g["kept"] for g in result.report.groups}
    assert all(kept[g["name"]] == g["kept"] for g in budget["groups"])
    assert result.report.sparsity == "target-macs 0.4"
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["budget"]["probe"]["samples"] > 0 and len(saved["budget"]["groups"]) == len(kept) - 1
    assert "MAC budget: target 0.400" in result.report.format()


@pytest.mark.torch
def test_budget_respects_exclude_and_align_from_a_recipe() -> None:
    model = wide(32)
    first = normalize(model).model.graph.node[0].name
    result = _run(model, recipe={"target_macs": 0.5, "exclude": [first], "align": 8})
    chosen = {g["name"]: g["kept"] for g in result.report.budget["groups"]}
    assert all(k % 8 == 0 for k in chosen.values())
    excluded = next(g for g in result.report.groups if g["node"] == first)
    assert excluded["name"] not in chosen and excluded["kept"] == excluded["channels"]


def test_sparsity_and_target_conflict() -> None:
    with pytest.raises(SpecError, match="--sparsity and --target-macs conflict"):
        _run(vgg_like(), sparsity="filter:0.5", target_macs=0.5)
    with pytest.raises(SpecError, match="'sparsity' and 'target_macs' conflict"):
        parse_recipe({"sparsity": "filter:0.5", "target_macs": 0.3}, "r.yaml")
    with pytest.raises(SpecError, match=r"target_macs must be in \(0, 1\]"):
        parse_recipe({"target_macs": 1.5}, "r.yaml")
    rec = parse_recipe({"target_macs": 0.3, "exclude": ["Conv1"]}, "r.yaml")
    assert rec.target_macs == 0.3 and rec.sparsity is not None and rec.sparsity.exclude == ("Conv1",)


@pytest.mark.torch
def test_cli_errors_are_one_line(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(wide(32), path)
    runner = CliRunner()
    out = tmp_path / "o.onnx"
    both = runner.invoke(
        main, ["compress", str(path), "-s", "filter:0.5", "--target-macs", "0.5", "-o", str(out)]
    )
    assert both.exit_code == 2 and "conflict" in both.output and "Traceback" not in both.output
    bad = runner.invoke(main, ["compress", str(path), "--target-macs", "0", "-o", str(out), "-d", "random"])
    assert bad.exit_code == 2 and "must be in (0, 1]" in bad.output
    low = runner.invoke(
        main, ["compress", str(path), "--target-macs", "0.001", "-o", str(out), "-d", "random", "-q"]
    )
    assert low.exit_code == 2 and "smallest achievable MAC fraction is" in low.output
    assert len(low.output.strip().splitlines()) == 1 and not out.exists()


def test_command_line_choice_replaces_the_recipes() -> None:
    from onnxprune.pipeline.resolve import sparsity_spec as _sparsity
    from onnxprune.pipeline.resolve import target_macs as _target

    budget = parse_recipe({"target_macs": 0.3, "exclude": ["Conv1"], "align": 4}, "r.yaml")
    assert _target(None, None, budget) == 0.3
    assert _target("filter:0.5", None, budget) is None  # --sparsity replaces the recipe's budget
    spec = _sparsity("filter:0.5", budget, None, "cpu")
    assert spec.rules[0].ratio == 0.5 and spec.exclude == ("Conv1",) and spec.align == 4
    rules = parse_recipe({"sparsity": "filter:0.5", "exclude": ["Conv1"]}, "r.yaml")
    assert _target(None, 0.4, rules) == 0.4  # --target-macs replaces the recipe's rules
    spec = _sparsity(None, rules, None, "cpu", budget=True)
    assert spec.rules == () and spec.exclude == ("Conv1",)
