"""``onnxprune inspect``: prunable layers, channels, MACs and params; a starting recipe."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config.settings import parse_shapes
from .common import main, user_errors


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
@user_errors
def inspect(
    model: Path,
    input_shape: tuple[str, ...],
    as_json: bool,
    show_groups: bool,
    emit_recipe: Path | None,
    ratio: float,
) -> None:
    """Prunable layers, channels, MACs and params of MODEL."""
    from ..inspection import inspect_model
    from ..io import check_outputs, write_text

    check_outputs([model], [emit_recipe])
    info = inspect_model(model, parse_shapes(input_shape))
    if emit_recipe is not None:
        write_text(info.recipe(ratio), emit_recipe)
        click.echo(f"wrote {emit_recipe} ({len(info.plan.prunable)} rules)", err=True)
    click.echo(json.dumps(info.to_dict(), indent=2) if as_json else info.format(show_groups))
