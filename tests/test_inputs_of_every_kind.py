"""Inputs as third-party exporters write them: a fixed batch, several named inputs, token ids and masks.

A fixed-batch model trains on a batch-relaxed copy when ORT shows that copy is the same function, else in
batches of its own size; either way the written model keeps its fixed batch and pruned ≡ masked holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.data import load_data
from onnxprune.graph.draws import input_draws
from onnxprune.graph.inputs import value_dims
from tests.builders import GraphBuilder
from tests.test_cli import PREVIEW, assert_one_line_error, run

pytest.importorskip("torch")

from onnxprune import compress
from onnxprune.pipeline import TrainOptions


def fixed_batch_cnn(batch: int, batch_constant: bool = False) -> onnx.ModelProto:
    """Conv-Relu-pool-Conv-Relu, ``view(batch, -1)``, Gemm-Relu-Gemm, all dims fixed. ``batch_constant``:
    add a constant of the full batch shape after the first conv (a graph no relaxation can serve)."""
    b = GraphBuilder((batch, 3, 8, 8))
    x = b.conv("input", 6)
    if batch_constant:
        x = b.binary_const("Add", x, np.full((batch, 6, 8, 8), 0.1, dtype=np.float32))
    x = b.maxpool(b.unary("Relu", x))
    x = b.unary("Relu", b.conv(x, 8))
    x = b.reshape(x, [batch, -1], (batch, 8 * 4 * 4))
    x = b.unary("Relu", b.gemm(x, 6))
    return b.build([b.gemm(x, 3)], dynamic_batch=False)


def short_training(model: onnx.ModelProto):
    return compress(
        model,
        "filter:0.5",
        "random",
        method="magnitude",
        train=TrainOptions(finetune_epochs=1, batch_size=16),
        bench_batches=(1, 32),
        bench_repeats=2,
        quiet=True,
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_fixed_batch_trains_on_a_relaxed_graph_and_keeps_its_batch(batch, caplog):
    model = fixed_batch_cnn(batch)
    caplog.set_level("INFO", logger="onnxprune")
    result = short_training(model)
    assert "training on a batch-relaxed copy" in caplog.text
    assert value_dims(result.model.graph.input[0]) == [batch, 3, 8, 8]
    assert value_dims(result.model.graph.output[0]) == [batch, 3]
    reshape = next(n for n in result.model.graph.node if n.op_type == "Reshape")
    target = next(t for t in result.model.graph.initializer if t.name == reshape.input[1])
    assert numpy_helper.to_array(target)[0] == batch  # the written graph is not the relaxed one
    assert result.report.verification.passed
    assert result.report.history["finetune"], "training ran"
    assert [s["batch"] for s in result.report.latency["speedups"]] == [batch]


def test_fixed_batch_that_cannot_be_relaxed_trains_in_batches_of_its_size(caplog):
    caplog.set_level("INFO", logger="onnxprune")
    result = short_training(fixed_batch_cnn(2, batch_constant=True))
    assert "training in batches of 2" in caplog.text
    assert result.report.config["batch_size"] == 2
    assert result.report.verification.passed
    assert value_dims(result.model.graph.input[0]) == [2, 3, 8, 8]


def bert_like() -> onnx.ModelProto:
    """input_ids / token_type_ids -> embeddings (Gather), attention_mask -> additive bias, MatMul head."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((30, 8)).astype(np.float32), "word_embeddings"),
        numpy_helper.from_array(rng.standard_normal((2, 8)).astype(np.float32), "type_embeddings"),
        numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "head"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_embeddings", "input_ids"], ["w"], name="word_embed"),
        helper.make_node("Gather", ["type_embeddings", "token_type_ids"], ["t"], name="type_embed"),
        helper.make_node("Add", ["w", "t"], ["e"], name="sum"),
        helper.make_node("Cast", ["attention_mask"], ["m"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "m"], ["inv"], name="invert"),
        helper.make_node("Unsqueeze", ["inv", "axis2"], ["bias"], name="unsq"),
        helper.make_node("Add", ["e", "bias"], ["h"], name="masked"),
        helper.make_node("MatMul", ["h", "head"], ["logits"], name="proj"),
    ]
    ids = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["N", "S"])
        for n in ("input_ids", "token_type_ids", "attention_mask")
    ]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "S", 4])
    graph = helper.make_graph(nodes, "bert_like", ids, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_random_data_draws_token_ids_masks_and_type_ids_from_the_graph():
    model = bert_like()
    draws = input_draws(model)
    assert (draws["input_ids"].kind, draws["input_ids"].high) == ("ids", 30)
    assert draws["token_type_ids"].kind == "zeros"
    assert draws["attention_mask"].kind == "ones"
    shapes = {"input_ids": (1, 5), "token_type_ids": (1, 5), "attention_mask": (1, 5)}
    dims = {vi.name: value_dims(vi) for vi in model.graph.input}
    splits = load_data("random", dims, shapes, draws=draws)
    x = splits.train.x
    assert isinstance(x, dict) and x["input_ids"].dtype == np.int64 and x["input_ids"].shape[1:] == (5,)
    assert x["input_ids"].min() >= 0 and x["input_ids"].max() < 30 and len(np.unique(x["input_ids"])) > 5
    assert (x["attention_mask"] == 1).all() and (x["token_type_ids"] == 0).all()


def test_multi_input_shapes_on_the_command_line(tmp_path: Path):
    path, out = tmp_path / "bert.onnx", tmp_path / "p.onnx"
    onnx.save(bert_like(), str(path))
    shapes = [f"--input-shape={n}:1,6" for n in ("input_ids", "token_type_ids", "attention_mask")]
    code, text = run(["compress", path, "-s", "filter:0.5", *PREVIEW, *shapes, "-o", out])
    assert code == 0, text
    assert out.exists()
    code, text = run(["inspect", path, *shapes])
    assert code == 0 and "input {'input_ids': (1, 6)" in text, text
    out = tmp_path / "q.onnx"  # p.onnx exists now: refused without --force before any shape is checked
    code, text = run(["compress", path, "-s", "filter:0.5", *PREVIEW, "--input-shape", "1,6", "-o", out])
    assert_one_line_error(code, text, "--input-shape NAME:DIMS")
    code, text = run(["compress", path, "-s", "filter:0.5", *PREVIEW, "--input-shape", "nope:1,6", "-o", out])
    assert_one_line_error(code, text, "'nope', which is not a model input")
    mixed = ["--input-shape", "input_ids:1,6", "--input-shape", "1,6"]
    code, text = run(["compress", path, "-s", "filter:0.5", *PREVIEW, *mixed, "-o", out])
    assert_one_line_error(code, text, "every value as NAME:DIMS")
