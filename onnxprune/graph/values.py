"""Every intermediate value of a model on ONNX Runtime (to locate where another runtime diverges)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from ..runtime.sessions import make_session
from .protos import copy_model

__all__ = ["intermediate_values"]


def intermediate_values(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """ORT's value of each tensor in ``names`` (default: every node output) on ``feeds``.

    A copy of ``model`` lists them as extra graph outputs (untyped: ORT infers the types); the model
    itself is not changed.
    """
    work = copy_model(model)
    wanted = list(names) if names is not None else [o for n in work.graph.node for o in n.output if o]
    listed = {o.name for o in work.graph.output}
    for name in wanted:
        if name not in listed:
            work.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = make_session(work)
    outputs = [o.name for o in sess.get_outputs()]
    values = sess.run(None, dict(feeds))
    keep = set(wanted)
    return {n: v for n, v in zip(outputs, values, strict=True) if n in keep}
