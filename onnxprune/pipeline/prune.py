"""The torch-free stage: plan -> masks -> surgery -> verify (ONNX side only).

:func:`export` is what ``compress`` runs after training (stage 6): the masked dense model (every removed
channel's SOURCE slices zero) and the physically pruned model (surgery: :func:`onnxprune.graph.edit.
prune_model`) are made from the trained model, the copies normalization made of shared initializers are
merged back where still equal, shape-wise runs cut the channels no consumer column reads
(:mod:`onnxprune.graph.dead`), and the pruned model must reproduce the masked one on ONNX Runtime
(:func:`onnxprune.graph.verify.verify_pruned`) and meet every element constraint, else
:class:`~onnxprune.errors.VerificationError` and nothing is written. A model over
:data:`~onnxprune.graph.protos.LARGE_MODEL_BYTES` has its masked model streamed to a temporary file, never
held.

:func:`prune_stage` is the same without torch: the plan's kept channels are chosen by magnitude (the
channels of largest L2 norm over their SOURCE slices, or with ``--importance group`` also over the
consumers' weight slices: :func:`onnxprune.graph.probe.channel_norms`, as ``--method magnitude`` ranks
them before it retrains) or given by the caller, and exported from the model
as it is. ``compress`` runs it for that preview (no torch import, no import check);
:func:`prune_without_training` (``onnxprune.prune``) is it as a function of a model, for pipelines that
train elsewhere.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..config.alignment import default_alignment
from ..errors import SpecError
from ..graph import protos
from ..graph.dead import aligned_removal, dead_channels
from ..graph.edit import mask_model, prune_model, write_masked
from ..graph.elements import verify_elements
from ..graph.inputs import Batch
from ..graph.load import reshare
from ..graph.probe import channel_norms, magnitude_mask
from ..graph.verify import VerifyResult, compare_models, verify_pruned
from ..plan import PruningPlan, validate_masks
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned, plan
from .resolve import Config

log = logging.getLogger("onnxprune")


@dataclass(frozen=True)
class Exported:
    """The pruned model, verified; the masked model (None when it was only streamed, too large to hold);
    the masks it was cut to (dead channels included); the verification and its inputs; the dead-channel
    report entry (shape-wise); the trained model when a large masked model is to be streamed from it."""

    pruned: onnx.ModelProto
    masked: onnx.ModelProto | None
    masks: dict[str, np.ndarray]
    verification: VerifyResult
    check_inputs: list[Batch]
    dead: dict[str, Any]
    source: onnx.ModelProto | None = None


@dataclass(frozen=True)
class PruneResult:
    """What the torch-free stage made (``onnxprune.prune``): the pruned model, verified against the masked
    dense model (None when too large to hold: only streamed to a file), the plan, the keep masks it was
    cut to (group name -> bool per channel) and the verification."""

    model: onnx.ModelProto
    masked: onnx.ModelProto | None
    plan: PruningPlan
    masks: dict[str, np.ndarray]
    verification: VerifyResult


def export(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    planned: Planned,
    trained: onnx.ModelProto,
    masks: dict[str, np.ndarray],
    element_masks: Mapping[str, np.ndarray],
    clock: PhaseClock,
) -> Exported:
    """Masked model, surgery, dead channels, verification (see the module docstring)."""
    copies, p = loaded.normalized.copies, planned.plan
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as work:
        with clock.phase("export"):
            # pruned from the trained model (its kept slices are the masked model's); copies the normalizer
            # made of shared initializers merge back where they are still equal
            pruned = reshare(prune_model(trained, p, masks), copies, inplace=True)
            masked: onnx.ModelProto | None = None
            masked_path = Path(work) / "masked.onnx"
            if protos.model_nbytes(trained) > protos.LARGE_MODEL_BYTES:  # streamed to a file, never held
                write_masked(trained, p, masks, masked_path)
            else:
                masked = reshare(mask_model(trained, p, masks), copies, inplace=True)
        with clock.phase("verify"):
            check_inputs = samples.verification_inputs(config.run.seed + 1, samples.splits.test.x)
            dead: dict[str, Any] = {}
            if planned.shape_weights and masked is None:
                dead = {"dead_channels": [], "dead_note": "not looked for: the model is streamed (too large)"}
            elif planned.shape_weights and masked is not None:
                multiple = config.spec.align if config.spec.align > 1 else default_alignment("cpu")
                pruned, masks, dead = remove_dead(
                    trained, masked, pruned, p, masks, check_inputs, config.rtol, multiple
                )
                pruned = reshare(pruned, copies, inplace=True)
            reference = masked if masked is not None else masked_path
            verification = verify_pruned(reference, pruned, check_inputs, config.rtol)
            verify_elements(pruned, planned.elements, element_masks)
    streamed = masked is None and config.outputs.masked is not None  # streamed again at the end
    return Exported(pruned, masked, masks, verification, check_inputs, dead, trained if streamed else None)


def remove_dead(
    trained: onnx.ModelProto,
    masked: onnx.ModelProto,
    pruned: onnx.ModelProto,
    plan: PruningPlan,
    masks: dict[str, np.ndarray],
    inputs: Sequence[Batch],
    rtol: float,
    multiple: int,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, Any]]:
    """Channels whose every consumer column is zero (shape-wise), removed by filter surgery — as many as
    keep the kept count a multiple of ``multiple`` — when the result still reproduces ``masked`` on ORT
    (:mod:`onnxprune.graph.dead`); else ``pruned`` unchanged. Returns the model, the masks it was cut
    to, and the report entry."""
    dead = dead_channels(plan, masked, masks)
    if not dead:
        return pruned, masks, {"dead_channels": [], "dead_note": "no input channel lost all its columns"}
    removed = aligned_removal(dead, masks, multiple)
    rows: list[dict[str, Any]] = [
        {
            "group": name,
            "node": plan.group(name).source_node,
            "channels": int(d.sum()),
            "removed": int(removed[name].sum()) if name in removed else 0,
        }
        for name, d in dead.items()
    ]
    align = f"kept counts rounded up to a multiple of {multiple}: unaligned counts leave MLAS's NCHWc kernels"
    if not removed:
        note = f"none removed ({align})"
        return pruned, masks, {"dead_channels": rows, "dead_removed": False, "dead_note": note}
    cut = {name: keep & ~removed[name] if name in removed else keep for name, keep in masks.items()}
    candidate = prune_model(trained, plan, cut)  # as the main path: pruned from the trained model
    check = compare_models(masked, candidate, inputs, rtol)
    if not check.passed:
        note = f"removing them changes the outputs ({check.max_rel_error:.2e}): kept"
        log.warning("dead channels: %s", note)
        return pruned, masks, {"dead_channels": rows, "dead_removed": False, "dead_note": note}
    count = sum(r["removed"] for r in rows)
    note = (
        f"{count} removed by filter surgery (producer filters and consumer slices; {align}); "
        f"error {check.max_rel_error:.2e}"
    )
    log.info("dead channels: %d removed", count)
    return candidate, cut, {"dead_channels": rows, "dead_removed": True, "dead_note": note}


def magnitude_masks(
    model: onnx.ModelProto, plan: PruningPlan, keep: Mapping[str, int], importance: str = "source"
) -> dict[str, np.ndarray]:
    """Per group of ``plan``, the ``keep[g]`` channels of largest L2 norm over the slices ``importance``
    ranks by (:func:`~onnxprune.graph.probe.channel_norms`; at least one per cover set); every channel of
    the groups ``keep`` does not name."""
    out = {}
    for g in plan.groups:
        if g.name in keep:
            norms = channel_norms(model, g, importance=importance)
            out[g.name] = magnitude_mask(norms, keep[g.name], g.cover_sets)
        else:
            out[g.name] = np.ones(g.channels, dtype=bool)
    return out


def caller_masks(plan: PruningPlan, masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A caller's keep masks (group name -> bool per channel, True = kept), checked against ``plan``: a
    known group, shape ``(channels,)``, a prunable group if it removes anything, at least one channel kept
    (one per cover set); else a one-line :class:`SpecError`."""
    names = {g.name for g in plan.groups}
    out = {}
    for name, mask in masks.items():
        if name not in names:
            known = ", ".join(g.name for g in plan.prunable[:6])
            raise SpecError(f"masks: no group {name!r} in the plan (prunable groups: {known}, ...)")
        keep = np.asarray(mask)
        if keep.dtype != np.bool_:
            raise SpecError(f"masks: the mask of group {name!r} must be bool (True = kept), not {keep.dtype}")
        out[name] = keep
    try:
        validate_masks(plan, out)
    except ValueError as e:
        raise SpecError(f"masks: {e}") from None
    return out


def prune_stage(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    analysis: PruningPlan,
    clock: PhaseClock,
    masks: Mapping[str, Any] | None = None,
) -> tuple[Planned, Exported]:
    """Plan, masks (by magnitude, the caller's ``masks`` where given), surgery and verification without
    torch (see the module docstring). Element sparsity needs the torch side's projections: a
    :class:`SpecError` here."""
    planned = plan(config, loaded, samples, analysis, None, clock)
    if planned.elements:
        raise SpecError("element sparsity (irregular, nm, shape) needs training: use compress")
    chosen = magnitude_masks(loaded.base, planned.plan, planned.keep, config.train.importance)
    if masks is not None:
        chosen |= caller_masks(planned.plan, masks)
    return planned, export(config, loaded, samples, planned, loaded.base, chosen, {}, clock)


__all__ = [
    "Exported",
    "PruneResult",
    "caller_masks",
    "export",
    "magnitude_masks",
    "prune_stage",
    "remove_dead",
]
