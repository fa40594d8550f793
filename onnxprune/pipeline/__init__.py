"""``compress`` as typed stages: resolve -> load -> data -> analyze -> plan + train -> export and verify ->
forms -> report -> latency -> gates -> save.

The ONNX graph is the source of truth: training runs on an onnx2torch import, its values are written
back into the original initializers, and surgery slices them. The pruned model is checked against the
masked dense model on every run; a mismatch raises and nothing is written.

Each stage is a function of the resolved configuration (:class:`~.resolve.Config`) and the small frozen
results of the stages before it:

* :mod:`.resolve` — the configuration from the arguments, a recipe and the defaults;
* :mod:`.loading` — the normalized model and its inputs; the data splits, inputs resolved to shapes;
* :mod:`.planning` — groups, kept counts, element constraints, the MAC budget (:mod:`.budget`);
* :mod:`.training` — the torch side: import, train, write back;
* :mod:`.retraining` — retraining on the pruned model after the hard prune, its updates carried back;
* :mod:`.prune` — the torch-free stage: masks, surgery, dead channels, verification (the whole run, with
  no training, for ``--method magnitude --finetune-epochs 0`` and :func:`prune_without_training`);
* :mod:`.writing` — the shape form and the storage of the written model;
* :mod:`.quantization` — ``--quantize int8``: the verified fp32 model to int8 (ORT static QDQ);
* :mod:`.reporting` — the report, the latency comparison;
* :mod:`.saving` — the gates and the outputs.

Element sparsity (irregular, N:M) needs no surgery: the trained weights, exact zeros included, are
written back dense, checked against the constraints and the training masks, and optionally stored as ONNX
sparse initializers. Shape-wise sparsity additionally cuts the channels no consumer column reads and
writes the remaining zero columns dense or lowered, whichever ORT CPU runs faster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..config.gates import Gates
from ..config.recipe import Recipe
from ..config.settings import METHODS, LatencyOptions, QuantizeOptions, TrainOptions
from ..config.sparsity import SparsitySpec
from ..data.preprocess import Preprocess
from ..graph.verify import compare_models
from ..plan import PruningPlan
from ..report import Report
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples, load, read_data
from .planning import Planned, analyze_model
from .prune import Exported, PruneResult, export, prune_stage
from .quantization import QuantizeResult, quantize_model, quantize_stage, with_quantization
from .reporting import build_report, measure_latency
from .resolve import Config, Given, Outputs, resolve
from .retraining import retrain_pruned
from .saving import check_gates, save, write_models
from .training import Trained, plan_and_train, require_torch
from .writing import write_forms


@dataclass
class CompressResult:
    model: onnx.ModelProto  # the model written: pruned, or pruned and quantized with quantize='int8'
    masked: onnx.ModelProto | None  # None for a model over LARGE_MODEL_BYTES: only streamed to a file
    plan: PruningPlan
    masks: dict[str, np.ndarray]
    report: Report


def compress(
    model: str | Path | onnx.ModelProto,
    sparsity: str | SparsitySpec | None = None,
    data: Any = None,
    output: str | Path | None = None,
    *,
    target_macs: float | None = None,
    recipe: str | Path | Mapping[str, Any] | Recipe | None = None,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    method: str | None = None,
    train: TrainOptions | None = None,
    labels: bool | None = None,
    preprocess: str | Mapping[str, Any] | Preprocess | None = None,
    max_samples: int | None = None,
    gates: Gates | None = None,
    latency: LatencyOptions | None = None,
    align: int | str | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
    emit_masked: str | Path | None = None,
    sparse_initializers: bool | None = None,
    shape_form: str = "auto",
    report_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    html_path: str | Path | None = None,
    overwrite: bool = True,
    bench_batches: Sequence[int] = (1, 32),
    bench_repeats: int = 30,
    rtol: float = 1e-4,
    quiet: bool = False,
    quantize: str | QuantizeOptions | None = None,
) -> CompressResult:
    """Prune ``model`` to ``sparsity``, train it on ``data``, verify it, and return it with its report.

    ``model``: a path or an ``onnx.ModelProto`` (never modified). ``sparsity``: ``'filter:0.5'`` or a
    :class:`~onnxprune.config.sparsity.SparsitySpec`; ``target_macs`` instead: the fraction of the MACs to
    keep, each group's ratio chosen by a sensitivity probe (:mod:`.budget`). ``recipe``: a YAML path or
    mapping (:mod:`onnxprune.config.recipe`); an argument given here overrides it, None = not given (the
    recipe's value, else the default of :mod:`onnxprune.config.settings`). ``data`` (required, here or in
    the recipe: there is no default data set): any source of :func:`onnxprune.data.load_data`;
    ``labels=False`` trains on the inputs alone (self-distillation).
    ``train``: :class:`~onnxprune.config.settings.TrainOptions`. ``gates``: conditions the pruned model
    must meet, else :class:`~onnxprune.config.gates.GateError` and no model is written. ``latency``:
    :class:`~onnxprune.config.settings.LatencyOptions`, e.g. ``LatencyOptions(on="cpu:32",
    target_speedup=3)``: instead of ``sparsity``, a latency budget on that target chooses the kept counts
    (:mod:`.latency_budget`). ``align``: kept filter counts rounded to a multiple (default ``'auto'``: the
    target's step, :func:`~onnxprune.config.alignment.auto_alignment`; 1: exact ratios).
    ``sparse_initializers``, ``shape_form``: how element- and shape-pruned weights are written
    (:mod:`.writing`). Outputs given as paths are checked before any work and written atomically at the
    end (``html_path``: one self-contained HTML page of the report); ``overwrite=False`` refuses existing
    files (the command line without ``--force``). ``method='magnitude'`` with ``finetune_epochs=0``
    trains nothing and runs without torch (:func:`~.prune.prune_stage`). Progress goes to the
    ``onnxprune`` logger.
    ``quantize``: ``'int8'`` or :class:`~onnxprune.config.settings.QuantizeOptions`: the verified fp32
    model is quantized (ORT static QDQ), scored against it, and is the model gated and written
    (:mod:`.quantization`).
    """
    given = Given.of(
        sparsity,
        data,
        target_macs=target_macs,
        input_shape=input_shape,
        method=method,
        train=train,
        labels=labels,
        preprocess=preprocess,
        max_samples=max_samples,
        gates=gates,
        align=align,
        seed=seed,
        val_fraction=val_fraction,
        sparse_initializers=sparse_initializers,
        shape_form=shape_form,
        quantize=QuantizeOptions(quantize=quantize) if isinstance(quantize, str) else quantize,
        latency=latency,
    )
    outputs = Outputs.of(output, emit_masked, report_path, plot_path, html_path, overwrite=overwrite)
    config = resolve(model, recipe, given, outputs, (bench_batches, bench_repeats), rtol, quiet)
    if not trains_nothing(config):
        require_torch()  # before any work: a one-line error naming the extra
    clock = PhaseClock()
    loaded = load(config, clock)
    samples = read_data(config, loaded, clock)
    analysis = analyze_model(loaded, samples, clock)
    planned, trained, exported = prune_or_train(config, loaded, samples, analysis, clock)
    written = write_forms(config, samples, planned, exported, clock)
    quantized = quantize_stage(config, samples, written, clock)  # None unless --quantize int8
    report = build_report(config, loaded, samples, planned, trained, exported, written, clock)
    report = with_quantization(report, quantized, written, samples, loaded, clock)
    int8 = None if quantized is None else quantized.model
    timings = measure_latency(config, loaded, samples, written, clock, int8)  # dense, pruned (, int8)
    report = check_gates(config, report, timings, clock)
    final = written if int8 is None else replace(written, model=int8)  # the model gated is the one saved
    save(config, planned, exported, final, report, clock)
    return CompressResult(final.model, exported.masked, planned.plan, exported.masks, report)


def prune_without_training(
    model: str | Path | onnx.ModelProto,
    sparsity: str | SparsitySpec | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    *,
    data: Any = None,
    recipe: str | Path | Mapping[str, Any] | Recipe | None = None,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    preprocess: str | Mapping[str, Any] | Preprocess | None = None,
    max_samples: int | None = None,
    align: int | str | None = None,
    seed: int | None = None,
    output: str | Path | None = None,
    emit_masked: str | Path | None = None,
    overwrite: bool = True,
    rtol: float = 1e-4,
) -> PruneResult:
    """Plan -> masks -> surgery -> verify, without torch and without training (``onnxprune.prune``).

    ``masks``: the caller's keep masks (group name -> bool per channel, True = kept; the group names of
    ``onnxprune.inspect(model).plan``), e.g. from a training done elsewhere; the groups it does not name
    keep the channels of largest L2 norm at ``sparsity`` (all of them when ``sparsity`` is None). The
    pruned model must reproduce the masked dense model on ONNX Runtime, else
    :class:`~onnxprune.errors.VerificationError`. ``data``: only checks and shapes need samples; None =
    seeded random inputs. ``output``, ``emit_masked``: written atomically when given.
    """
    if sparsity is None and masks is not None:
        sparsity = SparsitySpec(())  # no rule: every group the caller does not name keeps its channels
    given = Given.of(
        sparsity,
        data,
        input_shape=input_shape,
        method="magnitude",
        preprocess=preprocess,
        max_samples=max_samples,
        align=align,
        seed=seed,
    )
    outputs = Outputs.of(output, emit_masked, overwrite=overwrite)
    config = resolve(model, recipe, given, outputs, ((), 30), rtol, quiet=True, require_data=False)
    clock = PhaseClock()
    loaded = load(config, clock)
    samples = read_data(config, loaded, clock)
    planned, exported = prune_stage(
        config, loaded, samples, analyze_model(loaded, samples, clock), clock, masks
    )
    write_models(config, planned, exported, exported.pruned)
    return PruneResult(exported.pruned, exported.masked, planned.plan, exported.masks, exported.verification)


def prune_or_train(
    config: Config, loaded: Loaded, samples: Samples, analysis: PruningPlan, clock: PhaseClock
) -> tuple[Planned, Trained, Exported]:
    """The magnitude preview in the torch-free stage alone (no import, no import check), or plan, train on
    the torch side, write back and export."""
    if trains_nothing(config):
        planned, exported = prune_stage(config, loaded, samples, analysis, clock)
        return planned, untrained(config, loaded, exported), exported
    planned, trained = plan_and_train(config, loaded, samples, analysis, clock)
    if trained.pending is not None:  # retraining on the pruned model (.retraining), carried back
        trained = retrain_pruned(config, loaded, samples, planned, trained, clock)
    exported = export(
        config, loaded, samples, planned, trained.model, trained.masks, trained.element_masks, clock
    )
    return planned, trained, exported


def trains_nothing(config: Config) -> bool:
    """Whether the run is the magnitude preview (no training: the torch-free stage does it all). Element
    sparsity keeps the torch side, whose projections it needs."""
    return (
        config.run.method == "magnitude"
        and config.train.split("magnitude")[1] == 0
        and not config.spec.elementwise
    )


def untrained(config: Config, loaded: Loaded, exported: Exported) -> Trained:
    """What the report reads of a training that did not happen: the model as it is, no history."""
    settings = {**asdict(config.train), "seed": config.run.seed, "distill": asdict(config.distill)}
    return Trained(loaded.base, exported.masks, {}, [], settings | {"trained": False})


__all__ = [
    "METHODS",
    "CompressResult",
    "Gates",
    "LatencyOptions",
    "PruneResult",
    "QuantizeOptions",
    "QuantizeResult",
    "TrainOptions",
    "compare_models",
    "compress",
    "prune_without_training",
    "quantize_model",
]
