"""``onnxprune bench`` and ``onnxprune profile``: the runtime commands (ONNX Runtime, optionally PyTorch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..config.settings import parse_shape
from .common import main, user_errors
from .options import input_and_cuda_options, provider_options


def _runtime_settings(
    providers: tuple[str, ...], input_shape: str | None, cuda: tuple[str, ...]
) -> dict[str, Any]:
    """The keyword arguments ``bench`` and ``profile`` share, from their command-line text."""
    from ..runtime.sessions import parse_provider_options

    return {
        "providers": list(providers) or None,
        "input_shape": parse_shape(input_shape),
        "cuda_options": parse_provider_options(cuda),
    }


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--batch",
    "batches",
    type=click.IntRange(min=1),
    multiple=True,
    help="Batch sizes (default 1 and 32; a model with a fixed batch: that batch).",
)
@provider_options
@click.option("--repeats", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(["ort", "torch", "torch-compile", "openvino"]),
    help="Runtimes to time the models in (repeatable; default ort): ONNX Runtime, the model imported to "
    "PyTorch (eager), or that through torch.compile, on the same device; openvino: OpenVINO on the CPU "
    "(pip install 'onnxprune[openvino]').",
)
@input_and_cuda_options
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results as JSON."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG chart."
)
@user_errors
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
    """Latency of MODELS (median, p90, speedup vs the first) in ONNX Runtime and optionally PyTorch.

    Int8 QDQ models (``onnxprune quantize``, ``compress --quantize int8``) run fused int8 kernels on the
    CPU provider; ORT's CUDA provider runs them as float math plus Q/DQ ops (TensorRT would run int8)."""
    from ..io import atomic_path, check_outputs, write_text
    from ..runtime.benchmark import bench as run
    from ..runtime.benchmark import default_batch_sizes
    from ..runtime.quantization import is_quantized

    check_outputs(list(models), [json_path, plot_path])
    report = run(
        list(models),
        batch_sizes=batches or default_batch_sizes(list(models)),
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        runtimes=runtimes or ("ort",),
        **_runtime_settings(providers, input_shape, cuda_options),
    )
    click.echo(report.format_table(machine=True))
    for reason in report.settings["skipped"]:
        click.echo(f"skipped: {reason}", err=True)
    if "cuda" in report.settings["providers"] and any(is_quantized(m) for m in models):
        click.echo(
            "note: ORT's CUDA provider runs int8 QDQ models as float math plus Q/DQ ops (no int8 kernels; "
            "TensorRT runs them as int8): their cuda rows are not int8 speed",
            err=True,
        )
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
@provider_options
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Profiled runs.")
@click.option(
    "--runtime",
    type=click.Choice(["ort", "openvino"]),
    default="ort",
    show_default=True,
    help="ONNX Runtime's profiler, or OpenVINO's per-node counters on the CPU "
    "(pip install 'onnxprune[openvino]').",
)
@input_and_cuda_options
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the profiles as JSON."
)
@user_errors
def profile(
    models: tuple[Path, ...],
    batches: tuple[int, ...],
    providers: tuple[str, ...],
    threads: int | None,
    warmup: int,
    runs: int,
    runtime: str,
    input_shape: str | None,
    cuda_options: tuple[str, ...],
    json_path: Path | None,
) -> None:
    """Where the time goes: ORT's (or OpenVINO's) per-node times of MODELS side by side (the first is the
    baseline), with each node's speedup, executed-MAC reduction and GMAC/s."""
    from ..io import check_outputs, write_text
    from ..runtime.profiling import profile as run

    check_outputs(list(models), [json_path])
    report = run(
        list(models),
        batch_sizes=batches or (1,),
        threads=threads,
        warmup=warmup,
        runs=runs,
        runtime=runtime,
        **_runtime_settings(providers, input_shape, cuda_options),
    )
    click.echo(report.format_table(machine=True))
    if json_path:
        write_text(json.dumps(report.to_dict(), indent=2), json_path)
