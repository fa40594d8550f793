"""Stage 1 of ``compress``: one resolved configuration from the arguments, the recipe and the defaults.

Every setting comes in layers (:class:`~onnxprune.config.settings.Options`): the recipe's, then what the
caller gave (an explicit argument, a command-line option); the later layer wins, the settings' defaults
fill the rest (:meth:`Options.build`). The sparsity is special: an explicit ``sparsity`` replaces a
recipe's rules (keeping its exclusions and alignment) and its ``target_macs``, an explicit
``target_macs`` replaces a recipe's rules (see :func:`sparsity_spec`). Everything is checked here,
before any work: a bad value or an output that cannot be written fails the run at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from ..config.alignment import Alignment, alignment_of, resolve_alignment
from ..config.gates import Gates
from ..config.recipe import Recipe, load_recipe
from ..config.settings import (
    DataOptions,
    DataSettings,
    DistillSettings,
    LatencyOptions,
    LatencySettings,
    QuantizeOptions,
    QuantizeSettings,
    RunOptions,
    RunSettings,
    TrainOptions,
    TrainSettings,
)
from ..config.sparsity import SparsitySpec, check_target, parse_sparsity
from ..data import SOURCES
from ..data.preprocess import Preprocess, as_preprocess
from ..errors import DataError, DependencyError, SpecError
from ..extras import installed
from ..io import check_outputs
from ..runtime.machine import job_context

EXACT = Alignment(1, "exact ratios (--align 1)")


@dataclass(frozen=True)
class Outputs:
    """Where the run writes (None: not written): the pruned model, the masked model, report, plot, HTML
    page; ``overwrite=False``: an existing file is an error before any work (the CLI without --force)."""

    model: Path | None = None
    masked: Path | None = None
    report: Path | None = None
    plot: Path | None = None
    html: Path | None = None
    overwrite: bool = True

    @staticmethod
    def of(*paths: str | Path | None, overwrite: bool = True) -> Outputs:
        named = [None if p is None else Path(p) for p in paths]
        kinds = ("model", "masked", "report", "plot", "html")
        return Outputs(**dict(zip(kinds, named, strict=False)), overwrite=overwrite)

    @property
    def paths(self) -> list[Path | None]:
        return [self.model, self.masked, self.report, self.plot, self.html]


def no_data_error() -> DataError:
    """The one-line error of a run given no data (no toy default: the model decides what fits)."""
    return DataError(
        f"no data: give --data SOURCE ({SOURCES}; 'random' previews the structure only) or a recipe "
        "with data.source"
    )


@dataclass(frozen=True)
class Given:
    """What a caller gave besides the model and the recipe, as settings layers (None: not given)."""

    run: RunOptions = field(default_factory=RunOptions)
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainOptions | None = None
    gates: Gates | None = None
    sparsity: str | SparsitySpec | None = None
    target_macs: float | None = None
    align: int | str | None = None
    quantize: QuantizeOptions | None = None
    latency: LatencyOptions | None = None

    @staticmethod
    def of(
        sparsity: str | SparsitySpec | None = None,
        data: Any = None,
        *,
        target_macs: float | None = None,
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
        sparse_initializers: bool | None = None,
        shape_form: str | None = None,
        quantize: QuantizeOptions | None = None,
        latency: LatencyOptions | None = None,
    ) -> Given:
        """The layers of ``compress``'s keyword arguments (None: not given)."""
        run = RunOptions(
            method=method, seed=seed, sparse_initializers=sparse_initializers, shape_form=shape_form
        )
        data_given = DataOptions(
            data=data,
            labels=labels,
            preprocess=preprocess,
            max_samples=max_samples,
            val_fraction=val_fraction,
            input_shape=input_shape,
        )
        return Given(run, data_given, train, gates, sparsity, target_macs, align, quantize, latency)


@dataclass(frozen=True)
class Config:
    """A compress run, resolved: what every later stage reads."""

    model: str | Path | onnx.ModelProto
    spec: SparsitySpec
    target_macs: float | None  # a MAC budget instead of ratios (spec: exclusions and alignment only)
    run: RunSettings
    data: DataSettings
    train: TrainSettings
    distill: DistillSettings
    gates: Gates
    preprocess: Preprocess | None
    latency: LatencySettings = field(default_factory=LatencySettings)  # a latency budget, if any
    outputs: Outputs = Outputs()
    bench_batches: tuple[int, ...] = (1, 32)
    bench_repeats: int = 30
    rtol: float = 1e-4
    quiet: bool = False
    main_rank: bool = True  # under torchrun only rank 0 benchmarks and writes outputs
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)  # int8 after verification
    alignment: Alignment = EXACT  # the step of spec.align, and why

    @property
    def source(self) -> str | Path | None:
        """The model's path; None for a ModelProto."""
        return None if isinstance(self.model, onnx.ModelProto) else self.model

    @property
    def sparsity_text(self) -> str:
        """The sparsity as the report names it."""
        lat = self.latency
        if lat.targeted:
            what = f"target-speedup {lat.target_speedup:g}" if lat.target_speedup else ""
            text = (what or f"target-latency {lat.target_latency:g} ms") + f" on {lat.on}"
        elif self.target_macs is None:
            return str(self.spec)
        else:
            text = f"target-macs {self.target_macs:g}"
        if self.spec.exclude:
            text += f"; exclude {', '.join(self.spec.exclude)}"
        return text + (f"; align {self.spec.align}" if self.spec.align > 1 else "")


def resolve(
    model: str | Path | onnx.ModelProto,
    recipe: str | Path | Mapping[str, Any] | Recipe | None,
    given: Given,
    outputs: Outputs,
    bench: tuple[Sequence[int], int] = ((1, 32), 30),
    rtol: float = 1e-4,
    quiet: bool = False,
    require_data: bool = True,
) -> Config:
    """The configuration of a run (see the module docstring); raises on anything that cannot work.
    ``require_data=False`` (a dry run, the torch-free stage): no data given means random inputs."""
    rec = load_recipe(recipe) if recipe is not None else Recipe()
    gates = given.gates or rec.gates
    latency = latency_settings(rec, given)
    target = target_macs(given.sparsity, given.target_macs, rec, latency)
    provider = latency.on.partition(":")[0].strip().lower() if latency.on else None
    provider = provider or (gates.speedup_provider if gates else "cpu")
    run = rec.run.merged(given.run).build(RunSettings)
    quantize = rec.quantize.merged(given.quantize).build(QuantizeSettings)
    alignment = choose_alignment(given, rec, provider, int8=quantize.enabled)
    budget = target is not None or latency.targeted
    spec = sparsity_spec(given.sparsity, rec, alignment.step, provider, budget)
    data = rec.data.merged(given.data).build(DataSettings)
    train = rec.train.merged(given.train)
    train_settings = train.build(TrainSettings)
    train_settings.validate()  # a bad value (a recipe's) fails before anything loads
    run.validate()
    data.validate()
    quantize.validate()
    if data.source is None:
        if require_data:
            raise no_data_error()
        if target is not None or latency.targeted:  # the sensitivity probe means nothing on random inputs
            flag = "--target-macs" if target is not None else "a latency target"
            raise DataError(f"{flag} chooses ratios on the data: give --data SOURCE")
        data = replace(data, source="random")
    source = None if isinstance(model, onnx.ModelProto) else model
    check_outputs([source], outputs.paths, outputs.overwrite)
    if outputs.plot is not None:
        require_matplotlib("--plot")
    return Config(
        model=model,
        spec=spec,
        target_macs=target,
        run=run,
        data=data,
        train=train_settings,
        distill=train.build(DistillSettings),
        gates=gates or Gates(),
        preprocess=None if data.preprocess is None else as_preprocess(data.preprocess),
        outputs=outputs,
        bench_batches=tuple(bench[0]),
        bench_repeats=bench[1],
        rtol=rtol,
        quiet=quiet,
        main_rank=job_context().main,
        quantize=quantize,
        alignment=alignment,
        latency=latency,
    )


def require_matplotlib(what: str) -> None:
    """A :class:`DependencyError` naming the extra when matplotlib is not installed."""
    if not installed("matplotlib"):
        raise DependencyError(f"{what} needs matplotlib: pip install 'onnxprune[plot]'")


def latency_settings(rec: Recipe, given: Given) -> LatencySettings:
    """The latency budget's settings: the recipe's section under the caller's; checked. A latency target
    replaces an explicit ``sparsity`` only by conflict (one-line error), like ``target_macs``; over a
    recipe's rules or budget it wins."""
    latency = rec.latency.merged(given.latency).build(LatencySettings)
    latency.validate()
    if latency.on:
        from ..runtime.latency import parse_target

        parse_target(latency.on, latency.latency_threads)  # unknown or missing provider: fail now
    if latency.targeted:
        flag = "--target-speedup" if latency.target_speedup is not None else "--target-latency"
        if given.sparsity is not None:
            raise SpecError(f"--sparsity and {flag} conflict: give one (ratios, or a latency budget)")
        if given.target_macs is not None:
            raise SpecError(f"--target-macs and {flag} conflict: give one (a MAC or a latency budget)")
    return latency


def choose_alignment(given: Given, rec: Recipe, provider: str, int8: bool = False) -> Alignment:
    """The run's channel multiple and why: ``--align`` as given, else the recipe's, else ``'auto'`` (the
    target's step, :func:`~onnxprune.config.alignment.auto_alignment`). A :class:`SparsitySpec` passed as
    the sparsity carries its own ``align`` (the caller built the whole spec), unless ``align`` is given."""
    value = given.align if given.align is not None else rec.align
    if value is None and isinstance(given.sparsity, SparsitySpec):
        return Alignment(given.sparsity.align, f"the given SparsitySpec's align {given.sparsity.align}")
    try:
        return alignment_of(value, provider, int8=int8)
    except ValueError as e:
        raise SpecError(str(e)) from None


def target_macs(
    sparsity: str | SparsitySpec | None,
    target: float | None,
    rec: Recipe,
    latency: LatencySettings | None = None,
) -> float | None:
    """The MAC budget, if this run has one: the argument, else the recipe's unless ``sparsity`` or a
    latency target is given."""
    if latency is not None and latency.targeted:
        return None
    if target is not None and sparsity is not None:
        raise SpecError(
            "--sparsity and --target-macs conflict: give one (ratios, or a MAC budget that chooses them)"
        )
    if target is not None:
        return check_target(target)
    return rec.target_macs if sparsity is None else None


def sparsity_spec(
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


__all__ = [
    "Config",
    "Given",
    "Outputs",
    "choose_alignment",
    "latency_settings",
    "no_data_error",
    "require_matplotlib",
    "resolve",
    "sparsity_spec",
    "target_macs",
]
