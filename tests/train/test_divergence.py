"""The import check names the first node where torch stops reproducing ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxprune.errors import UnsupportedModelError
from onnxprune.graph.values import intermediate_values
from onnxprune.train.divergence import first_divergence
from onnxprune.train.importer import import_model

from . import graphs as G

pytest.importorskip("onnx2torch")


def _corrupted(name: str, replacement: torch.nn.Module):
    model = G.cnn()
    imported = import_model(model)
    gm = imported.module
    old = gm.get_submodule(name)
    replacement.onnx_mapping = old.onnx_mapping  # type: ignore[attr-defined]
    setattr(gm, name, replacement)
    return model, imported


def test_intermediate_values_are_ort_values():
    model = G.cnn()
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    values = intermediate_values(model, {"x": x})
    assert {o for n in model.graph.node for o in n.output} <= set(values)
    want = G.run_ort(model, x)  # extra outputs change ORT's fusions: equal to float rounding
    np.testing.assert_allclose(values["y"], want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    assert len(model.graph.output) == 1  # the model itself is unchanged


def test_names_the_first_diverging_node():
    model, imported = _corrupted("relu1", torch.nn.LeakyReLU(0.3))
    x = np.random.default_rng(1).standard_normal((2, 2, 8, 8)).astype(np.float32)
    where = first_divergence(model, imported.module, imported.input_names, {"x": x})
    assert where is not None and where.node == "relu1" and where.op_type == "Relu"
    assert "'relu1' (Relu)" in str(where) and "relative error" in str(where)


def test_no_divergence_on_a_faithful_import():
    model = G.cnn()
    imported = import_model(model)
    x = np.random.default_rng(2).standard_normal((2, 2, 8, 8)).astype(np.float32)
    assert first_divergence(model, imported.module, imported.input_names, {"x": x}) is None


def test_import_check_error_names_the_node():
    from onnxprune.pipeline.training import check_import

    model, imported = _corrupted("relu1", torch.nn.Tanh())
    x = np.random.default_rng(3).standard_normal((4, 2, 8, 8)).astype(np.float32)
    with pytest.raises(
        UnsupportedModelError, match=r"does not reproduce.*first diverging node: 'relu1' \(Relu\)"
    ):
        check_import(model, imported, [x])
