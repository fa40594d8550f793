"""``bn_recalibrate``: BatchNorm statistics re-estimated after the hard prune; the model still verifies."""

from __future__ import annotations

import numpy as np

from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.importer import import_model

from . import graphs as G
from .test_admm import FAST, cnn_plan, physically_pruned, split, teacher_labels


def run(recalibrate: bool) -> tuple:
    model = G.cnn(trans_b=0)
    x = np.random.default_rng(1).standard_normal((96, 2, 8, 8)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 64)
    imported = import_model(model)
    cfg = TrainConfig(admm_epochs=1, finetune_epochs=0, round_iters=1, bn_recalibrate=recalibrate, **FAST)
    result = run_admm(imported, cnn_plan(), {"c1": 3}, train, val, cfg)
    return model, imported, result, train, val


def test_recalibration_changes_the_running_stats_and_the_model_still_verifies() -> None:
    _, plain, plain_result, _, _ = run(False)
    model, imported, result, train, val = run(True)
    assert result.last("bn_recalibrate") == {"phase": "bn_recalibrate", "batches": 2}
    assert plain_result.last("bn_recalibrate") is None
    mean, var = imported.onnx_array("bn.mean"), imported.onnx_array("bn.var")
    assert not np.allclose(mean, plain.onnx_array("bn.mean"))  # the same training up to the prune
    kept = result.masks["c1"]
    # the statistics are the plain average over the training batches of the pruned model's conv1 output
    arrays = imported.onnx_arrays()
    conv = G.run_ort(_conv1_only(model, arrays), train.x)
    np.testing.assert_allclose(mean[kept], conv.mean(axis=(0, 2, 3))[kept], rtol=1e-4, atol=1e-5)
    assert np.all(mean[~kept] == 0) and np.all(var[~kept] == 0)  # pruned channels: input exactly 0
    masked = G.with_initializers(model, arrays)
    small = physically_pruned(model, arrays, cnn_plan(), result.masks)
    np.testing.assert_allclose(G.run_ort(small, val.x), G.run_ort(masked, val.x), rtol=1e-5, atol=1e-5)


def _conv1_only(model, arrays):  # type: ignore[no-untyped-def]
    """The graph cut after conv1 (its output as the graph output), with ``arrays``."""
    import onnx
    from onnx import helper

    m = G.with_initializers(model, arrays)
    conv = next(n for n in m.graph.node if n.name == "conv1")
    del m.graph.node[1:]
    assert m.graph.node[0] is not None and m.graph.node[0].name == conv.name
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info(conv.output[0], onnx.TensorProto.FLOAT, None))
    return m
