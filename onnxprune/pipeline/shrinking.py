"""Stage 5a, ``--admm-on shrunk``: ADMM on a model one-shot pruned part of the way.

ADMM's W-steps train the dense model, so they cost its MACs: on the VGG-style reference at ``filter:0.7``
the 5 ADMM epochs were 183 s of a 220 s run, the 5 epochs retraining the pruned model 30 s. Most of the
channels a high ratio removes are plain from the start (the weakest by group magnitude); ADMM has to
choose among the others. So ADMM can train the model one-shot pruned part of the way from each group's
width C to its target k,

    k₁ = round(C·(k/C)^E),   k ≤ k₁ ≤ C   (E = 0.7: keep fraction 0.43 at filter:0.7, 0.26 at 0.85;
                                           E = 0.5, the geometric mean √(k·C): 0.55 and 0.39),

at about (k₁/C)² of the dense MACs, and pick the k target channels among those k₁ — StructADMM's
progressive targets (Zhang et al.), with a one-shot first step. The first step ranks by group magnitude
(:func:`~onnxprune.graph.probe.channel_norms`, ``importance="group"``: Torch-Pruning's one-shot choice),
not by ADMM's projection: the projection of the untrained weights is what ADMM improves on.

The shrunk model S is made by surgery and analysed again (its groups keep their names: the activation
tensors that carry them); ADMM trains it to the same kept counts; its values come back into the dense
model as retraining's do, D' = D + scatter_{K₁}(S' − S) (:mod:`onnxprune.graph.unprune`), and the masks
compose: the dense model keeps K₁'s channels that ADMM kept. Retraining then runs on the pruned model
(:mod:`.retraining`), so the export and the pruned ≡ masked verification are those of every run.

A run that cannot retrain the pruned model (the reasons of :func:`.retraining.choose`), channel-wise
groups, or a shrunk model whose plan does not match runs ADMM on the dense model, and the log and the
report's ``admm_on`` say why.

Measured (real-recipe VGG, 10 epochs, 3 seeds; README "ADMM on a shrunk model"): E = 0.5 is within ±0.2 pp
of dense ADMM at filter:0.5–0.9 in 123 / 95 / 60 s instead of 220 / 219 / 200 s at 0.7 / 0.85 / 0.9; E = 0.7
(the default) has the same mean over the four ratios (+0.45 pp at 0.7, −0.37 at 0.85) in 97 / 60 / 53 s.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..graph.analysis import analyze
from ..graph.edit import Surgery, initializer_arrays, plan_surgery, prune_model
from ..graph.unprune import float_names, scatter_update
from ..plan import Group, PruningPlan
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned
from .prune import magnitude_masks
from .resolve import Config
from .retraining import choose

if TYPE_CHECKING:
    from ..train.importer import ImportedModel
    from .training import Trained

log = logging.getLogger("onnxprune")


def shrunk_counts(plan: PruningPlan, keep: dict[str, int], exponent: float) -> dict[str, int]:
    """Per pruned group, k₁ = round(C·(k/C)^e) clipped to [k, C]; e = 0.5 is √(k·C) (see the module
    docstring)."""
    out = {}
    for name, k in keep.items():
        c = plan.group(name).channels
        out[name] = min(c, max(k, round(c * (k / c) ** exponent)))
    return out


def compose_masks(
    plan: PruningPlan, first: dict[str, np.ndarray], second: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The dense model's keep masks after two cuts: ``first`` (dense channels) and ``second`` (channels of
    the once-cut model, by group name; a group ``second`` does not name keeps what ``first`` kept)."""
    out = {}
    for g in plan.groups:
        kept = np.flatnonzero(first[g.name])
        mask = np.zeros(g.channels, dtype=bool)
        inner = second.get(g.name)
        if inner is not None and len(inner) != len(kept):
            raise ValueError(f"group {g.name!r}: a mask of {len(inner)} for the {len(kept)} channels kept")
        mask[kept if inner is None else kept[np.asarray(inner, dtype=bool)]] = True
        out[g.name] = mask
    return out


def obstacle(config: Config, loaded: Loaded, planned: Planned) -> str | None:
    """Why an ADMM run with ``--admm-on shrunk`` must train the dense model, or None."""
    if any(g.kind == "channel" for g in planned.plan.groups if g.name in planned.keep):
        return "channel-wise groups are ranked by their consumers"
    where = choose(config, loaded, planned, 1)  # the shrunk path retrains the pruned model
    return None if where.pruned else where.reason


def admm_on_shrunk(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    planned: Planned,
    clock: PhaseClock,
    dense: ImportedModel,
) -> Trained | None:
    """ADMM on the shrunk model, carried back into the dense one, with the retraining left pending; None
    where the shrunk model's plan does not match the dense plan. ``dense``: the untrained torch import of
    the dense model (the teacher when distilling)."""
    from ..train.admm import train_pruned
    from ..train.runtime import torch_threads
    from .training import Trained, check_import, import_for_training, train_config

    plan, seed = planned.plan, config.run.seed
    counts = shrunk_counts(plan, planned.keep, config.train.shrink_exponent)
    first = magnitude_masks(loaded.base, plan, counts, "group")
    shrunk = prune_model(loaded.base, plan, first)
    shrunk_plan = analyze(shrunk, samples.inputs.shape)
    keep = matching_keep(shrunk_plan, plan, planned.keep, counts)
    if keep is None:
        return None
    with clock.phase("import"):
        imported, chunk = import_for_training(shrunk, samples, seed)
        check_import(shrunk, imported, samples.verification_inputs(seed, samples.splits.val.x), chunk)
    if chunk is not None:
        samples = samples.in_whole_batches(chunk)
    surgery = plan_surgery(loaded.base, plan, first)
    for name in surgery.created_names & set(imported.names):
        imported.tensor(name).requires_grad_(False)  # scatter_update carries no change of them
    cfg = train_config(config, samples, chunk)
    distills = config.distill.weight_for(samples.splits.train.y is not None) > 0
    teacher = dense.module if distills else None
    kept = sum(counts.values()), sum(plan.group(n).channels for n in counts)
    log.info("ADMM on the shrunk model: %d of %d channels of the pruned groups (group magnitude)", *kept)
    admm_only = replace(cfg, epochs=None, finetune_epochs=0)
    splits = samples.splits
    with clock.phase("train"), torch_threads(config.train.threads):
        result = train_pruned(
            "admm",
            imported,
            shrunk_plan,
            keep,
            splits.train,
            splits.val,
            admm_only,
            teacher=teacher,
        )
    for name, seconds in result.times.items():
        clock.phases[f"train.{name}"] = seconds
    floats = float_names(shrunk)
    after = {name: imported.onnx_array(name) for name in imported.names if name in floats}
    # only the matched groups: a name whose group the first cut finished may stand for other channels there
    second = {n: np.asarray(m, dtype=bool) for n, m in result.masks.items() if n in keep}
    with clock.phase("export"):
        model, masks = carry_back(loaded.base, plan, first, surgery, shrunk, after, second)
    settings = asdict(cfg) | {"retrain_on": "pruned", "admm_on": f"shrunk ({kept[0]} of {kept[1]} channels)"}
    pending = replace(cfg, epochs=None, admm_epochs=0, bn_recalibrate=False) if cfg.finetune_epochs else None
    return Trained(model, masks, {}, result.history, settings, pending)


def carry_back(
    dense: onnx.ModelProto,
    plan: PruningPlan,
    first: dict[str, np.ndarray],
    cut: Surgery,
    shrunk: onnx.ModelProto,
    after: dict[str, np.ndarray],
    second: dict[str, np.ndarray],
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The dense model and its masks equal to the trained shrunk model: D' = D + scatter_{K₁}(S' − S) for
    ``shrunk`` = S (``dense`` cut to ``first``, ``cut`` that surgery) and ``after`` its trained float
    initializers (by name), and the composition of ``first`` with the shrunk model's masks ``second``.
    Then pruning D' to the composed masks gives the model pruning S' to ``second`` gives (a property test
    checks it on ORT)."""
    before = initializer_arrays(shrunk, set(after))
    model = scatter_update(dense, before, after, cut)
    return model, compose_masks(plan, first, second)


def matching_keep(
    shrunk_plan: PruningPlan, plan: PruningPlan, keep: dict[str, int], counts: dict[str, int]
) -> dict[str, int] | None:
    """The target counts by group of the shrunk model's plan, or None if a group still to prune is missing
    there, has another width than k₁, is not prunable, or is made of other tensors than in ``plan`` (its
    SOURCE members' (initializer, axis): surgery keeps the names, so the same group has the same ones). A
    group the first cut took to its target (k₁ = k: e.g. one head of three) has nothing left to prune and
    is left out (its mask is the first cut's)."""
    out = {}
    for name, k in keep.items():
        if counts[name] == k:
            continue
        try:
            g = shrunk_plan.group(name)
        except KeyError:
            return None
        if g.channels != counts[name] or not g.prunable or _sources(g) != _sources(plan.group(name)):
            return None
        out[name] = k
    return out


def _sources(group: Group) -> set[tuple[str, int]]:
    return {(m.initializer, m.axis) for m in group.sources}


__all__ = ["admm_on_shrunk", "carry_back", "compose_masks", "matching_keep", "obstacle", "shrunk_counts"]
