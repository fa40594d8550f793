"""Every setting of a ``compress`` run, defined once.

A setting is a field of one of the dataclasses below: its default is the field's default, its type the
field's annotation, and :func:`setting` attaches the rest — help text, range or choices, whether recipes
and the command line take it, and its option name (the ``compress`` keyword, the :class:`TrainOptions`
keyword and, with ``-`` for ``_``, the ``--flag``). From these fields come:

* the recipe schema: section ``SECTION`` of a recipe holds the fields' names as keys, type-checked by
  :func:`parse_section` (:mod:`onnxprune.config.recipe`);
* the options of ``onnxprune compress`` (:func:`onnxprune.cli.options.setting_options`);
* the given-or-not layers (:class:`Options`): a recipe, the command line and the Python API each give
  some settings; :meth:`Options.merged` lays one over another (the later wins) and :meth:`Options.build`
  fills in the defaults. That is the one merge of a run's settings.

So adding a training setting is one field of :class:`TrainSettings`: the recipe key, the CLI flag, the
``TrainOptions`` keyword and :class:`onnxprune.train.admm.TrainConfig` (a subclass) follow from it.

Range and choices are what the command line enforces (click types); the semantic checks with their
messages (``need 0 < rho0 <= rho_max``, ``amp fp16 needs device cuda``) stay with the code that uses the
values (:meth:`TrainSettings.validate`, :meth:`DistillSettings.validate`). No torch, no onnx here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from ..errors import SpecError

METHODS = ("admm", "magnitude")
SHAPE_FORMS = ("auto", "dense", "lowered")
DEVICES = ("cpu", "cuda")
AMP_MODES = ("off", "bf16", "fp16")
DISTILL_LOSSES = ("auto", "kl", "mse", "cosine")
TEACHER_MODES = ("auto", "cache", "online")
BN_STATS = ("auto", "train", "freeze")
RETRAIN_ON = ("auto", "pruned", "masked")
ADMM_ON = ("dense", "shrunk")
IMPORTANCES = ("source", "group")  # as onnxprune.graph.probe.IMPORTANCES (settings import nothing of graph)
QUANTIZE_MODES = ("off", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("warmup-cosine", "constant")
RHO_SCHEDULES = ("balanced", "geometric")
AUGMENTS = ("crop", "flip")
DEFAULT_EPOCHS = 2  # of each phase, when neither --epochs nor the phase's own option is given

_KEY = "onnxprune.setting"
TS = TypeVar("TS", bound="TrainSettings")


@dataclass(frozen=True)
class Setting:
    """What a setting field carries besides its default and type (see the module docstring)."""

    help: str
    option: str = ""  # keyword / CLI name when it differs from the field name
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    recipe: bool = True  # a key of its section in recipes
    cli: bool = True  # an option of ``onnxprune compress``
    short: str = ""  # a short CLI flag, e.g. '-d'
    negate: bool = False  # a boolean given on the command line as --no-<flag> (sets False)
    show_default: bool = False
    directory: bool = False  # a directory path (the CLI refuses an existing file)
    parse: Callable[[Any], Any] | None = None  # command-line text -> value (default: click's type)
    multiple: bool = False  # a repeatable option: ``parse`` takes the tuple of its values


def setting(default: Any, help: str = "", **meta: Any) -> Any:
    """A dataclass field that is a setting (see the module docstring); ``meta``: :class:`Setting` fields."""
    return field(default=default, metadata={_KEY: Setting(help, **meta)})


@dataclass(frozen=True)
class Entry:
    """One setting, as the recipe parser, the CLI and :class:`Options` see it."""

    name: str  # the field name (and recipe key)
    option: str  # the keyword / CLI name
    kind: Any  # the value type: int, float, str, bool, tuple, or Any (not type-checked)
    default: Any
    meta: Setting

    @property
    def flag(self) -> str:
        return "--" + ("no-" if self.meta.negate else "") + self.option.replace("_", "-")


def entries(cls: type) -> list[Entry]:
    """The settings of dataclass ``cls``, in field order (fields without :func:`setting` are internal)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is not None:
            out.append(Entry(f.name, meta.option or f.name, _value_type(hints[f.name]), _default(f), meta))
    return out


def _default(f: Field[Any]) -> Any:
    return f.default if f.default is not MISSING else None


def _value_type(hint: Any) -> Any:
    """``int | None`` -> int, ``tuple[int, ...] | None`` -> tuple, ``Any`` -> Any."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    kind = args[0] if len(args) == 1 else Any
    return typing.get_origin(kind) or kind


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def parse_shape(text: str | None, flag: str = "--input-shape") -> tuple[int, ...] | None:
    """``'1,3,224,224'`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``; else a SpecError naming ``flag``."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise SpecError(f"invalid {flag} {text!r}: expected integers like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise SpecError(f"invalid {flag} {text!r}: dims must be positive")
    return dims


def parse_shapes(items: Sequence[str] | None) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    """``--input-shape`` values: one bare ``1,3,224,224`` (a one-input model), or ``NAME:DIMS`` per input
    (repeatable; NAME may itself contain ':', the dims follow the last one)."""
    if not items:
        return None
    named = [i for i in items if ":" in i]
    if not named:
        if len(items) > 1:
            raise SpecError("several --input-shape values need input names: --input-shape NAME:1,3,224,224")
        return parse_shape(items[0])
    if len(named) != len(items):
        raise SpecError(
            "--input-shape: give every value as NAME:DIMS, or one bare shape for a one-input model"
        )
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, _, dims = item.rpartition(":")
        if not name or name in out:
            why = "repeated input" if name else "no input name"
            raise SpecError(f"invalid --input-shape {item!r}: {why}")
        shape = parse_shape(dims)
        assert shape is not None
        out[name] = shape
    return out


# --------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class TrainSettings:
    """ADMM and retraining hyperparameters (recipe section ``train``); the defaults suit small
    Fashion-MNIST CNNs (see :class:`onnxprune.train.admm.TrainConfig` for how they were chosen)."""

    SECTION: ClassVar[str] = "train"

    # 2 + 2 epochs: on the VGG-style reference at filter:0.5 this gave +0.48 pp top-1 over the dense model
    # (benchmarks/README.md) in 12.5 min on 2 CPU cores; more epochs help at higher sparsity.
    epochs: int | None = setting(
        None,
        "Total epoch budget N: ADMM gets N//2, retraining the rest (method magnitude: all of it); an "
        "explicit --admm-epochs or --finetune-epochs wins and the other phase gets what is left.",
        low=0,
    )
    admm_epochs: int | None = setting(None, "Epochs of the ADMM phase (default 2, or from --epochs).", low=0)
    finetune_epochs: int | None = setting(
        None, "Epochs of masked retraining (default 2, or from --epochs).", low=0
    )
    importance: str = setting(
        "group",
        "How one-shot magnitude pruning (--method magnitude, the preview) ranks a group's channels: group "
        "(default: L2 norm over every weight slice of the channel, the producer's filter, a norm's scale and "
        "the consumers' input slices, as Torch-Pruning's group magnitude) or source (the slices the "
        "projection constrains: filters, biases, BN scale and shift). ADMM's hard prune keeps the support of "
        "its projection either way.",
        choices=IMPORTANCES,
    )
    round_iters: int = setting(0, "Optimizer steps per ADMM round (0: auto).", low=0)  # 0: a quarter epoch
    optimizer: str = setting(
        "adam",
        "Optimizer of both phases: adam, or sgd (momentum 0.9, Nesterov; usually wants ~10x Adam's lr).",
        choices=OPTIMIZERS,
    )
    lr: float = setting(3e-3, "Peak learning rate of the ADMM phase.", low=0, low_open=True)
    finetune_lr: float = setting(1e-3, "Peak learning rate of retraining.", low=0, low_open=True)
    # The new W-step, penalty and guard options (issue 20) are opt-in until measured on retrained
    # references: one smoke run (VGG filter:0.7, 3000 samples, 4 epochs, one seed) had them all on at
    # 82.4 % top-1 against 85.1 % for these defaults.
    lr_schedule: str = setting(
        "constant",
        "warmup-cosine: each phase warms up linearly, then ADMM holds the peak and retraining decays it by "
        "a cosine to 0 (restarted at the hard prune); constant: ADMM constant, retraining cosine from its "
        "peak.",
        choices=LR_SCHEDULES,
    )
    warmup: float = setting(0.1, "Fraction of each phase's steps spent warming up the lr.", low=0, high=1)
    loss_guard: float = setting(
        0.0,
        "Back off (halve the lr, restore the round's start) when an early ADMM round's task loss exceeds "
        "X times the dense model's (default 0: off; 2 is the issue-20 setting).",
        low=0,
    )
    guard_rounds: int = setting(4, "ADMM rounds the loss guard watches (the first N accepted).", low=0)
    rho_schedule: str = setting(
        "geometric",
        "Penalty schedule: balanced (residual balancing: x2 when the primal residual dominates the dual by "
        "10x, /2 in the opposite case) or geometric (x --rho-growth every round).",
        choices=RHO_SCHEDULES,
    )
    rho0: float = setting(1e-2, "Initial ADMM penalty.", low=0, low_open=True)
    rho_growth: float = setting(1.3, "Penalty growth per round (geometric schedule).", low=1)
    rho_max: float = setting(1.0, "Penalty cap.", low=0, low_open=True)
    primal_tol: float = setting(
        0.05,
        "Before the hard prune, run extra ADMM rounds (up to --max-extra-rounds) until the primal residual "
        "max ||W-Z||/||W|| over groups is below this.",
        low=0,
    )
    max_extra_rounds: int = setting(
        0, "Cap on the extra ADMM rounds of --primal-tol (default 0: none).", low=0
    )
    augment: str = setting(
        "",
        "Training-time augmentation of image inputs (N,C,H,W), comma-separated: crop (random crop, zero "
        "padding 2-4 px), flip (horizontal). Default none.",
    )
    bn_recalibrate: bool = setting(
        False,
        "After the hard prune, re-estimate BatchNorm running statistics over training batches (no grad).",
    )
    retrain_on: str = setting(
        "auto",
        "What retraining trains: pruned (the physically smaller model surgery made, its updates carried back "
        "exactly, so it costs the pruned model's MACs), masked (the dense model with the removed channels "
        "held at zero), or auto (pruned where the run allows it: filter/channel sparsity, no checkpoints, "
        "one process).",
        choices=RETRAIN_ON,
    )
    admm_on: str = setting(
        "shrunk",
        "What ADMM trains: shrunk (default: the model one-shot pruned by group magnitude part of the way "
        "to the target, see --shrink-exponent, at a fraction of the cost; ADMM picks the target channels "
        "among those; needs what --retrain-on pruned needs, else ADMM runs dense) or dense.",
        choices=ADMM_ON,
    )
    shrink_exponent: float = setting(
        0.7,
        "--admm-on shrunk: each pruned group of C channels, k kept, is first cut to C·(k/C)^E (default 0.7; "
        "0.5: the geometric mean; 1: to k, no choice left to ADMM).",
        low=0,
        high=1,
    )
    batch_size: int = setting(128, low=1)
    weight_decay: float = setting(0.0, low=0)
    device: str = setting("cpu", choices=DEVICES)
    threads: int | None = setting(None, "Torch threads for training (default: torch's).", low=1)
    bn_stats: str = setting(
        "auto",
        "BatchNorm running statistics while training: train (update), freeze, or auto (train unless the data "
        "is random, whose statistics would corrupt them).",
        choices=BN_STATS,
    )
    amp: str = setting(
        "off",
        "Mixed-precision training steps (autocast; fp16: loss scaling, CUDA only). Weights stay float32.",
        choices=AMP_MODES,
    )
    checkpoint_dir: str | None = setting(
        None,
        "Checkpoint into DIR after every ADMM round and retraining epoch (atomic; see --resume).",
        recipe=False,
        directory=True,
    )
    resume: bool = setting(
        False,
        "Continue from the checkpoint in --checkpoint-dir; ends as an uninterrupted run would.",
        recipe=False,
    )

    def validate(self) -> None:
        """Raise :class:`SpecError` on values that cannot work."""
        checks = [
            (all(e is None or e >= 0 for e in self._epochs()), "epochs must be >= 0"),
            (self.round_iters >= 0, "round_iters must be >= 0 (0: auto)"),
            (self.lr > 0 and self.finetune_lr > 0, "learning rates must be > 0"),
            (self.rho0 > 0 and self.rho_max >= self.rho0, "need 0 < rho0 <= rho_max"),
            (self.rho_growth >= 1.0, "rho_growth must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.device in DEVICES, f"device must be 'cpu' or 'cuda', not {self.device!r}"),
            (not self.resume or bool(self.checkpoint_dir), "resume needs a checkpoint directory"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}"),
            (self.rho_schedule in RHO_SCHEDULES, f"rho_schedule must be one of {', '.join(RHO_SCHEDULES)}"),
            (0 <= self.warmup <= 1, "warmup must be in [0, 1]"),
            (self.loss_guard == 0 or self.loss_guard > 1, "loss_guard must be 0 (off) or > 1"),
            (self.guard_rounds >= 0 and self.max_extra_rounds >= 0, "round counts must be >= 0"),
            (self.primal_tol >= 0, "primal_tol must be >= 0"),
            (self.admm_on in ADMM_ON, f"admm_on must be one of {', '.join(ADMM_ON)}"),
            (0 <= self.shrink_exponent <= 1, "shrink_exponent must be in [0, 1]"),
            (self.importance in IMPORTANCES, f"importance must be one of {', '.join(IMPORTANCES)}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SpecError(msg)
        parse_augment(self.augment)
        self.split("admm")

    def resolved(self: TS, method: str) -> TS:
        """A copy with ``admm_epochs`` and ``finetune_epochs`` set as :meth:`split` gives them (what the
        run trains and its report records)."""
        admm, finetune = self.split(method)
        return dataclasses.replace(self, admm_epochs=admm, finetune_epochs=finetune)

    def _epochs(self) -> tuple[int | None, int | None, int | None]:
        return self.epochs, self.admm_epochs, self.finetune_epochs

    def split(self, method: str) -> tuple[int, int]:
        """``(ADMM epochs, retraining epochs)`` of a run of ``method``.

        The rule: without ``epochs`` each phase takes its own option, else 2. With ``epochs = N``, an
        explicit phase option wins and the other phase gets the rest of N; with neither, ADMM gets N // 2
        and retraining N − N // 2 (the odd epoch goes to retraining, which the accuracy is recovered by), and
        method 'magnitude', which has no ADMM phase, retrains all N. Both given must add up to N."""
        total, admm, finetune = self._epochs()
        if total is None:
            return (DEFAULT_EPOCHS if admm is None else admm), (
                DEFAULT_EPOCHS if finetune is None else finetune
            )
        if admm is not None and finetune is not None:
            if admm + finetune != total:
                raise SpecError(
                    f"--epochs {total} does not match --admm-epochs {admm} + --finetune-epochs {finetune}"
                )
            return admm, finetune
        if admm is None and finetune is None:
            admm = 0 if method == "magnitude" else total // 2
        if admm is not None:
            if admm > total:
                raise SpecError(f"--admm-epochs {admm} exceeds --epochs {total}")
            return admm, total - admm
        assert finetune is not None
        if finetune > total:
            raise SpecError(f"--finetune-epochs {finetune} exceeds --epochs {total}")
        return total - finetune, finetune


@dataclass(frozen=True)
class DistillSettings:
    """How the dense model teaches the pruned one (recipe section ``distill``; see
    :mod:`onnxprune.train.objective`).

    ``weight``: None = 1 without labels and 0 (labels only) with them; a value in [0, 1] mixes.
    ``teacher``: 'cache' computes the teacher's outputs once per sample before training (equal to
    on-the-fly without augmentation; with ``train.augment`` the training batches' are computed online, on
    the augmented inputs), 'online' every step; 'auto' caches when they fit in ``cache_mb``.
    """

    SECTION: ClassVar[str] = "distill"

    loss: str = setting(
        "auto",
        "D: auto (KL for (N, C) classifier outputs, else MSE relative to the teacher's), kl, mse, cosine.",
        option="distill_loss",
        choices=DISTILL_LOSSES,
    )
    weight: float | None = setting(
        None,
        "With labels: weight W of self-distillation, loss = (1-W)·CE + W·D (default 0; without labels 1).",
        option="distill",
        low=0,
        high=1,
    )
    temperature: float = setting(1.0, "KL temperature (default 1).", low=0, low_open=True)
    teacher: str = setting(
        "auto",
        "Teacher outputs computed once and cached, or every step (default auto: cache if < 1 GB).",
        choices=TEACHER_MODES,
    )
    cache_mb: float = 1024.0  # internal: the 'auto' teacher cache limit

    def validate(self) -> None:
        if self.loss not in DISTILL_LOSSES:
            raise SpecError(f"unknown distillation loss {self.loss!r} (known: {', '.join(DISTILL_LOSSES)})")
        if self.teacher not in TEACHER_MODES:
            raise SpecError(f"unknown teacher mode {self.teacher!r} (known: {', '.join(TEACHER_MODES)})")
        if self.weight is not None and not 0.0 <= self.weight <= 1.0:
            raise SpecError(f"distillation weight must be in [0, 1], not {self.weight:g}")
        if not self.temperature > 0:
            raise SpecError(f"distillation temperature must be > 0, not {self.temperature:g}")

    def weight_for(self, labeled: bool) -> float:
        if not labeled:
            return 1.0
        return 0.0 if self.weight is None else self.weight


@dataclass(frozen=True)
class DataSettings:
    """Where the samples come from (recipe section ``data``; see :mod:`onnxprune.data`)."""

    SECTION: ClassVar[str] = "data"

    # no default: a run without data (nor a recipe's) stops before any work (pipeline.resolve), never
    # silently training on a toy data set whatever the model is
    source: object = setting(
        None,
        "Required: 'fashion-mnist', 'random' (Gaussian; --input-shape for dynamic dims), an .npz or IDX "
        "file, an image folder (class sub-folders or flat) or module:function returning a DataLoader.",
        option="data",
        short="-d",
    )
    labels: bool = setting(
        True,
        "Train on the inputs alone (self-distillation from the dense model); labels only score the report.",
        negate=True,
    )
    preprocess: str | Mapping[str, Any] | None = setting(
        None,
        "Image-folder preprocessing, e.g. 'resize=256,crop=224,mean=0.485/0.456/0.406,"
        "std=0.229/0.224/0.225,channels=rgb'.",
    )
    max_samples: int | None = setting(None, "Read at most N samples per split.", low=2)
    val_fraction: float = setting(
        0.1,
        "Held-out fraction when the data has no split of its own (default 0.1).",
        low=0,
        high=1,
        high_open=True,
    )
    input_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = setting(
        None,
        "Shape for dynamic dims: N,C,H,W for a one-input model, or NAME:DIMS per input (repeatable), "
        "e.g. --input-shape input_ids:1,128 --input-shape attention_mask:1,128.",
        parse=lambda items: parse_shapes(items),
        multiple=True,
    )

    def validate(self) -> None:
        if self.max_samples is not None and self.max_samples < 2:
            raise SpecError(f"max_samples must be >= 2, not {self.max_samples}")
        if not 0 <= self.val_fraction < 1:
            raise SpecError(f"val_fraction must be in [0, 1), not {self.val_fraction:g}")


@dataclass(frozen=True)
class GateSettings:
    """Quality gates as given (recipe section ``gates``); :class:`onnxprune.config.gates.Gates` evaluates
    them."""

    SECTION: ClassVar[str] = "gates"

    max_accuracy_drop: float | None = setting(
        None, "Gate: fail (exit 4, no model written) if top-1 drops by more than PP points."
    )
    min_fidelity: float | None = setting(
        None,
        "Gate: fail if top-1 agreement with the dense model (non-classifiers: 1 - rel. error) is below F.",
    )
    min_speedup: float | None = setting(None, "Gate: fail if the ORT speedup is below X (see --speedup-on).")
    speedup_on: str | None = setting(None, "PROVIDER:BATCH the --min-speedup gate reads (default cpu:1).")


@dataclass(frozen=True)
class RunSettings:
    """How the run prunes and writes (recipe top level)."""

    SECTION: ClassVar[str] = ""

    method: str = setting("admm", "admm (default) or magnitude.", choices=METHODS)
    seed: int = setting(0, "Seed of splits, initial order and training (default 0).")
    sparse_initializers: bool = setting(
        False,
        "Store element-pruned weights (irregular, nm) as ONNX sparse initializers: a smaller file, "
        "checked in ORT against the dense storage (no speedup either way).",
    )
    shape_form: str = setting(
        "auto",
        "How shape-pruned layers are written: dense with zeros, the lowered im2col form (a GEMM of the "
        "kept columns), or auto: time both on ORT CPU and keep the faster (the report says which and why).",
        choices=SHAPE_FORMS,
        recipe=False,
        show_default=True,
    )

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SpecError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        if self.shape_form not in SHAPE_FORMS:
            raise SpecError(f"unknown shape form {self.shape_form!r} (known: {', '.join(SHAPE_FORMS)})")


@dataclass(frozen=True)
class QuantizeSettings:
    """Int8 quantization of the verified model (recipe section ``quantize``, or ``quantize: int8``; see
    :mod:`onnxprune.runtime.quantization`). Choices are checked by :meth:`validate` (one-line errors)."""

    SECTION: ClassVar[str] = "quantize"

    mode: str = setting(
        "off",
        "int8: after the pruned fp32 model is verified, ONNX Runtime static quantization (QDQ, per-channel "
        "int8 weights) calibrated on the run's data; the int8 model is the one gated and written. "
        "Default off.",
        option="quantize",
    )
    calibration_samples: int = setting(
        256, "Samples (training split) calibrating the int8 activation ranges (default 256)."
    )
    calibration_method: str = setting(
        "minmax", "Activation range calibration: minmax (default), entropy or percentile."
    )
    exclude: tuple[str, ...] | None = setting(
        None,
        "Node (name or glob) kept float in the int8 model (repeatable).",
        option="quantize_exclude",
        parse=lambda items: tuple(items) or None,
        multiple=True,
    )
    # The stem (the first Conv/Gemm, reading the model input: 1 input channel on the reference models)
    # kept float: an earlier (lost) measurement found int8 there slower and less accurate (a 1-channel conv
    # does too little work per output to amortize its quantize/dequantize pair). Top-1 of the dense VGG- and
    # ResNet-style references moved < 0.1 pp either way (2026-12-07); the latency side awaits an idle run.
    stem: bool = setting(
        False,
        "Quantize the stem too (the Conv/Gemm/MatMul nodes the model input reaches first; float by default).",
        option="quantize_stem",
    )
    min_reduction: int = setting(
        0,
        "Conv/Gemm/MatMul nodes whose reduction depth (input channels per group x kernel size; Gemm/MatMul: "
        "the inner dim) is below K stay float (default 0: none): narrow pruned layers run slower in int8; "
        "128 measured best on the pruned references (benchmarks/README.md).",
        option="quantize_min_reduction",
    )
    activations: str = setting(
        "uint8",
        "Activation type: uint8 (default; U8S8, ORT's fast path on x86) or int8 (S8S8).",
        option="quantize_activations",
    )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def validate(self) -> None:
        """Raise :class:`SpecError` on unknown choices."""
        for value, known, what in (
            (self.mode, QUANTIZE_MODES, "quantize mode"),
            (self.calibration_method, CALIBRATION_METHODS, "calibration method"),
            (self.activations, ACTIVATION_TYPES, "quantize activation type"),
        ):
            if value not in known:
                raise SpecError(f"unknown {what} {value!r} (known: {', '.join(known)})")
        if self.min_reduction < 0:
            raise SpecError(f"quantize min_reduction must be >= 0, not {self.min_reduction}")
        if self.calibration_samples < 1:
            raise SpecError(f"calibration_samples must be >= 1, not {self.calibration_samples}")
        if self.exclude is not None and not all(isinstance(x, str) for x in self.exclude):
            raise SpecError("quantize exclude must be a list of node names or globs")


@dataclass(frozen=True)
class LatencySettings:
    """A latency budget on the target the model serves on (recipe section ``latency``; see
    :mod:`onnxprune.pipeline.latency_budget`): instead of ratios, each group's kept count is chosen to
    keep the most importance within the budget, from a measured latency table of the target."""

    SECTION: ClassVar[str] = "latency"

    on: str | None = setting(
        None,
        "Target PROVIDER:BATCH the model serves on (cpu:32, cuda:8; openvino:32: OpenVINO on the CPU): "
        "what --target-speedup and "
        "--target-latency measure, and what --align auto aligns for.",
    )
    target_speedup: float | None = setting(
        None, "Instead of --sparsity: run X times faster than the dense model on --on.", low=1, low_open=True
    )
    target_latency: float | None = setting(
        None, "Instead of --sparsity: at most MS milliseconds per batch on --on.", low=0, low_open=True
    )
    latency_threads: int | None = setting(
        None,
        "Intra-op threads on --on (ORT's, or OpenVINO's INFERENCE_NUM_THREADS; default: the runtime's).",
        low=1,
    )
    latency_cache: str | None = setting(
        None, "Directory of the latency table cache (default ~/.cache/onnxprune/latency).", directory=True
    )
    latency_checks: int = setting(
        3,
        "Times the chosen structure is built and timed against the dense model on --on, the budget re-aimed "
        "by the miss each time (0: trust the prediction).",
        low=0,
    )

    @property
    def targeted(self) -> bool:
        return self.target_speedup is not None or self.target_latency is not None

    def validate(self) -> None:
        if self.target_speedup is not None and self.target_latency is not None:
            raise SpecError("--target-speedup and --target-latency conflict: give one")
        if self.targeted and not self.on:
            raise SpecError("--target-speedup and --target-latency need --on PROVIDER:BATCH (e.g. cpu:32)")
        if self.target_speedup is not None and not self.target_speedup > 1:
            raise SpecError(f"--target-speedup must be > 1, not {self.target_speedup:g}")
        if self.target_latency is not None and not self.target_latency > 0:
            raise SpecError(f"--target-latency must be > 0 ms, not {self.target_latency:g}")


SECTIONS: tuple[type, ...] = (
    RunSettings,
    TrainSettings,
    DistillSettings,
    DataSettings,
    GateSettings,
    QuantizeSettings,
    LatencySettings,
)


def parse_augment(text: str | None) -> tuple[str, ...]:
    """``'crop,flip'`` -> ``('crop', 'flip')`` (empty: none); unknown names are a :class:`SpecError`."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise SpecError(f"unknown augmentation {unknown[0]!r} (known: {', '.join(AUGMENTS)})")
    return names


# --------------------------------------------------------------------------------------------- layers

S = TypeVar("S")
OptionsT = TypeVar("OptionsT", bound="Options")


class Options:
    """Settings *given* (by a recipe, the command line or a caller), by option name; None = not given.

    ``SETTINGS`` names the dataclasses whose options a subclass takes. A layer holds only what was given;
    :meth:`merged` lays another layer over it and :meth:`build` makes one of the dataclasses from it, the
    rest taking their defaults.
    """

    SETTINGS: ClassVar[tuple[type, ...]] = ()

    def __init__(self, **given: Any) -> None:
        unknown = sorted(set(given) - set(self.options()))
        if unknown:
            raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {unknown[0]!r}")
        self._given = {k: v for k, v in given.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.options():
            return self._given.get(name)
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    @classmethod
    def options(cls) -> list[str]:
        """The option names this layer takes."""
        return [e.option for settings in cls.SETTINGS for e in entries(settings)]

    @classmethod
    def take(cls: type[OptionsT], values: dict[str, Any]) -> OptionsT:
        """The layer of this class's options in ``values``, removed from ``values``."""
        return cls(**{name: values.pop(name) for name in cls.options() if name in values})

    def given(self) -> dict[str, Any]:
        """The given settings, option name -> value."""
        return dict(self._given)

    def merged(self: OptionsT, over: Options | None) -> OptionsT:
        """These settings with every one ``over`` gives taken from ``over``."""
        return type(self)(**{**self._given, **(over.given() if over is not None else {})})

    def build(self, cls: type[S], **extra: Any) -> S:
        """A ``cls`` (one of ``SETTINGS``) from the given settings, defaults for the rest; ``extra``: fields
        that are not settings (or overrides)."""
        values = {e.name: self._given[e.option] for e in entries(cls) if e.option in self._given}
        return cls(**{**values, **extra})

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._given.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and type(other) is type(self) and other.given() == self._given

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._given.items())})"


class TrainOptions(Options):
    """Training settings given explicitly (keywords: the options of :class:`TrainSettings` and
    :class:`DistillSettings`, e.g. ``TrainOptions(admm_epochs=1, distill_loss="kl", threads=4)``); the
    others come from a recipe, else the defaults."""

    SETTINGS = (TrainSettings, DistillSettings)


class DataOptions(Options):
    SETTINGS = (DataSettings,)


class GateOptions(Options):
    SETTINGS = (GateSettings,)


class RunOptions(Options):
    SETTINGS = (RunSettings,)


class QuantizeOptions(Options):
    """Quantization settings given (keywords: ``quantize='int8'``, ``calibration_samples``,
    ``calibration_method``, ``quantize_exclude``, ``quantize_stem``, ``quantize_min_reduction``,
    ``quantize_activations``)."""

    SETTINGS = (QuantizeSettings,)


class LatencyOptions(Options):
    SETTINGS = (LatencySettings,)


# --------------------------------------------------------------------------------------------- recipes


def parse_section(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Recipe ``values`` of section ``cls`` (recipe key -> value) as option name -> value, each checked
    against its field's type; unknown keys are a :class:`SpecError` naming them and the known ones."""
    known = {e.name: e for e in entries(cls) if e.meta.recipe}
    unknown = [str(k) for k in values if k not in known]
    if unknown:
        section = getattr(cls, "SECTION", "")
        prefix = f"{where}: {section}" if section else where
        raise SpecError(f"{prefix}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    return {known[k].option: typed(v, known[k].kind, _key(cls, k), where) for k, v in values.items()}


def _key(cls: type, name: str) -> str:
    section = getattr(cls, "SECTION", "")
    return f"{section}.{name}" if section else name


def typed(value: Any, kind: Any, name: str, where: str) -> Any:
    """``value`` checked against ``kind`` (a float may be given as an int; no bool passes for a number)."""
    if kind is Any or kind is tuple or value is None:
        return value
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        if kind is bool:
            raise SpecError(f"{where}: {name} must be true or false, not {value!r}")
        raise SpecError(f"{where}: {name} must be {kind.__name__}, not {value!r}")
    return float(value) if kind is float else value


__all__ = [
    "AUGMENTS",
    "CALIBRATION_METHODS",
    "LR_SCHEDULES",
    "METHODS",
    "OPTIMIZERS",
    "QUANTIZE_MODES",
    "RHO_SCHEDULES",
    "SECTIONS",
    "SHAPE_FORMS",
    "DataOptions",
    "DataSettings",
    "DistillSettings",
    "Entry",
    "GateOptions",
    "GateSettings",
    "LatencyOptions",
    "LatencySettings",
    "Options",
    "QuantizeOptions",
    "QuantizeSettings",
    "RunOptions",
    "RunSettings",
    "Setting",
    "TrainOptions",
    "TrainSettings",
    "entries",
    "parse_augment",
    "parse_section",
    "setting",
    "typed",
]
