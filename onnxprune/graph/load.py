"""Load an ONNX model and normalize it so that every prunable weight is a plain initializer.

Normalization (each step is recorded in ``NormalizedModel.notes`` and shows in the report):

* unnamed nodes get a unique name (``<OpType>_<index>``): node names key modules and reports;
* initializers listed among graph inputs are dropped from the inputs (IR >= 4 semantics);
* ``Constant`` nodes become initializers of the same name;
* ``Identity`` nodes whose input is an initializer are bypassed (their consumers read the initializer);
* an initializer read by several nodes gets one copy per extra reader (``<name>__<k>``), so that pruning
  one layer cannot change another (exporters merge equal tensors, e.g. the zero biases of folded BNs);
  :func:`reshare` merges the copies that are still equal back after surgery;
* shape arithmetic on static dims (``Shape -> Gather -> Div -> Concat`` feeding a Reshape) is folded into
  constants (:mod:`onnxprune.graph.fold`): the channel count is a constant of the model;
* a model below opset 11 is lifted to opset 11 with onnx's version converter; legacy broadcasts
  (opset <= 6: ``broadcast=1, axis``) are first rewritten into numpy broadcasting (a constant operand
  reshaped, a computed one unsqueezed: :mod:`onnxprune.graph.legacy`), value_info the converter leaves
  untyped is dropped, and the lifted model must load on ONNX Runtime (else a one-line
  :class:`~onnxprune.errors.RuntimeRefusedError`).

Everything else is left as it was: opset, metadata, value_info, dynamic axes, node order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InvalidModelError
from .fold import fold_static_shapes
from .legacy import LAST_LEGACY_OPSET, rewrite_legacy_broadcasts
from .protos import check_model, copy_model, is_external, load_external, tensor_array


@dataclass
class NormalizedModel:
    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    external_data: bool = False
    copies: dict[str, str] = field(default_factory=dict)  # unshared copy -> original initializer


def load_model(source: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """Parse and check a model; returns (a private copy, whether it used external data).

    External data is read into memory one tensor at a time and the checker reads the graph from the file
    (not a serialized copy), so such a model costs its weights once. A single-file model is parsed from
    its bytes (protobuf has no streaming parser: file bytes and parsed model coexist while loading).
    Raises :class:`InvalidModelError` with a one-line reason for anything that is not a valid model.
    """
    if isinstance(source, onnx.ModelProto):
        model = copy.deepcopy(source)
        external = False
        label = "model"
        checked: str | onnx.ModelProto = model
    else:
        path = Path(source)
        label = str(path)
        checked = str(path)
        if not path.exists():
            raise InvalidModelError(f"{path}: no such file")
        if not path.is_file():
            raise InvalidModelError(f"{path}: not a file")
        try:
            model = onnx.load(str(path), load_external_data=False)
            external = any(is_external(t) for t in model.graph.initializer)
            if external:  # in memory: the references to the file go
                load_external(model, path.parent)
            else:  # the checker would parse the whole file again: it checks the model in memory
                checked = model
        except Exception as e:  # protobuf raises DecodeError, RuntimeWarning subclasses, ...
            raise InvalidModelError(f"{path} is not a valid ONNX file ({_one_line(e)})") from None
    if not model.graph.node:
        raise InvalidModelError(f"{label} is not a valid ONNX model (its graph has no nodes)")
    try:
        check_model(checked)
    except Exception as e:
        raise InvalidModelError(f"{label} is not a valid ONNX model ({_one_line(e)})") from None
    return model, external


def normalize(model: onnx.ModelProto, inplace: bool = False) -> NormalizedModel:
    """Return a normalized copy (see module docstring); the input is not modified. ``inplace=True``
    normalizes ``model`` itself (a private copy, e.g. from :func:`load_model`: no second copy)."""
    if not inplace:
        model = copy.deepcopy(model)
    out = NormalizedModel(model)
    g = model.graph
    _name_nodes(g, out.notes)
    _drop_initializer_inputs(model, out.notes)
    _constants_to_initializers(g, out.notes)
    _bypass_identity_of_initializers(g, out.notes)
    if 0 < _onnx_opset(out.model) <= LAST_LEGACY_OPSET:
        rewrite_legacy_broadcasts(out.model, out.notes)
    if 0 < _onnx_opset(out.model) < MIN_OPSET:
        out.model = _lift_opset(out.model, out.notes)
    fold_static_shapes(out.model, out.notes)
    out.copies = _unshare_initializers(out.model.graph, out.notes)
    return out


MIN_OPSET = 11


def _onnx_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _lift_opset(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    old = _onnx_opset(model)
    try:
        lifted = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise InvalidModelError(
            f"opset {old} is older than {MIN_OPSET} and could not be converted ({_one_line(e)})"
        ) from None
    _drop_untyped_value_info(lifted.graph)
    from ..runtime.sessions import user_session  # onnxruntime is loaded on use only

    # the converter's output is not checked by onnx: ORT must load it, or the user hears why (one line)
    user_session(lifted, f"the model converted from opset {old} to {MIN_OPSET}")
    notes.append(f"converted opset {old} to {MIN_OPSET}")
    return lifted


def _drop_untyped_value_info(g: onnx.GraphProto) -> None:
    """value_info entries of elem_type 0 (UNDEFINED: the version converter writes them for the nodes it
    inserts) carry nothing, and ONNX Runtime refuses them ("Invalid tensor data type 0")."""
    typed = [
        vi
        for vi in g.value_info
        if not (vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == 0)
    ]
    if len(typed) != len(g.value_info):
        del g.value_info[:]
        g.value_info.extend(typed)


def _unshare_initializers(g: onnx.GraphProto, notes: list[str]) -> dict[str, str]:
    inits = {t.name: t for t in g.initializer}
    taken = set(inits) | {o for n in g.node for o in n.output} | {vi.name for vi in g.input}
    seen: dict[str, int] = {}
    copies: dict[str, str] = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 1:
                continue
            k = seen[name] - 1
            while f"{name}__{k}" in taken:
                k += 1
            new = f"{name}__{k}"
            taken.add(new)
            t = onnx.TensorProto()
            t.CopyFrom(inits[name])
            t.name = new
            g.initializer.append(t)
            n.input[i] = new
            copies[new] = name
    if copies:
        notes.append(f"gave {len(copies)} reader(s) of shared initializers their own copy")
    return copies


def reshare(model: onnx.ModelProto, copies: dict[str, str], inplace: bool = False) -> onnx.ModelProto:
    """Undo :func:`normalize`'s unsharing where a copy still equals its original (same dtype, shape, bytes):
    the node reads the original again and the copy is dropped. Returns a new model, or ``model`` itself
    changed with ``inplace``."""
    if not copies:
        return model
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    merge = {}
    for new, orig in copies.items():
        a, b = inits.get(new), inits.get(orig)
        if a is None or b is None or a.data_type != b.data_type or list(a.dims) != list(b.dims):
            continue
        if _same_bytes(tensor_array(a), tensor_array(b)):
            merge[new] = orig
    if not merge:
        return model
    if not inplace:
        model = copy_model(model, skip=set(merge))
        g = model.graph
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in merge:
                n.input[i] = merge[name]
    if inplace:
        for i in reversed([i for i, t in enumerate(g.initializer) if t.name in merge]):
            del g.initializer[i]
    return model


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    try:
        return bool(np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)))
    except (TypeError, ValueError):  # object (string) arrays have no byte view
        return a.tobytes() == b.tobytes()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _name_nodes(g: onnx.GraphProto, notes: list[str]) -> None:
    taken = {n.name for n in g.node if n.name}
    named = 0
    for i, n in enumerate(g.node):
        if n.name:
            continue
        name = f"{n.op_type}_{i}"
        while name in taken:
            name += "_"
        n.name = name
        taken.add(name)
        named += 1
    if named:
        notes.append(f"named {named} unnamed node(s)")
    names = [n.name for n in g.node]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise InvalidModelError(f"node names are not unique: {dup[:3]}")


def _drop_initializer_inputs(model: onnx.ModelProto, notes: list[str]) -> None:
    g = model.graph
    inits = {t.name for t in g.initializer}
    keep = [vi for vi in g.input if vi.name not in inits]
    if len(keep) != len(g.input):
        notes.append(f"removed {len(g.input) - len(keep)} initializer(s) from the graph inputs")
        del g.input[:]
        g.input.extend(keep)
        model.ir_version = max(model.ir_version, 4)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None  # sparse_value / string values: left as they are


def _constants_to_initializers(g: onnx.GraphProto, notes: list[str]) -> None:
    outputs = {o.name for o in g.output}
    kept, moved = [], 0
    for n in g.node:
        value = _constant_value(n) if n.op_type == "Constant" and n.domain in ("", "ai.onnx") else None
        if value is None or n.output[0] in outputs:
            kept.append(n)
            continue
        g.initializer.append(numpy_helper.from_array(value, n.output[0]))
        moved += 1
    if moved:
        del g.node[:]
        g.node.extend(kept)
        notes.append(f"turned {moved} Constant node(s) into initializers")


def _bypass_identity_of_initializers(g: onnx.GraphProto, notes: list[str]) -> None:
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    alias: dict[str, str] = {}
    kept = []
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits | alias.keys() and n.output[0] not in outputs:
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
            continue
        kept.append(n)
    if not alias:
        return
    for n in kept:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    del g.node[:]
    g.node.extend(kept)
    names = set(alias)
    vis = [vi for vi in g.value_info if vi.name not in names]
    del g.value_info[:]
    g.value_info.extend(vis)
    notes.append(f"bypassed {len(alias)} Identity node(s) on initializers")
