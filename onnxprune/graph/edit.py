"""Edits of initializer values: write-back of trained values, masking, slicing (surgery).

Each function returns a new ModelProto and leaves its input unchanged. None of them copies the model as a
whole: the new model is built from its structure (:func:`~onnxprune.graph.protos.shell`) one initializer at
a time, and values are read as read-only views (:func:`~onnxprune.graph.protos.tensor_array`), so only the
tensors that change are ever held twice, one at a time where possible. :func:`write_masked` streams the
masked model to a file without holding it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..plan import Group, Masks, PruningPlan, member_keep_indices, validate_masks
from .layerops import LAYER_OPS
from .protos import Transform, map_initializers, set_tensor, tensor_array, write_external


def initializer_arrays(model: onnx.ModelProto, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Writable copies of the named initializers' values (all without ``names``)."""
    return {
        t.name: np.array(tensor_array(t)) for t in model.graph.initializer if names is None or t.name in names
    }


def replace_initializers(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """Copy of ``model`` with the named initializers' values replaced (same name and dtype).

    Shapes may change (surgery); an unknown name is an error rather than a silently ignored value.
    """
    missing = set(arrays) - {t.name for t in model.graph.initializer}
    if missing:
        raise KeyError(f"no initializer named {sorted(missing)[0]!r}")
    return map_initializers(model, lambda name, _: arrays.get(name))


def write_back(model: onnx.ModelProto, trained: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """Trained values into the original initializers; shapes must not change."""
    dims = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer if t.name in trained}
    for name, arr in trained.items():
        if name not in dims:
            raise KeyError(f"trained tensor {name!r} is not an initializer of the model")
        if tuple(arr.shape) != dims[name]:
            raise ValueError(f"trained tensor {name!r} has shape {arr.shape}, model has {dims[name]}")
    return replace_initializers(model, trained)


def masker(plan: PruningPlan, masks: Masks) -> Transform:
    """The masking as a transform of initializer values (see :func:`onnxprune.graph.protos.write_external`):
    every SOURCE slice of a removed channel set to zero; None for the initializers it leaves alone."""
    validate_masks(plan, masks)
    zero: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for g in plan.groups:
        keep = masks.get(g.name)
        if keep is None or keep.all():
            continue
        removed = np.flatnonzero(~keep)
        for m in g.sources:
            zero[m.initializer].append((m.axis, m.index_map.indices(removed)))

    def transform(name: str, values: np.ndarray) -> np.ndarray | None:
        if name not in zero:
            return None
        a = np.array(values)  # a writable copy of this one tensor
        for axis, indices in zero[name]:
            index: list[slice | np.ndarray] = [slice(None)] * a.ndim
            index[axis] = indices
            a[tuple(index)] = 0
        return a

    return transform


def mask_model(model: onnx.ModelProto, plan: PruningPlan, masks: Masks) -> onnx.ModelProto:
    """The masked dense model: every SOURCE slice of a removed channel set to zero."""
    missing = {m.initializer for g in plan.groups if g.name in masks for m in g.sources}
    missing -= {t.name for t in model.graph.initializer}
    if missing:
        raise KeyError(sorted(missing)[0])
    return map_initializers(model, masker(plan, masks))


def write_masked(model: onnx.ModelProto, plan: PruningPlan, masks: Masks, path: str | Path) -> None:
    """Write the masked dense model of :func:`mask_model` to ``path`` (weights in ``<name>.data`` beside
    it) one tensor at a time: it is never held in memory."""
    write_external(model, path, transform=masker(plan, masks))


@dataclass(frozen=True)
class Surgery:
    """What :func:`prune_model` does to each initializer, before it does it.

    ``axes``: initializer -> (axis, kept positions as a bool mask over the original axis), one entry per
    sliced axis; ``updated``: the biases folds change (original shape, before slicing); ``created``: node ->
    (name, values) of the biases folds create; ``edits``: shape constants, initializer -> (flat position,
    amount subtracted); ``attributes``: (node, attribute, position) -> amount subtracted."""

    groups: list[Group]
    axes: dict[str, list[tuple[int, np.ndarray]]]
    updated: dict[str, np.ndarray]
    created: dict[str, tuple[str, np.ndarray]]
    edits: dict[str, list[tuple[int, int]]]
    attributes: dict[tuple[str, str, int], int]

    @property
    def created_names(self) -> set[str]:
        """The initializers the folds create (no counterpart in the model cut)."""
        return {name for name, _ in self.created.values()}


def plan_surgery(model: onnx.ModelProto, plan: PruningPlan, masks: Masks) -> Surgery:
    """The :class:`Surgery` of ``model`` cut to ``masks`` (see :func:`prune_model`)."""
    validate_masks(plan, masks)
    pruned_groups = [g for g in plan.groups if g.name in masks and not masks[g.name].all()]
    names = {m.initializer for g in pruned_groups for m in g.members}
    names |= {e.initializer for g in pruned_groups for e in g.shape_edits if e.attribute is None}
    names |= {n for g in pruned_groups for f in g.folds for n in (f.weight, f.bias) if n is not None}
    inits = {t.name: t for t in model.graph.initializer}
    dims = {name: tuple(int(d) for d in inits[name].dims) for name in names}  # KeyError: not in the model
    updated: dict[str, np.ndarray] = {}  # biases changed by folds
    new_biases, fold_outputs = _fold(inits, updated, pruned_groups, masks)
    alive: dict[tuple[str, int], np.ndarray] = {}
    shrink: dict[tuple[str, int], int] = {}
    attr_shrink: dict[tuple[str, str, int], int] = {}
    for g in pruned_groups:
        keep = masks[g.name]
        removed = np.flatnonzero(~keep)
        for m in g.members:
            axis_len = dims[m.initializer][m.axis]
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
        updated[name] = values
    for bias, (weight, axis) in fold_outputs.items():
        sliced = (weight, axis) in alive and not any(k[0] == bias for k in alive)
        values = updated[bias]
        if sliced and values.ndim and values.shape[-1] == len(alive[(weight, axis)]):
            alive[(bias, values.ndim - 1)] = alive[(weight, axis)]
    axes: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for (name, axis), mask in alive.items():
        axes[name].append((axis, mask))
    edits: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (name, pos), amount in shrink.items():
        edits[name].append((pos, amount))
    return Surgery(pruned_groups, dict(axes), updated, new_biases, dict(edits), attr_shrink)


def prune_model(model: onnx.ModelProto, plan: PruningPlan, masks: Masks) -> onnx.ModelProto:
    """Graph surgery: fold removed constants into biases, remove every member slice of every removed
    channel, rewrite shape constants and ``group``/``split`` attributes.

    Slices of one (initializer, axis) coming from several groups are combined first, so indices always
    refer to the original layout; folds read the original weights. value_info of the tensors that carry
    removed channels is dropped (their dims changed); everything else keeps its value_info. ``model`` may
    be the dense or the masked model: the kept slices are the same. Each initializer is sliced and
    written on its own (one tensor's copy in flight).
    """
    cut = plan_surgery(model, plan, masks)

    def final(name: str, values: np.ndarray) -> np.ndarray | None:
        if name not in cut.updated and name not in cut.axes and name not in cut.edits:
            return None
        a = cut.updated.get(name, values)
        for axis, mask in cut.axes.get(name, []):
            a = np.compress(mask, a, axis=axis)
        if name in cut.edits:
            a = np.array(a)
            for pos, amount in cut.edits[name]:
                a.reshape(-1)[pos] -= amount
        return a

    out = map_initializers(model, final)
    created = {node: (name, final(name, cut.updated[name])) for node, (name, _) in cut.created.items()}
    _add_biases(out, {node: (name, values) for node, (name, values) in created.items() if values is not None})
    _shrink_attributes(out, cut.attributes)
    # value_info of what changed shape: activations carrying removed channels, and sliced initializers
    # (some exporters annotate initializers too)
    changed = {t for g in cut.groups for t in g.tensors} | set(cut.axes)
    kept_vi = [vi for vi in out.graph.value_info if vi.name not in changed]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept_vi)
    return out


def _fold(
    inits: Mapping[str, onnx.TensorProto], updated: dict[str, np.ndarray], groups: list[Group], masks: Masks
) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, tuple[str, int]]]:
    """Add each removed constant channel's contribution to its consumer's bias (written to ``updated``).

    Returns the biases to create (``node -> (new initializer name, values)``) and, for every bias written
    here, the consumer's weight and output axis (``bias -> (weight, axis)``): when that consumer loses
    outputs too, a bias that is not itself a member (a created one, or a scalar made per-unit) is sliced
    like the weight. Weights are read as views of the model's original values, only the taken slices
    copied."""
    created: dict[str, tuple[str, np.ndarray]] = {}
    outputs_of: dict[str, tuple[str, int]] = {}
    for g in groups:
        removed = np.flatnonzero(~masks[g.name])
        for f in g.folds:
            idx = f.index_map.indices(removed)
            if not len(idx):
                continue
            v = np.asarray(f.values, dtype=np.float64)[idx]
            taken = np.take(tensor_array(inits[f.weight]), idx, axis=f.axis).astype(np.float64)
            op = LAYER_OPS[f.op]
            assert op.fold is not None, f"{f.op} does not fold constants"
            delta = op.fold(taken, v, f.axis, f.scale)
            out_axis = op.output_of(f.axis)
            if f.bias is not None:
                bias = updated[f.bias] if f.bias in updated else tensor_array(inits[f.bias])
                updated[f.bias] = (bias.astype(np.float64) + delta).astype(bias.dtype)
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
        t = model.graph.initializer.add()
        t.name, t.data_type = name, dtypes.get(node.input[1], onnx.TensorProto.FLOAT)
        set_tensor(t, values)
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
