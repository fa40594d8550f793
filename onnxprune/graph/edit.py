"""Edits of initializer values: write-back of trained values, masking, slicing (surgery).

Each function returns a new ModelProto and leaves its input unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..plan import Masks, PruningPlan, member_keep_indices, validate_masks


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
    """Graph surgery: remove every member slice of every removed channel; rewrite shape constants.

    Slices of one (initializer, axis) coming from several groups are combined first, so indices always
    refer to the original layout. value_info of the tensors that carry removed channels is dropped
    (their channel dim changed); everything else keeps its value_info.
    """
    validate_masks(plan, masks)
    pruned_groups = [g for g in plan.groups if g.name in masks and not masks[g.name].all()]
    names = {m.initializer for g in pruned_groups for m in g.members}
    names |= {e.initializer for g in pruned_groups for e in g.shape_edits}
    arrays = initializer_arrays(model, names)
    alive: dict[tuple[str, int], np.ndarray] = {}
    shrink: dict[tuple[str, int], int] = {}
    for g in pruned_groups:
        keep = masks[g.name]
        for m in g.members:
            axis_len = arrays[m.initializer].shape[m.axis]
            mask = alive.setdefault((m.initializer, m.axis), np.ones(axis_len, dtype=bool))
            kept = np.zeros(axis_len, dtype=bool)
            kept[member_keep_indices(m, keep, axis_len)] = True
            mask &= kept
        for e in g.shape_edits:
            shrink[(e.initializer, e.position)] = shrink.get(
                (e.initializer, e.position), 0
            ) + e.per_channel * int((~keep).sum())
    for (name, axis), mask in alive.items():
        arrays[name] = np.compress(mask, arrays[name], axis=axis)
    for (name, pos), amount in shrink.items():
        arrays[name] = arrays[name].copy()
        arrays[name][pos] -= amount
    out = replace_initializers(model, arrays)
    changed = {t for g in pruned_groups for t in g.tensors}
    kept_vi = [vi for vi in out.graph.value_info if vi.name not in changed]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept_vi)
    return out
