"""Tiny ONNX graphs built with onnx.helper (and the small labeled data they train on), for tests that must
not need torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Builds an NCHW CNN node by node, tracking shapes; weights are seeded Gaussians."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 3, 8, 8), seed: int = 0, opset: int = 17):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.input_shape = input_shape
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": input_shape}
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: object) -> str:
        out = self._name(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self._name(op), **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x: str, cout: int, k: int = 3, bias: bool = True, stride: int = 1, group: int = 1) -> str:
        n, c, h, w = self.shapes[x]
        wt = self.const(self.rng.standard_normal((cout, c // group, k, k)).astype(np.float32) * 0.3, "w")
        ins = [x, wt]
        if bias:
            ins.append(self.const(self.rng.standard_normal(cout).astype(np.float32) * 0.1, "b"))
        p = k // 2
        ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
        return self.node("Conv", ins, (n, cout, ho, wo), pads=[p] * 4, strides=[stride] * 2, group=group)

    def bn(self, x: str) -> str:
        c = self.shapes[x][1]
        ps = [
            self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32), "scale"),
            self.const(self.rng.standard_normal(c).astype(np.float32) * 0.2, "shift"),
            self.const(self.rng.standard_normal(c).astype(np.float32) * 0.1, "mean"),
            self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32), "var"),
        ]
        return self.node("BatchNormalization", [x, *ps], self.shapes[x], epsilon=1e-5)

    def unary(self, op: str, x: str, **attrs: object) -> str:
        return self.node(op, [x], self.shapes[x], **attrs)

    def maxpool(self, x: str) -> str:
        n, c, h, w = self.shapes[x]
        return self.node("MaxPool", [x], (n, c, h // 2, w // 2), kernel_shape=[2, 2], strides=[2, 2])

    def gap(self, x: str) -> str:
        n, c = self.shapes[x][:2]
        return self.node("GlobalAveragePool", [x], (n, c, 1, 1))

    def flatten(self, x: str) -> str:
        s = self.shapes[x]
        return self.node("Flatten", [x], (s[0], int(np.prod(s[1:]))), axis=1)

    def reshape_flatten(self, x: str, literal: bool = True) -> str:
        s = self.shapes[x]
        feats = int(np.prod(s[1:]))
        shape = self.const(np.array([-1, feats] if literal else [0, -1], dtype=np.int64), "shape")
        return self.node("Reshape", [x, shape], (s[0], feats))

    def gemm(self, x: str, units: int, trans_b: int = 1, bias: bool = True) -> str:
        m, k = self.shapes[x]
        wshape = (units, k) if trans_b else (k, units)
        ins = [x, self.const(self.rng.standard_normal(wshape).astype(np.float32) * 0.2, "fc")]
        if bias:
            ins.append(self.const(self.rng.standard_normal(units).astype(np.float32) * 0.1, "fcb"))
        return self.node("Gemm", ins, (m, units), transB=trans_b)

    def matmul(self, x: str, units: int) -> str:
        *lead, k = self.shapes[x]
        w = self.const(self.rng.standard_normal((k, units)).astype(np.float32) * 0.2, "mm")
        return self.node("MatMul", [x, w], (*lead, units))

    def binary_const(self, op: str, x: str, value: np.ndarray) -> str:
        return self.node(op, [x, self.const(value.astype(np.float32), "k")], self.shapes[x])

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b], self.shapes[a])

    # --- multi-input / multi-output and layout ops (opset-aware: attribute below the opset that made it
    # an input) ---------------------------------------------------------------------------------------

    def nodes_out(
        self, op: str, inputs: list[str], shapes: list[tuple[int, ...]], **attrs: object
    ) -> list[str]:
        """A node with one output per entry of ``shapes``."""
        outs = [self._name(op.lower() + "_out") for _ in shapes]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self._name(op), **attrs))
        for o, s in zip(outs, shapes, strict=True):
            self.shapes[o] = s
        return outs

    def mul(self, a: str, b: str) -> str:
        return self.node("Mul", [a, b], self.shapes[a])

    def sum(self, xs: list[str]) -> str:
        return self.node("Sum", list(xs), self.shapes[xs[0]])

    def concat(self, xs: list[str], axis: int = 1) -> str:
        shape = list(self.shapes[xs[0]])
        shape[axis] = sum(self.shapes[x][axis] for x in xs)
        return self.node("Concat", list(xs), tuple(shape), axis=axis)

    def split(self, x: str, sizes: list[int], axis: int = 1) -> list[str]:
        """Split with explicit sizes: an int64 input from opset 13, the ``split`` attribute before."""
        shapes = []
        for size in sizes:
            s = list(self.shapes[x])
            s[axis] = size
            shapes.append(tuple(s))
        if self.opset >= 13:
            sizes_in = self.const(np.array(sizes, dtype=np.int64), "split")
            return self.nodes_out("Split", [x, sizes_in], shapes, axis=axis)
        return self.nodes_out("Split", [x], shapes, axis=axis, split=list(sizes))

    def slice(self, x: str, start: int, end: int, axis: int = 1) -> str:
        s = list(self.shapes[x])
        s[axis] = len(range(*slice(start, end).indices(s[axis])))
        ins = [x, *(self.const(np.array([v], dtype=np.int64), "sl") for v in (start, end, axis))]
        return self.node("Slice", ins, tuple(s))

    def reshape(self, x: str, target: list[int], shape: tuple[int, ...]) -> str:
        """Reshape to the constant ``target``; ``shape`` is the resulting shape (for tracking)."""
        return self.node("Reshape", [x, self.const(np.array(target, dtype=np.int64), "shape")], shape)

    def transpose(self, x: str, perm: list[int]) -> str:
        s = self.shapes[x]
        return self.node("Transpose", [x], tuple(s[p] for p in perm), perm=perm)

    def _axes_op(self, op: str, x: str, axes: list[int], shape: tuple[int, ...], since: int, **attrs) -> str:
        if self.opset >= since:
            return self.node(op, [x, self.const(np.array(axes, dtype=np.int64), "axes")], shape, **attrs)
        return self.node(op, [x], shape, axes=axes, **attrs)

    def squeeze(self, x: str, axes: list[int]) -> str:
        s = self.shapes[x]
        return self._axes_op("Squeeze", x, axes, tuple(d for i, d in enumerate(s) if i not in axes), 13)

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        s = list(self.shapes[x])
        for a in sorted(axes):
            s.insert(a, 1)
        return self._axes_op("Unsqueeze", x, axes, tuple(s), 13)

    def reduce_mean(self, x: str, axes: list[int], keepdims: int = 1) -> str:
        s = self.shapes[x]
        shape = tuple(1 if i in axes else d for i, d in enumerate(s) if keepdims or i not in axes)
        return self._axes_op("ReduceMean", x, axes, shape, 18, keepdims=keepdims)

    def resize(self, x: str, scale: int = 2, mode: str = "nearest") -> str:
        n, c, h, w = self.shapes[x]
        roi = self.const(np.zeros(0, dtype=np.float32), "roi")
        scales = self.const(np.array([1, 1, scale, scale], dtype=np.float32), "scales")
        return self.node("Resize", [x, roi, scales], (n, c, h * scale, w * scale), mode=mode)

    def instance_norm(self, x: str) -> str:
        c = self.shapes[x][1]
        scale = self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32), "scale")
        shift = self.const(self.rng.standard_normal(c).astype(np.float32) * 0.2, "shift")
        return self.node("InstanceNormalization", [x, scale, shift], self.shapes[x], epsilon=1e-5)

    def conv_transpose(self, x: str, cout: int, k: int = 2, stride: int = 2, bias: bool = True) -> str:
        n, c, h, w = self.shapes[x]
        ins = [x, self.const(self.rng.standard_normal((c, cout, k, k)).astype(np.float32) * 0.3, "wt")]
        if bias:
            ins.append(self.const(self.rng.standard_normal(cout).astype(np.float32) * 0.1, "b"))
        ho, wo = (h - 1) * stride + k, (w - 1) * stride + k
        return self.node("ConvTranspose", ins, (n, cout, ho, wo), strides=[stride] * 2, kernel_shape=[k, k])

    def build(self, outputs: list[str], dynamic_batch: bool = True) -> onnx.ModelProto:
        def vi(name: str) -> onnx.ValueInfoProto:
            shape: list[int | str] = list(self.shapes[name])
            if dynamic_batch:
                shape[0] = "batch"
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

        graph = helper.make_graph(self.nodes, "g", [vi("input")], [vi(o) for o in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def preview(model: onnx.ModelProto, sparsity: str = "filter:0.5"):  # -> onnxprune.pipeline.CompressResult
    """Structure-only compress: magnitude projection, no training, no benchmark."""
    from onnxprune import compress
    from onnxprune.pipeline import TrainOptions

    return compress(
        model,
        sparsity,
        "random",
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        bench_batches=(),
        quiet=True,
    )


def vgg_like(bias: bool = True, seed: int = 0, head: str = "flatten") -> onnx.ModelProto:
    """Conv-BN-Relu x2, pool, Conv-Relu, pool, flatten/reshape, Gemm-Relu-Gemm."""
    b = GraphBuilder((1, 3, 8, 8), seed=seed)
    x = b.unary("Relu", b.bn(b.conv("input", 8, bias=bias)))
    x = b.maxpool(b.unary("Relu", b.bn(b.conv(x, 6, bias=bias))))
    x = b.maxpool(b.unary("Relu", b.conv(x, 5, bias=bias)))
    x = b.flatten(x) if head == "flatten" else b.reshape_flatten(x, literal=head == "reshape")
    x = b.unary("Relu", b.gemm(x, 7, bias=bias))
    return b.build([b.gemm(x, 4, trans_b=0, bias=bias)])


def write_labeled_npz(path: Path, samples: int, channels: int) -> Path:
    """``samples`` random (channels, 8, 8) images with 4 learnable classes (mean of channel 0 vs channel 1,
    plus pixel (2, 0, 0) > 0.5), saved as ``x``/``y`` in a .npz at ``path``. Needs ``channels >= 3``."""
    rng = np.random.default_rng(0)
    x = rng.random((samples, channels, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > x[:, 1].mean(axis=(1, 2))).astype(np.int64) + 2 * (x[:, 2, 0, 0] > 0.5)
    np.savez(path, x=x, y=y)
    return path


def legacy_model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
    opset: int = 6,
) -> onnx.ModelProto:
    """An IR-3 model of ``opset`` as the oldest model zoos wrote them (initializers listed as graph
    inputs); input ``x`` (float), output ``y``."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    inputs += [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
        for k, v in inits.items()
    ]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))]
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, out, tensors), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def legacy_broadcast_cnn() -> onnx.ModelProto:
    """benchmarks/repro/legacy_broadcast.py: Conv, a per-channel Mul and Add with ``broadcast=1, axis=1``
    (opset 6), Relu, Conv."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "s": rng.standard_normal(8).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "w2": rng.standard_normal((4, 8, 3, 3)).astype(np.float32),
    }
    conv = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", **conv),
        helper.make_node("Mul", ["c1", "s"], ["m"], name="mul", broadcast=1, axis=1),
        helper.make_node("Add", ["m", "b"], ["a"], name="add", broadcast=1, axis=1),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", **conv),
    ]
    return legacy_model(nodes, inits, (1, 3, 8, 8), (1, 4, 8, 8))


def weight_standardized_cnn(seed: int = 0) -> onnx.ModelProto:
    """timm's ScaledStdConv2d as torch exports it, between two plain Convs: the middle Conv's weight is
    ``Reshape(BatchNormalization_train(W (1, C_out, C_in·k·k), gain, 0, mean, var), (C_out, C_in, k, k))``
    (each filter standardized to zero mean and unit variance, times its gain)."""
    b = GraphBuilder((1, 3, 8, 8), seed=seed, opset=15)
    x = b.unary("Relu", b.conv("input", 8))
    rng = b.rng
    raw = b.const(rng.standard_normal((1, 6, 8 * 9)).astype(np.float32), "w_raw")
    gain = b.const((1 + 0.1 * rng.standard_normal(6)).astype(np.float32), "gain")
    shift, mean = b.const(np.zeros(6, np.float32), "shift"), b.const(np.zeros(6, np.float32), "mean")
    var = b.const(np.ones(6, np.float32), "var")  # running statistics: unused in training mode
    std = b._name("std")
    b.nodes.append(
        helper.make_node(
            "BatchNormalization", [raw, gain, shift, mean, var], [std, f"{std}_mean", f"{std}_var"],
            name=b._name("BatchNormalization"),
            epsilon=1e-5, momentum=0.0, training_mode=1,
        )
    )  # fmt: skip
    b.shapes[std] = (1, 6, 72)
    w = b.reshape(std, [6, 8, 3, 3], (6, 8, 3, 3))
    bias = b.const(rng.standard_normal(6).astype(np.float32) * 0.1, "b")
    y = b.node("Conv", [x, w, bias], (1, 6, 8, 8), pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    return b.build([b.conv(b.unary("Relu", y), 4)])
