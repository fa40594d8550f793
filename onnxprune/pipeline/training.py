"""Stage 5 of ``compress``: the torch side — import, plan against what the import binds, train, write back.

The model is imported with onnx2torch (:mod:`onnxprune.train.importer`), which must reproduce ONNX
Runtime's outputs before anything trains; ADAM-ADMM or magnitude pruning then trains it
(:mod:`onnxprune.train.admm`), and its values are written back into the original initializers. The torch
copy of the weights lives only inside :func:`plan_and_train`. Torch is imported here on use only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import DependencyError, UnsupportedModelError
from ..extras import installed
from ..graph.batch import check_relaxed, relax_batch
from ..graph.edit import write_back
from ..graph.inputs import Batch, ModelInputs, input_shapes
from ..graph.probe import channel_norms
from ..plan import PruningPlan
from ..runtime.sessions import run_batched, user_session
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned, plan
from .resolve import Config
from .retraining import choose

if TYPE_CHECKING:  # the torch side, imported on use only
    from ..train.admm import TrainConfig

log = logging.getLogger("onnxprune")
RELAXED_RTOL = 1e-5  # a batch-relaxed graph must reproduce the fixed-batch one this closely on ORT


@dataclass(frozen=True)
class Trained:
    """The trained model (the base model with the trained values), the kept channels of every group, the
    element masks (ONNX layout), the training history, its phase times and its configuration."""

    model: onnx.ModelProto
    masks: dict[str, np.ndarray]
    element_masks: dict[str, np.ndarray]
    history: list[dict[str, Any]]
    settings: dict[str, Any]
    pending: TrainConfig | None = None  # the retraining still to run on the pruned model (.retraining)

    def history_by_phase(self) -> dict[str, Any]:
        """Training history grouped by phase ('admm' rounds, 'admm_epoch', 'pruned', 'finetune' epochs)."""
        grouped: dict[str, Any] = {}
        for entry in self.history:
            grouped.setdefault(entry.get("phase", "other"), []).append(entry)
        return grouped


def plan_and_train(
    config: Config, loaded: Loaded, samples: Samples, analysis: PruningPlan, clock: PhaseClock
) -> tuple[Planned, Trained]:
    """Import the model (checked against ORT), plan what the import can train, train it."""
    with clock.phase("import"):
        imported, chunk = import_for_training(loaded.base, samples, config.run.seed)
        checks = samples.verification_inputs(config.run.seed, samples.splits.val.x)
        check_import(loaded.base, imported, checks, chunk)
    if chunk is not None:  # the torch import runs only batches of the model's fixed size
        samples = samples.in_whole_batches(chunk)
    planned = plan(config, loaded, samples, analysis, set(imported.names), clock)
    if config.train.admm_on == "shrunk" and config.run.method == "admm":
        from .shrinking import admm_on_shrunk, obstacle

        reason = obstacle(config, loaded, planned)
        shrunk = admm_on_shrunk(config, loaded, samples, planned, clock, imported) if reason is None else None
        if shrunk is not None:
            return planned, shrunk
        reason = reason or "the shrunk model's plan does not match the dense plan"
        log.info("ADMM runs on the dense model: %s", reason)
        trained = train(config, loaded, samples, planned, imported, clock, chunk)
        trained.settings["admm_on"] = f"dense ({reason})"
        return planned, trained
    return planned, train(config, loaded, samples, planned, imported, clock, chunk)


def import_for_training(model: onnx.ModelProto, samples: Samples, seed: int) -> tuple[Any, int | None]:
    """The torch import of ``model`` (batch-relaxed where ORT shows that is exact, see
    :func:`training_graph`) and the fixed batch it must run in, if any."""
    graph, chunk = training_graph(model, samples.inputs, seed)
    return _torch_side().import_model(graph), chunk


def train(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    planned: Planned,
    imported: Any,
    clock: PhaseClock,
    batch_size: int | None = None,
) -> Trained:
    """Train ``imported`` to ``planned`` with the configured method and write the values back
    (``batch_size``: instead of the configured one, for an import that runs one batch size only)."""
    from ..train.admm import train_pruned
    from ..train.runtime import torch_threads

    cfg = train_config(config, samples, batch_size)
    splits, method = samples.splits, config.run.method
    where = choose(config, loaded, planned, cfg.finetune_epochs or 0)
    if where.reason:
        log.info("retraining the masked dense model: %s", where.reason)
    # the phases as numbers of epochs (no --epochs total left to split): the retraining runs after the surgery
    here = replace(cfg, epochs=None, finetune_epochs=0) if where.pruned else cfg
    ranking = magnitude_ranking(config, loaded, planned)
    with clock.phase("train"), torch_threads(config.train.threads):
        result = train_pruned(
            method,
            imported,
            planned.plan,
            planned.keep,
            splits.train,
            splits.val,
            here,
            planned.elements,
            ranking=ranking,
        )
    for name, seconds in result.times.items():
        clock.phases[f"train.{name}"] = seconds
    masks = {name: np.asarray(k, dtype=bool) for name, k in result.masks.items()}
    with clock.phase("export"):
        model = write_back(loaded.base, imported.onnx_arrays())
    settings = asdict(cfg) | {"retrain_on": where.label}
    # the BatchNorm recalibration, if asked, ran at the hard prune
    pending = replace(cfg, epochs=None, admm_epochs=0, bn_recalibrate=False) if where.pruned else None
    return Trained(model, masks, result.element_masks, result.history, settings, pending)


def train_config(config: Config, samples: Samples, batch_size: int | None = None) -> TrainConfig:
    """The torch side's configuration of the run: the user's training settings (``batch_size`` instead of
    theirs where given), seed, logging, data kind and distillation, the ``--epochs`` split resolved for
    the method (the report records the epochs each phase trains)."""
    from ..train.admm import TrainConfig

    train_settings = {f.name: getattr(config.train, f.name) for f in fields(config.train)}
    if batch_size is not None:
        train_settings["batch_size"] = batch_size
    return TrainConfig(
        **train_settings,
        seed=config.run.seed,
        quiet=config.quiet,
        synthetic_data=samples.splits.name == "random",
        distill=config.distill,
    ).resolved(config.run.method)


def magnitude_ranking(config: Config, loaded: Loaded, planned: Planned) -> dict[str, np.ndarray] | None:
    """The channel scores of ``--method magnitude --importance group``, per pruned group, from the model
    before training (what the one-shot prune sees: nothing trains before it); None for the projection's
    own SOURCE norms (the default, and always for ADMM)."""
    if config.run.method != "magnitude" or config.train.importance == "source":
        return None
    plan = planned.plan
    importance = config.train.importance
    return {
        name: channel_norms(loaded.base, plan.group(name), importance=importance) for name in planned.keep
    }


TORCH_SIDE = ("torch", "torchvision", "onnx2torch")  # the train extra


def require_torch() -> None:
    """A one-line :class:`DependencyError` naming the extra, before any work, when the train extra is
    missing (found without importing it)."""
    missing = next((name for name in TORCH_SIDE if not installed(name)), None)
    if missing is not None:
        raise _missing_extra(missing)


def _missing_extra(name: str) -> DependencyError:
    return DependencyError(
        f"compress trains with torch ({name} is not installed): pip install 'onnxprune[train]' "
        "(without it: --method magnitude --finetune-epochs 0, onnxprune.prune, inspect, bench, profile)"
    )


def _torch_side() -> Any:
    """The torch import module, or a :class:`DependencyError` when torch is not installed."""
    try:
        from ..train import importer
    except ModuleNotFoundError as e:
        if e.name not in TORCH_SIDE:
            raise
        raise _missing_extra(e.name) from None
    return importer


def training_graph(
    model: onnx.ModelProto, inputs: ModelInputs, seed: int
) -> tuple[onnx.ModelProto, int | None]:
    """The graph to import for training and, when the torch import can run only batches of the model's
    fixed size ``B``, that ``B`` (else None).

    A model with a dynamic batch is imported as it is. A fixed batch is relaxed
    (:func:`onnxprune.graph.batch.relax_batch`) and the relaxed copy used when ORT shows it computes the
    original's function at other batch sizes; otherwise training runs in batches of ``B``."""
    relaxed = relax_batch(model)
    if relaxed is None:
        return model, None
    shapes = input_shapes(model, inputs.shape)
    error = check_relaxed(model, relaxed, shapes, seed)
    if error <= RELAXED_RTOL:
        log.info(
            "fixed batch %d: training on a batch-relaxed copy of the graph (%d reshape target(s) relaxed, "
            "ORT check %.1e); the written model keeps its batch of %d",
            relaxed.batch,
            len(relaxed.reshapes),
            error,
            relaxed.batch,
        )
        return relaxed.model, None
    log.warning(
        "fixed batch %d: the graph does not run other batch sizes when relaxed (ORT check %.1e); training in "
        "batches of %d",
        relaxed.batch,
        error,
        relaxed.batch,
    )
    return model, relaxed.batch


def check_import(
    model: onnx.ModelProto,
    imported: Any,
    inputs: Sequence[Batch],
    chunk: int | None = None,
    rtol: float = 1e-4,
) -> None:
    """Torch on the import must reproduce ORT on the model before we train it (max-abs relative error,
    :func:`onnxprune.graph.verify.max_relative_error`; ``chunk``: the torch import runs batches of this
    size only)."""
    import torch

    from ..graph.verify import max_relative_error

    sess = user_session(model)  # the first ORT session of a dynamic-batch model: a refusal is one line
    module = imported.module.eval()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = run_batched(sess, x)[0]
            arrays = [x] if isinstance(x, np.ndarray) else [x[name] for name in imported.input_names]
            out = torch_first_output(module, arrays, chunk)
            worst = max(worst, max_relative_error(ref, out))
    if worst > rtol:
        from ..train.divergence import first_divergence

        x = inputs[0]
        feeds = {imported.input_names[0]: x} if isinstance(x, np.ndarray) else dict(x)
        if chunk is not None:
            feeds = {k: v[:chunk] for k, v in feeds.items()}
        where = first_divergence(model, module, imported.input_names, feeds, rtol)
        raise UnsupportedModelError(
            f"the torch import does not reproduce the model (relative error {worst:.2e} > {rtol:g})"
            + (f"; {where}" if where is not None else "")
        )


def torch_first_output(module: Any, arrays: Sequence[np.ndarray], chunk: int | None) -> np.ndarray:
    """The module's first output on ``arrays``: in one call, or in chunks of exactly ``chunk`` samples (the
    last padded with copies of its last sample, whose outputs are dropped), as ORT runs a fixed batch."""
    import torch

    n = len(arrays[0])
    step = chunk or n
    parts = []
    for i in range(0, n, step):
        real = min(step, n - i)
        index = np.minimum(np.arange(step), real - 1) + i
        got = module(*(torch.from_numpy(np.ascontiguousarray(np.take(a, index, axis=0))) for a in arrays))
        parts.append((got[0] if isinstance(got, tuple | list) else got).numpy()[:real])
    return np.concatenate(parts)


__all__ = [
    "Trained",
    "check_import",
    "plan_and_train",
    "require_torch",
    "torch_first_output",
    "train",
    "training_graph",
]
