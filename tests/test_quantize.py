"""Int8 quantization (ORT static QDQ): the int8 model loads and agrees with fp32, exclusions stay float, the
recipe key parses, and every bad input is one line, a non-zero exit and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.config.recipe import parse_recipe
from onnxprune.config.settings import QuantizeSettings
from onnxprune.errors import DataError, SpecError
from onnxprune.io import derived_path
from onnxprune.runtime.quantization import (
    QuantizationError,
    is_quantized,
    quantize_int8,
    quantized_nodes,
    stem_nodes,
)
from onnxprune.runtime.sessions import make_session, run_batched
from tests.builders import GraphBuilder, vgg_like
from tests.test_cli import assert_one_line_error, only_inputs_left, run

INT8 = QuantizeSettings(mode="int8", calibration_samples=64)


def dynamic_cnn(seed: int = 5) -> onnx.ModelProto:
    """vgg_like with a dynamic batch: Conv-BN-Relu x2, pool, Conv-Relu, pool, flatten, Gemm-Relu-Gemm.
    Seed 5: on standard-normal inputs its argmax spreads over 3 of the 4 classes (most seeds put nearly
    every sample in one class, which would make any agreement trivially high)."""
    model = vgg_like(seed=seed)
    for t in (*model.graph.input, *model.graph.output):
        t.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """160 standard-normal samples of (3, 8, 8)."""
    return np.random.default_rng(1).standard_normal((160, 3, 8, 8)).astype(np.float32)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(dynamic_cnn(), str(path))
    return path


@pytest.fixture
def data_path(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    """The images with random labels, as .npz (outside the model's directory)."""
    path = tmp_path_factory.mktemp("qd") / "d.npz"
    np.savez(path, x=images, y=np.random.default_rng(2).integers(0, 4, len(images)))
    return path


def logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return run_batched(make_session(model), x)[0]


def test_int8_model_loads_and_agrees_with_fp32(images: np.ndarray) -> None:
    model = dynamic_cnn()
    q = quantize_int8(model, images[:64], INT8)
    held_out = images[64:]
    ref, got = logits(model, held_out), logits(q.model, held_out)  # make_session: ORT loads it
    assert len(set(ref.argmax(1))) >= 3  # agreement is not trivial
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.9
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() < 0.2 * scale  # int8 rounding, not a different model
    assert not np.array_equal(got, ref)  # it is quantized
    weights = {t.name: t for t in q.model.graph.initializer}
    assert any(t.data_type == TensorProto.INT8 for t in weights.values())
    # every Conv/Gemm but the stem reads its weight through DequantizeLinear
    assert q.excluded == stem_nodes(model) == [model.graph.node[0].name]
    compute = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert q.quantized == [n for n in compute if n not in q.excluded]


def test_excluded_nodes_stay_float(images: np.ndarray) -> None:
    model = dynamic_cnn()
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    settings = QuantizeSettings(mode="int8", calibration_samples=32, exclude=(gemms[0],), stem=True)
    q = quantize_int8(model, images, settings)
    assert gemms[0] not in q.quantized and gemms[0] in q.excluded
    assert model.graph.node[0].name in q.quantized  # stem=True quantizes the first conv too
    node = next(n for n in q.model.graph.node if n.name == gemms[0])
    producers = {o: n.op_type for n in q.model.graph.node for o in n.output}
    assert all(producers.get(x) != "DequantizeLinear" for x in node.input[1:])
    floats = {t.name for t in q.model.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert node.input[1] in floats
    with pytest.raises(SpecError, match="matches no node"):
        quantize_int8(model, images, QuantizeSettings(mode="int8", exclude=("/nothing/*",)))


def test_no_calibration_samples_and_quantized_models_are_refused(images: np.ndarray) -> None:
    with pytest.raises(DataError, match="no calibration data"):
        quantize_int8(dynamic_cnn(), images[:0], INT8)
    q = quantize_int8(dynamic_cnn(), images[:32], INT8)
    with pytest.raises(QuantizationError, match="quantized already"):
        quantize_int8(q.model, images[:32], INT8)
    assert quantized_nodes(dynamic_cnn()) == [] and not is_quantized(dynamic_cnn()) and is_quantized(q.model)


def test_recipe_key_parses_as_mode_or_section() -> None:
    assert parse_recipe({"quantize": "int8"}, "r").quantize.quantize == "int8"
    rec = parse_recipe(
        {"quantize": {"mode": "int8", "calibration_samples": 64, "exclude": "/head/*", "stem": True}}, "r"
    )
    built = rec.quantize.build(QuantizeSettings)
    assert (built.mode, built.calibration_samples, built.exclude, built.stem) == (
        "int8",
        64,
        ("/head/*",),
        True,
    )
    with pytest.raises(SpecError, match="unknown quantize mode 'int4'"):
        parse_recipe({"quantize": "int4"}, "r")
    with pytest.raises(SpecError, match="quantize: unknown key 'bits'"):
        parse_recipe({"quantize": {"bits": 8}}, "r")


def test_derived_output_names() -> None:
    assert derived_path(Path("models/x.onnx"), "pruned", "int8") == Path("models/x.pruned.int8.onnx")
    assert derived_path(Path("x.onnx"), "int8") == Path("x.int8.onnx")


def test_quantize_command_writes_int8_and_reports_agreement(
    model_path: Path, data_path: Path, tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    code, out = run(
        ["quantize", model_path, "--data", data_path, "--calibration-samples", "64", "--report", report, "-q"]
    )
    assert code == 0, out
    written = derived_path(model_path, "int8")
    assert f"wrote {written}" in out and "agreement" in out
    r = json.loads(report.read_text())
    assert r["vs_fp32"]["agreement"] >= 0.9 and r["int8_top1"] is not None
    assert r["vs_fp32"]["max_abs_diff"] >= r["vs_fp32"]["mean_abs_diff"] > 0
    make_session(onnx.load(str(written)))
    code, out = run(["quantize", model_path, "--data", data_path, "-q"])  # exists: needs --force
    assert_one_line_error(code, out, "pass --force")
    code, out = run(["quantize", model_path, "--data", data_path, "--force", "-q"])
    assert code == 0, out


def custom_op_model(path: Path) -> Path:
    """A Conv followed by an op of a domain ONNX Runtime does not know: loadable, not runnable by ORT."""
    b = GraphBuilder((1, 3, 8, 8))
    x = b.conv("input", 4)
    nodes = [*b.nodes, helper.make_node("Foo", [x], ["y"], name="foo", domain="custom.ops")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        b.inits,
    )
    ops = [helper.make_opsetid("", 17), helper.make_opsetid("custom.ops", 1)]
    model = helper.make_model(graph, opset_imports=ops)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--calibration-method", "kmeans"], "unknown calibration method 'kmeans'"),
        (["--calibration-samples", "0"], "calibration_samples must be >= 1"),
        (["--quantize-exclude", "/nothing/*"], "matches no node"),
        (["--quantize-activations", "int4"], "unknown quantize activation type"),
    ],
)
def test_quantize_command_bad_settings(
    model_path: Path, data_path: Path, args: list[str], needle: str
) -> None:
    code, out = run(["quantize", model_path, "--data", data_path, *args, "-q"])
    assert_one_line_error(code, out, needle)
    only_inputs_left(model_path.parent, {"m.onnx"})


def test_quantize_command_bad_inputs(
    model_path: Path, data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # ORT's tools write temporary files to the working directory: not here
    code, out = run(["quantize", model_path, "-q"])
    assert_one_line_error(code, out, "quantize needs --data")
    code, out = run(["quantize", model_path, model_path, "--data", data_path, "--force", "-q"])
    assert_one_line_error(code, out, "is the input model")
    bad = custom_op_model(tmp_path / "custom.onnx")
    code, out = run(["quantize", bad, "--data", data_path, "-q"])
    assert_one_line_error(code, out, "ONNX Runtime cannot")
    only_inputs_left(tmp_path, {"m.onnx", "custom.onnx"})


@pytest.mark.torch
def test_compress_quantize_int4_is_one_line(model_path: Path, data_path: Path) -> None:
    code, out = run(
        ["compress", model_path, "-s", "filter:0.5", "--data", data_path, "--quantize", "int4", "-q"]
    )
    assert_one_line_error(code, out, "unknown quantize mode 'int4'")
    only_inputs_left(model_path.parent, {"m.onnx"})


@pytest.mark.torch
def test_compress_quantize_int8_writes_the_gated_int8_model(model_path: Path, data_path: Path) -> None:
    args = ["compress", model_path, "-s", "filter:0.5", "--data", data_path, "--method", "magnitude"]
    args += ["--finetune-epochs", "0", "--quantize", "int8", "--calibration-samples", "32", "-q"]
    report = model_path.parent / "r.json"
    code, out = run([*args, "--bench-batch", "1", "--report", report, "--min-fidelity", "0"])
    assert code == 0, out
    written = derived_path(model_path, "pruned", "int8")
    assert f"wrote {written}" in out
    r = json.loads(report.read_text())
    assert r["verification"]["passed"]  # pruned ≡ masked, on fp32
    q = r["quantization"]
    assert q["vs_fp32"]["agreement"] >= 0.8 and q["quantized_nodes"]
    assert set(q) >= {"int8_top1", "fp32_top1", "vs_dense"}
    row = r["latency"]["speedups"][0]
    assert {"int8_ms", "int8_speedup", "int8_vs_pruned"} <= set(row)
    gate = r["gates"][0]  # the fidelity gate reads the int8 model against the dense one
    assert gate["value"] == pytest.approx(q["vs_dense"]["fidelity"])
    assert quantized_nodes(onnx.load(str(written))) == q["quantized_nodes"]
    # a gate the int8 model misses: nothing written
    written.unlink()
    code, out = run([*args, "--no-bench", "--min-fidelity", "1", "-o", written])
    assert code == 4 and "quality gate missed" in out and not written.exists()


def test_bench_times_fp32_and_int8_side_by_side(images: np.ndarray, tmp_path: Path) -> None:
    from onnxprune.runtime.benchmark import bench

    dense = tmp_path / "dense.onnx"
    onnx.save(dynamic_cnn(), str(dense))
    int8 = tmp_path / "dense.int8.onnx"
    onnx.save(quantize_int8(dynamic_cnn(), images[:32], INT8).model, str(int8))
    report = bench([dense, int8], batch_sizes=(1, 4), providers=["cpu"], threads=1, warmup=1, repeats=5)
    assert {(r.model, r.batch) for r in report.rows} == {
        (m, b) for m in ("dense", "dense.int8") for b in (1, 4)
    }
    assert all(r.median_ms > 0 for r in report.rows)


@pytest.mark.torch
def test_compress_recipe_quantize_key_names_the_int8_output(model_path: Path, data_path: Path) -> None:
    recipe = model_path.parent / "r.yaml"
    recipe.write_text("sparsity: filter:0.5\nquantize: {mode: int8, calibration_samples: 16, stem: true}\n")
    args = ["compress", model_path, "--config", recipe, "--data", data_path, "--method", "magnitude"]
    code, out = run([*args, "--finetune-epochs", "0", "--no-bench", "-q"])
    assert code == 0, out
    written = derived_path(model_path, "pruned", "int8")
    assert f"wrote {written}" in out
    first_conv = dynamic_cnn().graph.node[0].name
    assert first_conv in quantized_nodes(onnx.load(str(written)))  # stem: true from the recipe


def test_narrow_layers_stay_float_below_the_min_reduction(images: np.ndarray) -> None:
    model = dynamic_cnn()
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    # reduction depths: conv 3->8 3x3 = 27, 8->6 = 72, 6->5 = 54; the Gemms 20 and 7
    settings = QuantizeSettings(mode="int8", calibration_samples=32, stem=True, min_reduction=60)
    q = quantize_int8(model, images, settings)
    assert q.quantized == [convs[1]]
    compute = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert sorted(q.excluded) == sorted(n for n in compute if n != convs[1])
    assert q.to_dict()["min_reduction"] == 60


def test_gates_read_the_int8_model_when_there_is_one() -> None:
    from onnxprune.config.gates import Gates
    from onnxprune.pipeline.quantization import gate_inputs

    fp32 = {"drop_pp": 0.1, "fidelity": 0.99, "measure": "top-1 agreement"}
    int8 = {"drop_pp": 0.9, "fidelity": 0.95, "measure": "top-1 agreement"}
    rows = [{"provider": "cpu", "batch": 1, "speedup": 3.0, "int8_speedup": 6.0}]
    gates = Gates(max_accuracy_drop=0.5, min_fidelity=0.97, min_speedup=5.0)
    plain = {g.gate: g.passed for g in gates.evaluate(*gate_inputs(fp32, fp32, rows, None))}
    assert plain == {"max_accuracy_drop": True, "min_fidelity": True, "min_speedup": False}
    quantized = {"vs_fp32": {}, "vs_dense": int8}
    judged = {g.gate: (g.passed, g.value) for g in gates.evaluate(*gate_inputs(fp32, fp32, rows, quantized))}
    assert judged == {
        "max_accuracy_drop": (False, 0.9),
        "min_fidelity": (False, 0.95),
        "min_speedup": (True, 6.0),
    }


def test_two_input_model_calibrates_on_arrays_by_name() -> None:
    """Inputs a, b -> Add -> Conv (the stem: reached through the Add) -> Relu -> Conv."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((8, 3, 3, 3), (16, 8, 3, 3))]
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Conv", ["s", "w1"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1] * 4),
    ]

    def vi(name: str, channels: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, 8, 8])

    inits = [numpy_helper.from_array(w, f"w{i + 1}") for i, w in enumerate(weights)]
    graph = helper.make_graph(nodes, "g", [vi("a", 3), vi("b", 3)], [vi("y", 16)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = {n: rng.standard_normal((40, 3, 8, 8)).astype(np.float32) for n in ("a", "b")}
    q = quantize_int8(model, x, INT8)
    assert (q.quantized, q.excluded) == (["conv2"], ["conv1"])
    ref, got = run_batched(make_session(model), x)[0], run_batched(make_session(q.model), x)[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
