"""Importer: torch == ORT on the original, write-back round trip, bindings resolve both ways, refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from onnxprune.errors import UnsupportedModelError
from onnxprune.train import importer as importer_module
from onnxprune.train.importer import BindingError, Transform, import_model

from . import graphs as G

CASES = {
    "conv_bias": (lambda: G.conv_relu(bias=True), (2, 3, 8, 8)),
    "conv_no_bias_asym_pads": (lambda: G.conv_relu(bias=False, pads=(0, 1, 1, 0)), (2, 3, 8, 8)),
    "cnn_gemm_transB1": (lambda: G.cnn(trans_b=1), (3, 2, 8, 8)),
    "cnn_gemm_transB0_alpha_beta": (lambda: G.cnn(trans_b=0, alpha=0.7, beta=1.3), (3, 2, 8, 8)),
    "matmul_add": (G.mlp_matmul, (4, 12)),
    "shared_matmul": (G.shared_matmul, (4, 6)),
    "gemm_fallback": (G.gemm_fallback, (5, 4)),
    "conv_transpose": (G.conv_transpose, (2, 3, 5, 5)),
}

# which initializers each case must bind, and which must train
BOUND = {
    "conv_bias": ({"conv.w", "conv.b"}, {"conv.w", "conv.b"}),
    "conv_no_bias_asym_pads": ({"conv.w"}, {"conv.w"}),
    "cnn_gemm_transB1": (
        {"c1.w", "c1.b", "bn.scale", "bn.bias", "bn.mean", "bn.var", "c2.w", "c2.b", "fc.w", "fc.b"},
        {"c1.w", "c1.b", "bn.scale", "bn.bias", "c2.w", "c2.b", "fc.w", "fc.b"},
    ),
    "matmul_add": ({"w1", "b1", "w2"}, {"w1", "b1", "w2"}),
    "shared_matmul": ({"w"}, {"w"}),
    "gemm_fallback": ({"gb", "gc"}, {"gb", "gc"}),
    "conv_transpose": ({"ct.w", "ct.b"}, {"ct.w", "ct.b"}),
}
BOUND["cnn_gemm_transB0_alpha_beta"] = BOUND["cnn_gemm_transB1"]


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    build, shape = CASES[request.param]
    model = build()
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    return request.param, model, import_model(model), x


def test_torch_matches_ort(case):
    _, model, imported, x = case
    imported.module.eval()
    with torch.no_grad():
        got = imported(torch.from_numpy(x)).numpy()
    assert _rel_err(got, G.run_ort(model, x)) < 1e-5


def test_write_back_round_trip(case):
    _, model, imported, x = case
    arrays = imported.onnx_arrays()
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for name, a in arrays.items():
        assert a.shape == inits[name].shape and a.dtype == inits[name].dtype
        np.testing.assert_allclose(a, inits[name], rtol=1e-6, atol=0)
    rebuilt = G.with_initializers(model, arrays)
    assert _rel_err(G.run_ort(rebuilt, x), G.run_ort(model, x)) < 1e-5


def test_bindings_resolve_both_ways(case):
    name, _, imported, _ = case
    bound, trainable = BOUND[name]
    assert set(imported.names) == bound
    assert set(imported.trainable()) == trainable
    for n in imported.names:
        t = imported.tensor(n)
        assert imported.name_of(t) == n
        assert isinstance(t, torch.nn.Parameter) == (n in trainable)
    # nothing else in the module trains: torch and ONNX cannot diverge
    train_ids = {id(p) for p in imported.trainable().values()}
    for p in imported.module.parameters():
        assert p.requires_grad == (id(p) in train_ids)
    with pytest.raises(KeyError):
        imported.name_of(torch.zeros(1))


def test_gemm_transB0_is_transposed_and_scaled():
    imported = import_model(G.cnn(trans_b=0, alpha=0.5, beta=2.0))
    b = imported.binding("fc.w")
    assert b.transform == Transform(transpose=True, scale=0.5)
    assert imported.binding("fc.b").transform == Transform(scale=2.0)
    assert imported.tensor("fc.w").shape == (5, 64)  # nn.Linear: (out, in); ONNX B: (in, out)
    assert imported.torch_axis("fc.w", 1) == 0 and imported.torch_axis("fc.w", -2) == 1
    assert imported.torch_axis("c1.w", 0) == 0 and imported.torch_axis("c1.w", -1) == 3
    # an edit in torch layout lands on the right ONNX column
    with torch.no_grad():
        imported.tensor("fc.w")[2].zero_()
    a = imported.onnx_array("fc.w")
    assert not a[:, 2].any() and a[:, [0, 1, 3, 4]].all()


def test_shared_initializer_is_one_parameter():
    imported = import_model(G.shared_matmul())
    params = list(imported.module.parameters())
    assert len(params) == 1 and params[0] is imported.tensor("w")
    binding = imported.binding("w")
    assert len(binding.aliases) == 1  # onnx2torch made two buffers; they are tied
    with torch.no_grad():
        imported.tensor("w").mul_(2.0)
    x = np.ones((1, 6), dtype=np.float32)
    rebuilt = G.with_initializers(G.shared_matmul(), imported.onnx_arrays())
    with torch.no_grad():
        assert _rel_err(imported(torch.from_numpy(x)).numpy(), G.run_ort(rebuilt, x)) < 1e-5


def test_bn_maps_momentum_and_eps():
    imported = import_model(G.cnn())
    bn = imported.module.get_submodule("bn1")
    assert isinstance(bn, torch.nn.BatchNorm2d)
    assert bn.momentum == pytest.approx(0.1) and bn.eps == pytest.approx(1e-5)  # ONNX momentum 0.9
    assert imported.tensor("bn.mean") is bn.running_mean and imported.tensor("bn.var") is bn.running_var


def test_value_mismatch_is_an_error(monkeypatch):
    model = G.cnn(trans_b=0)
    imported = import_model(model)
    changed = G.with_initializers(model, {"fc.w": np.zeros((64, 5), dtype=np.float32)})
    with pytest.raises(BindingError, match=r"fc\.w"):
        imported.verify(changed)

    import onnx2torch

    real_convert = onnx2torch.convert

    def corrupting_convert(*args, **kwargs):
        gm = real_convert(*args, **kwargs)
        with torch.no_grad():
            gm.get_submodule("conv2").weight[0, 0, 0, 0] += 1.0
        return gm

    monkeypatch.setattr(onnx2torch, "convert", corrupting_convert)
    with pytest.raises(BindingError, match=r"c2\.w"):
        importer_module.import_model(model)


def test_unsupported_node_is_named():
    model = G.conv_relu()
    conv = model.graph.node[0]
    del conv.attribute[:]
    conv.attribute.extend([helper.make_attribute("auto_pad", "SAME_UPPER")])
    with pytest.raises(UnsupportedModelError, match=r"node 'conv' \(Conv\)") as info:
        import_model(model)
    assert "\n" not in str(info.value)


def test_nodes_named_like_module_attributes_import():
    """onnx2torch names submodules after nodes: nodes named 'type' or 'forward' (attributes of nn.Module)
    made add_module fail; the import renames them in its private copy, the model is unchanged."""
    nodes = [
        onnx.helper.make_node("Relu", ["x"], ["r"], name="type"),
        onnx.helper.make_node("Neg", ["r"], ["y"], name="forward"),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    imported = import_model(model)
    assert [n.name for n in model.graph.node] == ["type", "forward"]
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(imported.module(torch.from_numpy(x)).numpy(), -np.maximum(x, 0))
