"""The ``onnxprune`` command group and what every command shares: one-line user errors, logging."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from .. import __version__
from ..config.gates import GateError
from ..errors import DependencyError, OnnxPruneError
from ..extras import NO_ONNXRUNTIME, installed

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxprune")
@click.pass_context
def main(ctx: click.Context) -> None:
    """ONNX in, smaller verified ONNX out: structured pruning with ADAM-ADMM."""
    if ctx.invoked_subcommand != "env" and not installed("onnxruntime"):  # env reports what is installed
        click.echo(f"error: {NO_ONNXRUNTIME}", err=True)
        sys.exit(DependencyError.exit_code)


def user_errors(fn: F) -> F:
    """User errors as one line ``error: ...`` and their exit code; a missed gate prints the report above."""

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
            click.echo(f"error: {rank_tag()}{e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def rank_tag() -> str:
    """'[rank R] ' under torchrun with several processes (each prints its own error line), else ''."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f"[rank {rank}] " if world.isdigit() and int(world) > 1 else ""


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )
