"""ADAM-ADMM structured pruning, hard pruning and masked retraining (see docs/ADMM.md).

Problem: minimize f(W) subject to, for every pruned group g, at most k_g channels non-zero, and for every
element-pruned weight its element constraint (at most k non-zeros, or N of every M along the input
dimension). Scaled ADMM over the SOURCE tensors of the pruned groups and the element-pruned weights (torch
layout, projections from :mod:`.projection` and :mod:`.elements`; the sets act on disjoint tensors, so
the joint projection is the product of the projections):

    Z ← Π(W);  U ← 0;  f₀ ← f(W) on the loss guard's probe batches
    every round (``round_iters`` optimizer steps on  f(W) + Σ_t ρ/2 ‖W_t − Z_t + U_t‖²_F):
        [first rounds] f(W) > 2·f₀: restore the round's start, halve the lr, redo (:mod:`.guard`)
        Z ← Π(W + U);  U ← U + W − Z;  ρ ← residual balancing (:mod:`.penalty`), U ← U·ρ_old/ρ_new
        log f, ‖W − Z‖_F/‖W‖_F and ‖Z − Z_prev‖_F per group, ρ
    after ``admm_epochs`` epochs: extra rounds while max ‖W − Z‖/‖W‖ > ``primal_tol`` (at most
    ``max_extra_rounds``); the history's 'admm_end' entry records the final residual and whether it met it
    hard prune: keep = support(Π(W)); W ← W ⊙ M  [``bn_recalibrate``: BatchNorm statistics re-estimated]
    masked retraining on f alone (fresh optimizer, lr warm-up then cosine to 0): ∇W ← ∇W ⊙ M before,
    W ← W ⊙ M after every step, so pruned slices stay exactly 0.

Optimizer Adam or SGD (Nesterov momentum), learning-rate schedules: :mod:`.schedules`; training-time
augmentation of image inputs (``augment``): :mod:`.augment`; the epoch budget (``epochs``):
:meth:`TrainSettings.split <onnxprune.config.settings.TrainSettings.split>`.

ρ is common to all groups (same ρ0 and schedule). When ρ changes, the scaled dual is rescaled,
U ← U·ρ_old/ρ_new, so that the multiplier Λ = ρU is unchanged (Boyd et al., "Distributed optimization ...
ADMM", §3.4.1). The authors' code does not (``rescale_dual=False``); then Λ jumps by the growth factor every
round, which feeds the support flip-flop seen when the W-step cannot follow Z − U. On a Fashion-MNIST CNN
with lr 1e-3 the last-round primal residual (max over groups) was 0.34 with rescaling against 1.17 without;
with the default lr 3e-3 both ended at 0.05, rescaling getting there sooner (0.22 against 0.47 at round 10).

f is the cross-entropy on the labels, self-distillation from a frozen copy of the original model, or a mix
(:mod:`.objective`). Dropout is off during ADMM and on during retraining. BatchNorm statistics are updated
in training mode when the data is real (``bn_stats='auto'`` and ``synthetic_data=False``) and frozen on
random inputs, which would corrupt them.

Checkpoints (``checkpoint_dir``/``resume``, :mod:`.checkpoint`) are taken after every round, the hard prune
and every retraining epoch. Under torchrun the module is wrapped in DDP (:mod:`.distributed`): the ranks
share each global batch, DDP averages the gradients so W stays identical on every rank, and every rank then
computes the same Z, U and masks itself (checked by a checksum after each Z-step).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..config.settings import BN_STATS, METHODS, TrainSettings
from ..data import ArrayData
from ..data.arrays import Inputs
from ..errors import SpecError, UnsupportedModelError
from ..graph.elements import ElementConstraint
from ..plan import Group, PruningPlan
from . import checkpoint as ckpt
from . import distributed
from .amp import Amp
from .amp import check as check_amp
from .augment import Augment, is_image
from .bn import recalibrate
from .distributed import EpochBatches
from .elements import project_elements
from .guard import LossGuard
from .importer import ImportedModel
from .objective import DistillConfig, Objective, is_classifier_output, outputs
from .penalty import Penalty, rescale_dual
from .progress import progress
from .projection import apply_masks, project_groups, tensor_masks, topk_keep
from .schedules import AdmmLr, finetune_schedule, make_optimizer

__all__ = [
    "TrainConfig",
    "TrainResult",
    "run_admm",
    "run_magnitude",
    "select_elements",
    "select_groups",
    "train_pruned",
]

log = logging.getLogger("onnxprune")

GUARD_BATCHES = 4  # training batches of the loss guard's probe (see _Run._probe_loss)

# a training batch: model inputs (graph order), labels or None, cached teacher outputs or None
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor | None, list[torch.Tensor] | None]


@dataclass(frozen=True)
class TrainConfig(TrainSettings):
    """The user's settings (:class:`~onnxprune.config.settings.TrainSettings`, defined there once) and what a
    run adds: seed, logging, BatchNorm handling, the distillation settings and the dual rescaling.

    The lr and ρ0 defaults were chosen on a 2-conv+BN, 2-Gemm Fashion-MNIST CNN (pretrained to 89 % val),
    with a constant lr and geometric ρ (the defaults before issue 20), keeping 6/16,
    10/32, 20/64 channels: with them the last-round primal residual was 0.05 (max over groups), the accuracy
    right after the hard prune 87.5 % (one-shot magnitude: 10 %), 89.8 % after one retraining epoch
    (magnitude + 3 retraining epochs: 88.1 %).
    Adam's step is about lr whatever the gradient scale, so a round moves a weight at most ~lr·round_iters:
    the W-step must be able to reach Z − U (lr 1e-3 left the support flip-flopping for 10 rounds).
    Issue 20 (a well-trained model: that lr wrecked it in the first steps, and ρ ×1.3 from 0.01 stayed too
    weak) added the warm-up, the loss guard, residual balancing and the extra rounds to ``primal_tol``; see
    the README's "ADMM defaults" for what each default is and why. ``--lr-schedule constant --loss-guard 0
    --rho-schedule geometric --rho-max 1 --max-extra-rounds 0`` gives the run of before, bit for bit.
    """

    seed: int = 0
    quiet: bool = False
    synthetic_data: bool = False  # random inputs (structure previews): BN statistics must not learn them
    distill: DistillConfig = field(default_factory=DistillConfig)
    rescale_dual: bool = True  # U ← U·ρ_old/ρ_new when ρ grows (Boyd et al. §3.4.1); False: authors' code

    def validate(self) -> None:
        """Raise :class:`SpecError` on values that cannot work."""
        super().validate()
        if self.bn_stats not in BN_STATS:
            raise SpecError("bn_stats must be 'auto', 'train' or 'freeze'")
        self.distill.validate()
        check_amp(self.amp, self.device)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise SpecError("device 'cuda' requested but torch sees no CUDA device")


@dataclass
class TrainResult:
    """Masks for every group of the plan (``plan.Masks``), per-round/epoch history, phase wall times (s),
    and the element masks of the element-pruned weights (ONNX layout, by initializer name)."""

    masks: dict[str, np.ndarray]
    history: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    element_masks: dict[str, np.ndarray] = field(default_factory=dict)

    def last(self, phase: str) -> dict[str, Any] | None:
        """The last history entry of ``phase`` ('admm', 'admm_epoch', 'pruned', 'finetune'), if any."""
        entries = [h for h in self.history if h["phase"] == phase]
        return entries[-1] if entries else None


# -- public entry points -----------------------------------------------------------------------------
def train_pruned(
    method: str,
    model: ImportedModel,
    plan: PruningPlan,
    keep: Mapping[str, int],
    train: ArrayData,
    val: ArrayData,
    cfg: TrainConfig | None = None,
    elements: Mapping[str, ElementConstraint] | None = None,
    teacher: nn.Module | None = None,
    ranking: Mapping[str, np.ndarray] | None = None,
) -> TrainResult:
    """Prune ``keep[g]`` channels per group and the element constraints of ``elements`` (by initializer
    name), training ``model`` in place; afterwards ``model.onnx_arrays()`` holds the masked weights.

    ``method`` 'admm': ADMM (``cfg.admm_epochs``), hard prune, masked retraining. 'magnitude': one-shot
    projection of the current weights (the k largest channel norms, the largest |w| per element
    constraint), then masked fine-tuning; with ``cfg.finetune_epochs == 0`` nothing trains and no labels
    (nor teacher) are needed. ``teacher``: the model self-distillation learns from, when ``model`` is not
    the dense model (the retraining of an already pruned model); default: ``model`` before training.
    ``ranking`` (method 'magnitude' only): per group, the channel scores the one-shot prune keeps the
    ``keep[g]`` largest of instead of the SOURCE norms (``--importance group``, scored on the ONNX side).
    """
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    if ranking and method == "admm":
        raise ValueError("ranking: ADMM's hard prune keeps the support of its projection")
    cfg = cfg or TrainConfig()
    with distributed.session(cfg.device):
        run = _Run(model, plan, keep, train, val, cfg, method == "admm", elements, teacher, ranking)
        return run.execute()


run_admm = partial(train_pruned, "admm")
run_magnitude = partial(train_pruned, "magnitude")


# -- plan selection ----------------------------------------------------------------------------------
def select_groups(
    model: ImportedModel, plan: PruningPlan, keep: Mapping[str, int]
) -> list[tuple[Group, int]]:
    """The groups that lose channels, with their keep counts; checks the request against plan and model."""
    chosen: list[tuple[Group, int]] = []
    for name, k in keep.items():
        try:
            g = plan.group(name)
        except KeyError:
            raise SpecError(f"no pruning group {name!r} in the plan") from None
        if not g.prunable:
            raise SpecError(f"group {name!r} cannot be pruned: {g.reason}")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= g.channels:
            raise SpecError(f"group {name!r}: keep must be an integer in [1, {g.channels}], not {k!r}")
        for m in g.sources:
            if m.initializer not in model.names:
                raise UnsupportedModelError(
                    f"initializer {m.initializer!r} (SOURCE of group {name!r}, node {m.node!r}) is not bound "
                    "to a torch tensor by the importer"
                )
        if int(k) < g.channels:
            chosen.append((g, int(k)))
    _check_disjoint(model, chosen)
    return chosen


def select_elements(
    model: ImportedModel, chosen: list[tuple[Group, int]], elements: Mapping[str, ElementConstraint]
) -> dict[str, ElementConstraint]:
    """The element constraints, checked: bound to a torch tensor, not a SOURCE of a pruned group."""
    grouped = {m.initializer: g.name for g, _ in chosen for m in g.sources}
    kinds = {m.initializer: g.kind for g, _ in chosen for m in g.sources}
    for name, c in elements.items():
        if name not in model.names:
            raise UnsupportedModelError(
                f"initializer {name!r} (weight of node {c.node!r}) is not bound to a torch tensor by the "
                "importer"
            )
        if name in grouped:
            raise SpecError(
                f"weight {name!r} is both {kinds[name]}-pruned (group {grouped[name]!r}) and "
                f"{c.rule or c.kind}"
            )
    return dict(elements)


def _check_disjoint(model: ImportedModel, chosen: list[tuple[Group, int]]) -> None:
    """Projections act group by group: SOURCE slices of different groups must not overlap."""
    owner: dict[tuple[str, int, int], str] = {}
    for g, _ in chosen:
        for m in g.sources:
            ax = model.torch_axis(m.initializer, m.axis)
            for i in m.index_map.indices(range(g.channels)).tolist():
                key = (m.initializer, ax, int(i))
                if owner.setdefault(key, g.name) != g.name:
                    raise ValueError(
                        f"groups {owner[key]!r} and {g.name!r} share index {i} of {m.initializer!r} "
                        f"(axis {ax})"
                    )


# -- training machinery ------------------------------------------------------------------------------
def _is_dropout(m: nn.Module) -> bool:
    return "Dropout" in type(m).__name__


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) or type(m).__name__ == "OnnxBatchNorm"


@dataclass
class _AdmmRun:
    """The running state of the ADMM phase (see :meth:`_Run._admm`)."""

    w: dict[str, torch.Tensor]
    penalized: list[str]  # the trainable constrained tensors
    per_round: int  # optimizer steps per round
    total: int  # steps of the regular rounds (``admm_epochs`` epochs)
    rho: float
    lr: AdmmLr
    penalty: Penalty
    guard: LossGuard
    z: dict[str, torch.Tensor] = field(default_factory=dict)
    u: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0
    task_sum: float = 0.0
    pen_sum: float = 0.0
    count: int = 0  # steps of the current round
    extra: int = 0  # accepted rounds past the regular ones (``primal_tol``)


class _Run:
    def __init__(
        self,
        model: ImportedModel,
        plan: PruningPlan,
        keep: Mapping[str, int],
        train: ArrayData,
        val: ArrayData,
        cfg: TrainConfig,
        admm: bool,
        elements: Mapping[str, ElementConstraint] | None = None,
        teacher: nn.Module | None = None,
        ranking: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        cfg.validate()
        self.teacher = teacher
        self.ranking = dict(ranking or {})
        self.model, self.plan, self.cfg, self.admm = model, plan, cfg, admm
        self.admm_epochs, self.finetune_epochs = cfg.split("admm" if admm else "magnitude")
        self.train_data, self.val_data = train, val
        self.chosen = select_groups(model, plan, keep)
        self.elements = select_elements(model, self.chosen, elements or {})
        self.sources = sorted({m.initializer for g, _ in self.chosen for m in g.sources} | set(self.elements))
        self.group_tensors = {g.name: sorted({m.initializer for m in g.sources}) for g, _ in self.chosen}
        self.group_tensors |= {name: [name] for name in self.elements}
        self.element_masks: dict[str, np.ndarray] = {}  # ONNX layout, for the result
        self.el_masks: dict[str, torch.Tensor] = {}  # torch layout, set by the hard prune
        self.ctx = distributed.context()
        per_rank_gpu = cfg.device == "cuda" and self.ctx.distributed
        self.device = torch.device(f"cuda:{self.ctx.local_rank}" if per_rank_gpu else cfg.device)
        self.net: Any = model  # what training steps call: the DDP wrapper under torchrun
        self.amp = Amp(cfg.amp, self.device)
        self.labeled = train.y is not None
        self.bn_train = cfg.bn_stats == "train" or (cfg.bn_stats == "auto" and not cfg.synthetic_data)
        self.history: list[dict[str, Any]] = []
        self.times: dict[str, float] = {}
        p = next((p for p in model.module.parameters() if p.is_floating_point()), None)
        self.dtype = p.dtype if p is not None else torch.float32
        self.n_inputs = len(model.input_names)
        self.train_targets: list[torch.Tensor] | None = None
        self.val_loader = self._loader(val)
        self.augment = Augment(cfg.augment)
        if self.augment and len(train) and not any(map(is_image, self._input_tensors(train.head(1).x))):
            raise SpecError("--augment needs an image input of shape (N, C, H, W)")
        self.checkpoints = (
            ckpt.Checkpointer(cfg.checkpoint_dir, self._fingerprint(keep), writer=self.ctx.main)
            if cfg.checkpoint_dir
            else None
        )

    def _fingerprint(self, keep: Mapping[str, int]) -> dict[str, Any]:
        """What must not change between a checkpoint and its resumption."""
        cfg = self.cfg
        hyper = ["round_iters", "lr", "finetune_lr", "rho0", "rho_growth"]
        hyper += ["rho_max", "batch_size", "weight_decay", "seed", "bn_stats", "rescale_dual", "amp"]
        hyper += ["optimizer", "lr_schedule", "warmup", "loss_guard", "guard_rounds", "rho_schedule"]
        hyper += ["primal_tol", "max_extra_rounds", "augment", "bn_recalibrate"]
        return {
            "method": "admm" if self.admm else "magnitude",
            "model": ckpt.arrays_hash(self.model.onnx_arrays()),
            "data": ckpt.data_hash(self.train_data),
            # a channel-wise group is marked (filter groups keep the format of earlier checkpoints)
            "keep": ",".join(
                f"{g.name}={'channel:' if g.kind == 'channel' else ''}{k}" for g, k in self.chosen
            ),
            "elements": ",".join(f"{n}={c.fingerprint}" for n, c in sorted(self.elements.items())),
            "distill": str(sorted(vars(cfg.distill).items())),
            "admm_epochs": self.admm_epochs,
            "finetune_epochs": self.finetune_epochs,
            **{k: getattr(cfg, k) for k in hyper},
        }

    # -- data --------------------------------------------------------------------------------------
    def _input_tensors(self, x: Inputs) -> list[torch.Tensor]:
        """One tensor per model input, in graph order; float inputs in the model's dtype."""
        arrays = [x] if isinstance(x, np.ndarray) else [x[name] for name in self.model.input_names]
        tensors = [torch.as_tensor(np.asarray(a)) for a in arrays]
        return [t.to(self.dtype) if t.is_floating_point() else t for t in tensors]

    def _loader(self, data: ArrayData, targets: list[torch.Tensor] | None = None) -> DataLoader:
        """Batches of (inputs..., [labels], [cached teacher outputs...]) in order; see :meth:`_batches`."""
        return DataLoader(self._dataset(data, targets), batch_size=self.cfg.batch_size, shuffle=False)

    def _dataset(self, data: ArrayData, targets: list[torch.Tensor] | None = None) -> TensorDataset:
        tensors = self._input_tensors(data.x)
        if data.y is not None:
            tensors.append(torch.as_tensor(np.asarray(data.y)).long())
        tensors.extend(targets or [])
        return TensorDataset(*tensors)

    def _train_loader(self, phase: str) -> tuple[DataLoader, EpochBatches]:
        """This rank's shuffled training batches; the order of an epoch is set by ``sampler.set_epoch``."""
        sampler = EpochBatches(len(self.train_data), self.cfg.batch_size, self.cfg.seed, phase, self.ctx)
        # a private generator: each epoch's iterator draws a base seed from it, which from torch's global
        # RNG would shift dropout's stream on a resume that re-enters an epoch
        dataset = self._dataset(self.train_data, self.train_targets)
        return DataLoader(dataset, batch_sampler=sampler, generator=torch.Generator()), sampler

    def _batches(self, loader: DataLoader, labeled: bool) -> Iterator[Batch]:
        n_in = self.n_inputs
        for batch in loader:
            batch = [b.to(self.device) for b in batch]
            x = tuple(batch[:n_in])
            y = batch[n_in] if labeled else None
            rest = batch[n_in + int(labeled) :]
            yield x, y, (rest or None)

    def _cache_teacher(self, objective: Objective, data: ArrayData) -> list[torch.Tensor] | None:
        """The teacher's outputs on every sample of ``data``, when distilling and they fit the cache."""
        if not objective.distills or len(data) == 0:
            return None
        mode = self.cfg.distill.teacher
        if mode == "online":
            return None
        loader = self._loader(data)
        first = next(iter(self._batches(loader, data.labeled)))[0]
        per_sample = sum(o[0].numel() * o.element_size() for o in objective.teacher_outputs(first))
        size_mb = per_sample * len(data) / 2**20
        if mode == "auto" and size_mb > self.cfg.distill.cache_mb:
            self._info("teacher outputs: %.0f MB > cache limit, computed online", size_mb)
            return None
        parts: list[list[torch.Tensor]] = []
        for x, _, _ in self._batches(loader, data.labeled):
            parts.append([o.cpu() for o in objective.teacher_outputs(x)])
        return [torch.cat(column) for column in zip(*parts, strict=True)]

    # -- modes -------------------------------------------------------------------------------------
    def _mode(self, phase: str) -> None:
        """'admm': train, dropout off; 'finetune': train; 'eval'. BN stats frozen unless bn_train."""
        module = self.model.module
        module.train(phase != "eval")
        for m in module.modules():
            if (phase == "admm" and _is_dropout(m)) or (not self.bn_train and _is_batchnorm(m)):
                m.eval()

    # -- evaluation --------------------------------------------------------------------------------
    def _evaluate(self, objective: Objective | None) -> dict[str, float]:
        """Validation loss (the training f), accuracy when labeled, top-1 agreement with the teacher."""
        if len(self.val_data) == 0 or objective is None:
            return {}
        val_labeled = self.val_data.y is not None
        if not val_labeled and not objective.distills:
            return {}
        self._mode("eval")
        total, correct, agree, n = 0.0, 0, 0, 0
        classifier = True
        with torch.no_grad():
            for x, y, t in self._batches(self.val_loader, val_labeled):
                out = self.model(*x)
                if objective.distills and t is None:
                    t = objective.teacher_outputs(x)
                total += float(objective(out, x, y if objective.weight < 1 else None, t)) * len(x[0])
                pred = outputs(out)[0]
                classifier = classifier and is_classifier_output(pred)
                if y is not None:
                    correct += int((pred.argmax(dim=1) == y).sum())
                if t is not None and classifier:
                    agree += int((pred.argmax(dim=1) == t[0].argmax(dim=1)).sum())
                n += len(x[0])
        result = {"val_loss": total / max(n, 1)}
        if val_labeled:
            result["val_acc"] = correct / max(n, 1)
        if objective.distills and classifier:
            result["val_agree"] = agree / max(n, 1)
        return result

    # -- main --------------------------------------------------------------------------------------
    def execute(self) -> TrainResult:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        self.model.to(self.device)
        if self.ctx.distributed:
            self.net = _ddp(self.model.module, self.device)
        try:
            trains = self.finetune_epochs > 0 or (self.admm and self.admm_epochs > 0)
            objective = self._objective(trains)
            state = self.checkpoints.load() if self.checkpoints and cfg.resume else None
            if state is not None:
                self._restore_weights(state["weights"])
                self.history = list(state["history"])
            if state is None or state["phase"] == "admm":
                masks = self._admm_and_prune(objective, state)
                state = None
            else:  # the checkpoint is past the hard prune
                self.keeps = {g: k.numpy() for g, k in state["keeps"].items()}
                self.el_masks = {n: m.to(self.device) for n, m in state["element_masks"].items()}
                self._record_element_masks()
                masks = self._tensor_masks()
            if self.finetune_epochs > 0:
                t0 = time.perf_counter()
                self._finetune(objective, masks, state)
                self.times["finetune"] = time.perf_counter() - t0
        finally:
            self.model.to("cpu")
            self._mode("eval")
        self.times["total"] = time.perf_counter() - start
        return TrainResult(self._plan_masks(), self.history, self.times, self.element_masks)

    def _admm_and_prune(
        self, objective: Objective | None, state: dict[str, Any] | None
    ) -> dict[str, torch.Tensor]:
        if self.admm and self.admm_epochs > 0 and (self.chosen or self.elements):
            t0 = time.perf_counter()
            self._admm(objective, state)
            self.times["admm"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        masks = self._hard_prune()
        if self.cfg.bn_recalibrate:
            self._recalibrate_bn()
        self.times["prune"] = time.perf_counter() - t0
        self.history.append({"phase": "pruned", **self._evaluate(objective)})
        self._save({"phase": "finetune", "epoch": 0, "optimizer": None, "schedule": None})
        return masks

    # -- checkpoints -------------------------------------------------------------------------------
    def _save(self, state: dict[str, Any]) -> None:
        """Checkpoint ``state`` plus the weights, history and (after the prune) the kept channels."""
        if self.checkpoints is None:
            return
        with torch.no_grad():
            weights = {n: self.model.tensor(n).detach().cpu().clone() for n in self.model.names}
        keeps = {g: torch.from_numpy(k) for g, k in getattr(self, "keeps", {}).items()}
        el_masks = {n: m.detach().cpu() for n, m in self.el_masks.items()}
        self.checkpoints.save(
            {**state, "weights": weights, "history": self.history, "keeps": keeps, "element_masks": el_masks}
        )

    def _restore_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        unknown = set(weights) ^ set(self.model.names)
        if unknown:
            raise SpecError(f"checkpoint weights do not match the model: {sorted(unknown)[:3]}")
        with torch.no_grad():
            for name, t in weights.items():
                self.model.tensor(name).copy_(t)

    def _tensor_masks(self) -> dict[str, torch.Tensor]:
        """Per-tensor masks (torch layout) of the kept channels and the element masks."""
        keeps = {g: torch.from_numpy(k).to(self.device) for g, k in self.keeps.items()}
        masks = tensor_masks(
            self._weights(), [(g, keeps[g.name]) for g, _ in self.chosen], self.model.torch_axis
        )
        return masks | self.el_masks

    def _record_element_masks(self) -> None:
        """The element masks in ONNX layout, for the result."""
        for name, mask in self.el_masks.items():
            transform = self.model.binding(name).transform
            self.element_masks[name] = transform.to_onnx(mask.cpu().to(torch.float32)).numpy() != 0

    def _objective(self, trains: bool) -> Objective | None:
        """The loss; None when nothing trains and nothing can be evaluated without a teacher."""
        if not trains and self.val_data.y is None:
            return None
        probe = None
        if len(self.train_data):
            head = self.train_data.head(self.cfg.batch_size)
            probe = tuple(t.to(self.device) for t in self._input_tensors(head.x))
        if not trains:  # evaluation only: labels, no teacher needed
            return Objective(self.model.module, True, probe, DistillConfig(weight=0.0))
        teacher = None if self.teacher is None else self.teacher.to(self.device)
        objective = Objective(self.model.module, self.labeled, probe, self.cfg.distill, teacher)
        # augmented inputs have no cached teacher outputs: the teacher then sees the same augmented batch
        self.train_targets = None if self.augment else self._cache_teacher(objective, self.train_data)
        val_targets = self._cache_teacher(objective, self.val_data)
        self.val_loader = self._loader(self.val_data, targets=val_targets)
        if self.train_targets is not None:
            self._info("teacher outputs cached for %d + %d samples", len(self.train_data), len(self.val_data))
        return objective

    def _weights(self) -> dict[str, torch.Tensor]:
        return {name: self.model.tensor(name) for name in self.sources}

    def _round_iters(self, steps_per_epoch: int) -> int:
        return self.cfg.round_iters or max(1, steps_per_epoch // 4)

    def _admm(self, objective: Objective | None, state: dict[str, Any] | None) -> None:
        """The rounds of the ADMM phase: ``admm_epochs`` epochs, then extra rounds until the primal residual
        is under ``primal_tol`` (at most ``max_extra_rounds``); the loss guard watches the first rounds."""
        assert objective is not None
        params = self.model.trainable()
        opt = make_optimizer(self.cfg.optimizer, list(params.values()), self.cfg.lr, self.cfg.weight_decay)
        loader, sampler = self._train_loader("admm")
        steps = sampler.steps_per_epoch
        run = self._admm_state(objective, state, opt, list(params), steps)
        first_epoch, done = (0, 0) if state is None else (state["epoch"], state["done"])
        self._log_admm_plan(steps, run.total // run.per_round, run.per_round, run.rho)
        bar = progress(run.total, run.step, "admm", self._quiet)
        try:
            for epoch in itertools.count(first_epoch):
                if steps == 0 or (epoch >= self.admm_epochs and self._admm_over(run)):
                    break
                self._mode("admm")
                sampler.set_epoch(epoch, skip=done if epoch == first_epoch else 0)
                for i, (x, y, t) in enumerate(self._batches(loader, self.labeled), sampler.skip):
                    self._admm_step(objective, run, opt, sampler.weight(i, len(x[0])), x, y, t)
                    bar.update(1)
                    if run.step % run.per_round == 0:
                        self._round_end(objective, run, opt, list(params), epoch, i + 1, bar)
                        if run.step > run.total and self._admm_over(run):
                            break
                if epoch < self.admm_epochs:
                    self.history.append({"phase": "admm_epoch", "epoch": epoch, **self._evaluate(objective)})
                    self._info("admm epoch %d: %s", epoch, _fmt(self.history[-1]))
        finally:
            bar.close()
        self._admm_summary(run)

    def _admm_state(
        self,
        objective: Objective,
        state: dict[str, Any] | None,
        opt: torch.optim.Optimizer,
        names: list[str],
        steps: int,
    ) -> _AdmmRun:
        """The phase's running state: fresh (Z0 = Π(W0), U0 = 0, the dense loss measured), or resumed
        (W is restored already; Z, U, ρ, optimizer, lr back-off, guard and RNG from the checkpoint)."""
        cfg = self.cfg
        w = self._weights()
        trainable = set(names)
        run = _AdmmRun(
            w=w,
            penalized=[n for n in self.sources if n in trainable],
            per_round=self._round_iters(steps),
            total=self.admm_epochs * steps,
            rho=cfg.rho0,
            lr=AdmmLr(cfg.lr, self.admm_epochs * steps, cfg.warmup, cfg.lr_schedule),
            penalty=Penalty(cfg.rho_schedule, cfg.rho0, cfg.rho_growth, cfg.rho_max),
            guard=LossGuard(cfg.loss_guard, cfg.guard_rounds, 0.0),
        )
        if state is None:
            with torch.no_grad():
                run.z, _, _ = self._project(w)
                run.u = {n: torch.zeros_like(t) for n, t in w.items()}
            if cfg.loss_guard > 0 and cfg.guard_rounds > 0:
                run.guard.dense_loss = self._probe_loss(objective)
                # as training sees the probe batches: augmented, when that is on (else the same)
                run.guard.dense_train_loss = self._probe_loss(objective, augment=True) or run.guard.dense_loss
                self._info(
                    "loss guard: dense task loss %.4g, limit %.4g", run.guard.dense_loss, run.guard.limit
                )
            return run
        run.z = {n: t.to(self.device) for n, t in state["z"].items()}
        run.u = {n: t.to(self.device) for n, t in state["u"].items()}
        run.rho, run.step, run.lr.scale = state["rho"], state["step"], state["lr_scale"]
        run.extra = state["extra"]
        run.guard.load(state["guard"])
        ckpt.load_optimizer(opt, state["optimizer"], names)
        self.amp.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        return run

    def _probe_loss(self, objective: Objective, augment: bool = False) -> float:
        """The task loss of the current weights on the loss guard's probe: the first ``GUARD_BATCHES``
        training batches in order, not augmented (``augment``: as training sees them; 0 when it sees them
        as they are), in the ADMM mode (the loss the W-step sees), in float32,
        with no gradient; the BatchNorm statistics these passes update are put back. Measured on the dense
        model it is the guard's f₀, at the end of a guarded round what is compared to factor·f₀: the same
        batches, so only the weights differ (a round's mean training loss is taken before each step and
        would miss what its last step did)."""
        module = self.model.module
        buffers = {k: v.detach().clone() for k, v in module.named_buffers()}
        loader = DataLoader(
            self._dataset(self.train_data, self.train_targets),
            batch_size=self.cfg.batch_size,
            generator=torch.Generator(),  # torch's global RNG (dropout's stream) is left alone
        )
        self._mode("admm")
        if augment and not self.augment:
            return 0.0  # no augmentation: the same as without
        total, n = 0.0, 0
        with torch.no_grad():
            for x, y, t in itertools.islice(self._batches(loader, self.labeled), GUARD_BATCHES):
                x = self.augment(x) if augment else x
                total, n = total + float(objective(self.model(*x), x, y, t)) * len(x[0]), n + len(x[0])
            for k, v in module.named_buffers():
                v.copy_(buffers[k])
        (mean,) = distributed.mean([total / max(n, 1)], self.ctx, self.device)
        return mean

    def _admm_step(
        self,
        objective: Objective,
        run: _AdmmRun,
        opt: torch.optim.Optimizer,
        weight: float,
        x: tuple[torch.Tensor, ...],
        y: torch.Tensor | None,
        t: list[torch.Tensor] | None,
    ) -> None:
        """One optimizer step on f(W) + ρ/2 Σ ‖W − Z + U‖²; a guarded round's start is snapshot first."""
        if run.count == 0 and run.guard.active(self._rounds()):
            run.guard.snapshot(self.model.module, opt)
        run.lr.apply(opt, run.step)
        x = self.augment(x)
        opt.zero_grad(set_to_none=True)
        with self.amp.autocast():
            task = objective(self.net(*x), x, y, t)
        pen = sum(
            ((run.w[n] - run.z[n] + run.u[n]).pow(2).sum() for n in run.penalized),
            torch.zeros((), device=self.device),
        )
        # weighted: the rank average (DDP's gradients, logged losses) is the global batch mean
        task = task * weight
        self.amp.backward(task + run.rho / 2 * pen)
        self.amp.step(opt)
        run.step += 1
        run.task_sum, run.pen_sum = run.task_sum + task.item(), run.pen_sum + pen.item() * run.rho / 2
        run.count += 1

    def _round_end(
        self,
        objective: Objective,
        run: _AdmmRun,
        opt: torch.optim.Optimizer,
        names: list[str],
        epoch: int,
        done: int,
        bar: Any,
    ) -> None:
        """The loss guard's check, then Z-step, dual step, ρ update (U rescaled) and checkpoint."""
        task, pen = distributed.mean(
            [run.task_sum / run.count, run.pen_sum / run.count], self.ctx, self.device
        )
        run.task_sum, run.pen_sum, run.count = 0.0, 0.0, 0
        guarded = run.guard.active(self._rounds())
        probe = self._probe_loss(objective) if guarded else None
        if probe is not None and self._backs_off(run, opt, task, probe, run.step):
            return
        lr = run.lr.at(run.step - 1)
        extra = run.step > run.total
        run.extra += int(extra)
        run.z, (primal, dual) = self._z_step(run.w, run.z, run.u, run.rho, run.step, epoch, task, pen)
        rho, why = run.penalty.next(run.rho, primal, dual, extra=extra)
        self.history[-1].update(lr=lr, rho_change=why, **({} if probe is None else {"guard_loss": probe}))
        bar.set_postfix(loss=f"{task:.4g}", primal=f"{self.history[-1]['primal_max']:.3g}")
        if self.cfg.rescale_dual:  # keep the unscaled dual ρU fixed across the ρ change
            rescale_dual(run.u.values(), run.rho, rho)
        run.rho = rho
        self._save_admm(epoch, done, run, opt, names)

    def _backs_off(
        self, run: _AdmmRun, opt: torch.optim.Optimizer, task: float, probe: float, step: int
    ) -> bool:
        """The guard's decision on a round whose weights have task loss ``probe`` on the probe batches
        (``task``: the round's mean training loss, logged); on a back-off, restore and halve the lr."""
        guard = run.guard
        if not guard.exceeds(probe, task) or not guard.can_back_off():
            if guard.exceeds(probe, task):
                log.warning(
                    "loss guard: round kept after %d back-offs (task loss %.4g)", guard.backoffs, probe
                )
            guard.accept()
            return False
        guard.restore(self.model.module, opt)
        run.lr.scale /= 2
        entry = {
            "phase": "guard",
            "round": self._rounds(),
            "step": step,
            "task_loss": task,
            "guard_loss": probe,
            "dense_loss": guard.dense_loss,
            "limit": guard.limit,
            "dense_train_loss": guard.dense_train_loss,
            "lr_scale": run.lr.scale,
        }
        self.history.append(entry)
        log.warning(
            "loss guard: round %d task loss %.4g at its end, %.4g over its steps (limits %.4g, %.4g: %.3gx "
            "the dense model's): weights of the round's start restored, ADMM lr halved to %.3g",
            entry["round"],
            probe,
            task,
            guard.limit,
            guard.train_limit,
            guard.factor,
            run.lr.peak * run.lr.scale,
        )
        return True

    def _rounds(self) -> int:
        """ADMM rounds accepted so far."""
        return sum(1 for h in self.history if h["phase"] == "admm")

    def _admm_over(self, run: _AdmmRun) -> bool:
        """Past the regular rounds: primal residual under the threshold, or the extra rounds spent."""
        last = next((h for h in reversed(self.history) if h["phase"] == "admm"), None)
        met = last is not None and last["primal_max"] <= self.cfg.primal_tol
        return met or run.extra >= self.cfg.max_extra_rounds

    def _admm_summary(self, run: _AdmmRun) -> None:
        """The phase's end in the history: final primal residual against the threshold, guard back-offs."""
        last = next((h for h in reversed(self.history) if h["phase"] == "admm"), None)
        primal = float(last["primal_max"]) if last is not None else math.nan
        entry = {
            "phase": "admm_end",
            "rounds": self._rounds(),
            "extra_rounds": run.extra,
            "primal_max": primal,
            "primal_tol": self.cfg.primal_tol,
            "primal_met": bool(primal <= self.cfg.primal_tol),
            "rho": run.rho,
            "dense_loss": run.guard.dense_loss,
            "guard_backoffs": run.guard.total,
            "lr_scale": run.lr.scale,
        }
        self.history.append(entry)
        self._info("admm end: %s", _fmt(entry))
        if not entry["primal_met"]:
            log.warning(
                "admm: primal residual %.3g is above --primal-tol %.3g after %d extra rounds: the hard prune "
                "moves the weights that far",
                primal,
                self.cfg.primal_tol,
                run.extra,
            )

    def _save_admm(
        self, epoch: int, done: int, run: _AdmmRun, opt: torch.optim.Optimizer, names: list[str]
    ) -> None:
        """Checkpoint at the end of a round (its loss accumulators are empty then, so none are saved)."""
        if self.checkpoints is None:
            return
        self._save(
            {
                "phase": "admm",
                "epoch": epoch,
                "done": done,  # global batches of ``epoch`` already trained on
                "step": run.step,
                "rho": run.rho,
                "lr_scale": run.lr.scale,
                "extra": run.extra,
                "guard": run.guard.state(),
                "z": {n: t.detach().cpu() for n, t in run.z.items()},
                "u": {n: t.detach().cpu() for n, t in run.u.items()},
                "optimizer": ckpt.optimizer_state(opt, names),
                "scaler": self.amp.state_dict(),
            }
        )

    def _log_admm_plan(self, steps: int, n_rounds: int, per_round: int, rho: float) -> None:
        cfg = self.cfg
        self._info(
            "admm: %d groups, %d element-pruned weights, %d epochs x %d steps, %d rounds of %d steps, "
            "rho %.3g x %.2f (max %.3g)",
            len(self.chosen),
            len(self.elements),
            self.admm_epochs,
            steps,
            n_rounds,
            per_round,
            rho,
            cfg.rho_growth,
            cfg.rho_max,
        )

    @property
    def _quiet(self) -> bool:
        return self.cfg.quiet or not self.ctx.main

    def _info(self, msg: str, *args: Any) -> None:
        """Progress logs come from rank 0 only."""
        if self.ctx.main:
            log.info(msg, *args)

    def _z_step(
        self,
        w: dict[str, torch.Tensor],
        z: dict[str, torch.Tensor],
        u: dict[str, torch.Tensor],
        rho: float,
        step: int,
        epoch: int,
        task: float,
        penalty: float,
    ) -> tuple[dict[str, torch.Tensor], tuple[float, float]]:
        """Z ← Π(W + U); U ← U + W − Z; record residuals per group. Returns the new Z and the residuals over
        every tensor together, ``(‖W − Z‖, ρ‖Z − Z_prev‖)``, that drive the penalty schedule."""
        with torch.no_grad():
            v = {n: w[n] + u[n] for n in w}
            z_new, _, _ = self._project(v)
        distributed.check_same([*w.values(), *z_new.values()], self.ctx, "W and Z after a Z-step")
        with torch.no_grad():
            for n in u:
                u[n] += w[n] - z_new[n]
            primal, dual = {}, {}
            for g, names in self.group_tensors.items():
                r2 = sum(float((w[n] - z_new[n]).pow(2).sum()) for n in names)
                w2 = sum(float(w[n].pow(2).sum()) for n in names)
                d2 = sum(float((z_new[n] - z[n]).pow(2).sum()) for n in names)
                primal[g] = math.sqrt(r2) / max(math.sqrt(w2), 1e-30)
                dual[g] = math.sqrt(d2)
            r_all = math.sqrt(sum(float((w[n] - z_new[n]).pow(2).sum()) for n in w))
            s_all = rho * math.sqrt(sum(float((z_new[n] - z[n]).pow(2).sum()) for n in w))
        entry = {
            "phase": "admm",
            "round": sum(1 for h in self.history if h["phase"] == "admm"),
            "step": step,
            "epoch": epoch,
            "task_loss": task,
            "penalty": penalty,
            "rho": rho,
            "primal": primal,
            "primal_max": max(primal.values()),
            "primal_mean": sum(primal.values()) / len(primal),
            "dual": dual,
            "dual_max": max(dual.values()),
            "dual_mean": sum(dual.values()) / len(dual),
        }
        self.history.append(entry)
        self._info("admm round %d: %s", entry["round"], _fmt(entry))
        if self.ctx.main and log.isEnabledFor(logging.DEBUG):  # one line per group: the report has them all
            log.debug("||W-Z||/||W|| per group: %s", " ".join(f"{n}={v:.3g}" for n, v in primal.items()))
        return z_new, (r_all, s_all)

    def _project(
        self, tensors: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Π over every constraint: ``(Z by tensor, channel keep by group, element mask by tensor)``."""
        axis_of = self.model.torch_axis
        z, keeps = project_groups(tensors, self.chosen, axis_of)
        z_el, el_masks = project_elements(tensors, self.elements, axis_of)
        return z | z_el, keeps, el_masks

    def _recalibrate_bn(self) -> None:
        """Re-estimate the BatchNorm statistics of the hard-pruned model (:mod:`.bn`) on training batches."""
        if not self.bn_train:
            self._info("bn recalibration skipped: BatchNorm statistics are frozen (random data or bn_stats)")
            return
        loader = DataLoader(
            self._dataset(self.train_data), batch_size=self.cfg.batch_size, generator=torch.Generator()
        )
        self._mode("admm")  # training mode, dropout off
        used = recalibrate(
            self.model.module, (x for x, _, _ in self._batches(loader, self.labeled)), self.model
        )
        self.history.append({"phase": "bn_recalibrate", "batches": used})
        self._info("BatchNorm statistics recalibrated over %d batches", used)

    def _hard_prune(self) -> dict[str, torch.Tensor]:
        """keep = support(Π(W)) (magnitude with a ``ranking``: its top ``keep[g]``); W ← W ⊙ M. Returns
        the per-tensor masks."""
        w = self._weights()
        with torch.no_grad():
            _, keeps, el_masks = self._project(w)
        for g, k in self.chosen:
            if g.name in self.ranking:
                scores = torch.as_tensor(np.asarray(self.ranking[g.name], dtype=np.float64))
                keeps[g.name] = topk_keep(scores, k, g.cover_sets).to(keeps[g.name].device)
        self.keeps = {g: k.cpu().numpy().astype(np.bool_) for g, k in keeps.items()}
        masks = tensor_masks(w, [(g, keeps[g.name]) for g, _ in self.chosen], self.model.torch_axis)
        masks |= el_masks
        apply_masks(w, masks)
        self.el_masks = el_masks
        self._record_element_masks()
        if not (self.chosen or el_masks):  # e.g. the retraining of an already pruned model
            return masks
        self._info(
            "hard prune: %s",
            ", ".join(
                [f"{g.name} {k}/{g.channels}" for g, k in self.chosen]
                + [f"{n} {int(m.sum())}/{m.numel()}" for n, m in el_masks.items()]
            ),
        )
        return masks

    def _finetune(
        self, objective: Objective | None, masks: dict[str, torch.Tensor], state: dict[str, Any] | None
    ) -> None:
        assert objective is not None
        cfg = self.cfg
        params = self.model.trainable()
        w = self._weights()
        opt = make_optimizer(cfg.optimizer, list(params.values()), cfg.finetune_lr, cfg.weight_decay)
        loader, sampler = self._train_loader("finetune")
        total = self.finetune_epochs * sampler.steps_per_epoch
        sched = finetune_schedule(opt, total, cfg.warmup, cfg.lr_schedule)  # restarts at the hard prune
        first_epoch = 0
        if state is not None:
            first_epoch = state["epoch"]
            if state["optimizer"] is not None:
                ckpt.load_optimizer(opt, state["optimizer"], list(params))
                sched.load_state_dict(state["schedule"])
                self.amp.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
        initial = first_epoch * sampler.steps_per_epoch
        bar = progress(total, initial, "finetune", self._quiet)
        try:
            for epoch in range(first_epoch, self.finetune_epochs):
                self._mode("finetune")
                sampler.set_epoch(epoch)
                loss_sum, count = 0.0, 0
                for i, (x, y, t) in enumerate(self._batches(loader, self.labeled)):
                    x = self.augment(x)
                    opt.zero_grad(set_to_none=True)
                    with self.amp.autocast():
                        loss = objective(self.net(*x), x, y, t) * sampler.weight(i, len(x[0]))
                    self.amp.backward(loss)
                    for n, mask in masks.items():
                        grad = w[n].grad
                        if grad is not None:
                            grad.masked_fill_(~mask, 0.0)
                    self.amp.step(opt)
                    sched.step()
                    apply_masks(w, masks)
                    loss_sum, count = loss_sum + loss.item(), count + 1
                    bar.update(1)
                (train_loss,) = distributed.mean([loss_sum / max(count, 1)], self.ctx, self.device)
                entry = {"phase": "finetune", "epoch": epoch, "train_loss": train_loss}
                self.history.append({**entry, **self._evaluate(objective)})
                self._info("finetune epoch %d: %s", epoch, _fmt(self.history[-1]))
                self._save(
                    {
                        "phase": "finetune",
                        "epoch": epoch + 1,  # epochs done
                        "optimizer": ckpt.optimizer_state(opt, list(params)),
                        "schedule": sched.state_dict(),
                        "scaler": self.amp.state_dict(),
                    }
                )
        finally:
            bar.close()

    def _plan_masks(self) -> dict[str, np.ndarray]:
        keeps = getattr(self, "keeps", {})
        return {g.name: keeps.get(g.name, np.ones(g.channels, dtype=np.bool_)) for g in self.plan.groups}


def _fmt(entry: Mapping[str, Any]) -> str:
    parts = []
    for k, v in entry.items():
        if k == "phase" or isinstance(v, dict):
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module``: gradients averaged over the ranks at every step."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
