"""Static shapes by ONNX shape inference, with the model's first input fixed to a concrete shape."""

from __future__ import annotations

import onnx

from ..errors import DataError

Shape = tuple[int, ...]


class ShapeError(DataError, ValueError):
    """``input_shape`` does not fit the model, or a shape that is needed stays unknown."""


def _data_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The first graph input that is not an initializer (old IRs list initializers as inputs too)."""
    inits = {t.name for t in graph.initializer}
    for vi in graph.input:
        if vi.name not in inits:
            return vi
    raise ShapeError("the model has no graph input to fix to input_shape")


def _fix_input_dims(vi: onnx.ValueInfoProto, input_shape: Shape) -> None:
    """Set the dims of ``vi`` to ``input_shape`` in place; fixed dims must already agree."""
    if not vi.type.HasField("tensor_type"):
        raise ShapeError(f"graph input '{vi.name}' is not a tensor")
    tt = vi.type.tensor_type
    if tt.HasField("shape"):
        dims = tt.shape.dim
        if len(dims) != len(input_shape):
            raise ShapeError(
                f"input_shape {tuple(input_shape)} has rank {len(input_shape)} but graph input "
                f"'{vi.name}' has rank {len(dims)}"
            )
        for i, (dim, value) in enumerate(zip(dims, input_shape, strict=True)):
            if dim.HasField("dim_value") and dim.dim_value != value:
                raise ShapeError(
                    f"input_shape {tuple(input_shape)} disagrees with the fixed dim {i} "
                    f"(= {dim.dim_value}) of graph input '{vi.name}'"
                )
    tt.ClearField("shape")
    for value in input_shape:
        tt.shape.dim.add().dim_value = value


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)


def infer_shapes(model: onnx.ModelProto, input_shape: Shape) -> dict[str, tuple[int | None, ...]]:
    """Tensor name -> dims, by shape inference on a copy whose first input is fixed to ``input_shape``."""
    if not input_shape or any(not isinstance(d, int) or d <= 0 for d in input_shape):
        raise ShapeError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}")
    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.value_info[:]  # stale annotations could contradict the fixed input
    _fix_input_dims(_data_input(work.graph), input_shape)
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
    for t in g.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    unknown = [
        o for n in g.node for o in n.output if o and (o not in shapes or any(d is None for d in shapes[o]))
    ]
    if unknown:
        shapes.update(_run_for_shapes(inferred, unknown, input_shape))
    return shapes


def _run_for_shapes(model: onnx.ModelProto, names: list[str], input_shape: Shape) -> dict[str, Shape]:
    """Shapes that inference could not resolve (reshapes to computed targets, windowed attention), read
    off one ONNX Runtime run on zeros of ``input_shape``. Empty when the run fails."""
    import numpy as np
    import onnxruntime as ort

    work = onnx.ModelProto()
    work.CopyFrom(model)
    elem = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in [*work.graph.input, *work.graph.value_info, *work.graph.output]
    }
    wanted = [n for n in names if elem.get(n)]
    present = {o.name for o in work.graph.output}
    for n in wanted:
        if n not in present:
            work.graph.output.append(onnx.helper.make_tensor_value_info(n, elem[n], None))
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(work.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem.get(feed.name) or onnx.TensorProto.FLOAT)
        outs = sess.run(wanted, {feed.name: np.zeros(input_shape, dtype=dtype)})
    except Exception:  # a model ORT cannot run here: shapes stay unknown
        return {}
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(wanted, outs, strict=True)}


def static_shapes(model: onnx.ModelProto, input_shape: Shape) -> dict[str, Shape]:
    """Only the tensors whose every dim is known (what channel analysis can rely on)."""
    return {
        name: tuple(d for d in dims if d is not None)
        for name, dims in infer_shapes(model, input_shape).items()
        if all(d is not None and d > 0 for d in dims)
    }
