"""``onnxprune compress IN [OUT]``: its options are the settings of :mod:`onnxprune.config.settings`
(generated, :func:`.options.setting_options`) plus the model, the sparsity and the outputs.

The conventions of onnxsim/onnxslim: OUT (or ``-o``) names the pruned model, else it goes beside the input
as ``<stem>.pruned.onnx``; an existing output is refused without ``--force`` and the input is never
overwritten; ``--data`` has no default (a missing one stops the run before any work); ``--dry-run`` plans
and prints, trains and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config.gates import Gates
from ..config.settings import (
    SECTIONS,
    GateOptions,
    GateSettings,
    LatencyOptions,
    QuantizeOptions,
    TrainOptions,
    entries,
)
from .common import main, setup_logging, user_errors
from .options import setting_options

PathOption = click.Path(dir_okay=False, path_type=Path)


@main.command()
@click.argument("model", type=PathOption)
@click.argument("out", required=False, type=PathOption)
@click.option(
    "--sparsity",
    "-s",
    help="TYPE:RATIO or nm:N:M: filter:0.7 removes 70% of filters; channel:0.7 removes 70% of the input "
    "channels of every Conv/Gemm that alone reads them (and the filters producing them); irregular:0.8 "
    "zeroes 80% of each Conv/Gemm weight; nm:2:4 keeps 2 of every 4 weights along the input dimension; "
    "shape:0.5 zeroes half the im2col columns W[:, c, kh, kw] of each Conv (input features of each Gemm).",
)
@click.option(
    "--target-macs",
    type=float,
    help="Instead of --sparsity: keep this fraction F of the MACs (0 < F <= 1); a short sensitivity probe "
    "on the data chooses each layer's ratio.",
)
@click.option(
    "--config",
    "recipe",
    type=PathOption,
    help="YAML recipe: per-layer rules, exclusions, training, data, gates (options given here override it).",
)
@click.option(
    "--align",
    help="Round kept filter counts to a multiple of N (fast kernels want aligned channel counts). Default "
    "'auto': the target's step - ORT CPU's NCHWc block on this machine (16 with AVX-512, 8 with AVX2), 8 on "
    "CUDA, 32 for an int8 model. --align 1 keeps exact ratios.",
)
@click.option(
    "--output",
    "-o",
    type=PathOption,
    help="Where the pruned model goes (or OUT; default: beside MODEL as <stem>.pruned.onnx, "
    "<stem>.pruned.int8.onnx with --quantize int8).",
)
@click.option("--force", is_flag=True, help="Overwrite existing output files (never the input model).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Load, resolve the recipe, plan (budget, alignment); print the plan and the resolved recipe as "
    "YAML. Trains nothing, writes nothing.",
)
@click.option("--report", "report_path", type=PathOption, help="JSON report path.")
@click.option("--plot", "plot_path", type=PathOption, help="PNG report plot path (needs matplotlib).")
@click.option(
    "--html",
    "html_path",
    type=PathOption,
    help="One self-contained HTML report: layers, plots (with matplotlib), verification, latency, gates.",
)
@click.option("--emit-masked", type=PathOption, help="Also write the masked dense model (for audit).")
@setting_options(*SECTIONS)
@click.option(
    "--bench-batch",
    "bench_batches",
    type=click.IntRange(min=1),
    multiple=True,
    help="Batch sizes of the latency comparison (default 1 and 32).",
)
@click.option("--no-bench", is_flag=True, help="Skip the latency comparison.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or logs; the summary still prints.")
@user_errors
def compress(
    model: Path,
    out: Path | None,
    output: Path | None,
    force: bool,
    dry_run: bool,
    report_path: Path | None,
    html_path: Path | None,
    bench_batches: tuple[int, ...],
    no_bench: bool,
    quiet: bool,
    **given: Any,
) -> None:
    """Prune MODEL, train it on --data, verify it, write the smaller model to OUT (default: beside MODEL
    as <stem>.pruned.onnx).

    Exit status: 0 written, 2 bad input, 3 verification failed, 4 a quality gate missed (nothing written).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..pipeline import compress as run
    from ..runtime.machine import job_context

    settings = _parsed(given)  # the rest are compress's keywords: run, data, spec, outputs
    train = TrainOptions.take(settings)
    gate_values = GateOptions.take(settings)  # none given: the recipe's gates, if any
    gates = Gates.of(gate_values.build(GateSettings)) if gate_values.given() else None
    quantize = QuantizeOptions.take(settings)
    latency = LatencyOptions.take(settings)
    given_target = output_path(out, output)  # OUT and -o together is an error, with --dry-run too
    if dry_run:
        _dry_run(model, settings, train, gates, quantize, latency)
        return
    target = given_target or default_output(model, quantize, settings.get("recipe"))
    main_rank = job_context().main  # under torchrun, rank 0 alone logs and prints
    quiet = quiet or not main_rank
    setup_logging(quiet)
    with logging_redirect_tqdm():  # log lines print above the progress bars, not through them
        result = run(
            model,
            output=target,
            train=train,
            gates=gates,
            quantize=quantize,
            latency=latency,
            report_path=report_path,
            html_path=html_path,
            overwrite=force,
            bench_batches=() if no_bench else (bench_batches or (1, 32)),
            quiet=quiet,
            **settings,
        )
    if not main_rank:
        return
    click.echo(result.report.format())
    written = [str(p) for p in (target, report_path, html_path) if p is not None]
    click.echo("wrote " + ", ".join(written))


def output_path(out: Path | None, output: Path | None) -> Path | None:
    """OUT or ``-o`` (not both); None when neither is given."""
    from ..errors import SpecError

    if out is not None and output is not None:
        raise SpecError(f"the output is given twice (OUT {out} and -o {output}): give one")
    return out or output


def _dry_run(
    model: Path,
    settings: dict[str, Any],
    train: TrainOptions,
    gates: Gates | None,
    quantize: QuantizeOptions,
    latency: LatencyOptions,
) -> None:
    """Plan and print; the output options are ignored (nothing is written)."""
    from ..pipeline.dryrun import dry_run
    from ..pipeline.resolve import Given

    recipe = settings.pop("recipe", None)
    for key in ("plot_path", "emit_masked"):
        settings.pop(key, None)
    setup_logging(True)
    click.echo(
        dry_run(
            model, recipe, Given.of(train=train, gates=gates, quantize=quantize, latency=latency, **settings)
        ).format()
    )


def _parsed(given: dict[str, Any]) -> dict[str, Any]:
    """The command line's values, settings with a text form (``--input-shape``) parsed."""
    parsers = {e.option: e.meta.parse for cls in SECTIONS for e in entries(cls) if e.meta.parse}
    return {k: parsers[k](v) if k in parsers and v is not None else v for k, v in given.items()}


def default_output(model: Path, quantize: QuantizeOptions, recipe: Path | None) -> Path:
    """``<stem>.pruned.onnx`` beside ``model``, ``<stem>.pruned.int8.onnx`` when the command line or the
    recipe quantizes."""
    from ..config.recipe import load_recipe
    from ..io import derived_path

    mode = quantize.quantize
    if mode is None and recipe is not None:
        mode = load_recipe(recipe).quantize.quantize
    return derived_path(model, "pruned", *(["int8"] if mode not in (None, "off") else []))
