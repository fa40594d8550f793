"""ONNX -> torch import with every weight bound to its ONNX initializer name.

``onnx2torch.convert`` builds a ``torch.fx.GraphModule``; this module finds, for every initializer that
feeds a Conv/ConvTranspose (W, B), a Gemm (B, C), a MatMul (constant operand), a BatchNormalization
(scale, bias, mean, var) or an Add/Sub (its one constant operand: the ONNX side makes a per-channel offset
a SOURCE member), the torch tensor that holds it, and how the two layouts relate:

    torch = scale · (onnxᵀ if transpose else onnx)          (Transform.to_torch)
    onnx  = (torch / scale)ᵀ if transpose else torch / scale  (Transform.to_onnx)

Only ``nn.Linear`` made from a Gemm has a non-identity transform: weight = alpha · (B if transB else Bᵀ),
bias = beta · C. Every binding is checked by value at import (bit-exact, the same float operation as
onnx2torch), so a misbinding is an error, never a silently different model.

onnx2torch converts with onnxprune's own converters in front of its own (:mod:`.converters`: LayerNorm
and BatchNorm whatever the inferred shapes say, Clip with omitted or computed bounds, Dropout of every
opset, AveragePool with asymmetric pads). onnx2torch quirks handled here:

* modules are named after ONNX nodes with '.' -> '/' and a ``_N`` suffix on collisions, so nodes are
  matched through each module's ``onnx_mapping.outputs`` (output names are unique in ONNX), not by name;
* a Conv with asymmetric pads becomes ``nn.Sequential(pad, conv)``;
* a Conv with a computed weight (weight standardization) is :class:`.converters.conv.RuntimeConv`: its
  weight is a call input, and the initializer it is computed from (the input of a training-mode
  BatchNormalization) is bound as a value and trains;
* initializers consumed as graph values (MatMul, the OnnxGemm / OnnxBatchNorm fallbacks) become buffers
  ``initializers.onnx_initializer_N`` read by ``get_attr`` nodes, one buffer *per use*: an initializer
  used twice is two buffers. They are mapped back through each call's args and ``onnx_mapping.inputs``,
  weight-like ones become ``nn.Parameter`` (so they train), and duplicates are tied to one tensor.

Trainable: Conv/Gemm/MatMul weights and biases, BN scale/shift, and an Add/Sub constant that is a layer bias
(its other operand comes from a Conv/Gemm/MatMul). BN mean/var and other Add/Sub constants are bound
but frozen. Everything not bound as trainable is frozen (``requires_grad=False``) so that torch and ONNX
never diverge.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import fx, nn

from ..errors import UnsupportedModelError
from ..graph.layerops import LAYER_OPS, node_attrs

__all__ = ["Binding", "BindingError", "ImportedModel", "Transform", "import_model"]


class BindingError(UnsupportedModelError):
    """A torch tensor does not hold the value of the ONNX initializer it is bound to."""


@dataclass(frozen=True)
class Transform:
    """Layout map between an ONNX initializer ``a`` and its torch tensor ``t``: ``t = scale · (aᵀ | a)``."""

    transpose: bool = False
    scale: float = 1.0

    def to_torch(self, a: torch.Tensor) -> torch.Tensor:
        """ONNX layout -> torch layout, the same float operations as onnx2torch (bit-exact)."""
        t = a.T if self.transpose else a
        return t * self.scale if self.scale != 1.0 else t

    def to_onnx(self, t: torch.Tensor) -> torch.Tensor:
        """Torch layout -> ONNX layout: ``(t / scale)ᵀ`` (exact when scale is 1, else to an ulp)."""
        a = t / self.scale if self.scale != 1.0 else t
        return a.T if self.transpose else a

    def axis(self, onnx_axis: int) -> int:
        """Torch axis of an ONNX axis (already non-negative): a transpose swaps axes 0 and 1."""
        return 1 - onnx_axis if self.transpose else onnx_axis


@dataclass(frozen=True)
class Location:
    """Where a tensor lives: attribute ``attr`` of the submodule at path ``owner`` ('' is the root)."""

    owner: str
    attr: str


@dataclass(frozen=True)
class Binding:
    """One ONNX initializer and the torch tensor(s) holding it (``aliases`` are tied to ``location``)."""

    name: str
    node: str
    op_type: str
    location: Location
    transform: Transform
    onnx_shape: tuple[int, ...]
    onnx_dtype: np.dtype
    trainable: bool
    aliases: tuple[Location, ...] = ()


# op type -> {input index: trainable} of the initializers consumed as graph values (get_attr buffers);
# None: trainable when it is a layer bias (the other operand is the output of a Conv/Gemm/MatMul)
_VALUE_INPUTS: dict[str, dict[int, bool | None]] = {
    "Conv": {1: True, 2: True},  # converters.conv.RuntimeConv: a constant beside a computed weight/bias
    "Gemm": {1: True, 2: True},
    "MatMul": {0: True, 1: True},
    # input 0 constant: the raw weight of a weight-standardized conv (BatchNorm in training mode over it)
    "BatchNormalization": {0: True, 1: True, 2: True, 3: False, 4: False},
    "Add": {0: None, 1: None},
    "Sub": {0: None, 1: None},
}


class ImportedModel:
    """A torch module imported from ONNX, with every weight keyed by its ONNX initializer name."""

    def __init__(
        self, module: fx.GraphModule, bindings: dict[str, Binding], input_names: Sequence[str] = ("input",)
    ) -> None:
        self.module = module
        self._bindings = bindings
        self.input_names = list(input_names)  # the module's positional inputs: the graph's data inputs

    # -- names and tensors ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Bound initializer names, in graph order."""
        return list(self._bindings)

    @property
    def bindings(self) -> dict[str, Binding]:
        return dict(self._bindings)

    def binding(self, name: str) -> Binding:
        try:
            return self._bindings[name]
        except KeyError:
            raise KeyError(f"initializer {name!r} is not bound to a torch tensor") from None

    def _get(self, loc: Location) -> torch.Tensor:
        return _resolve(self.module, loc)

    def tensor(self, name: str) -> torch.Tensor:
        """The torch Parameter or buffer holding initializer ``name`` (in torch layout)."""
        return self._get(self.binding(name).location)

    def name_of(self, tensor: torch.Tensor) -> str:
        """The initializer name of a bound tensor (by identity)."""
        for name, b in self._bindings.items():
            if self._get(b.location) is tensor:
                return name
        raise KeyError("tensor is not bound to an ONNX initializer")

    def torch_axis(self, name: str, onnx_axis: int) -> int:
        """The torch axis of ``onnx_axis`` (negative counts from the end) of initializer ``name``."""
        b = self.binding(name)
        ndim = len(b.onnx_shape)
        axis = onnx_axis + ndim if onnx_axis < 0 else onnx_axis
        if not 0 <= axis < max(ndim, 1):
            raise ValueError(f"axis {onnx_axis} out of range for {name!r} of shape {b.onnx_shape}")
        return b.transform.axis(axis)

    def trainable(self) -> dict[str, nn.Parameter]:
        """Conv/Gemm/MatMul weights and biases (incl. an Add/Sub layer bias), BN scale/shift, by name."""
        out: dict[str, nn.Parameter] = {}
        for name, b in self._bindings.items():
            if b.trainable:
                t = self._get(b.location)
                assert isinstance(t, nn.Parameter)
                out[name] = t
        return out

    # -- write-back ----------------------------------------------------------------------------------
    def onnx_array(self, name: str) -> np.ndarray:
        """Initializer ``name`` in ONNX layout and dtype: ``Transform.to_onnx`` of its torch tensor."""
        b = self.binding(name)
        with torch.no_grad():
            a = b.transform.to_onnx(self._get(b.location).detach().cpu()).contiguous().numpy()
        a = np.array(a, dtype=b.onnx_dtype, copy=True)
        if a.shape != b.onnx_shape:
            raise BindingError(f"initializer {name!r}: torch gives shape {a.shape}, ONNX has {b.onnx_shape}")
        return a

    def onnx_arrays(self) -> dict[str, np.ndarray]:
        """Every bound tensor in ONNX layout and dtype, by initializer name (for write-back)."""
        return {name: self.onnx_array(name) for name in self._bindings}

    # -- checks, device, forward ---------------------------------------------------------------------
    def verify(self, model: onnx.ModelProto) -> None:
        """Raise :class:`BindingError` unless every bound tensor equals ``to_torch(initializer)`` exactly."""
        inits = {i.name: i for i in model.graph.initializer}
        for name, b in self._bindings.items():
            if name not in inits:
                raise BindingError(f"initializer {name!r} (node {b.node!r}) is not in the model")
            want = b.transform.to_torch(torch.from_numpy(numpy_helper.to_array(inits[name]).copy()))
            for loc in (b.location, *b.aliases):
                got = self._get(loc).detach().cpu()
                same = got.dtype == want.dtype and got.shape == want.shape
                if not (same and torch.allclose(got, want, rtol=0.0, atol=0.0, equal_nan=True)):
                    raise BindingError(
                        f"initializer {name!r} of {b.op_type} node {b.node!r}: torch tensor "
                        f"{loc.owner or '<root>'}.{loc.attr} {tuple(got.shape)} does not equal its ONNX "
                        f"value {tuple(want.shape)} under {b.transform}"
                    )

    def to(self, device: torch.device | str) -> ImportedModel:
        """Move the module; re-tie aliased buffers (``Module.to`` replaces buffers per owner)."""
        self.module.to(device)
        _tie(self.module, self._bindings.values())
        return self

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.module(*inputs)

    __call__ = forward


# -- import ------------------------------------------------------------------------------------------
def import_model(model: onnx.ModelProto) -> ImportedModel:
    """Convert ``model`` with onnx2torch and bind its weights (see the module docstring).

    Raises :class:`UnsupportedModelError` naming the node when onnx2torch cannot convert it, and
    :class:`BindingError` when a bound tensor does not hold its initializer's value.
    """
    import onnx2torch  # slow import (torchvision): only when importing a model

    from .converters import installed

    work = onnx.ModelProto()
    work.CopyFrom(model)  # onnx2torch edits graph.input in place
    _rename_clashing_nodes(work.graph)
    try:
        with installed():  # onnxprune's converters in front of onnx2torch's
            gm = onnx2torch.convert(work, attach_onnx_mapping=True)
    except Exception as e:  # any converter failure: name the node
        with installed():
            message = _conversion_failure(model, e)
        raise UnsupportedModelError(message) from e
    bindings = _bind(gm, model)
    _tie(gm, bindings.values())
    trainable_ids = {id(_resolve(gm, b.location)) for b in bindings.values() if b.trainable}
    for p in gm.parameters():
        p.requires_grad_(id(p) in trainable_ids)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    imported = ImportedModel(gm, bindings, names)
    imported.verify(model)
    return imported


def _rename_clashing_nodes(g: onnx.GraphProto) -> None:
    """onnx2torch names each submodule after its node (``.`` -> ``/``); a node named like an attribute of
    ``nn.Module`` (``type``, ``forward``, ``training``, ...) or like the initializer container makes
    ``add_module`` fail ("attribute 'type' already exists"). In the copy converted here such nodes get a
    suffix; nothing else reads the module names (bindings go through each module's ONNX outputs)."""
    reserved = set(dir(nn.Module())) | {"initializers"}
    taken = {n.name for n in g.node}
    for n in g.node:
        if (n.name.replace(".", "/") or n.op_type) not in reserved:
            continue
        base = f"{n.name or n.op_type}_node"
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}{k}"
        taken.add(name)
        n.name = name


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _conversion_failure(model: onnx.ModelProto, error: Exception) -> str:
    """Re-run each node's converter alone to find the node onnx2torch fails on."""
    from onnx2torch.converter import _remove_initializers_from_input
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.utils.safe_shape_inference import safe_shape_inference

    try:
        work = onnx.ModelProto()
        work.CopyFrom(model)
        inferred = _remove_initializers_from_input(safe_shape_inference(work))
        opsets = {o.domain: o.version for o in inferred.opset_import}
        graph = OnnxGraph(inferred.graph)
        for node in graph.nodes.values():
            try:
                converter = get_converter(
                    domain=node.domain, operation_type=node.operation_type, version=opsets[node.domain]
                )
                converter(node, graph)
            except Exception as e:
                return f"cannot import node {node.name!r} ({node.operation_type}): {_one_line(e)}"
    except Exception:  # locating failed too: report the original error
        pass
    return f"cannot import the model with onnx2torch: {_one_line(error)}"


def _resolve(root: nn.Module, loc: Location) -> torch.Tensor:
    owner = root.get_submodule(loc.owner) if loc.owner else root
    t = getattr(owner, loc.attr)
    assert isinstance(t, torch.Tensor)
    return t


def _set(root: nn.Module, loc: Location, t: torch.Tensor) -> None:
    """Put ``t`` at ``loc`` as a parameter (if it is one) or a buffer, whatever was there before."""
    owner = root.get_submodule(loc.owner) if loc.owner else root
    owner._parameters.pop(loc.attr, None)
    owner._buffers.pop(loc.attr, None)
    if isinstance(t, nn.Parameter):
        owner.register_parameter(loc.attr, t)
    else:
        owner.register_buffer(loc.attr, t)


def _tie(root: nn.Module, bindings: Any) -> None:
    for b in bindings:
        primary = _resolve(root, b.location)
        for loc in b.aliases:
            if _resolve(root, loc) is not primary:
                _set(root, loc, primary)


@dataclass
class _Use:
    name: str
    node: onnx.NodeProto
    loc: Location
    transform: Transform
    trainable: bool


def _bind(gm: fx.GraphModule, model: onnx.ModelProto) -> dict[str, Binding]:
    inits = {i.name: i for i in model.graph.initializer}
    by_output = {out: node for node in model.graph.node for out in node.output if out}
    uses: list[_Use] = []
    for fx_node in gm.graph.nodes:
        if fx_node.op != "call_module":
            continue
        module = gm.get_submodule(fx_node.target)
        mapping = getattr(module, "onnx_mapping", None)
        if mapping is None or not mapping.outputs or mapping.outputs[0] not in by_output:
            continue
        node = by_output[mapping.outputs[0]]
        uses.extend(_module_uses(str(fx_node.target), module, node, inits))
        uses.extend(_value_uses(fx_node, module, mapping.inputs, node, inits, by_output))

    bindings: dict[str, Binding] = {}
    for use in uses:
        init = inits[use.name]
        prev = bindings.get(use.name)
        if prev is None:
            bindings[use.name] = Binding(
                name=use.name,
                node=use.node.name,
                op_type=use.node.op_type,
                location=use.loc,
                transform=use.transform,
                onnx_shape=tuple(int(d) for d in init.dims),
                onnx_dtype=np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)),
                trainable=use.trainable,
            )
            continue
        if use.transform != prev.transform or use.trainable != prev.trainable:
            raise UnsupportedModelError(
                f"initializer {use.name!r} is shared by {prev.op_type} node {prev.node!r} and "
                f"{use.node.op_type} node {use.node.name!r} in different layouts or roles; "
                "it cannot be trained as one tensor"
            )
        bindings[use.name] = replace(prev, aliases=(*prev.aliases, use.loc))

    for b in bindings.values():  # weight-like values consumed as get_attr buffers must train
        t = _resolve(gm, b.location)
        if b.trainable and not isinstance(t, nn.Parameter):
            _set(gm, b.location, nn.Parameter(t.detach().clone()))
    return bindings


def _module_uses(
    path: str, module: nn.Module, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]
) -> Iterator[_Use]:
    """Initializers baked into modules: Conv / Linear (from Gemm) / BatchNorm parameters and buffers."""
    ins = list(node.input)

    def given(i: int) -> str | None:
        return ins[i] if len(ins) > i and ins[i] in inits else None

    from .converters.conv import RuntimeConv  # on use, as the converters (they import onnx2torch)

    op = LAYER_OPS.get(node.op_type)
    if isinstance(module, RuntimeConv):
        return  # weight and bias are call inputs: bound as values (_value_uses)
    if op is not None and op.conv:
        conv_path, conv = path, module
        if isinstance(module, nn.Sequential):  # asymmetric pads: Sequential(pad, conv)
            idx = [i for i, m in enumerate(module) if isinstance(m, nn.modules.conv._ConvNd)]
            if len(idx) != 1:
                raise UnsupportedModelError(f"cannot find the convolution of node {node.name!r}")
            conv_path, conv = f"{path}.{idx[0]}", module[idx[0]]
        if not isinstance(conv, nn.modules.conv._ConvNd):
            raise UnsupportedModelError(
                f"node {node.name!r} ({node.op_type}) did not become a torch convolution"
            )
        for i, attr in ((1, "weight"), (2, "bias")):
            name = given(i)
            if name is not None:
                yield _Use(name, node, Location(conv_path, attr), Transform(), True)
    elif op is not None and node.op_type == "Gemm" and isinstance(module, nn.Linear):  # onnx2torch's Linear
        attrs = node_attrs(node)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        weight_t = op.input_axis(attrs) == 0  # torch's weight is op(B)ᵀ (N, K): B (K, N) is transposed
        for i, attr, scale, transpose in ((1, "weight", alpha, weight_t), (2, "bias", beta, False)):
            name = given(i)
            if name is None:
                continue
            if scale == 0.0:
                raise UnsupportedModelError(
                    f"Gemm node {node.name!r} has {'alpha' if i == 1 else 'beta'}=0: "
                    f"{name!r} cannot be recovered"
                )
            yield _Use(name, node, Location(path, attr), Transform(transpose, scale), True)
    elif node.op_type == "BatchNormalization" and isinstance(module, nn.modules.batchnorm._BatchNorm):
        for i, attr, train in (
            (1, "weight", True),
            (2, "bias", True),
            (3, "running_mean", False),
            (4, "running_var", False),
        ):
            name = given(i)
            if name is not None:
                yield _Use(name, node, Location(path, attr), Transform(), train)


def _value_uses(
    fx_node: fx.Node,
    module: nn.Module,
    onnx_inputs: tuple[str, ...],
    node: onnx.NodeProto,
    inits: dict[str, onnx.TensorProto],
    by_output: dict[str, onnx.NodeProto],
) -> Iterator[_Use]:
    """Initializers passed as get_attr values: align the call's args/kwargs with ``onnx_mapping.inputs``.

    onnx2torch passes inputs positionally up to the first empty one and the rest as keywords named after
    ``forward``'s parameters, so a keyword's position in the signature is its ONNX input index.
    """
    table = _VALUE_INPUTS.get(node.op_type)
    if table is None:
        return
    if node.op_type in ("Add", "Sub"):  # exactly one constant operand: a per-channel offset or a bias
        if len(node.input) != 2 or (node.input[0] in inits) == (node.input[1] in inits):
            return
        producer = by_output.get(node.input[1] if node.input[0] in inits else node.input[0])
        is_bias = producer is not None and producer.op_type in LAYER_OPS
        table = {0: is_bias, 1: is_bias}
    pairs: list[tuple[int, Any]] = list(enumerate(fx_node.args))
    if fx_node.kwargs:
        params = list(inspect.signature(module.forward).parameters)
        pairs += [(params.index(k), v) for k, v in fx_node.kwargs.items()]
    for i, arg in pairs:
        if i not in table or not isinstance(arg, fx.Node) or arg.op != "get_attr":
            continue
        name = onnx_inputs[i]
        if name not in inits:
            continue
        owner, _, attr = str(arg.target).rpartition(".")
        yield _Use(name, node, Location(owner, attr), Transform(), bool(table[i]))
