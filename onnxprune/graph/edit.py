"""Edits of initializer values: write-back of trained values, masking, slicing (surgery).

Each function returns a new ModelProto and leaves its input unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..plan import Group, Masks, PruningPlan, member_keep_indices, validate_masks


def initializer_arrays(model: onnx.ModelProto, names: set[str] | None = None) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t).copy()
        for t in model.graph.initializer
        if names is None or t.name in names
    }


def replace_initializers(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """Copy of ``model`` with the named initializers' values replaced (same name and dtype).

    Shapes may change (surgery); an unknown name is an error rather than a silently ignored value.
    """
    out = copy.deepcopy(model)
    found = set()
    for t in out.graph.initializer:
        if t.name in arrays:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arrays[t.name], dtype=dtype), t.name))
            found.add(t.name)
    missing = set(arrays) - found
    if missing:
        raise KeyError(f"no initializer named {sorted(missing)[0]!r}")
    return out


def write_back(model: onnx.ModelProto, trained: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """Trained values into the original initializers; shapes must not change."""
    current = initializer_arrays(model, set(trained))
    for name, arr in trained.items():
        if name not in current:
            raise KeyError(f"trained tensor {name!r} is not an initializer of the model")
        if tuple(arr.shape) != tuple(current[name].shape):
            raise ValueError(
                f"trained tensor {name!r} has shape {arr.shape}, model has {current[name].shape}"
            )
    return replace_initializers(model, trained)


def mask_model(model: onnx.ModelProto, plan: PruningPlan, masks: Masks) -> onnx.ModelProto:
    """The masked dense model: every SOURCE slice of a removed channel set to zero."""
    validate_masks(plan, masks)
    names = {m.initializer for g in plan.groups if g.name in masks for m in g.sources}
    arrays = initializer_arrays(model, names)
    for g in plan.groups:
        keep = masks.get(g.name)
        if keep is None or keep.all():
            continue
        removed = np.flatnonzero(~keep)
        for m in g.sources:
            a = arrays[m.initializer]
            index: list[slice | np.ndarray] = [slice(None)] * a.ndim
            index[m.axis] = m.index_map.indices(removed)
            a[tuple(index)] = 0
    return replace_initializers(model, arrays)


def prune_model(model: onnx.ModelProto, plan: PruningPlan, masks: Masks) -> onnx.ModelProto:
    """Graph surgery: fold removed constants into biases, remove every member slice of every removed
    channel, rewrite shape constants and ``group``/``split`` attributes.

    Slices of one (initializer, axis) coming from several groups are combined first, so indices always
    refer to the original layout; folds read the original weights. value_info of the tensors that carry
    removed channels is dropped (their dims changed); everything else keeps its value_info.
    """
    validate_masks(plan, masks)
    pruned_groups = [g for g in plan.groups if g.name in masks and not masks[g.name].all()]
    names = {m.initializer for g in pruned_groups for m in g.members}
    names |= {e.initializer for g in pruned_groups for e in g.shape_edits if e.attribute is None}
    names |= {n for g in pruned_groups for f in g.folds for n in (f.weight, f.bias) if n is not None}
    arrays = initializer_arrays(model, names)
    new_biases, fold_outputs = _fold(model, arrays, pruned_groups, masks)
    alive: dict[tuple[str, int], np.ndarray] = {}
    shrink: dict[tuple[str, int], int] = {}
    attr_shrink: dict[tuple[str, str, int], int] = {}
    for g in pruned_groups:
        keep = masks[g.name]
        removed = np.flatnonzero(~keep)
        for m in g.members:
            axis_len = arrays[m.initializer].shape[m.axis]
            mask = alive.setdefault((m.initializer, m.axis), np.ones(axis_len, dtype=bool))
            kept = np.zeros(axis_len, dtype=bool)
            kept[member_keep_indices(m, keep, axis_len)] = True
            mask &= kept
        for e in g.shape_edits:
            if e.attribute is None:
                shrink[(e.initializer, e.position)] = shrink.get((e.initializer, e.position), 0) + e.amount(
                    removed
                )
            else:
                key = (e.node, e.attribute, e.position)
                attr_shrink[key] = attr_shrink.get(key, 0) + e.amount(removed)
    for name, values in new_biases.values():
        arrays[name] = values
    for bias, (weight, axis) in fold_outputs.items():
        sliced = (weight, axis) in alive and not any(k[0] == bias for k in alive)
        if sliced and arrays[bias].ndim and arrays[bias].shape[-1] == len(alive[(weight, axis)]):
            alive[(bias, arrays[bias].ndim - 1)] = alive[(weight, axis)]
    for (name, axis), mask in alive.items():
        arrays[name] = np.compress(mask, arrays[name], axis=axis)
    for (name, pos), amount in shrink.items():
        arrays[name] = arrays[name].copy()
        arrays[name].reshape(-1)[pos] -= amount
    created = {name for name, _ in new_biases.values()}
    out = replace_initializers(model, {k: v for k, v in arrays.items() if k not in created})
    _add_biases(out, {node: (name, arrays[name]) for node, (name, _) in new_biases.items()})
    _shrink_attributes(out, attr_shrink)
    # value_info of what changed shape: activations carrying removed channels, and sliced initializers
    # (some exporters annotate initializers too)
    changed = {t for g in pruned_groups for t in g.tensors} | {name for name, _ in alive}
    kept_vi = [vi for vi in out.graph.value_info if vi.name not in changed]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept_vi)
    return out


def _fold(
    model: onnx.ModelProto, arrays: dict[str, np.ndarray], groups: list[Group], masks: Masks
) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, tuple[str, int]]]:
    """Add each removed constant channel's contribution to its consumer's bias (in ``arrays``).

    Returns the biases to create (``node -> (new initializer name, values)``) and, for every bias written
    here, the consumer's weight and output axis (``bias -> (weight, axis)``): when that consumer loses
    outputs too, a bias that is not itself a member (a created one, or a scalar made per-unit) is sliced
    like the weight."""
    original = {k: v.copy() for k, v in arrays.items()}
    created: dict[str, tuple[str, np.ndarray]] = {}
    outputs_of: dict[str, tuple[str, int]] = {}
    for g in groups:
        removed = np.flatnonzero(~masks[g.name])
        for f in g.folds:
            idx = f.index_map.indices(removed)
            if not len(idx):
                continue
            w = original[f.weight].astype(np.float64)
            v = np.asarray(f.values, dtype=np.float64)[idx]
            taken = np.take(w, idx, axis=f.axis)
            if f.op == "Conv":  # W: (O, C, k...): Σ_c v_c Σ_k W[o, c, k]
                delta = np.tensordot(
                    taken.reshape(taken.shape[0], len(idx), -1).sum(axis=2), v, axes=([1], [0])
                )
            else:  # Gemm: row p of op(B) along f.axis
                delta = f.scale * np.tensordot(v, np.moveaxis(taken, f.axis, 0), axes=([0], [0]))
            out_axis = 0 if f.op == "Conv" else 1 - f.axis
            if f.bias is not None:
                bias = arrays[f.bias]
                arrays[f.bias] = (bias.astype(np.float64) + delta).astype(bias.dtype)
                outputs_of[f.bias] = (f.weight, out_axis)
            else:
                name, prev = created.get(f.node, (f.new_bias, np.zeros_like(delta)))
                created[f.node] = (name, prev + delta)
                outputs_of[name] = (f.weight, out_axis)
    return created, outputs_of


def _add_biases(model: onnx.ModelProto, biases: dict[str, tuple[str, np.ndarray]]) -> None:
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.name not in biases:
            continue
        name, values = biases[node.name]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dtypes.get(node.input[1], onnx.TensorProto.FLOAT))
        model.graph.initializer.append(numpy_helper.from_array(values.astype(dtype), name))
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = name


def _shrink_attributes(model: onnx.ModelProto, shrink: dict[tuple[str, str, int], int]) -> None:
    for node in model.graph.node:
        for attr in node.attribute:
            for (node_name, attr_name, pos), amount in shrink.items():
                if node_name != node.name or attr_name != attr.name:
                    continue
                if attr.type == onnx.AttributeProto.INT:
                    attr.i -= amount
                else:
                    attr.ints[pos] -= amount
