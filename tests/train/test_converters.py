"""onnxprune's own onnx2torch converters (onnxprune/train/converters), each checked three ways on tiny
graphs: ONNX Runtime on the original vs torch on the import, at several input shapes (the shapes the
converters read at run time), and ONNX Runtime on a re-export of the imported torch module."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import UnsupportedModelError
from onnxprune.train.converters import REGISTRY, installed
from onnxprune.train.converters.pooling import same_pads
from onnxprune.train.importer import import_model

pytest.importorskip("onnx2torch")

F32 = TensorProto.FLOAT


def _model(
    nodes: Sequence[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    x_shape: Sequence[int | str] | None,
    opset: int = 17,
    ir: int = 8,
    out_shape: Sequence[int | str] | None = None,
) -> onnx.ModelProto:
    x = (
        helper.make_tensor_value_info("x", F32, list(x_shape))
        if x_shape is not None
        else helper.make_tensor_value_info("x", F32, None)  # unknown rank
    )
    y = helper.make_tensor_value_info("y", F32, list(out_shape) if out_shape is not None else None)
    graph = helper.make_graph(
        list(nodes), "g", [x], [y], [numpy_helper.from_array(v, name=k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model  # ONNX Runtime validates it (the checker wants shapes on inputs these tests leave unknown)


def _ort(model: onnx.ModelProto | bytes, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def _reexport(module: torch.nn.Module, x: np.ndarray, dynamic: dict[int, str]) -> bytes:
    # onnx2torch's Shape module reads the export opset from torch.onnx.symbolic_helper.GLOBALS, which torch
    # 2.14's compatibility module does not re-export (its `import *` stops at __all__); whether the
    # attribute is there depends on what an earlier test imported. The re-export is this test's own
    # instrument, so give it the attribute rather than let the suite's order decide.
    from torch.onnx import symbolic_helper
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    if not hasattr(symbolic_helper, "GLOBALS"):
        symbolic_helper.GLOBALS = GLOBALS  # type: ignore[attr-defined]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.from_numpy(x),), buf, dynamo=False, opset_version=17, input_names=["x"],
            output_names=["y"], dynamic_axes={"x": dynamic},
        )  # fmt: skip
    return buf.getvalue()


def check_three_ways(
    model: onnx.ModelProto,
    shapes: Sequence[Sequence[int]],
    dynamic: dict[int, str] | None = None,
    reexport_shapes: int | None = None,
) -> None:
    """ORT(original) == torch(import) at every shape, and ORT(re-export of the import) == ORT(original)
    at the first ``reexport_shapes`` of them (all when the re-export has ``dynamic`` axes, else one)."""
    imported = import_model(model)
    module = imported.module.eval()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(tuple(s)).astype(np.float32) for s in shapes]
    for x in xs:
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        want = _ort(model, x)
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-5, f"torch vs ORT at {x.shape}"
    exported = _reexport(module, xs[0], dynamic if dynamic is not None else {0: "n"})  # {}: static
    for x in xs[: reexport_shapes or (len(xs) if dynamic else 1)]:
        assert _rel(_ort(exported, x), _ort(model, x)) < 1e-5, f"re-export vs original at {x.shape}"


# -- registry ----------------------------------------------------------------------------------------
def test_installed_only_within_the_block():
    from onnx import defs
    from onnx2torch.node_converters import registry as o2t

    key = o2t.OperationDescription(defs.ONNX_DOMAIN, "Dropout", 7)
    assert key not in o2t._CONVERTER_REGISTRY  # onnx2torch has none for opset 7
    clip = o2t.OperationDescription(defs.ONNX_DOMAIN, "Clip", 13)
    before = o2t._CONVERTER_REGISTRY[clip]
    with installed():
        assert key in o2t._CONVERTER_REGISTRY
        with installed():  # re-entrant: the inner block neither reinstalls nor restores
            assert o2t._CONVERTER_REGISTRY[clip] is not before
        assert o2t._CONVERTER_REGISTRY[clip] is not before
    assert key not in o2t._CONVERTER_REGISTRY and o2t._CONVERTER_REGISTRY[clip] is before
    assert ("LayerNormalization", 17) in REGISTRY and ("AveragePool", 11) in REGISTRY


# -- LayerNormalization --------------------------------------------------------------------------------
def _computed_reshape(out: str) -> list[onnx.NodeProto]:
    """x (N, T, C) -> Reshape(x, Shape(x) * 1): the same tensor, its inferred dims unknown (computed)."""
    return [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Mul", ["s", "one"], ["s1"], name="mul"),
        helper.make_node("Reshape", ["x", "s1"], [out], name="reshape"),
    ]


@pytest.mark.parametrize(("axis", "scale_shape"), [(-1, (6,)), (-2, (4, 6)), (1, (4, 6)), (-2, (6,))])
def test_layer_norm_of_unknown_shape(axis, scale_shape):
    rng = np.random.default_rng(1)
    inits = {
        "one": np.ones(3, np.int64),
        "scale": (1 + 0.3 * rng.standard_normal(scale_shape)).astype(np.float32),
        "bias": rng.standard_normal(scale_shape).astype(np.float32),
    }
    nodes = [
        *_computed_reshape("r"),
        helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["y"], name="ln", axis=axis),
    ]
    model = _model(nodes, inits, ["N", 4, 6])
    inferred = onnx.shape_inference.infer_shapes(model)
    r = next(v for v in inferred.graph.value_info if v.name == "r")
    assert all(not d.HasField("dim_value") for d in r.type.tensor_type.shape.dim)  # the onnx2torch failure
    check_three_ways(model, [(2, 4, 6), (3, 4, 6)], dynamic={0: "n"})


def test_layer_norm_without_bias_dynamic_width():
    rng = np.random.default_rng(2)
    inits = {"one": np.ones(3, np.int64), "scale": rng.standard_normal(1).astype(np.float32)}
    nodes = [
        *_computed_reshape("r"),
        helper.make_node("LayerNormalization", ["r", "scale"], ["y"], name="ln"),
    ]
    model = _model(nodes, inits, ["N", "T", "C"])
    # the broadcast scale makes the normalized width a traced constant of the re-export: it is checked at
    # the first width only, the import at both
    check_three_ways(model, [(2, 3, 5), (1, 7, 5), (1, 7, 8)], dynamic={0: "n", 1: "t"}, reexport_shapes=2)


# -- BatchNormalization ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 3, 4, 5), (1, 3, 2, 3, 4), (1, 3, 2, 2, 2, 2)])
def test_batch_norm_of_unknown_rank(shape):
    rng = np.random.default_rng(3)
    inits = {
        "s": (1 + 0.2 * rng.standard_normal(3)).astype(np.float32),
        "b": rng.standard_normal(3).astype(np.float32),
        "m": rng.standard_normal(3).astype(np.float32),
        "v": (0.5 + rng.random(3)).astype(np.float32),
    }
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3)
    model = _model([bn], inits, None)  # the input's rank is unknown
    imported = import_model(model)
    binding = imported.binding("s")  # bound and trained like any BN
    assert binding.trainable and imported.binding("m").trainable is False
    assert imported.module.get_submodule("bn").momentum == pytest.approx(0.1)
    check_three_ways(model, [shape])


# -- Clip ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "consts"),
    [
        (["x", "lo", ""], {"lo": -0.3}),  # Clip(x, min, ''): Swin-v2's clamp_min
        (["x", "", "hi"], {"hi": 0.4}),
        (["x", "", ""], {}),
        (["x"], {}),
        (["x", "lo", "hi"], {"lo": 0.0, "hi": 6.0}),
        (["x", "lo", "hi"], {"lo": 0.5, "hi": -0.5}),  # min > max: ONNX gives max
    ],
)
def test_clip_with_omitted_or_constant_bounds(inputs, consts):
    inits = {k: np.array(v, np.float32) for k, v in consts.items()}
    model = _model([helper.make_node("Clip", inputs, ["y"], name="clip")], inits, ["N", 4])
    check_three_ways(model, [(3, 4), (5, 4)])


def test_data_dependent_clip():
    """Clip(x, ReduceMean(x) - 0.1, '') and Clip(x, '', ReduceMax(x) / 2): bounds computed at run time."""
    inits = {"d": np.array(0.1, np.float32), "two": np.array(2.0, np.float32)}
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Sub", ["mean", "d"], ["lo"], name="sub"),
        helper.make_node("Clip", ["x", "lo", ""], ["c"], name="clip1"),
        helper.make_node("ReduceMax", ["x"], ["mx"], name="max", keepdims=0),
        helper.make_node("Div", ["mx", "two"], ["hi"], name="div"),
        helper.make_node("Clip", ["c", "", "hi"], ["y"], name="clip2"),
    ]
    model = _model(nodes, inits, ["N", 4])
    check_three_ways(model, [(3, 4), (6, 4)])


# -- Dropout -------------------------------------------------------------------------------------------
def _conv_dropout(opset: int, dropout: onnx.NodeProto, extra: dict[str, np.ndarray] | None = None):
    rng = np.random.default_rng(4)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), **(extra or {})}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        dropout,
        helper.make_node("Relu", ["d"], ["y"], name="relu"),
    ]
    return _model(nodes, inits, ["N", 3, 6, 6], opset=opset, ir=7 if opset < 13 else 8)


@pytest.mark.parametrize(
    "opset,node,extra",
    [
        (7, helper.make_node("Dropout", ["c"], ["d"], name="drop", ratio=0.3), None),
        (7, helper.make_node("Dropout", ["c"], ["d", "mask"], name="drop", ratio=0.3), None),  # mask listed
        (6, helper.make_node("Dropout", ["c"], ["d"], name="drop", is_test=1, ratio=0.2), None),
        (10, helper.make_node("Dropout", ["c"], ["d", "mask"], name="drop", ratio=0.5), None),
        (
            13,
            helper.make_node("Dropout", ["c", "ratio"], ["d", "mask"], name="drop"),
            {"ratio": np.array(0.25, np.float32)},
        ),
    ],
)
def test_dropout_of_every_opset(opset, node, extra):
    model = _conv_dropout(opset, node, extra)
    check_three_ways(model, [(2, 3, 6, 6), (1, 3, 6, 6)])
    imported = import_model(model)
    drop = imported.module.get_submodule("drop")
    drop.train()  # training mode: the model's own regularization, a mask of the ratio's rate
    with torch.no_grad():
        out = drop(torch.ones(4000))
    y = out[0] if isinstance(out, tuple) else out
    assert 0.5 < float((y == 0).float().mean()) / drop.ratio < 1.5


def test_dropout_mask_output_is_read():
    """A graph reading Dropout's mask (eval: all ones) gets it, not a row of the output."""
    nodes = [
        helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop", ratio=0.5),
        helper.make_node("Cast", ["mask"], ["m"], name="cast", to=F32),
        helper.make_node("Add", ["d", "m"], ["y"], name="add"),
    ]
    model = _model(nodes, {}, ["N", 4], opset=10, ir=7)
    check_three_ways(model, [(3, 4)])


# -- AveragePool ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("ceil_mode", [0, 1])
@pytest.mark.parametrize(
    ("kernel", "strides", "pads"),
    [
        ([3, 3], [2, 2], [0, 0, 1, 1]),  # TF 'same' on an even input
        ([3, 3], [1, 1], [1, 0, 2, 1]),
        ([2, 3], [2, 1], [1, 1, 0, 1]),
        ([3, 3], [2, 2], [1, 1, 1, 1]),  # symmetric: onnx2torch's own nn.AvgPool2d
    ],
)
def test_average_pool_pads(kernel, strides, pads, ceil_mode, count_include_pad):
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], name="pool", kernel_shape=kernel, strides=strides, pads=pads,
        ceil_mode=ceil_mode, count_include_pad=count_include_pad,
    )  # fmt: skip
    model = _model([node], {}, ["N", 2, "H", "W"])
    check_three_ways(model, [(2, 2, 8, 8), (1, 2, 7, 9), (1, 2, 6, 5)], dynamic={0: "n", 2: "h", 3: "w"})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_average_pool_auto_pad(auto_pad):
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad
    )
    model = _model([node], {}, ["N", 2, "H", "W"])
    # SAME pads depend on the input size: a traced re-export bakes the first size's (checked there only)
    check_three_ways(model, [(1, 2, 8, 8), (2, 2, 7, 5)], dynamic={0: "n", 2: "h", 3: "w"}, reexport_shapes=1)


@pytest.mark.parametrize(("kernel", "pads"), [([3], [0, 1]), ([2, 2, 3], [0, 0, 1, 1, 1, 0])])
def test_average_pool_1d_and_3d(kernel, pads):
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=kernel, pads=pads)
    shape = (2, 3, 7) if len(kernel) == 1 else (1, 2, 5, 6, 7)
    model = _model([node], {}, list(shape))
    check_three_ways(model, [shape])


def test_same_pads():
    assert same_pads(8, 3, 2, upper=True) == (0, 1)
    assert same_pads(8, 3, 2, upper=False) == (1, 0)
    assert same_pads(7, 3, 2, upper=True) == (1, 1)
    assert same_pads(5, 1, 1, upper=True) == (0, 0)


def test_unsupported_node_is_named():
    node = helper.make_node(
        "AveragePool", ["x"], ["y"], name="dilated_pool", kernel_shape=[2, 2], dilations=[2, 2]
    )
    model = _model([node], {}, ["N", 2, 8, 8], opset=19, ir=9)
    with pytest.raises(UnsupportedModelError, match=r"'dilated_pool' \(AveragePool\).*dilations"):
        import_model(model)


# -- newer opsets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("op", "axes", "keepdims"),
    [
        ("ReduceMean", [-1], 1),
        ("ReduceMean", [1, 2], 0),
        ("ReduceMax", [-2], 0),
        ("ReduceMin", [1], 1),
        ("ReduceProd", [1, -1], 0),
        ("ReduceL2", [2], 1),
        ("ReduceSumSquare", None, 0),
        ("ReduceLogSumExp", [-1], 1),
        ("ReduceSum", [1], 0),
    ],
)
def test_reduce_opset18_axes_input(op, axes, keepdims):
    inits = {"axes": np.array(axes, np.int64)} if axes is not None else {}
    ins = ["x", "axes"] if axes is not None else ["x"]
    model = _model([helper.make_node(op, ins, ["y"], name="r", keepdims=keepdims)], inits, ["N", 3, 4], 18, 8)
    check_three_ways(model, [(2, 3, 4), (5, 3, 4)])


def test_split18_num_outputs_and_compare16():
    """Split(num_outputs=3) of 8 channels: 3, 3, 2 (ceil chunks); GreaterOrEqual-16 picks by mask."""
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], name="split", axis=1, num_outputs=3),
        helper.make_node("Concat", ["c", "b"], ["cb"], name="cat", axis=1),  # 2 + 3 = 5 channels
        helper.make_node("Slice", ["a", "zero", "two", "one"], ["a2"], name="slice"),
        helper.make_node("Concat", ["a2", "a2"], ["aa"], name="cat2", axis=1),
        helper.make_node("Pad", ["aa", "pads"], ["aap"], name="pad"),  # opset 18 Pad, no axes
        helper.make_node("GreaterOrEqual", ["cb", "aap"], ["ge"], name="ge"),
        helper.make_node("Where", ["ge", "cb", "aap"], ["y"], name="where"),
    ]
    inits = {
        "zero": np.array([0], np.int64),
        "two": np.array([2], np.int64),
        "one": np.array([1], np.int64),
        "pads": np.array([0, 0, 0, 0, 1, 0], np.int64),  # one more channel at the end: 4 -> 5
    }
    model = _model(nodes, inits, ["N", 8, 4], 18, 8)
    check_three_ways(model, [(2, 8, 4), (3, 8, 4)])


def test_same_meaning_versions_use_the_older_converter():
    """Opset 22 Conv / HardSwish / MaxPool only add types: they import as the older versions do."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"], name="hs"),
        helper.make_node("MaxPool", ["h"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    model = _model(nodes, {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}, ["N", 3, 6, 6], 22, 10)
    check_three_ways(model, [(2, 3, 6, 6)])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3, 3])
def test_flatten_at_any_axis(axis):
    model = _model([helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=axis)], {}, ["N", 3, 4])
    check_three_ways(model, [(2, 3, 4), (5, 3, 4)])


def test_batch_norm_training_mode():
    """BatchNormalization(training_mode=1): the batch's own statistics (timm's weight standardization)."""
    rng = np.random.default_rng(6)
    inits = {
        "s": (1 + 0.2 * rng.standard_normal(3)).astype(np.float32),
        "b": rng.standard_normal(3).astype(np.float32),
        "m": rng.standard_normal(3).astype(np.float32),
        "v": (0.5 + rng.random(3)).astype(np.float32),
    }
    outs = ["n", "rm", "rv"]  # ORT requires the three outputs in training mode
    nodes = [
        helper.make_node(
            "BatchNormalization", ["x", "s", "b", "m", "v"], outs, name="bn", training_mode=1, momentum=0.8
        ),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    model = _model(nodes, inits, ["N", 3, 4, 5], opset=15)
    imported = import_model(model)
    x = rng.standard_normal((4, 3, 4, 5)).astype(np.float32)
    full = onnx.ModelProto()
    full.CopyFrom(model)
    full.graph.output.extend([onnx.ValueInfoProto(name=n) for n in outs])
    sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(outs, {"x": x})
    with torch.no_grad():
        got = imported.module.get_submodule("bn")(
            torch.from_numpy(x), *(torch.from_numpy(inits[k]) for k in "sbmv")
        )
    got = got if isinstance(got, tuple) else (got,)
    for g, w in zip(got, want, strict=True):
        assert _rel(g.numpy(), w) < 1e-5
    # torch exports batch-statistics BN with a static batch only
    check_three_ways(model, [(4, 3, 4, 5), (2, 3, 4, 5)], dynamic={})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset20(approximate):
    node = helper.make_node("Gelu", ["x"], ["y"], name="gelu", approximate=approximate)
    model = _model([node], {}, ["N", 5], opset=20, ir=9)
    check_three_ways(model, [(3, 5), (7, 5)])


@pytest.mark.parametrize("opset", [14, 19, 21])
def test_reshape_allowzero(opset):
    """allowzero=1 (torch's dynamo exporter): -1 inferred, no 0 in the target: a plain reshape."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape", allowzero=1)]
    model = _model(nodes, {"shape": np.array([-1, 12], np.int64)}, ["N", 3, 4], opset=opset, ir=10)
    check_three_ways(model, [(2, 3, 4), (5, 3, 4)])


# -- Conv with a computed weight -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 1, 2, 1], "strides": [2, 1]},  # asymmetric
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 1]},  # (ORT refuses dilations with SAME)
        {"auto_pad": "VALID", "dilations": [2, 2]},
        {"pads": [1, 1, 1, 1], "group": 2},
    ],
    ids=["pads", "asymmetric", "same_upper", "same_lower", "valid_dilated", "grouped"],
)
def test_conv_with_computed_weight(attrs):
    """Conv(x, W·s, b·t): weight and bias are outputs of Mul nodes, so onnx2torch's nn.Conv2d cannot be
    built; converters.conv.RuntimeConv computes F.conv2d with every attribute."""
    rng = np.random.default_rng(7)
    group = attrs.get("group", 1)
    inits = {
        "w": rng.standard_normal((4, 4 // group, 3, 3)).astype(np.float32),
        "s": np.float32(rng.uniform(0.5, 1.5)).reshape(()),
        "b": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["w", "s"], ["ws"], name="scale_w"),
        helper.make_node("Mul", ["b", "s"], ["bs"], name="scale_b"),
        helper.make_node("Conv", ["x", "ws", "bs"], ["y"], name="conv", kernel_shape=[3, 3], **attrs),
    ]
    model = _model(nodes, inits, ["N", 4, "H", "W"])
    dynamic = {0: "n", 2: "h", 3: "w"}
    # SAME pads depend on the input size: a traced re-export bakes the first size's (checked there only)
    check_three_ways(model, [(2, 4, 8, 8), (1, 4, 7, 9)], dynamic=dynamic, reexport_shapes=1)


def test_runtime_conv_same_pads():
    from onnxprune.train.converters.conv import same_pads as conv_same_pads

    assert conv_same_pads(8, 3, 2, 1, upper=True) == (0, 1)
    assert conv_same_pads(8, 3, 2, 1, upper=False) == (1, 0)
    assert conv_same_pads(8, 3, 1, 2, upper=True) == (2, 2)  # effective kernel 5
    assert conv_same_pads(7, 2, 1, 1, upper=True) == (0, 1)


def test_weight_standardized_conv_trains_its_raw_weight():
    """timm's ScaledStdConv2d (BatchNorm in training mode over the reshaped weight, then Conv): the import
    reproduces ORT, and the raw weight and gain it is computed from are bound and trainable."""
    from tests.builders import weight_standardized_cnn

    model = weight_standardized_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    imported = import_model(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        got = imported.module.eval()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert _rel(got, sess.run(None, {"input": x})[0]) < 1e-5
    raw = next(t.name for t in model.graph.initializer if t.name.startswith("w_raw"))
    gain = next(t.name for t in model.graph.initializer if t.name.startswith("gain"))
    assert {raw, gain} <= set(imported.trainable())
    imported.module(torch.from_numpy(x)).sum().backward()
    assert imported.tensor(raw).grad is not None and imported.tensor(raw).grad.abs().sum() > 0


def test_weight_standardized_model_previews_and_verifies():
    """compress (preview) on the weight-standardized model: imports, keeps the groups it cannot prune
    exactly (with their reason in the report), and the written model verifies."""
    from tests.builders import preview, weight_standardized_cnn

    result = preview(weight_standardized_cnn())
    assert result.report.verification.passed
    kept = [g for g in result.report.groups if not g["prunable"]]
    assert any("computed weight" in str(g.get("reason")) for g in kept)
