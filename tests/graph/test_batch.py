"""Models with a fixed batch dim: chunked ORT runs, the batch-relaxed training graph and its check."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.graph.batch import check_relaxed, relax_batch, static_batch
from onnxprune.graph.inputs import value_dims
from onnxprune.graph.load import normalize
from onnxprune.runtime.sessions import make_session, run_batched
from tests.builders import GraphBuilder


def fixed_cnn(batch: int) -> onnx.ModelProto:
    """Conv-Relu-pool, a Reshape to ``[batch, -1]`` (a fixed-batch ``view(b, -1)`` exports so), a Gemm;
    every input/output dim fixed."""
    b = GraphBuilder((batch, 3, 8, 8))
    x = b.maxpool(b.unary("Relu", b.conv("input", 4)))
    x = b.reshape(x, [batch, -1], (batch, 4 * 4 * 4))
    return b.build([b.gemm(x, 5)], dynamic_batch=False)


def test_static_batch_reads_the_common_fixed_dim():
    assert static_batch(fixed_cnn(2)) == 2
    dynamic = GraphBuilder((1, 3, 8, 8))
    dynamic_model = dynamic.build([dynamic.conv("input", 4)])
    assert static_batch(dynamic_model) is None


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_run_batched_chunks_to_the_fixed_batch(batch):
    """Any sample count runs on a fixed-batch model, each sample as it would alone."""
    model = fixed_cnn(batch)
    sess = make_session(model)
    x = np.random.default_rng(0).standard_normal((7, 3, 8, 8)).astype(np.float32)
    got = run_batched(sess, x)[0]
    pad = [np.concatenate([x[i : i + 1]] * batch) for i in range(7)]  # each sample alone, tiled to B
    alone = np.concatenate([sess.run(None, {"input": p})[0][:1] for p in pad])
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-6)


def test_relaxed_graph_runs_any_batch_and_keeps_the_original():
    model = normalize(fixed_cnn(2)).model
    relaxed = relax_batch(model)
    assert relaxed is not None and relaxed.batch == 2 and len(relaxed.reshapes) == 1
    assert value_dims(relaxed.model.graph.input[0]) == ["batch", 3, 8, 8]
    assert value_dims(model.graph.input[0]) == [2, 3, 8, 8]  # the original is untouched
    weights = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert weights <= {t.name for t in relaxed.model.graph.initializer}  # same weight names
    assert check_relaxed(model, relaxed, {"input": (2, 3, 8, 8)}) < 1e-6
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    out = make_session(relaxed.model).run(None, {"input": x})[0]
    assert out.shape == (5, 5)


def test_a_graph_mixing_samples_fails_the_relaxed_check():
    """A Reshape that folds the batch into the features (``[1, B*F]``) has no batch-relaxed form: the
    relaxed copy must not pass for the original."""
    g = GraphBuilder((2, 3, 8, 8))
    x = g.maxpool(g.unary("Relu", g.conv("input", 4)))
    x = g.reshape(x, [1, -1], (1, 128))
    mixed = normalize(g.build([g.gemm(x, 5)], dynamic_batch=False)).model
    relaxed = relax_batch(mixed)
    assert relaxed is not None and relaxed.reshapes == ()
    assert check_relaxed(mixed, relaxed, {"input": (2, 3, 8, 8)}) > 1e-3
