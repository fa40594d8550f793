"""Recipes: parsing, validation errors that name the culprit, rule selection, the emitted starting recipe."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from onnxprune.config.alignment import DEFAULT_ALIGN, nchwc_block
from onnxprune.config.recipe import load_recipe, parse_recipe
from onnxprune.config.sparsity import Rule, SparsitySpec, keep_counts, parse_sparsity, unmatched_rules
from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.inspection import inspect_model
from onnxprune.pipeline.resolve import Given, Outputs, resolve
from onnxprune.plan import keep_count
from onnxprune.runtime.machine import cpu_flags
from tests.builders import GraphBuilder, vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run


@pytest.fixture(scope="module")
def plan():
    return analyze(normalize(vgg_like()).model, (1, 3, 8, 8))


def by_node(plan, counts: dict[str, int]) -> dict[str, int]:
    return {plan.group(name).source_node: k for name, k in counts.items()}


def test_full_recipe_parses(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "sparsity:\n"
        "  - {type: filter, ratio: 0.5}\n"
        "  - {type: filter, ratio: 0.75, op: Gemm}\n"
        "  - {type: filter, ratio: 0.25, match: 'Conv*'}\n"
        "exclude: ['Gemm9*']\n"
        "align: 2\n"
        "method: magnitude\n"
        "seed: 3\n"
        "train: {admm_epochs: 1, lr: 0.01, threads: 2}\n"
        "distill: {weight: 0.5, loss: mse}\n"
        "data: {source: random, labels: false, max_samples: 64}\n"
        "gates: {min_fidelity: 0.9, min_speedup: 1, speedup_on: 'cpu:4'}\n"
    )
    r = load_recipe(path)
    assert r.sparsity is not None and len(r.sparsity.rules) == 3
    assert r.sparsity.rules[1] == Rule("filter", 0.75, "*", "Gemm") and r.sparsity.align == 2
    assert r.sparsity.exclude == ("Gemm9*",)
    assert (r.method, r.seed) == ("magnitude", 3)
    assert r.train.given() == {
        "admm_epochs": 1,
        "lr": 0.01,
        "threads": 2,
        "distill": 0.5,
        "distill_loss": "mse",
    }
    assert r.data.given() == {"data": "random", "labels": False, "max_samples": 64}
    assert r.gates is not None and r.gates.min_fidelity == 0.9 and r.gates.speedup_batch == 4


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("sparsty: filter:0.5", "unknown key 'sparsty' (known: sparsity, target_macs, exclude"),
        ("sparsity: [{type: filter, ratio: 0.5, ops: Conv}]", "sparsity rule 1: unknown key 'ops'"),
        ("sparsity: [{type: filter}]", "sparsity rule 1: missing 'ratio'"),
        ("sparsity: [{type: filter, ratio: 1.2}]", "invalid sparsity ratio 1.2"),
        ("sparsity: [{type: filter, ratio: -0.1}]", "must be in [0, 1)"),
        ("sparsity: [{type: filter, ratio: half}]", "not a number"),
        ("sparsity: [{type: wavelet, ratio: 0.5}]", "unknown sparsity type 'wavelet'"),
        ("sparsity: [{type: shape, ratio: 1.5}]", "must be in [0, 1)"),
        ("sparsity: []", "non-empty list of rules"),
        ("sparsity: filter:0.5\nalign: 0", "align must be a positive integer or 'auto', not 0"),
        ("sparsity: filter:0.5\nalign: eight", "align must be a positive integer or 'auto', not 'eight'"),
        ("train: {admm_epochs: two}", "train.admm_epochs must be int"),
        ("train: {epoch: 2}", "train: unknown key 'epoch'"),  # epochs is a key (the total budget)
        ("distill: {weigth: 1}", "distill: unknown key 'weigth'"),
        ("data: {src: x}", "data: unknown key 'src'"),
        ("gates: {min_fidelty: 0.9}", "gates: unknown key 'min_fidelty'"),
        ("gates: {min_speedup: fast}", "gates.min_speedup must be float"),
        ("method: lottery", "unknown method 'lottery'"),
        ("exclude: [Conv1]", "need a 'sparsity' or 'target_macs' section"),
        ("- just a list", "expected a mapping of sections"),
        ("sparsity: [unclosed", "is not valid YAML (line 2)"),
    ],
)
def test_bad_recipes_name_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content + "\n")
    with pytest.raises(SpecError) as e:
        load_recipe(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read recipe"):
        load_recipe(tmp_path / "none.yaml")


def test_last_matching_rule_wins_and_exclusions_keep_groups(plan) -> None:
    spec = SparsitySpec(
        (Rule("filter", 0.5), Rule("filter", 0.75, op="Gemm"), Rule("filter", 0.25, match="Conv4")),
        exclude=("Conv16",),
    )
    counts = by_node(plan, keep_counts(plan, spec))
    channels = {g.source_node: g.channels for g in plan.prunable}
    assert counts["Conv4"] == keep_count(channels["Conv4"], 0.25)  # the last rule selecting it
    assert "Conv16" not in counts  # excluded: keeps every channel
    gemms = [g.source_node for g in plan.prunable if g.op_type == "Gemm"]
    assert gemms and all(counts[n] == keep_count(channels[n], 0.75) for n in gemms)
    others = set(counts) - {"Conv4", *gemms}
    assert others and all(counts[n] == keep_count(channels[n], 0.5) for n in others)
    assert unmatched_rules(plan, SparsitySpec((Rule("filter", 0.5, match="nothing*"),))) != []


@pytest.mark.parametrize(
    ("speedup_on", "expected"), [(None, nchwc_block(cpu_flags())), ("cuda:64", DEFAULT_ALIGN["cuda"])]
)
def test_recipe_align_auto_is_the_gated_runtimes_default(speedup_on: str | None, expected: int) -> None:
    gates = {} if speedup_on is None else {"gates": {"min_speedup": 1.0, "speedup_on": speedup_on}}
    for content in (
        {"sparsity": "filter:0.5", "align": "auto", **gates},
        {"sparsity": "filter:0.5", **gates},
    ):
        r = parse_recipe(content, "test")
        assert r.align == content.get("align")  # resolved by the run, for its target
        config = resolve(vgg_like(), r, Given(), Outputs(), require_data=False)
        assert config.spec.align == expected == config.alignment.step and config.alignment.auto


def test_align_rounds_kept_filters(plan) -> None:
    plain = keep_counts(plan, parse_sparsity("filter:0.5"))
    aligned = keep_counts(plan, parse_sparsity("filter:0.5", align=4))
    for name, k in aligned.items():
        channels = plan.group(name).channels
        assert k % 4 == 0 or k == channels or channels < 4, (name, k, channels)
        assert abs(k - plain[name]) <= 2


def test_emitted_recipe_round_trips(tmp_path: Path, plan) -> None:
    info = inspect_model(vgg_like())
    path = tmp_path / "r.yaml"
    path.write_text(info.recipe(0.5))
    spec = load_recipe(path).sparsity
    assert spec is not None and len(spec.rules) == 1 + len(info.plan.prunable)
    assert keep_counts(info.plan, spec) == keep_counts(info.plan, parse_sparsity("filter:0.5"))
    edited = path.read_text().replace('ratio: 0.5, match: "Conv4"', 'ratio: 0.25, match: "Conv4"')
    path.write_text(edited)
    counts = by_node(info.plan, keep_counts(info.plan, load_recipe(path).sparsity))
    base = by_node(info.plan, keep_counts(info.plan, parse_sparsity("filter:0.5")))
    assert {n for n in counts if counts[n] != base[n]} == {"Conv4"}


def test_glob_characters_in_node_names_are_matched_literally() -> None:
    b = GraphBuilder((1, 3, 8, 8))
    x = b.conv("input", 4)
    model = b.build([b.conv(b.unary("Relu", x), 3)])
    model.graph.node[0].name = "conv[0]*"
    info = inspect_model(model)
    spec = load_recipe({"sparsity": [{"type": "filter", "ratio": 0.5, "match": "[c]onv[[]0]*"}]}).sparsity
    assert spec is not None and keep_counts(info.plan, spec) == {info.plan.prunable[0].name: 2}
    assert '"conv[[]0][*]"' in info.recipe()


@pytest.mark.torch
def test_cli_config_and_overrides(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "sparsity: [{type: filter, ratio: 0.75}]\nexclude: ['Conv4']\nseed: 5\nalign: 1\n"
        "method: magnitude\ntrain: {finetune_epochs: 0}\ndata: {source: random}\n"
    )
    out, report = tmp_path / "p.onnx", tmp_path / "r.json"
    code, text = run(
        ["compress", model, "--config", recipe, "-o", out, "--report", report, "--no-bench", "-q"]
    )
    assert code == 0, text
    saved = __import__("json").loads(report.read_text())
    assert saved["sparsity"] == "filter:0.75; exclude Conv4" and saved["config"]["seed"] == 5
    kept = {g["node"]: (g["kept"], g["channels"], g["rule"]) for g in saved["groups"]}
    assert kept["Conv4"][0] == kept["Conv4"][1] and kept["Conv4"][2] is None
    assert kept["Conv16"][2] == "filter:0.75" and kept["Conv16"][0] == 1  # 6 * 0.25: a tie keeps 1
    # --sparsity replaces the recipe's rules (its exclusions stay); --seed overrides its seed
    args = ["compress", model, "--config", recipe, "-s", "filter:0.5", "--seed", "1", "-o", out, "--report"]
    code, text = run([*args, report, "--no-bench", "-q", "--force"])
    saved = __import__("json").loads(report.read_text())
    assert code == 0 and saved["sparsity"] == "filter:0.5; exclude Conv4" and saved["config"]["seed"] == 1


def test_cli_needs_a_sparsity(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    code, text = run(["compress", model, "-o", tmp_path / "p.onnx", *PREVIEW])
    assert_one_line_error(code, text, "no sparsity: give --sparsity")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sparsity: [{type: filter, ratio: 2}]\n")
    code, text = run(["compress", model, "--config", bad, "-o", tmp_path / "p.onnx", *PREVIEW])
    assert_one_line_error(code, text, "invalid sparsity ratio 2")


def test_inspect_emits_a_recipe(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    code, _ = run(["inspect", model, "--emit-recipe", tmp_path / "r.yaml", "--ratio", "0.3"])
    assert code == 0 and "ratio: 0.3" in (tmp_path / "r.yaml").read_text()
    assert load_recipe(tmp_path / "r.yaml").sparsity is not None


def test_cli_rejects_a_bad_align(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(model))
    args = ["compress", model, "-s", "filter:0.5", "--align", "eight", "-o", tmp_path / "p.onnx", *PREVIEW]
    code, text = run(args)
    assert_one_line_error(code, text, "align must be a positive integer or 'auto', not 'eight'")
    assert not (tmp_path / "p.onnx").exists()
