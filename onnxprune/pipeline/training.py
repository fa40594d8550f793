"""Stage 5 of ``compress``: the torch side — import, plan against what the import binds, train, write back.

The model is imported with onnx2torch (:mod:`onnxprune.train.importer`), which must reproduce ONNX
Runtime's outputs before anything trains; ADAM-ADMM or magnitude pruning then trains it
(:mod:`onnxprune.train.admm`), and its values are written back into the original initializers. The torch
copy of the weights lives only inside :func:`plan_and_train`. Torch is imported here on use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import onnx

from ..errors import DependencyError, UnsupportedModelError
from ..graph.edit import write_back
from ..graph.inputs import Batch
from ..plan import PruningPlan
from ..runtime.sessions import make_session, run_batched
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned, plan
from .resolve import Config


@dataclass(frozen=True)
class Trained:
    """The trained model (the base model with the trained values), the kept channels of every group, the
    element masks (ONNX layout), the training history, its phase times and its configuration."""

    model: onnx.ModelProto
    masks: dict[str, np.ndarray]
    element_masks: dict[str, np.ndarray]
    history: list[dict[str, Any]]
    settings: dict[str, Any]

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
        import_model = _torch_side().import_model
        imported = import_model(loaded.base)
        checks = samples.verification_inputs(config.run.seed, samples.splits.val.x)
        check_import(loaded.base, imported, checks)
    planned = plan(config, loaded, samples, analysis, set(imported.names), clock)
    return planned, train(config, loaded, samples, planned, imported, clock)


def train(
    config: Config, loaded: Loaded, samples: Samples, planned: Planned, imported: Any, clock: PhaseClock
) -> Trained:
    """Train ``imported`` to ``planned`` with the configured method and write the values back."""
    from ..train.admm import TrainConfig, train_pruned
    from ..train.runtime import torch_threads

    train_settings = {f.name: getattr(config.train, f.name) for f in fields(config.train)}
    cfg = TrainConfig(
        **train_settings,
        seed=config.run.seed,
        quiet=config.quiet,
        synthetic_data=samples.splits.name == "random",
        distill=config.distill,
    )
    splits, method = samples.splits, config.run.method
    with clock.phase("train"), torch_threads(config.train.threads):
        result = train_pruned(
            method, imported, planned.plan, planned.keep, splits.train, splits.val, cfg, planned.elements
        )
    for name, seconds in result.times.items():
        clock.phases[f"train.{name}"] = seconds
    masks = {name: np.asarray(k, dtype=bool) for name, k in result.masks.items()}
    with clock.phase("export"):
        model = write_back(loaded.base, imported.onnx_arrays())
    return Trained(model, masks, result.element_masks, result.history, asdict(cfg))


def _torch_side() -> Any:
    """The torch import module, or a :class:`DependencyError` when torch is not installed."""
    try:
        from ..train import importer
    except ModuleNotFoundError as e:
        if e.name not in ("torch", "torchvision", "onnx2torch"):
            raise
        raise DependencyError(
            f"training needs {e.name} (the train extra: pip install 'onnxprune[train]'); without it only the "
            "ONNX side runs (inspect, bench, profile)"
        ) from None
    return importer


def check_import(model: onnx.ModelProto, imported: Any, inputs: Sequence[Batch], rtol: float = 1e-4) -> None:
    """Torch on the import must reproduce ORT on the model before we train it (max-abs relative error,
    :func:`onnxprune.graph.verify.max_relative_error`)."""
    import torch

    from ..graph.verify import max_relative_error

    sess = make_session(model)
    module = imported.module.eval()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = run_batched(sess, x)[0]
            arrays = [x] if isinstance(x, np.ndarray) else [x[name] for name in imported.input_names]
            got = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
            got = got[0] if isinstance(got, tuple | list) else got
            worst = max(worst, max_relative_error(ref, got.numpy()))
    if worst > rtol:
        raise UnsupportedModelError(
            f"the torch import does not reproduce the model (relative error {worst:.2e} > {rtol:g})"
        )


__all__ = ["Trained", "check_import", "plan_and_train", "train"]
