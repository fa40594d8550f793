"""What ``--data random`` feeds each input of a model: read from the graph, not guessed from the data.

* float inputs: Gaussian;
* an integer input that reaches the indices of an embedding ``Gather`` (a constant ``(rows, width)`` table,
  through Cast/Unsqueeze/Squeeze/Reshape/Flatten/Expand/Identity): token ids uniform in ``[0, rows)``
  (the smallest table when it feeds several) — except inputs named like type, segment or position ids,
  which get zeros (a valid id of every such table);
* any other integer input (an attention mask, which the graph turns into an additive bias) and boolean
  inputs: ones.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque

import onnx

from ..data.synthetic import InputDraw
from .inputs import input_dtypes

_PASS_THROUGH = frozenset({"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Identity"})
_ZERO_IDS = re.compile(r"type|segment|position|pos_ids", re.IGNORECASE)


def input_draws(model: onnx.ModelProto) -> dict[str, InputDraw]:
    """Data input name -> how random data fills it (see the module docstring), in input order."""
    rows = _embedding_rows(model)
    out: dict[str, InputDraw] = {}
    for name, dtype in input_dtypes(model).items():
        kind = dtype.name
        if dtype.kind == "f":
            out[name] = InputDraw("gauss", kind)
        elif dtype.kind == "b":
            out[name] = InputDraw("ones", kind, why="boolean input")
        elif name in rows and _ZERO_IDS.search(name):
            out[name] = InputDraw("zeros", kind, why=f"type/position ids (embedding of {rows[name]} rows)")
        elif name in rows:
            why = f"token ids of a {rows[name]}-row embedding"
            out[name] = InputDraw("ids", kind, high=rows[name], why=why)
        else:
            out[name] = InputDraw("ones", kind, why="integer input that indexes no embedding (a mask)")
    return out


def _embedding_rows(model: onnx.ModelProto) -> dict[str, int]:
    """Integer input -> rows of the smallest embedding table whose Gather indices it reaches."""
    g = model.graph
    tables = {t.name: int(t.dims[0]) for t in g.initializer if len(t.dims) == 2}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in g.node:
        for i in node.input:
            readers[i].append(node)
    out: dict[str, int] = {}
    for name in input_dtypes(model):
        seen, todo = {name}, deque([name])
        while todo:
            tensor = todo.popleft()
            for node in readers[tensor]:
                if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == tensor:
                    if node.input[0] in tables:
                        out[name] = min(out.get(name, tables[node.input[0]]), tables[node.input[0]])
                elif node.op_type in _PASS_THROUGH and node.input[0] == tensor:
                    for o in node.output:
                        if o not in seen:
                            seen.add(o)
                            todo.append(o)
    return out
