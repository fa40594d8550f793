"""``onnxprune quantize``: the int8 step of ``compress --quantize int8`` alone, on any float model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config.settings import DataSettings, QuantizeOptions, QuantizeSettings, entries
from .common import main, setup_logging, user_errors
from .options import setting_options

PathOption = click.Path(dir_okay=False, path_type=Path)
# the mode is the command itself; labels only matter to training
SKIPPED = frozenset({"quantize", "labels"})


@main.command()
@click.argument("model", type=PathOption)
@click.argument("output", required=False, type=PathOption)
@setting_options(DataSettings, QuantizeSettings, skip=SKIPPED)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/held-out split.")
@click.option("--force", is_flag=True, help="Overwrite an existing OUTPUT (never MODEL).")
@click.option("--report", "report_path", type=PathOption, help="JSON report path.")
@click.option("--quiet", "-q", is_flag=True, help="No logs; the summary still prints.")
@user_errors
def quantize(
    model: Path,
    output: Path | None,
    seed: int,
    force: bool,
    report_path: Path | None,
    quiet: bool,
    **given: Any,
) -> None:
    """Quantize MODEL to int8 (ONNX Runtime static QDQ, per-channel weights) with calibration on --data,
    and score it against MODEL on held-out samples; OUTPUT defaults to <stem>.int8.onnx beside MODEL."""
    from ..io import derived_path
    from ..pipeline.quantization import quantize_model

    sections = (DataSettings, QuantizeSettings)
    parsers = {e.option: e.meta.parse for cls in sections for e in entries(cls) if e.meta.parse}
    values = {k: parsers[k](v) if k in parsers and v is not None else v for k, v in given.items()}
    options = QuantizeOptions.take(values)
    setup_logging(quiet)
    output = output or derived_path(model, "int8")
    result = quantize_model(
        model,
        values.pop("data"),
        output,
        options=options,
        seed=seed,
        force=force,
        report_path=report_path,
        **values,
    )
    click.echo(result.format())
    click.echo(f"wrote {output}" + (f" and {report_path}" if report_path else ""))
