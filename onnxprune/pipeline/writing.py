"""Stage 7 of ``compress``: the form the model is written in.

Shape-pruned layers are written dense with zeros or in the exact lowered im2col form, whichever ORT CPU
runs faster (:func:`onnxprune.runtime.forms.shape_form`). Element-pruned weights may be stored as ONNX
sparse initializers (``sparse_initializers``), when that is smaller and ORT gives the dense storage's
outputs (:func:`storage`); the report records both storages' sizes either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from ..graph.elements import ElementConstraint
from ..graph.inputs import Batch
from ..graph.protos import model_nbytes
from ..graph.verify import compare_models
from ..graph.weights import to_sparse_initializers
from ..runtime.forms import shape_form
from ..runtime.timing import PhaseClock
from .loading import Samples
from .planning import Planned
from .prune import Exported
from .resolve import Config

log = logging.getLogger("onnxprune")


@dataclass(frozen=True)
class Written:
    """The model to write, the shape-form report entry (shape-wise runs) and the storage sizes."""

    model: onnx.ModelProto
    forms: dict[str, Any] | None
    storage: dict[str, Any]

    @property
    def lowered(self) -> set[str]:
        """The nodes written in the lowered im2col form."""
        if self.forms is None or self.forms["chosen"] != "lowered":
            return set()
        return {r["node"] for r in self.forms["layers"] if r["lowered"]}


def write_forms(
    config: Config, samples: Samples, planned: Planned, exported: Exported, clock: PhaseClock
) -> Written:
    """The shape form (timed at the bench batch sizes on rank 0) and the storage of the pruned model."""
    forms = None
    chosen = exported.pruned
    if planned.shape_weights:
        with clock.phase("shape_form"):
            timed = samples.runnable_batches(config.bench_batches) if config.main_rank else ()
            chosen, forms = shape_form(
                exported.pruned,
                planned.shape_weights,
                exported.check_inputs,
                config.run.shape_form,
                timed,
                samples.inputs.first_shape,
                config.bench_repeats,
            )
    with clock.phase("verify"):
        written, sizes = storage(
            chosen, planned.elements, config.run.sparse_initializers, exported.check_inputs
        )
    log.info("verified: max relative error %.2e", exported.verification.max_rel_error)
    return Written(written, forms, sizes)


def storage(
    pruned: onnx.ModelProto,
    elements: Mapping[str, ElementConstraint],
    sparse: bool,
    inputs: Sequence[Batch],
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The model to write (sparse-stored when asked and ORT reproduces it exactly) and the sizes of both
    storages (serialized bytes; the file is this plus a few bytes of framing)."""
    names = [n for n in elements if any(t.name == n for t in pruned.graph.initializer)]
    info: dict[str, Any] = {"bytes_dense": model_nbytes(pruned), "sparse_initializers": False}
    if not names:
        return pruned, info
    stored = to_sparse_initializers(pruned, names)
    info["bytes_sparse_stored"] = model_nbytes(stored)
    if not sparse:
        return pruned, info
    if model_nbytes(stored) >= model_nbytes(pruned):  # COO costs value + int64 index per non-zero
        return pruned, _kept_dense(
            info, "sparse storage would not be smaller (density above ~1/3); kept dense"
        )
    try:
        check = compare_models(pruned, stored, inputs, rtol=1e-6)
    except Exception as e:  # ORT refusing the sparse storage: keep dense, say why
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return pruned, _kept_dense(info, f"ORT could not run the sparse-stored model ({reason}); kept dense")
    if not check.passed:
        note = f"sparse-stored outputs differ ({check.max_rel_error:.2e}); kept dense"
        return pruned, _kept_dense(info, note)
    info["sparse_initializers"] = True
    return stored, info


def _kept_dense(info: dict[str, Any], note: str) -> dict[str, Any]:
    log.warning(note)
    return info | {"sparse_note": note}


__all__ = ["Written", "storage", "write_forms"]
