"""ORT's per-node profile side by side (runtime.profiling, ``onnxprune profile``), on tiny graphs."""

from __future__ import annotations

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
from onnxprune.runtime.profiling import ModelProfile, NodeTime, compare, executed_macs, parse_trace, profile
from tests.builders import GraphBuilder, vgg_like
from tests.test_cli import assert_one_line_error, run

ROOT = Path(__file__).resolve().parents[1]


def _conv1d(cout: int, stride: int, group: int) -> onnx.ModelProto:
    """x (2, 4, 9) -> Conv1d(cout, k=3, pad 1, stride, group) -> Conv1d(3, k=1). 1-D convs keep ORT's
    plain layout (its NCHWc blocking, which pads channel counts, is for 2-D convs)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((cout, 4 // group, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((3, cout, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1], strides=[stride], group=group),
        helper.make_node("Conv", ["h", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _event(node: str, op: str, dur: float, **args: Any) -> dict[str, Any]:
    return {
        "cat": "Node",
        "name": f"{node}_kernel_time",
        "dur": dur,
        "args": {"op_name": op, "provider": "CPUExecutionProvider", **args},
    }


def _run(dur: float) -> dict[str, Any]:
    return {"cat": "Session", "name": "model_run", "dur": dur}


@pytest.mark.parametrize(("cout", "stride", "group"), [(5, 1, 1), (6, 2, 1), (4, 1, 2), (4, 1, 4)])
def test_executed_macs_of_unblocked_convs_are_the_model_macs(cout: int, stride: int, group: int) -> None:
    report = profile([_conv1d(cout, stride, group)], batch_sizes=(2,), providers=["cpu"], warmup=1, runs=3)
    convs = [n for n in report.profiles[0].nodes if n.executed_macs is not None]
    length = (9 + 2 - 3) // stride + 1
    expected = {2 * cout * length * (4 // group) * 3, 2 * 3 * length * cout}

    assert {n.executed_macs for n in convs} == expected
    assert all(n.gmacs_per_s is not None and n.gmacs_per_s > 0 for n in convs)


def test_executed_macs_of_blocked_convs_include_the_padding() -> None:
    """ORT may run a 2-D conv in blocked NCHWc layout with channel counts padded: never less work."""
    b = GraphBuilder((2, 4, 9, 9))
    model = b.build([b.conv("input", 5)])
    report = profile([model], batch_sizes=(2,), providers=["cpu"], warmup=1, runs=2)
    (conv,) = [n for n in report.profiles[0].nodes if n.executed_macs is not None]
    per_filter_and_channel = 2 * 9 * 9 * 9  # batch x output pixels x 3x3 taps

    assert conv.executed_macs is not None and conv.executed_macs >= 5 * 4 * per_filter_and_channel
    assert conv.executed_macs % per_filter_and_channel == 0


def test_executed_macs_read_the_shapes_the_kernel_ran() -> None:
    args = {
        "input_type_shape": [{"float": [2, 16, 28, 28]}, {"float": [16, 8, 3, 3]}, {"float": [16]}],
        "output_type_shape": [{"float": [2, 16, 28, 28]}],
    }
    assert executed_macs("Conv", args) == 2 * 16 * 28 * 28 * 8 * 9
    assert executed_macs("FusedConv", args) == 2 * 16 * 28 * 28 * 8 * 9
    transposed = {"input_type_shape": [{"float": [1, 4, 5, 5]}, {"float": [4, 2, 3, 3]}]}
    transposed["output_type_shape"] = [{"float": [1, 2, 7, 7]}]
    assert executed_macs("ConvTranspose", transposed) == 4 * 5 * 5 * 2 * 9  # each input meets M/g*k*k
    assert executed_macs("MaxPool", args) is None
    assert executed_macs("Conv", {"input_type_shape": [{"float": [1, 2]}]}) is None  # no weight, no output


def test_parse_trace_takes_medians_after_the_warmup_in_execution_order() -> None:
    conv_args = {
        "input_type_shape": [{"float": [1, 2, 4, 4]}, {"float": [3, 2, 3, 3]}],
        "output_type_shape": [{"float": [1, 3, 4, 4]}],
    }
    events = []
    for dur in (1000.0, 10.0, 30.0, 20.0):  # first run is the warm-up: excluded from the median
        events += [_event("conv", "Conv", dur, **conv_args), _event("relu", "Relu", dur / 10), _run(dur * 2)]
    nodes, run_us = parse_trace(events, skip=1)

    assert [n.name for n in nodes] == ["conv", "relu"]
    assert nodes[0] == NodeTime("conv", "Conv", "CPU", 20.0, 3 * 16 * 2 * 9)
    assert nodes[1].median_us == pytest.approx(2.0)
    assert nodes[1].executed_macs is None
    assert run_us == 40.0


def test_a_trace_without_nodes_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no node timings"):
        parse_trace([_run(5.0)], skip=0)


def _profiles() -> list[ModelProfile]:
    dense = ModelProfile(
        "dense",
        "cpu",
        4,
        3,
        130.0,
        (NodeTime("c1", "Conv", "CPU", 100.0, 4_000_000), NodeTime("r", "X", "CPU", 20.0, None)),
    )
    pruned = ModelProfile(
        "pruned",
        "cpu",
        4,
        3,
        40.0,
        (NodeTime("c1", "Conv", "CPU", 25.0, 500_000), NodeTime("t", "Y", "CPU", 5.0, None)),
    )
    return [dense, pruned]


def test_compare_matches_nodes_by_name_and_states_speedup_and_mac_reduction() -> None:
    lines = compare(_profiles(), runs=3).splitlines()
    row = {line.split()[0]: line.split() for line in lines[2:]}

    assert "batch 4" in lines[0]
    assert row["c1"][2:] == ["100.0", "25.0", "4.00x", "8.00x", "40.0", "20.0"]  # µs, speedup, MACs ↓, GMAC/s
    assert row["r"][2:5] == ["20.0", "—", "—"]  # only in the baseline
    assert row["t"][2:5] == ["—", "5.0", "—"]  # only in the pruned model
    total = next(line for line in lines if line.startswith("total of node medians"))
    assert total.split()[-3:] == ["120.0", "30.0", "4.00x"]
    run_line = next(line for line in lines if line.startswith("model run"))
    assert run_line.split()[-3:] == ["130.0", "40.0", "3.25x"]


def test_profile_lines_up_a_model_with_its_pruned_copy_and_serializes(tmp_path: Path) -> None:
    dense = vgg_like()
    report = profile(
        [dense, dense], batch_sizes=(1, 2), providers=["cpu"], warmup=1, runs=3, names=["a", "b"]
    )

    assert [(p.model, p.batch) for p in report.profiles] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    a, b = report.get("a", "cpu", 2), report.get("b", "cpu", 2)
    convs_a = [(n.name, n.executed_macs) for n in a.nodes if n.executed_macs]
    # same graph: its convs line up by name (ORT's own reorder nodes get per-session names)
    assert len(convs_a) == 3 and convs_a == [(n.name, n.executed_macs) for n in b.nodes if n.executed_macs]
    assert sum(a.by_op_type().values()) == pytest.approx(a.node_total_us)
    assert a.run_median_us > 0 and all(n.median_us >= 0 for n in a.nodes)
    text = report.format_table(machine=True)
    assert text.count("provider cpu | batch") == 2 and "b speedup" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["settings"]["runs"] == 3 and len(data["profiles"]) == 4


def test_bad_settings_and_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="no such model file"):
        profile([tmp_path / "missing.onnx"], providers=["cpu"])
    with pytest.raises(SpecError, match="CUDA graphs"):
        profile([vgg_like()], providers=["cpu"], cuda_options={"enable_cuda_graph": "1"})
    with pytest.raises(SpecError, match="repeats >= 1"):
        profile([vgg_like()], providers=["cpu"], runs=0)


def test_cli_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    path, js = tmp_path / "m.onnx", tmp_path / "p.json"
    onnx.save(vgg_like(), str(path))
    code, out = run(["profile", path, path, "--batch", "2", "--runs", "2", "--warmup", "1", "--json", js])

    assert code == 0, out
    assert "total of node medians" in out and "GMAC/s" in out
    assert [p["batch"] for p in json.loads(js.read_text())["profiles"]] == [2, 2]
    assert_one_line_error(*run(["profile", tmp_path / "nope.onnx"]), "no such model file")


def test_profiling_imports_no_torch() -> None:
    code = "import sys, onnxprune.runtime.profiling; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
