"""Stage 5b of ``compress``: retraining the pruned model instead of the masked dense one.

Masked retraining trains the dense model with the removed channels held at zero, so every step costs the
dense model's MACs. After the hard prune the structure is fixed, so retraining can run on the model surgery
makes, at the pruned model's cost (the VGG-style reference at ``filter:0.7``, 11x fewer MACs: 5 epochs on
18k images took 152 s masked; see benchmarks/README.md). Its updates come back into the dense model
exactly (:mod:`onnxprune.graph.unprune`: D' = D + scatter_K(P' − P)), so the export and the verification
that follow (pruned ≡ masked on ONNX Runtime) are the ones every run does, and the masked model stays the
one the pruned model reproduces.

``--retrain-on auto`` (default) retrains the pruned model when the run allows it and says why not
otherwise; ``masked`` is the behaviour of before; ``pruned`` refuses a run that cannot.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import onnx

from ..errors import SpecError
from ..graph import protos
from ..graph.edit import plan_surgery, prune_model
from ..graph.unprune import float_initializers, float_names, round_trip_error, scatter_update
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned
from .prune import magnitude_masks
from .resolve import Config

if TYPE_CHECKING:
    from .training import Trained

log = logging.getLogger("onnxprune")


@dataclass(frozen=True)
class RetrainChoice:
    """Whether retraining runs on the pruned model (``pruned``) and, when not, why (``reason``)."""

    pruned: bool
    reason: str = ""

    @property
    def label(self) -> str:
        """For the report: 'pruned', or 'masked (why)'."""
        return "pruned" if self.pruned else f"masked ({self.reason})" if self.reason else "masked"


def choose(config: Config, loaded: Loaded, planned: Planned, finetune_epochs: int) -> RetrainChoice:
    """Where retraining runs (see the module docstring): the pruned model unless ``--retrain-on masked``
    or the run needs the dense one — element or shape sparsity (no surgery to train through),
    checkpoints (they hold the dense model), several processes, a model streamed for its size — or the
    pruned model's updates would not carry back exactly (checked on a random update at the planned
    counts). ``--retrain-on pruned`` makes each of those reasons an error."""
    setting = config.train.retrain_on
    if finetune_epochs == 0 or setting == "masked":
        return RetrainChoice(False, "" if finetune_epochs == 0 else "--retrain-on masked")
    reason = _obstacle(config, loaded, planned)
    if reason is not None and setting == "pruned":
        raise SpecError(f"--retrain-on pruned: {reason}")
    return RetrainChoice(reason is None, reason or "")


def _obstacle(config: Config, loaded: Loaded, planned: Planned) -> str | None:
    if planned.elements:
        return "element or shape sparsity keeps the dense layout"
    if config.train.checkpoint_dir:
        return "checkpoints hold the dense model"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "several processes"
    if protos.model_nbytes(loaded.base) > protos.LARGE_MODEL_BYTES:
        return "the model is streamed for its size"
    if not planned.keep:
        return "nothing is pruned"
    masks = magnitude_masks(loaded.base, planned.plan, planned.keep)  # the counts the hard prune keeps
    error = round_trip_error(loaded.base, planned.plan, masks, float_names(loaded.base), config.run.seed)
    return None if error is None else f"the pruned model's updates would not carry back: {error}"


def retrain_pruned(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    planned: Planned,
    trained: Trained,
    clock: PhaseClock,
) -> Trained:
    """Retrain the model surgery makes of ``trained`` (a :class:`~.training.Trained` after the hard prune)
    for the configured retraining epochs and return ``trained`` with the updates carried back (history
    and settings extended)."""
    from ..train.admm import train_pruned
    from ..train.runtime import torch_threads
    from .training import check_import, import_for_training

    pending = trained.pending
    assert pending is not None, "retrain_pruned runs only where training left a retraining pending"
    plan, masks = planned.plan, trained.masks
    cut = prune_model(trained.model, plan, masks)  # initializer names as in the trained model (no reshare)
    with clock.phase("import"):
        imported, chunk = import_for_training(cut, samples, config.run.seed)
        check_import(cut, imported, samples.verification_inputs(config.run.seed, samples.splits.val.x), chunk)
    if chunk is not None:
        samples = samples.in_whole_batches(chunk)
    surgery = plan_surgery(trained.model, plan, masks)
    for name in surgery.created_names & set(imported.names):
        imported.tensor(name).requires_grad_(False)
    distills = config.distill.weight_for(samples.splits.train.y is not None) > 0
    teacher = import_for_training(loaded.base, samples, config.run.seed)[0].module if distills else None
    floats = float_initializers(cut)
    bound = [name for name in imported.names if name in floats]
    cfg = pending if chunk is None else replace(pending, batch_size=chunk)
    log.info("retraining the pruned model (%d initializers)", len(bound))
    splits = samples.splits
    with clock.phase("train"), torch_threads(config.train.threads):
        result = train_pruned("magnitude", imported, plan, {}, splits.train, splits.val, cfg, teacher=teacher)
    clock.phases["train.finetune"] = result.times.get("finetune", 0.0)
    after = {name: imported.onnx_array(name) for name in bound}
    with clock.phase("export"):
        before = {name: floats[name] for name in bound}
        model: onnx.ModelProto = scatter_update(trained.model, before, after, surgery)
    history = trained.history + [e for e in result.history if e.get("phase") != "pruned"]
    return replace(trained, model=model, history=history, pending=None)


__all__ = ["RetrainChoice", "choose", "retrain_pruned"]
