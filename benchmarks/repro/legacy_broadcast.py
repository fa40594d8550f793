"""Repro: an opset-6 graph with legacy broadcasting (Mul / Add with broadcast=1, axis=1), as the oldest
model-zoo graphs have. onnx's version converter, which normalize uses to lift it to opset 11, inserts
Unsqueeze(axes=[1, 2, 3]) on the per-channel operand: shape (8, 1, 1, 1) instead of (8, 1, 1), and a
value_info of elem_type 0 for it. ORT refuses the lifted model ("Invalid tensor data type 0"); `compress`
ends in a raw traceback (graph/batch.py check_relaxed -> make_session). The shapes the converter wrote
are also wrong for the broadcast: a Mul whose input shapes no longer agree once channels are pruned.
Fix (ONNX side, before the version converter): rewrite legacy broadcasts of a constant operand into
numpy broadcasting (reshape the initializer to B.shape + [1] * (rank(A) - axis - rank(B)), drop the
attributes), and check the lifted model on ORT (a clean error when it does not load).
Fixed in onnxprune/graph/legacy.py (called by graph/load.py normalize); tests: tests/graph/test_load.py
(legacy broadcast tests) and tests/test_cli.py::test_legacy_broadcast_graph_prunes_and_verifies.

    python benchmarks/repro/legacy_broadcast.py /tmp/legacy_broadcast.onnx
    python -m onnxprune compress /tmp/legacy_broadcast.onnx -s filter:0.5 --data random --method magnitude \\
        --finetune-epochs 0 -o /tmp/p.onnx --no-bench
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from onnxprune.graph.load import normalize

rng = np.random.default_rng(0)
inits = {
    "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
    "s": rng.standard_normal(8).astype(np.float32),
    "b": rng.standard_normal(8).astype(np.float32),
    "w2": rng.standard_normal((4, 8, 3, 3)).astype(np.float32),
}
nodes = [
    helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
    helper.make_node("Mul", ["c1", "s"], ["m"], name="mul", broadcast=1, axis=1),
    helper.make_node("Add", ["m", "b"], ["a"], name="add", broadcast=1, axis=1),
    helper.make_node("Relu", ["a"], ["r"], name="relu"),
    helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
]
g = helper.make_graph(
    nodes,
    "g",
    [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])]
    + [helper.make_tensor_value_info(k, T.FLOAT, list(v.shape)) for k, v in inits.items()],
    [helper.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])],
    [numpy_helper.from_array(v, k) for k, v in inits.items()],
)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)])
m.ir_version = 3
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1] if len(sys.argv) > 1 else "legacy_broadcast.onnx")
n = normalize(m).model
for node in n.graph.node:
    print(node.op_type, list(node.input), [a.name for a in node.attribute])
print({t.name: list(t.dims) for t in n.graph.initializer})
