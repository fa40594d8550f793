"""``compress``: load -> plan -> check -> train -> write back -> mask -> prune -> verify -> report.

The ONNX graph is the source of truth: training runs on an onnx2torch import, its values are written
back into the original initializers, and surgery slices them. The pruned model is checked against the
masked dense model on every run; a mismatch raises and nothing is written.

Element sparsity (irregular, N:M) needs no surgery: the trained weights, exact zeros included, are
written back dense, checked against the constraints and the training masks
(:func:`onnxprune.graph.elements.verify_elements`), and optionally stored as ONNX sparse initializers,
which must give ORT the same outputs as the dense storage. Shape-wise sparsity additionally cuts the
channels no consumer column reads (filter surgery, verified) and writes the remaining zero columns dense or
in the exact lowered im2col form, whichever ORT CPU runs faster (:mod:`onnxprune.forms`).
"""

from __future__ import annotations

import logging
import multiprocessing
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .alignment import default_alignment, resolve_alignment
from .bench import bench as run_bench
from .budget import budget_keep_counts
from .data import ArrayData, DataSplits, Inputs, load_data, resolve_input_shape
from .data.preprocess import Preprocess, as_preprocess
from .errors import SpecError, UnsupportedModelError
from .fidelity import evaluate as evaluate_fidelity
from .forms import check_form
from .forms import shape_form as choose_shape_form
from .gates import GateResult, Gates, raise_if_missed
from .graph import protos
from .graph.analysis import analyze
from .graph.batch import check_relaxed, relax_batch, static_batch
from .graph.dead import aligned_removal, dead_channels
from .graph.draws import input_draws
from .graph.edit import mask_model, masker, prune_model, write_back, write_masked
from .graph.elements import element_rows, verify_elements
from .graph.inputs import Batch, input_dtypes, input_shapes
from .graph.load import all_input_dims, load_model, normalize, reshare
from .graph.macs import count_costs
from .graph.protos import model_nbytes
from .graph.runtime import available_providers, make_session, run_batched
from .graph.verify import compare_models, verification_inputs, verify_pruned
from .graph.weights import to_sparse_initializers, weight_targets
from .io import check_outputs, save_model, write_text
from .plan import PruningPlan
from .recipe import DISTILL_KEYS, Recipe, load_recipe
from .report import Report, environment, layer_rows, plot_report, totals
from .sparsity import (
    GROUP_KINDS,
    ElementSparsity,
    SparsitySpec,
    check_target,
    element_constraints,
    keep_counts,
    parse_sparsity,
    training_plan,
    unmatched_rules,
)

log = logging.getLogger("onnxprune")

METHODS = ("admm", "magnitude")
RELAXED_RTOL = 1e-5  # a batch-relaxed graph must reproduce the fixed-batch one this closely on ORT


# TrainOptions field -> DistillConfig field
_DISTILL_OPTIONS = {option: key for key, option in DISTILL_KEYS.items()}


@dataclass
class TrainOptions:
    """Hyperparameters; see :class:`onnxprune.train.admm.TrainConfig` for their meaning and defaults."""

    admm_epochs: int | None = None
    finetune_epochs: int | None = None
    round_iters: int | None = None
    lr: float | None = None
    finetune_lr: float | None = None
    rho0: float | None = None
    rho_growth: float | None = None
    rho_max: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    device: str | None = None
    threads: int | None = None  # torch intra-op threads for training (None: torch's default)
    # self-distillation (see onnxprune.train.objective.DistillConfig)
    distill: float | None = None  # weight of the distillation term with labels (without labels: 1)
    distill_loss: str | None = None  # auto | kl | mse | cosine
    temperature: float | None = None
    teacher: str | None = None  # auto | cache | online
    amp: str | None = None  # off | bf16 | fp16: autocast of the training steps
    checkpoint_dir: str | None = None  # checkpoint after every ADMM round and retraining epoch
    resume: bool | None = None  # continue from the checkpoint in checkpoint_dir

    def overrides(self) -> dict[str, Any]:
        """TrainConfig keyword arguments (without ``distill``, see :meth:`distill_overrides`)."""
        skip = {"threads", *_DISTILL_OPTIONS}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }

    def merged(self, other: TrainOptions | None) -> TrainOptions:
        """These options with every field ``other`` sets (not None) taken from ``other``."""
        if other is None:
            return self
        given = {f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None}
        return replace(self, **given)

    def distill_overrides(self) -> dict[str, Any]:
        """DistillConfig keyword arguments."""
        return {
            key: getattr(self, name)
            for name, key in _DISTILL_OPTIONS.items()
            if getattr(self, name) is not None
        }


@dataclass
class CompressResult:
    model: onnx.ModelProto
    masked: onnx.ModelProto | None  # None for a model over LARGE_MODEL_BYTES: only streamed to a file
    plan: PruningPlan
    masks: dict[str, np.ndarray]
    report: Report


@dataclass
class _Clock:
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start


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
    align: int | str | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
    emit_masked: str | Path | None = None,
    sparse_initializers: bool | None = None,
    shape_form: str = "auto",
    report_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    bench_batches: Sequence[int] = (1, 32),
    bench_repeats: int = 30,
    rtol: float = 1e-4,
    quiet: bool = False,
) -> CompressResult:
    """Prune ``model`` to ``sparsity``, train it on ``data``, verify it, and return it with its report.

    ``model``: a path or an ``onnx.ModelProto`` (never modified). ``sparsity``: ``'filter:0.5'`` or a
    :class:`~onnxprune.sparsity.SparsitySpec`. ``target_macs``: instead of ``sparsity``, the fraction of
    the MACs to keep; a sensitivity probe and the MAC model choose each group's ratio
    (:mod:`onnxprune.budget`); giving both is a SpecError (a recipe's ``target_macs`` yields to an explicit
    ``sparsity`` and a recipe's ``sparsity`` rules to an explicit ``target_macs``). ``recipe``: a YAML
    path or mapping (:mod:`onnxprune.recipe`) giving any of the settings; an argument given here
    overrides it (None = not given: the recipe's value, else the default: data 'fashion-mnist', method
    'admm', labels used, seed 0, 10 % validation). ``data``: any source of
    :func:`onnxprune.data.load_data` (a name, a path, ``module:function``, arrays, ``(x, y)``, a
    DataLoader). ``labels=False`` trains on the inputs alone
    (self-distillation from the dense model); labels the data has then only score the report.
    ``gates``: conditions the pruned model must meet, else :class:`~onnxprune.gates.GateError` and no
    model is written. ``align``: kept filter counts rounded to a multiple; ``'auto'`` = the default of
    the runtime (:data:`onnxprune.alignment.DEFAULT_ALIGN`) the speedup gate names, else ORT CPU's.
    ``sparse_initializers``: store element-pruned weights (irregular, nm rules) as ONNX sparse
    initializers in the written model (checked in ORT against the dense storage; kept dense if ORT
    cannot run it). ``shape_form``: how shape-pruned layers are written: ``auto`` (time the dense-with-zeros
    and the lowered im2col form on ORT CPU, keep the faster; :mod:`onnxprune.forms`), ``dense``,
    ``lowered``. Outputs given as paths are checked before any work and written atomically at the
    end. Progress goes to the ``onnxprune`` logger.
    """
    rec = load_recipe(recipe) if recipe is not None else Recipe()
    gates = _first(gates, rec.gates)
    target = _target(sparsity, target_macs, rec)
    spec = _sparsity(sparsity, rec, align, gates.speedup_provider if gates else "cpu", target is not None)
    method = method or rec.method or "admm"
    check_form(shape_form)
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    seed = _first(seed, rec.seed, 0)
    data = _first(data, rec.data.get("source"), "fashion-mnist")
    labels = bool(_first(labels, rec.data.get("labels"), True))
    sparse_initializers = bool(_first(sparse_initializers, rec.sparse_initializers, False))
    max_samples = _first(max_samples, rec.data.get("max_samples"), None)
    val_fraction = float(_first(val_fraction, rec.data.get("val_fraction"), 0.1))
    input_shape = _first(input_shape, rec.data.get("input_shape"), None)
    if max_samples is not None and max_samples < 2:
        raise SpecError(f"max_samples must be >= 2, not {max_samples}")
    if not 0 <= val_fraction < 1:
        raise SpecError(f"val_fraction must be in [0, 1), not {val_fraction:g}")
    source = None if isinstance(model, onnx.ModelProto) else model
    check_outputs([source], [output, emit_masked, report_path, plot_path])
    clock = _Clock()
    opts = TrainOptions(**rec.train).merged(train)
    gates = gates or Gates()
    prep_given = _first(preprocess, rec.data.get("preprocess"), None)
    prep = None if prep_given is None else as_preprocess(prep_given)

    with clock.phase("load"):
        original, _ = load_model(model)
        normalized = normalize(original, inplace=True)  # load_model's copy is private: no second one
        base = normalized.model
        dims = all_input_dims(base)
        draws = input_draws(base)
    with clock.phase("data"):
        splits = load_data(
            data,
            dims,
            input_shape,
            val_fraction=val_fraction,
            seed=seed,
            preprocess=prep,
            max_samples=max_samples,
            draws=draws,
        )
        if splits.name == "random":
            for name, draw in draws.items():
                log.info("random data: input %r: %s", name, draw.describe())
        if not labels:
            splits = splits.for_training_without_labels()
    gates.validate(splits.test.labeled, available_providers())
    shape = _model_shapes(base, dims, input_shape, splits.train.x)
    dtypes = input_dtypes(base)
    with clock.phase("analyze"):
        plan = analyze(base, shape)

    with clock.phase("import"):
        from .train.admm import TrainConfig, run_admm, run_magnitude
        from .train.distributed import env_rank
        from .train.importer import import_model
        from .train.objective import DistillConfig

        training_graph, chunk = _training_graph(base, shape, seed)
        imported = import_model(training_graph)
        del training_graph
        _check_import(base, imported, verification_inputs(shape, seed, splits.val.x, dtypes=dtypes), chunk)
        if chunk is not None:  # the torch import runs only batches of the model's fixed size
            splits = _whole_batches(splits, chunk)
            opts = replace(opts, batch_size=chunk)
        _keep_unbound(plan, set(imported.names))
        keep = keep_counts(plan, spec)
        targets = weight_targets(base)
        elements = element_constraints(spec, targets, plan, keep)
        for rule in unmatched_rules(plan, spec, targets):
            what = "Conv/Gemm weight" if rule.elementwise else "prunable group"
            log.warning("sparsity rule %s selects no %s", rule, what)
    budget = None
    if target is not None:
        with clock.phase("budget"):
            keep, budget = budget_keep_counts(
                base, plan, count_costs(base, shape), spec, target, splits.train, seed=seed
            )
    plan = training_plan(plan, spec, keep)  # groups a channel rule prunes: by their consumer's W[:, c]
    log.info(
        "plan: %d groups, %d prunable, %d channel-wise",
        len(plan.groups),
        len(plan.prunable),
        sum(g.kind == "channel" for g in plan.groups),
    )
    main_rank = env_rank() == 0  # under torchrun only rank 0 benchmarks and writes outputs
    cfg = TrainConfig(
        seed=seed,
        quiet=quiet,
        synthetic_data=splits.name == "random",
        distill=DistillConfig(**opts.distill_overrides()),
        **opts.overrides(),
    )
    with clock.phase("train"), _torch_threads(opts.threads):
        runner = run_admm if method == "admm" else run_magnitude
        result = runner(imported, plan, keep, splits.train, splits.val, cfg, elements)
    for name, seconds in result.times.items():
        clock.phases[f"train.{name}"] = seconds
    masks = {name: np.asarray(k, dtype=bool) for name, k in result.masks.items()}

    shape_wise = any(c.kind == "shape" for c in elements.values())
    with tempfile.TemporaryDirectory(prefix="onnxprune-") as work:
        with clock.phase("export"):
            trained = write_back(base, imported.onnx_arrays())
            del imported  # the torch copy of the weights is not needed any more (training is over)
            # pruned from the trained model (its kept slices are the masked model's); copies the normalizer
            # made of shared initializers merge back where they are still equal
            pruned = reshare(prune_model(trained, plan, masks), normalized.copies, inplace=True)
            masked: onnx.ModelProto | None = None
            masked_path = Path(work) / "masked.onnx"
            if model_nbytes(trained) > protos.LARGE_MODEL_BYTES:  # streamed to a file, never held
                write_masked(trained, plan, masks, masked_path)
            else:
                masked = reshare(mask_model(trained, plan, masks), normalized.copies, inplace=True)
            # a large masked model to emit is streamed from ``trained`` again at the end; shape-wise needs it
            # to cut dead channels
            keep_trained = masked is None and emit_masked is not None
            if not keep_trained and not (shape_wise and masked is not None):
                del trained
        with clock.phase("verify"):
            check_inputs = verification_inputs(shape, seed + 1, splits.test.x, dtypes=dtypes)
            dead: dict[str, Any] = {}
            if shape_wise and masked is None:
                dead = {"dead_channels": [], "dead_note": "not looked for: the model is streamed (too large)"}
            elif shape_wise and masked is not None:
                multiple = spec.align if spec.align > 1 else default_alignment("cpu")
                pruned, masks, dead = _remove_dead(
                    trained, masked, pruned, plan, masks, check_inputs, rtol, multiple
                )
                pruned = reshare(pruned, normalized.copies, inplace=True)
                if not keep_trained:
                    del trained
            reference = masked if masked is not None else masked_path
            verification = verify_pruned(reference, pruned, check_inputs, rtol)
            verify_elements(pruned, elements, result.element_masks)
    first_shape = shape if isinstance(shape, tuple) else next(iter(shape.values()))
    forms = None
    chosen = pruned
    if shape_wise:
        with clock.phase("shape_form"):
            timed = _runnable_batches(base, bench_batches) if main_rank else ()
            weights = [n for n, c in elements.items() if c.kind == "shape"]
            chosen, forms = choose_shape_form(
                pruned, weights, check_inputs, shape_form, timed, first_shape, bench_repeats
            )
    with clock.phase("verify"):
        written, storage = _storage(chosen, elements, sparse_initializers, check_inputs)
    log.info("verified: max relative error %.2e", verification.max_rel_error)

    report = Report(
        model=str(source) if source else "<ModelProto>",
        sparsity=str(spec) if target is None else _budget_text(target, spec),
        method=method,
        data=splits.name + ("" if labels else " (labels withheld from training)"),
        config={
            **asdict(cfg),
            "input_shape": list(shape)
            if isinstance(shape, tuple)
            else {k: list(v) for k, v in shape.items()},
            "val_fraction": val_fraction,
            "labels": labels and splits.labeled,
            "preprocess": str(prep) if prep is not None else None,
            "max_samples": max_samples,
        },
        notes=normalized.notes,
        groups=[_group_summary(g.name, plan, masks, spec) for g in plan.groups],
        verification=verification.to_dict(),
        history=_history(result),
        environment=environment(),
    )
    with clock.phase("evaluate"):
        cost_b, cost_a = count_costs(base, shape), count_costs(pruned, shape)
        report.layers = layer_rows(
            base, pruned, cost_b, cost_a, plan, {n: int(k.sum()) for n, k in masks.items()}
        )
        report.totals = totals(base, pruned, cost_b, cost_a)
        if elements:
            report.elements = element_rows(pruned, elements, cost_a)
            report.totals |= _element_totals(report.elements, cost_a.total_macs, storage)
            zeros = {e["node"]: e for e in report.elements}
            lowered = {r["node"] for r in forms["layers"] if r["lowered"]} if forms else set()
            lowered = lowered if forms and forms["chosen"] == "lowered" else set()
            for row in report.layers:
                if row.node in zeros:
                    e = zeros[row.node]
                    how = (
                        "lowered: im2col GEMM of the kept columns" if row.node in lowered else "dense storage"
                    )
                    row.status = f"{e['rule']}: {100 * e['zero_fraction']:.1f}% zeros ({how})"
        if forms is not None:
            report.shape_form = forms | {"macs_written": count_costs(written, shape).total_macs, **dead}
        if budget is not None:
            report.budget = {
                **budget.to_dict(),
                "achieved_macs": cost_a.total_macs / cost_b.total_macs if cost_b.total_macs else 1.0,
            }
        split_name = "test" if splits.test is not splits.val else "validation"
        report.fidelity = evaluate_fidelity(base, written, splits.test, split_name)
        report.accuracy = report.fidelity if "dense_top1" in report.fidelity else None
    runs = _bench_runs(_runnable_batches(base, bench_batches), gates) if main_rank else []
    if runs:
        with clock.phase("bench"):
            report.latency = _latency(base, written, first_shape, runs, bench_repeats)
    report.gates = [g.to_dict() for g in gates.evaluate(report.accuracy, report.fidelity, _speedups(report))]
    report.phases = clock.phases  # the same dict: phases timed after this line (save) still land in it

    with clock.phase("save"):
        passed = all(g["passed"] for g in report.gates) and main_rank
        if passed and emit_masked is not None:
            if masked is not None:
                save_model(masked, emit_masked)
            else:
                save_model(trained, emit_masked, transform=masker(plan, masks))
            report.outputs["masked"] = str(emit_masked)
        if passed and output is not None:
            save_model(written, output)
            report.outputs["model"] = str(output)
        if plot_path is not None and main_rank:
            _save_plot(report, plot_path)
            report.outputs["plot"] = str(plot_path)
        if report_path is not None and main_rank:
            write_text(report.to_json(), report_path)
    raise_if_missed([GateResult(**g) for g in report.gates], report)
    return CompressResult(written, masked, plan, masks, report)


def _storage(
    pruned: onnx.ModelProto,
    elements: Mapping[str, ElementSparsity],
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
        info["sparse_note"] = "sparse storage would not be smaller (density above ~1/3); kept dense"
        log.warning(info["sparse_note"])
        return pruned, info
    try:
        check = compare_models(pruned, stored, inputs, rtol=1e-6)
    except Exception as e:  # ORT refusing the sparse storage: keep dense, say why
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        info["sparse_note"] = f"ORT could not run the sparse-stored model ({reason}); kept dense"
        log.warning(info["sparse_note"])
        return pruned, info
    if not check.passed:
        info["sparse_note"] = f"sparse-stored outputs differ ({check.max_rel_error:.2e}); kept dense"
        log.warning(info["sparse_note"])
        return pruned, info
    info["sparse_initializers"] = True
    return stored, info


def _remove_dead(
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


def _element_totals(rows: list[dict[str, Any]], macs: int, storage: dict[str, Any]) -> dict[str, Any]:
    """Effective (non-zero-weight) MACs next to the dense ones, and the storage sizes."""
    skipped = sum(r["macs"] - r["effective_macs"] for r in rows)
    return {
        **storage,
        "effective_macs_after": macs - skipped,
        "element_zeros": sum(r["zeros"] for r in rows),
        "element_size": sum(r["size"] for r in rows),
        "element_note": "element zeros are stored, not skipped: ORT CPU and CUDA run these layers dense, "
        "with no speedup; effective MACs count only multiply-adds with a non-zero weight",
    }


def _first(*values: Any) -> Any:
    """The first value that is not None (explicit argument, recipe, default)."""
    return next((v for v in values if v is not None), None)


def _target(sparsity: str | SparsitySpec | None, target: float | None, rec: Recipe) -> float | None:
    """The MAC budget, if this run has one: the argument, else the recipe's unless ``sparsity`` is given."""
    if target is not None and sparsity is not None:
        raise SpecError(
            "--sparsity and --target-macs conflict: give one (ratios, or a MAC budget that chooses them)"
        )
    if target is not None:
        return check_target(target)
    return rec.target_macs if sparsity is None else None


def _budget_text(target: float, spec: SparsitySpec) -> str:
    text = f"target-macs {target:g}"
    if spec.exclude:
        text += f"; exclude {', '.join(spec.exclude)}"
    return text + (f"; align {spec.align}" if spec.align > 1 else "")


def _sparsity(
    given: str | SparsitySpec | None,
    rec: Recipe,
    align: int | str | None,
    provider: str,
    budget: bool = False,
) -> SparsitySpec:
    """The spec of this run; with a MAC ``budget`` only its exclusions and alignment matter (no rules)."""
    if budget:
        base = rec.sparsity or SparsitySpec(())
        given = SparsitySpec((), base.exclude, base.align)
    if given is None and rec.sparsity is None:
        raise SpecError(
            "no sparsity: give --sparsity TYPE:RATIO, --target-macs F or a recipe with a 'sparsity' or "
            "'target_macs' section"
        )
    if isinstance(given, str):
        spec = parse_sparsity(given, rec.sparsity.align if rec.sparsity else 1)
        if rec.sparsity and rec.sparsity.exclude:  # the shorthand replaces the rules, not the exclusions
            spec = replace(spec, exclude=rec.sparsity.exclude)
    else:
        spec = given if given is not None else rec.sparsity  # type: ignore[assignment]
    assert spec is not None
    if align is None:
        return spec
    try:
        return replace(spec, align=resolve_alignment(align, provider))
    except ValueError as e:
        raise SpecError(str(e)) from None


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the block; restored after (no process-wide side effect)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bench_runs(batches: Sequence[int], gates: Gates) -> list[tuple[str, int]]:
    """(provider, batch) pairs to time: CPU at ``batches``, plus the speedup gate's pair."""
    runs = [("cpu", int(b)) for b in batches]
    if gates.min_speedup is not None and (gates.speedup_provider, gates.speedup_batch) not in runs:
        runs.append((gates.speedup_provider, gates.speedup_batch))
    return runs


def _speedups(report: Report) -> list[dict[str, Any]]:
    return list((report.latency or {}).get("speedups", []))


def _training_graph(
    model: onnx.ModelProto, shape: tuple[int, ...] | dict[str, tuple[int, ...]], seed: int
) -> tuple[onnx.ModelProto, int | None]:
    """The graph to import for training and, when the torch import can run only batches of the model's
    fixed size ``B``, that ``B`` (else None).

    A model with a dynamic batch is imported as it is. A fixed batch is relaxed
    (:func:`onnxprune.graph.batch.relax_batch`) and the relaxed copy used when ORT shows it computes the
    original's function at other batch sizes; otherwise training runs in batches of ``B``."""
    relaxed = relax_batch(model)
    if relaxed is None:
        return model, None
    shapes = input_shapes(model, shape)
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


def _whole_batches(splits: DataSplits, size: int) -> DataSplits:
    """``splits`` with train and validation cut to whole multiples of ``size`` samples (at least one)."""

    def cut(part: ArrayData) -> ArrayData:
        return part.head(max(size, len(part) // size * size)) if len(part) % size else part

    return replace(splits, train=cut(splits.train), val=cut(splits.val))


def _runnable_batches(model: onnx.ModelProto, batches: Sequence[int]) -> tuple[int, ...]:
    """The batch sizes of ``batches`` a model can run: all of them, or its fixed batch alone (said once)."""
    fixed = static_batch(model)
    if fixed is None or not batches or set(batches) == {fixed}:
        return tuple(batches)
    log.info("latency at batch %d only: the model's batch is fixed", fixed)
    return (fixed,)


def _check_import(
    model: onnx.ModelProto,
    imported: Any,
    inputs: Sequence[Batch],
    chunk: int | None = None,
    rtol: float = 1e-4,
) -> None:
    """Torch on the import must reproduce ORT on the model before we train it (``chunk``: the torch
    import runs batches of this size only)."""
    import torch

    sess = make_session(model)
    module = imported.module.eval()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = run_batched(sess, x)[0]
            arrays = [x] if isinstance(x, np.ndarray) else [x[name] for name in imported.input_names]
            out = _torch_first_output(module, arrays, chunk)
            scale = max(float(np.abs(ref).max()), 1e-12)
            worst = max(worst, float(np.abs(ref - out).max()) / scale)
    if worst > rtol:
        raise UnsupportedModelError(
            f"the torch import does not reproduce the model (relative error {worst:.2e} > {rtol:g})"
        )


def _torch_first_output(module: Any, arrays: Sequence[np.ndarray], chunk: int | None) -> np.ndarray:
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


def _jsonable_shape(shape: tuple[int, ...] | dict[str, tuple[int, ...]]) -> Any:
    return list(shape) if isinstance(shape, tuple) else {k: list(v) for k, v in shape.items()}


def _model_shapes(
    model: onnx.ModelProto,
    dims: dict[str, Any],
    given: Sequence[int] | Mapping[str, Sequence[int]] | None,
    x: Inputs,
) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """The shape(s) analysis and costs fix the inputs to: a tuple for a single-input model (a plain
    ``given``, or one sample of the data at the model's fixed batch, else batch 1), else every input's
    shape from one sample of the data (a ``given`` mapping's batch, else the fixed batch or 1)."""
    batch = static_batch(model) or 1
    if isinstance(given, Mapping):
        batch = static_batch(model) or next((int(s[0]) for s in given.values() if len(s)), 1)
        given = None
    if isinstance(x, np.ndarray):
        only = next(iter(dims.values()))
        return resolve_input_shape(only, given or (batch, *x.shape[1:]))
    shapes = {name: (batch, *(int(d) for d in a.shape[1:])) for name, a in x.items()}
    return input_shapes(model, shapes)


def _keep_unbound(plan: PruningPlan, bound: set[str]) -> None:
    """A group whose SOURCE tensors the torch import cannot train or mask stays whole (with the reason)."""
    for g in plan.prunable:
        missing = next((m for m in g.sources if m.initializer not in bound), None)
        if missing is not None:
            what = f"{missing.initializer!r} (node {missing.node!r})"
            g.reason = f"the torch import does not expose {what} to training"


def _group_summary(
    name: str, plan: PruningPlan, masks: dict[str, np.ndarray], spec: SparsitySpec
) -> dict[str, Any]:
    g = plan.group(name)
    rule = spec.rule_for(g) if g.prunable else None
    rule = rule if rule is not None and rule.kind in GROUP_KINDS else None  # element rules act on weights
    keep = masks.get(name)
    return {
        "name": g.name,
        "node": g.source_node,
        "op_type": g.op_type,
        "channels": g.channels,
        "kind": g.kind,  # filter: pruned by its filters; channel: by the input channels of channel_node
        "channel_node": g.channel_node,
        "channel_reason": g.channel_reason,
        "kept": int(keep.sum()) if keep is not None else g.channels,
        "prunable": g.prunable,
        "reason": g.reason,
        "rule": str(rule) if rule else None,  # the recipe rule that set its ratio
        "members": [{"initializer": m.initializer, "axis": m.axis, "role": m.role.value} for m in g.members],
        "removed": np.flatnonzero(~keep).tolist() if keep is not None else [],
    }


def _history(result: Any) -> dict[str, Any]:
    """Training history grouped by phase ('admm' rounds, 'admm_epoch', 'pruned', 'finetune' epochs)."""
    grouped: dict[str, Any] = {}
    for entry in result.history:
        grouped.setdefault(entry.get("phase", "other"), []).append(entry)
    return grouped


def _latency(
    dense: onnx.ModelProto,
    pruned: onnx.ModelProto,
    shape: Sequence[int],
    runs: Sequence[tuple[str, int]],
    repeats: int,
) -> dict[str, Any]:
    """Dense vs pruned ORT latency for each (provider, batch) of ``runs``."""
    providers = sorted({p for p, _ in runs}, key=[p for p, _ in runs].index)
    batches = sorted({b for _, b in runs})
    # In a fresh process: after training, torch's idle worker threads compete with ORT's and made the
    # in-process batch-32 figure 1.45x where a clean process measured 2.19x on the same two models.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(
            run_bench,
            [dense, pruned],
            batch_sizes=tuple(batches),
            providers=providers,
            repeats=repeats,
            warmup=5,
            input_shape=list(shape),
            names=["dense", "pruned"],
        ).result()
    speedups = []
    for provider, batch in runs:
        d, p = result.row("dense", provider, batch), result.row("pruned", provider, batch)
        speedups.append(
            {
                "provider": provider,
                "batch": batch,
                "dense_ms": d.median_ms,
                "pruned_ms": p.median_ms,
                "speedup": d.median_ms / p.median_ms,
            }
        )
    return {"speedups": speedups, "bench": result.to_dict()}


def _save_plot(report: Report, path: str | Path) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        plot_report(report, tmp)


__all__ = ["METHODS", "CompressResult", "Gates", "TrainOptions", "compare_models", "compress"]
