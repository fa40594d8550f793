"""``onnxprune env``: versions, ONNX Runtime providers, CPU and ISA, GPUs — what a bug report needs. Runs
where ONNX Runtime or torch is missing (it says so)."""

from __future__ import annotations

import json

import click

from .common import main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def env(as_json: bool) -> None:
    """Print the versions (onnxprune, Python, onnx, onnxruntime, torch, onnx2torch, openvino...), ONNX
    Runtime's providers, the CPU with its ISA (AVX2, AVX-512, VNNI) and the GPUs."""
    from ..runtime.sysinfo import format_info, system_info

    info = system_info()
    click.echo(json.dumps(info, indent=2) if as_json else format_info(info))
