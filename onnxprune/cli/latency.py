"""``onnxprune latency``: the per-layer latency table of a model on a target, and its prediction next to
the measured latency (:mod:`onnxprune.runtime.latency`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config.settings import parse_shape
from .common import main, user_errors

ModelPath = click.Path(dir_okay=False, path_type=Path)


@main.command()
@click.argument("model", type=ModelPath)
@click.option(
    "--on",
    "target",
    required=True,
    help="Target PROVIDER:BATCH: cpu:32, cuda:8 (ORT), openvino:32 (OpenVINO CPU).",
)
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: the runtime's).")
@click.option(
    "--opt-level",
    type=click.Choice(["all", "extended", "basic", "disable"]),
    default="all",
    show_default=True,
    help="ORT graph optimization level of the sessions (OpenVINO: ignored).",
)
@click.option(
    "--align",
    default="auto",
    show_default=True,
    help="Candidate widths: multiples of N ('auto': the target's).",
)
@click.option("--points", type=click.IntRange(min=2), default=6, show_default=True, help="Widths per group.")
@click.option(
    "--repeats", type=click.IntRange(min=1), default=15, show_default=True, help="Timed runs per width."
)
@click.option("--input-shape", help="Sample shape for dynamic non-batch dims, e.g. 1,3,224,224.")
@click.option("--pruned", type=ModelPath, help="A pruned version of MODEL: predict and measure it too.")
@click.option(
    "--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), help="Table cache dir."
)
@click.option("--no-cache", is_flag=True, help="Measure everything; read and write no cache.")
@click.option("--json", "json_path", type=ModelPath, help="Write the table and predictions as JSON.")
@user_errors
def latency(
    model: Path,
    target: str,
    threads: int | None,
    opt_level: str,
    align: str,
    points: int,
    repeats: int,
    input_shape: str | None,
    pruned: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    json_path: Path | None,
) -> None:
    """The latency of MODEL's prunable layers on a target at candidate widths (cached), and the
    whole-model prediction (layers + measured remainder) next to the measured latency."""
    from ..config.alignment import alignment_of
    from ..errors import SpecError
    from ..io import check_outputs, write_text
    from ..runtime.latency import LatencyCache, parse_target
    from ..runtime.latency.report import latency_report

    on = parse_target(target, threads, opt_level)
    try:
        step = alignment_of(align, on.provider).step
    except ValueError as e:
        raise SpecError(str(e)) from None
    check_outputs([model, pruned], [json_path])
    cache = LatencyCache.open(on, cache_dir, use=not no_cache)
    report = latency_report(model, on, step, parse_shape(input_shape), points, cache, repeats, pruned)
    click.echo(report.format())
    if json_path:
        write_text(json.dumps(report.to_dict(), indent=2), json_path)
