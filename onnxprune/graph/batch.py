"""Models with a fixed batch dim: the static batch, and a batch-relaxed copy for training.

Exporters that were not asked for a dynamic batch (``yolo export``, model-zoo graphs, ``torch.onnx.export``
without ``dynamic_axes``) fix dim 0 of every input to ``B`` (mostly 1). ONNX Runtime then refuses any
other batch, so every batched step feeds such a model chunks of exactly ``B`` samples
(:func:`onnxprune.runtime.sessions.run_batched`). Training cannot: a batch of ``B = 1`` is no batch. It runs
on a *relaxed* copy of the graph instead, used only for the torch import:

* dim 0 of the data inputs and of the outputs that have ``B`` there becomes the symbol ``batch``;
* inferred ``value_info`` is dropped (it holds the old batch);
* a ``Reshape`` target that is a constant starting with ``B``, reshaping a tensor that carries the batch
  in dim 0, starts with ``0`` instead (ONNX: copy dim 0 of the input), which is what the exporter's
  ``view(batch, ...)`` meant.

The relaxed copy is accepted only when ONNX Runtime shows it computes the same function: at batch ``B`` it
equals the original, and at a larger batch ``k`` it equals the original run on ``k / B`` chunks
(:func:`check_relaxed`). Weight initializers keep their names and values, so trained values are written
back into the *original* graph, whose fixed batch is never changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .inputs import ModelInputs, data_inputs, input_dtypes, value_dims
from .protos import copy_model

BATCH_SYMBOL = "batch"


def static_batch(model: onnx.ModelProto) -> int | None:
    """The fixed dim 0 shared by every data input, or None when any input's batch is dynamic
    (:attr:`onnxprune.graph.inputs.ModelInputs.fixed_batch`)."""
    return ModelInputs.of(model).fixed_batch


@dataclass(frozen=True)
class Relaxed:
    """A batch-relaxed copy of a model: ``model`` runs any batch; ``reshapes`` are the Reshape nodes whose
    constant target had its leading ``batch`` replaced by 0."""

    model: onnx.ModelProto
    batch: int
    reshapes: tuple[str, ...]


def relax_batch(model: onnx.ModelProto) -> Relaxed | None:
    """A copy of ``model`` with its fixed batch made dynamic (see the module docstring); None when the
    batch is not fixed. Pre: ``model`` normalized (constants are initializers). The copy is unchecked:
    :func:`check_relaxed` decides whether it may be used."""
    batch = static_batch(model)
    if batch is None:
        return None
    relaxed = copy_model(model)
    g = relaxed.graph
    for vi in [*data_inputs(relaxed), *g.output]:
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = BATCH_SYMBOL  # clears dim_value (a oneof)
    del g.value_info[:]
    carriers = _batch_carriers(model, batch)
    inits = {t.name: t for t in g.initializer}
    reshapes: list[str] = []
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] not in carriers:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue  # 0 would mean a zero-sized dim
        target = inits.get(node.input[1])
        if target is None:
            continue
        value = numpy_helper.to_array(target)
        if value.ndim != 1 or not len(value) or int(value[0]) != batch:
            continue
        new = value.copy()
        new[0] = 0
        name = f"{node.input[1]}__relaxed_{len(reshapes)}"  # a private target: others may share the old one
        g.initializer.append(numpy_helper.from_array(new.astype(value.dtype), name))
        node.input[1] = name
        reshapes.append(node.name)
    return Relaxed(relaxed, batch, tuple(reshapes))


def _batch_carriers(model: onnx.ModelProto, batch: int) -> set[str]:
    """Tensors whose dim 0 is the batch: computed from a data input, with dim 0 == ``batch`` in shape
    inference (when inference knows the shape; unknown shapes count as carriers and are checked by ORT)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        known = {
            vi.name: value_dims(vi)
            for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        }
    except Exception:  # inference failed: no shape is known
        known = {}
    carriers = {vi.name for vi in data_inputs(model)}
    for node in model.graph.node:
        if not any(i in carriers for i in node.input):
            continue
        for out in node.output:
            dims = known.get(out)
            if dims is None or (len(dims) > 0 and (not isinstance(dims[0], int) or dims[0] == batch)):
                carriers.add(out)
    return carriers


def check_relaxed(
    original: onnx.ModelProto, relaxed: Relaxed, shapes: Mapping[str, Sequence[int]], seed: int = 0
) -> float:
    """Largest relative error between the relaxed model at batch ``2B + 1`` and the original model run on
    the same samples in chunks of ``B`` (padded), and between both at batch ``B``; ``inf`` when ONNX
    Runtime cannot run the relaxed model (:class:`~onnxprune.errors.RuntimeRefusedError` when it cannot
    load the original). ``shapes``: every data input's shape (batch included)."""
    from ..runtime.sessions import make_session, run_batched, user_session
    from .verify import max_relative_error

    b = relaxed.batch
    rng = np.random.default_rng(seed)
    dtypes = input_dtypes(original)
    feeds = []
    for n in (b, 2 * b + 1):
        feeds.append({name: _draw(rng, (n, *shape[1:]), dtypes[name]) for name, shape in shapes.items()})
    ref = user_session(original)  # the user's model: ORT refusing it is a one-line error
    try:
        cand = make_session(relaxed.model)
        worst = 0.0
        for feed in feeds:
            for a, c in zip(run_batched(ref, feed), run_batched(cand, feed), strict=True):
                worst = max(worst, max_relative_error(a, c))
    except Exception:  # ORT rejects the relaxed graph (a batch constant we did not find): not usable
        return float("inf")
    return worst


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Gaussian floats; zeros for integer and boolean inputs (ids and masks valid for any model)."""
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)
