"""Static shapes by ONNX shape inference, with the model's data inputs fixed to concrete shapes.

The shape argument is a plain shape (the first data input's, batch included) or a mapping input name ->
shape for every data input (see :mod:`onnxprune.graph.inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from .inputs import (
    InputShapes,
    Shape,
    ShapeArg,
    ShapeError,
    all_fixed,
    data_inputs,
    input_dtypes,
    resolve_input_dims,
)
from .protos import model_file, weightless

__all__ = ["Shape", "ShapeArg", "ShapeError", "infer_shapes", "static_shapes"]


def _fix_input_dims(vi: onnx.ValueInfoProto, dims: tuple[int | None, ...]) -> None:
    """Set the dims of ``vi`` to ``dims`` in place (None: a dynamic dim, its name kept if it had one).

    Precondition: ``dims`` was checked against ``vi`` (:func:`onnxprune.graph.inputs.resolve_input_dims`).
    """
    tt = vi.type.tensor_type
    old = list(tt.shape.dim) if tt.HasField("shape") else []
    params = [d.dim_param if d.HasField("dim_param") else "" for d in old]
    tt.ClearField("shape")
    tt.shape.SetInParent()
    for i, value in enumerate(dims):
        dim = tt.shape.dim.add()
        if value is not None:
            dim.dim_value = value
        elif i < len(params) and params[i]:
            dim.dim_param = params[i]


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)


def infer_shapes(model: onnx.ModelProto, input_shape: ShapeArg) -> dict[str, tuple[int | None, ...]]:
    """Tensor name -> dims (None where unknown), by shape inference on a copy whose data inputs are fixed.

    A mapping fixes every data input (checked by :func:`onnxprune.graph.inputs.input_shapes` rules); a
    plain shape fixes the first input and the other inputs' dims that it resolves, the rest staying
    dynamic. Shapes inference leaves unknown are read off one ONNX Runtime run when every input is
    concrete. Raises :class:`ShapeError` when the shape does not fit or inference fails. ``model`` is not
    modified.
    """
    fixed = resolve_input_dims(model, input_shape)
    work = weightless(model)  # large initializers become typed inputs: no copy of the weights
    del work.graph.value_info[:]  # stale annotations could contradict the fixed inputs
    for vi in work.graph.input:
        if vi.name in fixed:
            _fix_input_dims(vi, fixed[vi.name])
    try:
        inferred = onnx.shape_inference.infer_shapes(work, strict_mode=False, data_prop=True)
    except Exception as e:  # onnx raises several types (InferenceError, ValidationError, RuntimeError)
        raise ShapeError(f"shape inference failed: {e}") from e
    shapes: dict[str, tuple[int | None, ...]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for t in model.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    unknown = [
        o for n in g.node for o in n.output if o and (o not in shapes or any(d is None for d in shapes[o]))
    ]
    concrete = all_fixed(fixed) if len(fixed) == len(data_inputs(model)) else None
    if unknown and concrete is not None:  # else an ORT run could not be fed: those shapes stay unknown
        shapes.update(run_for_shapes(model, unknown, concrete, typed=inferred))
    return shapes


def run_for_shapes(
    model: onnx.ModelProto,
    names: list[str],
    input_shape: Shape | Mapping[str, Shape],
    typed: onnx.ModelProto | None = None,
) -> dict[str, Shape]:
    """Shapes that inference could not resolve (reshapes to computed targets, windowed attention), read
    off one ONNX Runtime run on zeros (each input in its own dtype). A plain ``input_shape`` feeds the
    first input only; a mapping feeds every input it names. ``typed``: the inferred model giving the
    tensors' element types (default ``model``). Empty when the run fails.

    The wanted tensors are appended to ``model``'s outputs for the run and removed again (no copy of the
    model: it may hold gigabytes of weights)."""
    import numpy as np
    import onnxruntime as ort

    src = typed if typed is not None else model
    typed_values = [*src.graph.input, *src.graph.value_info, *src.graph.output]
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in typed_values}
    wanted = [n for n in names if elem.get(n)]
    present = {o.name for o in model.graph.output}
    added = [n for n in wanted if n not in present]
    before = len(model.graph.output)
    for n in added:
        model.graph.output.append(onnx.helper.make_tensor_value_info(n, elem[n], None))
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        with model_file(model) as source:
            sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        shapes: InputShapes = (
            {k: tuple(v) for k, v in input_shape.items()}
            if isinstance(input_shape, Mapping)
            else {sess.get_inputs()[0].name: tuple(input_shape)}
        )
        dtypes = input_dtypes(model)
        feed = {k: np.zeros(v, dtype=dtypes.get(k, np.float32)) for k, v in shapes.items()}
        outs = sess.run(wanted, feed)
    except Exception:  # a model ORT cannot run here: shapes stay unknown
        return {}
    finally:
        del model.graph.output[before:]
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(wanted, outs, strict=True)}


def static_shapes(model: onnx.ModelProto, input_shape: ShapeArg) -> dict[str, Shape]:
    """Only the tensors whose every dim is known (what channel analysis can rely on); ``input_shape`` as
    for :func:`infer_shapes`."""
    return {
        name: tuple(d for d in dims if d is not None)
        for name, dims in infer_shapes(model, input_shape).items()
        if all(d is not None and d > 0 for d in dims)
    }
