"""The real-world corpus: models people deploy, exported to ONNX at run time by their own libraries.

Shared by ``benchmarks/run_realworld.py`` (every entry: a preview and a short training run) and
``tests/train/test_realworld.py`` (one small member of each family). Every heavy package (ultralytics,
timm, transformers, torchvision, tensorflow/tf2onnx) is imported inside the export functions, so importing
this module costs nothing and a missing package only makes its entries unavailable (:attr:`Entry.requires`).

No entry downloads anything: models are built from their library's configs with random weights (seeded),
and :func:`offline` sets every library's offline switch before a build (Hugging Face, Ultralytics).

Families:

* ``ultralytics``: YOLOv8n / YOLO11n detect, segment and classify from their YAML configs, exported by
  ``model.export(format='onnx')`` (static batch 1, opset 17, no simplifier: it would pip-install one).
* ``timm-cnn``, ``timm-hybrid``, ``timm-vit``: timm's own definitions (``pretrained=False``, 10 classes),
  exported by torch's TorchScript exporter (opset 17, dynamic batch), at small input sizes (attention
  models are built for it: ``img_size``, window sizes). Re-parameterizable models (RepVGG, MobileOne,
  FastViT, RepViT) are exported in their deploy form, as they are deployed.
* ``transformers``: a tiny BERT encoder (``input_ids`` and ``attention_mask``, int64, dynamic batch and
  sequence) and a tiny ViT, from configs, exported by ``torch.onnx.export``.
* ``convention``: graphs in the conventions of other exporters and of the classic model zoos: a fixed
  batch of 1, opsets 7-9 with the initializers listed as graph inputs, weights as ``Constant`` nodes or
  behind ``Identity`` nodes, BatchNormalization folded or not, ``Dropout`` of opset 7, several inputs,
  torch's dynamo exporter, and Keras models converted by tf2onnx (NHWC, TF's padding).

Each entry says what ``compress`` needs to be told about its inputs (:attr:`Entry.input_shapes`, the
``--input-shape`` values; ``--data random`` always).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

__all__ = ["ENTRIES", "Entry", "available", "offline"]

OPSET = 17
NUM_CLASSES = 10

Exporter = Callable[[Path], Path]


@dataclass(frozen=True)
class Entry:
    """One corpus model: how to export it and what compress must be told about its inputs."""

    name: str
    family: str
    exporter: Exporter = field(repr=False)
    input_shapes: tuple[str, ...] = ()  # --input-shape values ("1,3,64,64" or "name:1,32")
    requires: tuple[str, ...] = ()  # importable modules the export needs
    note: str = ""  # what is particular about the graph

    def export(self, directory: str | Path) -> Path:
        """Write the model under ``directory`` and return its path (offline; seeded)."""
        offline()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return self.exporter(directory)

    def input_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
        """:attr:`input_shapes` as ``compress(input_shape=...)`` takes it: one bare shape, or by name."""
        if not self.input_shapes:
            return None
        named = [s.partition(":") for s in self.input_shapes if ":" in s]
        if not named:
            return tuple(int(d) for d in self.input_shapes[0].split(","))
        return {name: tuple(int(d) for d in dims.split(",")) for name, _, dims in named}

    def data_args(self) -> list[str]:
        """The ``compress`` options describing the inputs: ``--data random`` and ``--input-shape``s."""
        args = ["--data", "random"]
        for spec in self.input_shapes:
            args += ["--input-shape", spec]
        return args


def offline() -> None:
    """Switch every library here to offline mode (nothing may download weights, configs or fonts)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "YOLO_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("YOLO_VERBOSE", "False")


def available(entry: Entry) -> str | None:
    """None when every package the entry needs is importable, else the missing one."""
    import importlib.util

    for module in entry.requires:
        if importlib.util.find_spec(module) is None:
            return module
    return None


# -- torch export helpers ------------------------------------------------------------------------------
def _seed(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)


def _redraw_zero_weights(model: Any) -> None:
    """All-zero initialized matrices (ViT heads, class tokens, layer-scale-free residual gates) are
    redrawn from N(0, 0.02): else the outputs would not depend on the input."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)


def _torch_export(
    model: Any,
    args: tuple[Any, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset: int = OPSET,
    **kwargs: Any,
) -> Path:
    """torch's TorchScript exporter (``dynamo=False``); not under no_grad (MHA's fast path does not
    export)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            **kwargs,
        )
    return path


def _image(size: int, batch: int = 1) -> Any:
    import torch

    return torch.randn(batch, 3, size, size)


_DYNAMIC_BATCH = {"x": {0: "n"}, "y": {0: "n"}}


# -- ultralytics -----------------------------------------------------------------------------------------
def _yolo(config: str, imgsz: int) -> Exporter:
    def export(directory: Path) -> Path:
        _seed()
        cwd = os.getcwd()
        os.chdir(directory)  # ultralytics writes next to the "weights" file: here, the cwd
        try:
            from ultralytics import YOLO, settings

            settings.update({"sync": False})
            model = YOLO(config)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = model.export(format="onnx", imgsz=imgsz, simplify=False, dynamic=False, opset=OPSET)
        finally:
            os.chdir(cwd)
        path = Path(out)
        return path if path.is_absolute() else directory / path

    return export


# -- timm --------------------------------------------------------------------------------------------
def _timm(name: str, size: int, reparameterize: bool = False, **kwargs: Any) -> Exporter:
    def export(directory: Path) -> Path:
        import timm

        _seed()
        model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs).eval()
        if reparameterize:
            from timm.utils.model import reparameterize_model

            model = reparameterize_model(model)
        _redraw_zero_weights(model)
        path = directory / f"{name}.onnx"
        return _torch_export(model, (_image(size),), path, ["x"], ["y"], _DYNAMIC_BATCH)

    return export


# -- transformers ------------------------------------------------------------------------------------
_TINY_TEXT = dict(
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=64,
    num_labels=2,
)


class _TextWrapper:
    """Calls a Hugging Face sequence classifier with positional tensors and returns its logits."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        return Wrapped().eval()


def _hf_text(kind: str, seq: int = 32) -> Exporter:
    def export(directory: Path) -> Path:
        import importlib

        import torch

        transformers: Any = importlib.import_module("transformers")  # untyped use: configs take **kwargs
        _seed()
        if kind == "bert":
            config: Any = transformers.BertConfig(**_TINY_TEXT, attn_implementation="eager")
            model = transformers.BertForSequenceClassification(config)
        elif kind == "distilbert":
            config = transformers.DistilBertConfig(
                vocab_size=1000, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64,
                num_labels=2, attn_implementation="eager",
            )  # fmt: skip
            model = transformers.DistilBertForSequenceClassification(config)
        else:
            raise ValueError(kind)
        wrapped = _TextWrapper(model.eval())
        ids = torch.randint(0, 1000, (2, seq), dtype=torch.int64)
        mask = torch.ones(2, seq, dtype=torch.int64)
        dyn = {
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "logits": {0: "batch"},
        }
        path = directory / f"hf_{kind}_tiny.onnx"
        return _torch_export(wrapped, (ids, mask), path, ["input_ids", "attention_mask"], ["logits"], dyn)

    return export


_HF_VIT_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
# ViT-Ti's proportions (width 192, 3 heads, MLP 4x), 4 of its 12 layers
_HF_VIT_TI = dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768)


def _hf_vit(size: int = 32, patch: int = 8, name: str = "hf_vit_tiny", **shape: int) -> Exporter:
    def export(directory: Path) -> Path:
        import importlib

        import torch

        transformers: Any = importlib.import_module("transformers")
        _seed()
        config = transformers.ViTConfig(
            image_size=size, patch_size=patch, **(shape or _HF_VIT_TINY), num_labels=NUM_CLASSES,
            attn_implementation="eager",
        )  # fmt: skip
        model = transformers.ViTForImageClassification(config).eval()

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values: Any) -> Any:
                return self.model(pixel_values=pixel_values).logits

        path = directory / f"{name}.onnx"
        dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
        return _torch_export(Logits().eval(), (_image(size, 2),), path, ["pixel_values"], ["logits"], dyn)

    return export


# -- other conventions: post-processing of exported graphs -------------------------------------------
def _weights(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The float initializers of rank >= 1 (weights, biases, BN parameters)."""
    return [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1]


def as_constant_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every weight becomes a ``Constant`` node (what several exporters and older tools emit)."""
    weights = _weights(model)
    names = {t.name for t in weights}
    consts = [
        helper.make_node("Constant", [], [t.name], name=f"const_{i}", value=t) for i, t in enumerate(weights)
    ]
    kept = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    inputs = [i for i in model.graph.input if i.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*consts, *nodes])
    return model


def behind_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every weight is read through an ``Identity`` node (torch's exporter does this for shared weights,
    some converters for all)."""
    ids = []
    for i, t in enumerate(_weights(model)):
        raw = f"{t.name}__raw"
        ids.append(helper.make_node("Identity", [raw], [t.name], name=f"identity_{i}"))
        t.name = raw
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*ids, *nodes])
    return model


def with_zoo_dropout(model: onnx.ModelProto, ratio: float = 0.5) -> onnx.ModelProto:
    """A ``Dropout`` (opset 7: ``ratio`` attribute, no mask output used) before the last layer's data
    input, as the classic model-zoo graphs have."""
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    last = layers[-1]
    src = last.input[0]
    out = f"{src}__dropout"
    node = helper.make_node("Dropout", [src], [out], name="zoo_dropout", ratio=ratio)
    last.input[0] = out
    nodes = list(model.graph.node)
    idx = nodes.index(last)
    del model.graph.node[:]
    model.graph.node.extend([*nodes[:idx], node, *nodes[idx:]])
    return model


def convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """onnx's version converter, up or down (the graphs of old exporters)."""
    from onnx import version_converter

    return version_converter.convert_version(model, opset)


def _post(exporter: Exporter, *steps: Callable[[onnx.ModelProto], onnx.ModelProto], suffix: str) -> Exporter:
    """Export, then rewrite the graph with ``steps`` (saved under a new name)."""

    def export(directory: Path) -> Path:
        path = exporter(directory)
        model = onnx.load(str(path))
        for step in steps:
            model = step(model)
        onnx.checker.check_model(model, full_check=True)
        out = path.with_name(f"{path.stem}_{suffix}.onnx")
        onnx.save(model, str(out))
        return out

    return export


def _timm_static(
    name: str, size: int, opset: int = OPSET, initializers_as_inputs: bool = False, **kwargs: Any
) -> Exporter:
    """A timm model with a fixed batch of 1 (no dynamic axes), optionally at an old opset with the
    initializers listed as graph inputs (torch's ``keep_initializers_as_inputs``)."""

    def export(directory: Path) -> Path:
        import timm

        _seed()
        model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs).eval()
        _redraw_zero_weights(model)
        path = directory / f"{name}_b1_op{opset}.onnx"
        return _torch_export(
            model, (_image(size),), path, ["x"], ["y"], None, opset,
            keep_initializers_as_inputs=initializers_as_inputs,
        )  # fmt: skip

    return export


def _torchvision_static(name: str, size: int, opset: int, initializers_as_inputs: bool) -> Exporter:
    def export(directory: Path) -> Path:
        import torchvision

        _seed()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES).eval()
        path = directory / f"tv_{name}_b1_op{opset}.onnx"
        return _torch_export(
            model, (_image(size),), path, ["data"], ["prob"], None, opset,
            keep_initializers_as_inputs=initializers_as_inputs,
        )  # fmt: skip

    return export


def _unfolded_bn(name: str, size: int) -> Exporter:
    """BatchNormalization kept as its own node after every Conv (torch folds it into the Conv in eval
    mode; exporting in training mode keeps it, and eval-mode BN attributes are restored here)."""

    def export(directory: Path) -> Path:
        import timm
        import torch

        _seed()
        model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES).eval()
        path = directory / f"{name}_bn.onnx"
        _torch_export(
            model, (_image(size),), path, ["x"], ["y"], _DYNAMIC_BATCH,
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
        )  # fmt: skip
        return path

    return export


def _two_inputs(size: int = 64) -> Exporter:
    """A two-stream CNN (RGB image and a 1-channel depth map, fused by Concat) with a dynamic batch."""

    def export(directory: Path) -> Path:
        import torch
        from torch import nn

        _seed()

        def stream(c_in: int) -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(c_in, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            )  # fmt: skip

        class TwoStream(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.rgb, self.depth = stream(3), stream(1)
                self.fuse = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
                self.head = nn.Linear(64, NUM_CLASSES)

            def forward(self, rgb: Any, depth: Any) -> Any:
                x = torch.cat([self.rgb(rgb), self.depth(depth)], dim=1)
                return self.head(torch.flatten(self.fuse(x), 1))

        model = TwoStream().eval()
        args = (torch.randn(1, 3, size, size), torch.randn(1, 1, size, size))
        dyn = {"rgb": {0: "n"}, "depth": {0: "n"}, "y": {0: "n"}}
        return _torch_export(model, args, directory / "two_stream.onnx", ["rgb", "depth"], ["y"], dyn)

    return export


def _dynamo(name: str, size: int) -> Exporter:
    """torch's dynamo exporter (``torch.onnx.export(dynamo=True)``: opset 18, BN kept, onnxscript)."""

    def export(directory: Path) -> Path:
        import timm
        import torch

        _seed()
        model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES).eval()
        path = directory / f"{name}_dynamo.onnx"
        batch = torch.export.Dim("n", min=1, max=1024)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (_image(size, 2),), dynamo=True, input_names=["x"], output_names=["y"],
                dynamic_shapes=({0: batch},), verbose=False,
            )  # fmt: skip
        assert program is not None
        program.save(str(path))
        return path

    return export


# -- Keras models converted by tf2onnx ----------------------------------------------------------------
def _keras(kind: str, size: int) -> Exporter:
    """A Keras model (random weights, NHWC) converted by tf2onnx (opset 13, dynamic batch)."""

    def export(directory: Path) -> Path:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import tensorflow as tf
        import tf2onnx

        tf.random.set_seed(0)
        keras = tf.keras
        shape = (size, size, 3)
        # logits, not softmax: a random model's softmax is nearly uniform whatever the input, and every
        # comparison of outputs (verification, fidelity) would pass trivially
        head = dict(weights=None, classes=10, classifier_activation=None)
        if kind == "mobilenetv2":
            model = keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, **head)
        elif kind == "efficientnetb0":
            model = keras.applications.EfficientNetB0(input_shape=shape, **head)
        elif kind == "resnet50":
            model = keras.applications.ResNet50(input_shape=shape, **head)
        elif kind == "small_cnn":  # TF 'same' padding: asymmetric pads on even inputs; dropout; BN
            layers = keras.layers
            inp = keras.Input(shape)
            x = layers.Conv2D(16, 3, strides=2, padding="same")(inp)
            x = layers.ReLU()(layers.BatchNormalization()(x))
            x = layers.AveragePooling2D(3, strides=2, padding="same")(x)
            x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
            x = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x))
            x = layers.Activation("relu6")(x)
            x = layers.Conv2D(32, 1, activation="swish")(x)
            x = layers.Dropout(0.3)(layers.MaxPooling2D(2)(x))
            x = layers.Dense(32, activation="relu")(layers.Flatten()(x))
            model = keras.Model(inp, layers.Dense(10)(x))
        else:
            raise ValueError(kind)
        spec = (tf.TensorSpec((None, *shape), tf.float32, name="input"),)
        path = directory / f"keras_{kind}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # from_function: tf2onnx's from_keras trips over Keras 3's tensor names
            fn = tf.function(lambda t: model(t, training=False))
            tf2onnx.convert.from_function(fn, input_signature=spec, opset=13, output_path=str(path))
            # constants the function captures (Keras 3's Normalization mean and variance: plain tensors,
            # not variables) become graph inputs of tf2onnx's model; they are constants of the model
            concrete = fn.get_concrete_function(*spec)
            captured = {
                inner.name: outer.numpy()
                for inner, outer in zip(
                    concrete.graph.internal_captures, concrete.captured_inputs, strict=True
                )
                if inner.dtype != tf.resource
            }
        model_proto = onnx.load(str(path))
        if inputs_to_initializers(model_proto, captured):
            onnx.save(model_proto, str(path))
        return path

    return export


def inputs_to_initializers(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> bool:
    """In place: the graph inputs named in ``values`` become initializers holding those values (in the
    input's dtype); whether any did."""
    from onnx import numpy_helper

    g = model.graph
    moved = [vi for vi in g.input if vi.name in values]
    for vi in moved:
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        g.initializer.append(numpy_helper.from_array(np.asarray(values[vi.name], dtype=dtype), vi.name))
    kept = [vi for vi in g.input if vi.name not in values]
    del g.input[:]
    g.input.extend(kept)
    return bool(moved)


# -- the corpus --------------------------------------------------------------------------------------
def _shape(size: int, channels: int = 3) -> tuple[str, ...]:
    return (f"1,{channels},{size},{size}",)


def _entries() -> dict[str, Entry]:
    out: dict[str, Entry] = {}

    def add(entry: Entry) -> None:
        assert entry.name not in out, entry.name
        out[entry.name] = entry

    ul = ("ultralytics",)
    for version in ("yolov8n", "yolo11n"):
        add(
            Entry(version, "ultralytics", _yolo(f"{version}.yaml", 160), (), ul, "detect, static 1x3x160x160")
        )
        add(Entry(f"{version}-seg", "ultralytics", _yolo(f"{version}-seg.yaml", 160), (), ul, "segment"))
        add(Entry(f"{version}-cls", "ultralytics", _yolo(f"{version}-cls.yaml", 64), (), ul, "classify"))

    tm = ("timm",)
    cnn: list[tuple[str, int, dict[str, Any]]] = [
        ("resnet18", 64, {}),
        ("resnet26d", 64, {}),
        ("resnext26ts", 64, {}),
        ("seresnext26d_32x4d", 64, {}),
        ("resnetv2_50", 64, {}),
        ("efficientnet_b0", 64, {}),
        ("efficientnet_lite0", 64, {}),
        ("mobilenetv2_050", 64, {}),
        ("mobilenetv3_small_100", 64, {}),
        ("mobilenetv3_large_100", 64, {}),
        ("mobilenetv4_conv_small", 64, {}),
        ("mnasnet_100", 64, {}),
        ("ghostnet_100", 64, {}),
        ("regnetx_002", 64, {}),
        ("regnety_002", 64, {}),
        ("densenet121", 64, {}),
        ("dla34", 64, {}),
        ("hrnet_w18_small", 64, {}),
        ("cspresnet50", 64, {}),
        ("dpn68", 64, {}),
        ("rexnet_100", 64, {}),
        ("lcnet_050", 64, {}),
        ("mixnet_s", 64, {}),
        ("res2net50_26w_4s", 64, {}),
        ("ese_vovnet19b_dw", 64, {}),
        ("nf_resnet26", 64, {}),
        ("gernet_s", 64, {}),
        ("repvgg_a0", 64, {"reparameterize": True}),
        ("mobileone_s0", 64, {"reparameterize": True}),
        ("convnext_atto", 64, {}),
        ("convnextv2_atto", 64, {}),
        ("inception_next_atto", 64, {}),
        ("hgnetv2_b0", 64, {}),
    ]
    for name, size, kw in cnn:
        add(Entry(name, "timm-cnn", _timm(name, size, **kw), _shape(size), tm))

    hybrid: list[tuple[str, int, dict[str, Any]]] = [
        ("mobilevit_xxs", 64, {}),
        ("mobilevitv2_050", 64, {}),
        ("efficientformer_l1", 224, {}),  # its attention biases are sized for 224 (7x7 in the last stage)
        ("efficientformerv2_s0", 64, {"img_size": 64}),
        ("levit_128s", 64, {"img_size": 64}),
        ("coatnet_nano_rw_224", 64, {"img_size": 64}),
        ("maxvit_pico_rw_256", 128, {"img_size": 128}),
        ("fastvit_t8", 64, {"reparameterize": True}),
        ("repvit_m0_9", 64, {"reparameterize": True}),
        ("edgenext_xx_small", 64, {}),
        ("efficientvit_b0", 64, {}),
        ("poolformer_s12", 64, {}),
        ("swin_tiny_patch4_window7_224", 128, {"img_size": 128, "window_size": 4}),
        ("swinv2_tiny_window8_256", 128, {"img_size": 128, "window_size": 4}),
    ]
    for name, size, kw in hybrid:
        add(Entry(name, "timm-hybrid", _timm(name, size, **kw), _shape(size), tm))

    vit: list[tuple[str, int, dict[str, Any]]] = [
        ("vit_tiny_patch16_224", 64, {"img_size": 64}),
        ("deit_tiny_patch16_224", 64, {"img_size": 64}),
        ("deit_tiny_distilled_patch16_224", 64, {"img_size": 64}),
        ("vit_small_patch32_224", 64, {"img_size": 64}),
        ("pit_ti_224", 64, {"img_size": 64}),
        ("xcit_nano_12_p16_224", 64, {"img_size": 64}),
        ("cait_xxs24_224", 64, {"img_size": 64}),
    ]
    for name, size, kw in vit:
        add(Entry(name, "timm-vit", _timm(name, size, **kw), _shape(size), tm))

    hf = ("transformers",)
    text = ("input_ids:1,32", "attention_mask:1,32")
    add(Entry("hf_bert_tiny", "transformers", _hf_text("bert"), text, hf, "int64 ids + mask, dynamic"))
    add(Entry("hf_distilbert_tiny", "transformers", _hf_text("distilbert"), text, hf, "int64 ids + mask"))
    add(Entry("hf_vit_tiny", "transformers", _hf_vit(), _shape(32), hf, "32x32, patch 8"))
    add(Entry("hf_vit_ti_64", "transformers", _hf_vit(64, 16, "hf_vit_ti_64", **_HF_VIT_TI), _shape(64), hf,
              "ViT-Ti proportions (192 wide, 3 heads, MLP 768), 4 layers, 64x64, patch 16"))  # fmt: skip

    tv = ("torchvision",)
    add(Entry("b1_resnet18", "convention", _timm_static("resnet18", 64), (), tm, "fixed batch 1"))
    add(Entry(
        "op9_mobilenetv2_initializers_as_inputs", "convention",
        _timm_static("mobilenetv2_050", 64, opset=9, initializers_as_inputs=True), (), tm,
        "opset 9, fixed batch 1, initializers listed as graph inputs, Clip with attributes",
    ))  # fmt: skip
    add(Entry(
        "op7_zoo_squeezenet", "convention",
        _post(_torchvision_static("squeezenet1_1", 64, 9, True), lambda m: convert_opset(m, 7),
              with_zoo_dropout, suffix="op7"),
        (), tv, "model-zoo style: opset 7, initializers as inputs, batch 1, Dropout(ratio)",
    ))  # fmt: skip
    add(Entry(
        "op8_zoo_resnet18", "convention",
        _post(_torchvision_static("resnet18", 64, 9, True), lambda m: convert_opset(m, 8), suffix="op8"),
        (), tv, "opset 8, initializers as inputs, batch 1",
    ))  # fmt: skip
    add(Entry(
        "op9_googlenet_initializers_as_inputs", "convention",
        _torchvision_static("googlenet", 64, 9, True), (), tv, "opset 9, batch 1, initializers as inputs",
    ))  # fmt: skip
    add(Entry(
        "constant_weights_mobilenetv3", "convention",
        _post(_timm("mobilenetv3_small_100", 64), as_constant_nodes, suffix="const"), _shape(64), tm,
        "every weight a Constant node",
    ))  # fmt: skip
    add(Entry(
        "identity_weights_efficientnet", "convention",
        _post(_timm("efficientnet_b0", 64), behind_identity, suffix="identity"), _shape(64), tm,
        "every weight read through an Identity",
    ))  # fmt: skip
    add(Entry("bn_unfolded_resnet18", "convention", _unfolded_bn("resnet18", 64), _shape(64), tm,
              "BatchNormalization nodes kept (not folded into the Convs)"))  # fmt: skip
    add(Entry("two_inputs_rgbd", "convention", _two_inputs(64), ("rgb:1,3,64,64", "depth:1,1,64,64"), (),
              "two image inputs fused by Concat"))  # fmt: skip
    add(Entry("dynamo_resnet18", "convention", _dynamo("resnet18", 64), _shape(64), (*tm, "onnxscript"),
              "torch dynamo exporter, opset 18"))  # fmt: skip
    add(Entry("dynamo_convnext_atto", "convention", _dynamo("convnext_atto", 64), _shape(64),
              (*tm, "onnxscript"), "torch dynamo exporter, LayerNormalization op"))  # fmt: skip
    tf = ("tensorflow", "tf2onnx")
    nhwc = "1,{0},{0},3"
    add(Entry("keras_mobilenetv2", "convention", _keras("mobilenetv2", 96), (nhwc.format(96),), tf,
              "Keras MobileNetV2 (alpha 0.35) via tf2onnx, NHWC"))  # fmt: skip
    add(Entry("keras_efficientnetb0", "convention", _keras("efficientnetb0", 64), (nhwc.format(64),), tf,
              "Keras EfficientNetB0 via tf2onnx (Rescaling/Normalization in the graph)"))  # fmt: skip
    add(Entry("keras_resnet50", "convention", _keras("resnet50", 64), (nhwc.format(64),), tf,
              "Keras ResNet50 via tf2onnx"))  # fmt: skip
    add(Entry("keras_small_cnn", "convention", _keras("small_cnn", 64), (nhwc.format(64),), tf,
              "Keras CNN via tf2onnx: TF 'same' pads, AveragePool, Dropout, relu6, swish"))  # fmt: skip
    return out


ENTRIES: dict[str, Entry] = _entries()

# One small member of each family for CI (tests/test_realworld.py): smaller inputs than the benchmark's
CI_ENTRIES: dict[str, Entry] = {
    "yolov8n_64": Entry("yolov8n_64", "ultralytics", _yolo("yolov8n.yaml", 64), (), ("ultralytics",)),
    "mobilevit_xxs": ENTRIES["mobilevit_xxs"],
    "resnet10t_32": Entry("resnet10t_32", "timm-cnn", _timm("resnet10t", 32), _shape(32), ("timm",)),
    "hf_bert_tiny": ENTRIES["hf_bert_tiny"],
    "deit_tiny_32": Entry(
        "deit_tiny_32", "timm-vit", _timm("deit_tiny_patch16_224", 32, img_size=32), _shape(32), ("timm",)
    ),
    "op9_mobilenetv2_32": Entry(
        "op9_mobilenetv2_32",
        "convention",
        _timm_static("mobilenetv2_050", 32, opset=9, initializers_as_inputs=True),
        (),
        ("timm",),
    ),
}

# Entries the library does not prune yet: name -> what a user can do about it (one line each).
XFAIL: dict[str, str] = {}
