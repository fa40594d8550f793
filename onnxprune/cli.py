"""Command line: ``onnxprune compress | inspect | bench | profile``.

User errors print one line (``error: ...``) and exit non-zero; no traceback, no partial output.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import OnnxPruneError, SpecError
from .gates import GateError

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GateError as e:
            if e.report is not None:  # the numbers that missed the gate, above the one-line reason
                click.echo(e.report.format())
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except OnnxPruneError as e:
            click.echo(f"error: {_rank_tag()}{e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _rank_tag() -> str:
    """'[rank R] ' under torchrun with several processes (each prints its own error line), else ''."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f"[rank {rank}] " if world.isdigit() and int(world) > 1 else ""


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise SpecError(f"invalid --input-shape {text!r}: expected integers like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise SpecError(f"invalid --input-shape {text!r}: dims must be positive")
    return dims


def _shapes(items: tuple[str, ...]) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    """``--input-shape`` values: one bare ``1,3,224,224`` (a one-input model), or ``NAME:DIMS`` per input
    (repeatable; NAME may itself contain ':', the dims follow the last one)."""
    if not items:
        return None
    named = [i for i in items if ":" in i]
    if not named:
        if len(items) > 1:
            raise SpecError("several --input-shape values need input names: --input-shape NAME:1,3,224,224")
        return _shape(items[0])
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
        shape = _shape(dims)
        assert shape is not None
        out[name] = shape
    return out


def _provider_options(fn: F) -> F:
    """--provider, --threads, --warmup: shared by ``bench`` and ``profile``."""
    fn = click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)(fn)
    fn = click.option("--threads", type=click.IntRange(min=1), help="ORT intra-op threads (default: ORT's).")(
        fn
    )
    return click.option(
        "--provider",
        "providers",
        type=click.Choice(["cpu", "cuda"]),
        multiple=True,
        help="Execution providers (default: all available).",
    )(fn)


def _input_and_cuda_options(fn: F) -> F:
    """--input-shape, --cuda-option: shared by ``bench`` and ``profile``."""
    fn = click.option(
        "--cuda-option",
        "cuda_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Option of ORT's CUDA provider (repeatable), e.g. prefer_nhwc=1 (NHWC convolutions) or "
        "enable_cuda_graph=1 (CUDA graphs; outputs pre-allocated; refused by profile).",
    )(fn)
    return click.option("--input-shape", help="Sample shape for dynamic non-batch dims, e.g. 1,3,224,224.")(
        fn
    )


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxprune")
def main() -> None:
    """ONNX in, smaller verified ONNX out: structured pruning with ADAM-ADMM."""


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
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
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML recipe: per-layer rules, exclusions, training, data, gates (options given here override it).",
)
@click.option(
    "--align",
    help="Round kept filter counts to a multiple of N (fast kernels want aligned channel counts); 'auto' = "
    "the target runtime's (8 on ORT CPU and CUDA; see benchmarks/README.md). Default 1 (exact ratios).",
)
@click.option(
    "--data",
    "-d",
    help="'fashion-mnist' (default), 'random' (Gaussian; --input-shape for dynamic dims), an .npz or IDX "
    "file, an image folder (class sub-folders or flat) or module:function returning a DataLoader.",
)
@click.option(
    "--no-labels",
    is_flag=True,
    help="Train on the inputs alone (self-distillation from the dense model); labels only score the report.",
)
@click.option(
    "--preprocess",
    help="Image-folder preprocessing, e.g. 'resize=256,crop=224,mean=0.485/0.456/0.406,"
    "std=0.229/0.224/0.225,channels=rgb'.",
)
@click.option("--max-samples", type=click.IntRange(min=2), help="Read at most N samples per split.")
@click.option(
    "--input-shape",
    "input_shape",
    multiple=True,
    help="Shape for dynamic dims: N,C,H,W for a one-input model, or NAME:DIMS per input (repeatable), "
    "e.g. --input-shape input_ids:1,128 --input-shape attention_mask:1,128.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the pruned model goes.",
)
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="JSON report path."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="PNG report plot path."
)
@click.option(
    "--emit-masked",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the masked dense model (for audit).",
)
@click.option(
    "--sparse-initializers",
    is_flag=True,
    default=None,
    help="Store element-pruned weights (irregular, nm) as ONNX sparse initializers: a smaller file, "
    "checked in ORT against the dense storage (no speedup either way).",
)
@click.option(
    "--shape-form",
    type=click.Choice(["auto", "dense", "lowered"]),
    default="auto",
    show_default=True,
    help="How shape-pruned layers are written: dense with zeros, the lowered im2col form (a GEMM of the "
    "kept columns), or auto: time both on ORT CPU and keep the faster (the report says which and why).",
)
@click.option("--method", type=click.Choice(["admm", "magnitude"]), help="admm (default) or magnitude.")
@click.option("--admm-epochs", type=click.IntRange(min=0), help="Epochs of the ADMM phase.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), help="Epochs of masked retraining.")
@click.option("--round-iters", type=click.IntRange(min=0), help="Adam steps per ADMM round (0: auto).")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate of the ADMM phase."
)
@click.option(
    "--finetune-lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate of retraining."
)
@click.option("--rho0", type=click.FloatRange(min=0, min_open=True), help="Initial ADMM penalty.")
@click.option("--rho-growth", type=click.FloatRange(min=1), help="Penalty growth per round.")
@click.option("--rho-max", type=click.FloatRange(min=0, min_open=True), help="Penalty cap.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--weight-decay", type=click.FloatRange(min=0))
@click.option("--device", type=click.Choice(["cpu", "cuda"]))
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads for training (default: torch's).")
@click.option(
    "--distill",
    type=click.FloatRange(0, 1),
    help="With labels: weight W of self-distillation, loss = (1-W)·CE + W·D (default 0; without labels 1).",
)
@click.option(
    "--distill-loss",
    type=click.Choice(["auto", "kl", "mse", "cosine"]),
    help="D: auto (KL for (N, C) classifier outputs, else MSE relative to the teacher's), kl, mse, cosine.",
)
@click.option(
    "--temperature", type=click.FloatRange(min=0, min_open=True), help="KL temperature (default 1)."
)
@click.option(
    "--teacher",
    type=click.Choice(["auto", "cache", "online"]),
    help="Teacher outputs computed once and cached, or every step (default auto: cache if < 1 GB).",
)
@click.option(
    "--amp",
    type=click.Choice(["off", "bf16", "fp16"]),
    help="Mixed-precision training steps (autocast; fp16: loss scaling, CUDA only). Weights stay float32.",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False),
    help="Checkpoint into DIR after every ADMM round and retraining epoch (atomic; see --resume).",
)
@click.option(
    "--resume",
    is_flag=True,
    default=None,
    help="Continue from the checkpoint in --checkpoint-dir; ends as an uninterrupted run would.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    help="Gate: fail (exit 4, no model written) if top-1 drops by more than PP points.",
)
@click.option(
    "--min-fidelity",
    type=float,
    help="Gate: fail if top-1 agreement with the dense model (non-classifiers: 1 - rel. error) is below F.",
)
@click.option(
    "--min-speedup", type=float, help="Gate: fail if the ORT speedup is below X (see --speedup-on)."
)
@click.option("--speedup-on", help="PROVIDER:BATCH the --min-speedup gate reads (default cpu:1).")
@click.option("--seed", type=int, help="Seed of splits, initial order and training (default 0).")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    help="Held-out fraction when the data has no split of its own (default 0.1).",
)
@click.option(
    "--bench-batch",
    "bench_batches",
    type=click.IntRange(min=1),
    multiple=True,
    help="Batch sizes of the latency comparison (default 1 and 32).",
)
@click.option("--no-bench", is_flag=True, help="Skip the latency comparison.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or logs; the summary still prints.")
@_user_errors
def compress(
    model: Path,
    sparsity: str | None,
    target_macs: float | None,
    recipe: Path | None,
    align: str | None,
    data: str | None,
    input_shape: tuple[str, ...],
    output: Path,
    report_path: Path | None,
    plot_path: Path | None,
    emit_masked: Path | None,
    sparse_initializers: bool | None,
    shape_form: str,
    method: str | None,
    seed: int | None,
    val_fraction: float | None,
    bench_batches: tuple[int, ...],
    no_bench: bool,
    quiet: bool,
    no_labels: bool,
    preprocess: str | None,
    max_samples: int | None,
    max_accuracy_drop: float | None,
    min_fidelity: float | None,
    min_speedup: float | None,
    speedup_on: str | None,
    **train: Any,
) -> None:
    """Prune MODEL, train it on --data, verify it, write the smaller model to --output.

    Exit status: 0 written, 2 bad input, 3 verification failed, 4 a quality gate missed (nothing written).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .gates import Gates, parse_speedup_on
    from .pipeline import TrainOptions
    from .pipeline import compress as run

    gates = None  # none given here: the recipe's gates, if any
    if any(v is not None for v in (max_accuracy_drop, min_fidelity, min_speedup, speedup_on)):
        provider, batch = parse_speedup_on(speedup_on or "cpu:1")
        gates = Gates(max_accuracy_drop, min_fidelity, min_speedup, provider, batch)

    from .train.distributed import env_rank

    main_rank = env_rank() == 0  # under torchrun, rank 0 alone logs and prints
    quiet = quiet or not main_rank
    _setup_logging(quiet)
    with logging_redirect_tqdm():  # log lines print above the progress bars, not through them
        result = run(
            model,
            sparsity,
            data,
            output,
            target_macs=target_macs,
            input_shape=_shapes(input_shape),
            method=method,
            train=TrainOptions(**train),
            recipe=recipe,
            align=align,
            labels=False if no_labels else None,
            preprocess=preprocess,
            max_samples=max_samples,
            gates=gates,
            seed=seed,
            val_fraction=val_fraction,
            emit_masked=emit_masked,
            sparse_initializers=sparse_initializers,
            shape_form=shape_form,
            report_path=report_path,
            plot_path=plot_path,
            bench_batches=() if no_bench else (bench_batches or (1, 32)),
            quiet=quiet,
        )
    if not main_rank:
        return
    click.echo(result.report.format())
    click.echo(f"wrote {output}" + (f" and {report_path}" if report_path else ""))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input-shape",
    "input_shape",
    multiple=True,
    help="N,C,H,W for a one-input model with dynamic dims, or NAME:DIMS per input (repeatable); default: "
    "the model's, batch 1.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--groups", "show_groups", is_flag=True, help="Also list every group's members.")
@click.option(
    "--emit-recipe",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a starting YAML recipe with one rule per prunable group (use with compress --config).",
)
@click.option(
    "--ratio", type=click.FloatRange(0, 1, max_open=True), default=0.5, help="Ratio in the emitted recipe."
)
@_user_errors
def inspect(
    model: Path,
    input_shape: tuple[str, ...],
    as_json: bool,
    show_groups: bool,
    emit_recipe: Path | None,
    ratio: float,
) -> None:
    """Prunable layers, channels, MACs and params of MODEL."""
    from .inspect import inspect_model
    from .io import check_outputs, write_text

    check_outputs([model], [emit_recipe])
    info = inspect_model(model, _shapes(input_shape))
    if emit_recipe is not None:
        write_text(info.recipe(ratio), emit_recipe)
        click.echo(f"wrote {emit_recipe} ({len(info.plan.prunable)} rules)", err=True)
    click.echo(json.dumps(info.to_dict(), indent=2) if as_json else info.format(show_groups))


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--batch",
    "batches",
    type=click.IntRange(min=1),
    multiple=True,
    help="Batch sizes (default 1 and 32; a model with a fixed batch: that batch).",
)
@_provider_options
@click.option("--repeats", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(["ort", "torch", "torch-compile"]),
    help="Runtimes to time the models in (repeatable; default ort): ONNX Runtime, the model imported to "
    "PyTorch (eager), or that through torch.compile, on the same device.",
)
@_input_and_cuda_options
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG chart."
)
@_user_errors
def bench(
    models: tuple[Path, ...],
    batches: tuple[int, ...],
    providers: tuple[str, ...],
    threads: int | None,
    warmup: int,
    repeats: int,
    runtimes: tuple[str, ...],
    input_shape: str | None,
    cuda_options: tuple[str, ...],
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Latency of MODELS (median, p90, speedup vs the first) in ONNX Runtime and optionally PyTorch."""
    from .bench import bench as run
    from .bench import default_batch_sizes
    from .graph.runtime import parse_provider_options
    from .io import atomic_path, check_outputs, write_text

    check_outputs(list(models), [json_path, plot_path])
    report = run(
        list(models),
        batch_sizes=batches or default_batch_sizes(list(models)),
        providers=list(providers) or None,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        input_shape=_shape(input_shape),
        runtimes=runtimes or ("ort",),
        cuda_options=parse_provider_options(cuda_options),
    )
    click.echo(report.format_table(machine=True))
    for reason in report.settings["skipped"]:
        click.echo(f"skipped: {reason}", err=True)
    if json_path:
        write_text(json.dumps(report.to_dict(), indent=2), json_path)
    if plot_path:
        with atomic_path(plot_path) as tmp:
            report.plot(tmp)


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--batch", "batches", type=click.IntRange(min=1), multiple=True, help="Batch sizes (default 1)."
)
@_provider_options
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Profiled runs.")
@_input_and_cuda_options
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the profiles as JSON."
)
@_user_errors
def profile(
    models: tuple[Path, ...],
    batches: tuple[int, ...],
    providers: tuple[str, ...],
    threads: int | None,
    warmup: int,
    runs: int,
    input_shape: str | None,
    cuda_options: tuple[str, ...],
    json_path: Path | None,
) -> None:
    """Where the time goes: ORT's per-node times of MODELS side by side (the first is the baseline),
    with each node's speedup, executed-MAC reduction and GMAC/s."""
    from .graph.runtime import parse_provider_options
    from .io import check_outputs, write_text
    from .profiling import profile as run

    check_outputs(list(models), [json_path])
    report = run(
        list(models),
        batch_sizes=batches or (1,),
        providers=list(providers) or None,
        threads=threads,
        warmup=warmup,
        runs=runs,
        input_shape=_shape(input_shape),
        cuda_options=parse_provider_options(cuda_options),
    )
    click.echo(report.format_table(machine=True))
    if json_path:
        write_text(json.dumps(report.to_dict(), indent=2), json_path)


if __name__ == "__main__":
    main()
