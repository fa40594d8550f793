"""Small ONNX graphs built with onnx.helper for the torch-side tests, and ORT helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(
    nodes: Sequence[onnx.NodeProto],
    inits: Mapping[str, np.ndarray],
    x_shape: Sequence[int | str],
    y_shape: Sequence[int | str],
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
        [numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _rand(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def conv_relu(bias: bool = True, seed: int = 0, pads: Sequence[int] = (1, 1, 1, 1)) -> onnx.ModelProto:
    """x (N,3,8,8) -> Conv(4 filters, 3x3) -> Relu -> y."""
    rng = np.random.default_rng(seed)
    inits = {"conv.w": _rand(rng, 4, 3, 3, 3)}
    ins = ["x", "conv.w"]
    if bias:
        inits["conv.b"] = _rand(rng, 4)
        ins.append("conv.b")
    nodes = [
        helper.make_node("Conv", ins, ["c"], name="conv", pads=list(pads), kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return _model(
        nodes, inits, ["N", 3, 8, 8], ["N", 4, 8 + pads[0] + pads[2] - 2, 8 + pads[1] + pads[3] - 2]
    )


def cnn(
    trans_b: int = 1, alpha: float = 1.0, beta: float = 1.0, seed: int = 0, classes: int = 5
) -> onnx.ModelProto:
    """x (N,2,8,8) -> Conv(6)+BN+Relu -> MaxPool 2 -> Conv(4)+Relu -> Flatten -> Gemm(classes) -> y."""
    rng = np.random.default_rng(seed)
    fc = _rand(rng, 4 * 4 * 4, classes)
    inits = {
        "c1.w": _rand(rng, 6, 2, 3, 3),
        "c1.b": _rand(rng, 6),
        "bn.scale": (1.0 + _rand(rng, 6, scale=0.2)),
        "bn.bias": _rand(rng, 6),
        "bn.mean": _rand(rng, 6, scale=0.1),
        "bn.var": (1.0 + np.abs(_rand(rng, 6, scale=0.3))),
        "c2.w": _rand(rng, 4, 6, 3, 3),
        "c2.b": _rand(rng, 4),
        "fc.w": fc if not trans_b else np.ascontiguousarray(fc.T),
        "fc.b": _rand(rng, classes),
    }
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
            ["b1"],
            name="bn1",
            epsilon=1e-5,
        ),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2.w", "c2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten", axis=1),
        helper.make_node(
            "Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=trans_b, alpha=alpha, beta=beta
        ),
    ]
    return _model(nodes, inits, ["N", 2, 8, 8], ["N", classes])


def mlp_matmul(seed: int = 0) -> onnx.ModelProto:
    """x (N,12) -> MatMul(W1 12x8) -> Add(b1) -> Relu -> MatMul(W2 8x3) -> y."""
    rng = np.random.default_rng(seed)
    inits = {"w1": _rand(rng, 12, 8), "b1": _rand(rng, 8), "w2": _rand(rng, 8, 3)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
    ]
    return _model(nodes, inits, ["N", 12], ["N", 3])


def shared_matmul(seed: int = 0) -> onnx.ModelProto:
    """One initializer used by two MatMul nodes whose names collide after onnx2torch's '.' -> '/'."""
    rng = np.random.default_rng(seed)
    inits = {"w": _rand(rng, 6, 6)}
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm.1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w"], ["y"], name="mm/1"),
    ]
    return _model(nodes, inits, ["N", 6], ["N", 6])


def gemm_fallback(seed: int = 0) -> onnx.ModelProto:
    """Gemm with transA=1 (onnx2torch's OnnxGemm with get_attr buffers): x (5,N) -> y (N,3)."""
    rng = np.random.default_rng(seed)
    inits = {"gb": _rand(rng, 5, 3), "gc": _rand(rng, 3)}
    nodes = [helper.make_node("Gemm", ["x", "gb", "gc"], ["y"], name="g", transA=1, alpha=0.5, beta=2.0)]
    return _model(nodes, inits, [5, 4], [4, 3])


def conv_transpose(seed: int = 0) -> onnx.ModelProto:
    """x (N,3,5,5) -> ConvTranspose(W 3x4x3x3, stride 2, pads 1) -> y (N,4,9,9); layout (in, out, k, k)."""
    rng = np.random.default_rng(seed)
    inits = {"ct.w": _rand(rng, 3, 4, 3, 3), "ct.b": _rand(rng, 4)}
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "ct.w", "ct.b"], ["y"], name="ct", strides=[2, 2], pads=[1] * 4
        )
    ]
    return _model(nodes, inits, ["N", 3, 5, 5], ["N", 4, 9, 9])


def with_initializers(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers named in ``arrays`` are replaced."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in arrays:
            init.CopyFrom(numpy_helper.from_array(np.asarray(arrays[init.name]), name=init.name))
    return out


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])
