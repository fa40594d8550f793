"""Torch-Pruning (the ``peers`` extra) on the reference models, for :mod:`benchmarks.run_peers`.

The torch module of a reference ONNX model is rebuilt from the model classes of
``models/train_reference.py`` with the ONNX initializers loaded into its state dict (the exporter names them
after it: ``features.0.weight``, ``features.1.running_mean``, ...); :func:`check_logits` requires it to
give ORT's logits within :data:`LOGIT_ATOL`. Dropout is replaced by Identity: the ONNX graph onnxprune
trains has none (it was exported in eval mode), so neither side trains with it.

Methods, all with the same fine-tuning (:func:`finetune`) and the same total number of optimizer steps:

* ``tp-oneshot``: ``BasePruner`` (Torch-Pruning's MetaPruner) with ``GroupMagnitudeImportance(p=2)``,
  local ratio R per group, final classifier ignored; one prune, then fine-tuning for all the steps;
* ``tp-iterative``: the same pruner with ``iterative_steps`` = K (ratio R·k/K after step k); each prune
  step is followed by fine-tuning for 1/K of the steps;
* ``tp-gsl``: DepGraph's group sparse learning, ``GroupNormPruner`` (reg λ, its ``regularize`` adding
  λ·γ·w to the gradients after ``backward``) trained for a fraction of the steps, then one prune, then
  fine-tuning for the rest.

The fine-tuning is onnxprune's retraining recipe with ``--optimizer sgd``, built from its own parts: SGD
(momentum 0.9, Nesterov, weight decay on every parameter), the warm-up + cosine schedule of
``onnxprune.train.schedules.finetune_schedule``, ``onnxprune.train.augment.Augment`` (crop, flip), batches
of a fresh seeded permutation every epoch, ⌈n/batch⌉ steps per epoch, BatchNorm in training mode.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import torch
import torch_pruning as tp
from onnx import numpy_helper
from torch import nn

from onnxprune.data import ArrayData
from onnxprune.plan import keep_count
from onnxprune.runtime.sessions import make_session, run_batched
from onnxprune.train.augment import Augment
from onnxprune.train.schedules import finetune_schedule, make_optimizer

from . import common
from .peers_settings import Finetune, TpSettings

TP_METHODS = ("tp-oneshot", "tp-iterative", "tp-gsl")
LOGIT_ATOL = 1e-4
INPUT_SHAPE = (1, 1, 28, 28)


@functools.cache
def reference_module() -> ModuleType:
    """``models/train_reference.py`` imported as a module (``models/`` is not a package)."""
    path = common.MODELS / "train_reference.py"
    spec = importlib.util.spec_from_file_location("train_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_reference"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def module_from_onnx(arch: str, path: Path, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The torch module of ``arch`` (or ``build()``) holding the initializers of the ONNX model ``path``,
    in eval mode, Dropout replaced by Identity. Every state-dict tensor but the BN step counters must
    come from an initializer of the same name and shape."""
    model = build() if build is not None else reference_module().ARCHS[arch].build()
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    state = model.state_dict()
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name not in inits:
            raise ValueError(f"{path}: no initializer {name!r} for the {arch} module")
        if tuple(inits[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: {name} is {inits[name].shape}, the {arch} module wants {tensor.shape}")
        state[name] = torch.from_numpy(inits[name].copy()).to(tensor.dtype)
    model.load_state_dict(state)
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Dropout):
                setattr(parent, child_name, nn.Identity())
    return model.eval()


@torch.no_grad()
def max_logit_diff(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """max |torch(x) − ORT(x)| of ``model`` and the ONNX model ``path``."""
    model.eval()
    ours = model(torch.from_numpy(x)).numpy()
    theirs = run_batched(make_session(path, threads=1), x, 256)[0]
    return float(np.abs(ours - theirs).max())


def check_logits(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """:func:`max_logit_diff`, raising when it exceeds :data:`LOGIT_ATOL`."""
    diff = max_logit_diff(model, path, x)
    if not diff <= LOGIT_ATOL:
        raise RuntimeError(f"{path}: the rebuilt torch module's logits differ from ORT's by {diff:.3g}")
    return diff


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d, by module name."""
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


# --------------------------------------------------------------------------------------------- training


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def batches(
    data: ArrayData, batch_size: int, seed: int, device: str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches, a fresh permutation (a function of seed and epoch) every epoch."""
    assert data.y is not None
    x, y = torch.from_numpy(np.asarray(data.x)), torch.from_numpy(data.y)
    epoch = 0
    while True:
        perm = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(y)))
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            yield x[idx].to(device), y[idx].to(device)
        epoch += 1


def finetune(
    model: nn.Module,
    stream: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    recipe: Finetune,
    regularize: Callable[[nn.Module], Any] | None = None,
) -> None:
    """``steps`` steps of SGD (Nesterov) on cross-entropy, lr by warm-up + cosine to 0 over them;
    ``regularize(model)`` runs between ``backward`` and the optimizer step (GSL adds to the gradients)."""
    if steps <= 0:
        return
    opt = make_optimizer("sgd", model.parameters(), recipe.lr, recipe.weight_decay)
    sched = finetune_schedule(opt, steps, recipe.warmup, "warmup-cosine")
    augment = Augment(recipe.augment)
    model.train()
    for _ in range(steps):
        x, y = next(stream)
        (x,) = augment((x,))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if regularize is not None:
            regularize(model)
        opt.step()
        sched.step()
    model.eval()


# --------------------------------------------------------------------------------------------- methods


def same_widths(model: nn.Module, ratio: float, last: nn.Module) -> dict[nn.Module, float]:
    """Per layer, the ratio at which Torch-Pruning keeps what onnxprune keeps at ``filter:ratio``.

    Torch-Pruning keeps int(C·(1 − R)) channels (floor), onnxprune ``keep_count(C, R)`` (round, a tie
    down): at 0.85 a 24-channel layer keeps 3 against 4. Torch-Pruning keeps int(C·(1 − r)) = k for
    r = 1 − (k + 0.5)/C, so both sides prune to the same widths and compare on the same structure."""
    out: dict[nn.Module, float] = {}
    for m in model.modules():
        channels = getattr(m, "out_channels", None) or getattr(m, "out_features", None)
        if isinstance(m, nn.Conv2d | nn.Linear) and m is not last and channels:
            out[m] = 1 - (keep_count(channels, ratio) + 0.5) / channels
    return out


def make_pruner(cls: type, model: nn.Module, ratio: float, tps: TpSettings, **kw: Any) -> Any:
    """A Torch-Pruning pruner of ``cls``: group L2 magnitude, local ratio (onnxprune's per-layer widths,
    :func:`same_widths`), the last Linear kept."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return cls(
        model,
        torch.zeros(INPUT_SHAPE, device=next(model.parameters()).device),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        pruning_ratio_dict=same_widths(model, ratio, last) if tps.align <= 1 else None,  # aligned: TP's own
        global_pruning=False,
        ignored_layers=[last],
        round_to=tps.align if tps.align > 1 else None,
        **kw,
    )


def split_steps(total: int, parts: int) -> list[int]:
    """``total`` steps in ``parts`` near-equal chunks (the first ones one longer)."""
    q, r = divmod(total, parts)
    return [q + int(i < r) for i in range(parts)]


def tp_oneshot(
    model: nn.Module, stream: Any, ratio: float, steps: int, ft: Finetune, tps: TpSettings
) -> None:
    make_pruner(tp.pruner.BasePruner, model, ratio, tps).step()
    finetune(model, stream, steps, ft)


def tp_iterative(
    model: nn.Module, stream: Any, ratio: float, steps: int, ft: Finetune, tps: TpSettings
) -> None:
    pruner = make_pruner(tp.pruner.BasePruner, model, ratio, tps, iterative_steps=tps.iterative_steps)
    for chunk in split_steps(steps, tps.iterative_steps):
        pruner.step()
        finetune(model, stream, chunk, ft)


def tp_gsl(model: nn.Module, stream: Any, ratio: float, steps: int, ft: Finetune, tps: TpSettings) -> None:
    pruner = make_pruner(tp.pruner.GroupNormPruner, model, ratio, tps, reg=tps.gsl_reg)
    sparse = round(steps * tps.gsl_fraction)
    finetune(model, stream, sparse, ft, regularize=pruner.regularize)
    pruner.step()
    finetune(model, stream, steps - sparse, ft)


METHODS: dict[str, Callable[..., None]] = {
    "tp-oneshot": tp_oneshot,
    "tp-iterative": tp_iterative,
    "tp-gsl": tp_gsl,
}


def run_tp(
    method: str,
    model: nn.Module,
    train: ArrayData,
    ratio: float,
    epochs: float,
    seed: int,
    ft: Finetune,
    tps: TpSettings,
    device: str = "cpu",
) -> None:
    """Prune and train ``model`` in place by ``method`` for ``epochs`` epochs of ``train``'s batches, on
    ``device`` (the module ends on the CPU)."""
    torch.manual_seed(seed)  # Augment draws from torch's global generator, as in onnxprune
    steps = round(epochs * steps_per_epoch(len(train), ft.batch_size))
    model.to(device)
    METHODS[method](model, batches(train, ft.batch_size, seed, device), ratio, steps, ft, tps)
    model.cpu()


def export(model: nn.Module, path: Path) -> None:
    """The pruned module as ONNX, exported as the references are (opset 17, BN kept, dynamic batch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    reference_module().export_onnx(model, tmp)
    tmp.replace(path)
