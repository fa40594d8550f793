"""What the benchmark scripts share: paths, README splicing, Markdown tables, child runs, JSON results.

Every script runs as a module from the repository root (``python -m benchmarks.run_core``), so
``onnxprune`` and ``benchmarks`` import from the checkout without path edits. Results go to
``benchmarks/results/*.json`` (committed); the tables in ``benchmarks/README.md`` are regenerated from
them between ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` markers (:func:`splice`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
README = BENCH / "README.md"
RESULTS = BENCH / "results"
OUT = BENCH / "out"  # full reports and models of the runs (not committed)
MODELS = ROOT / "models"


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of the README block ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def splice(name: str, body: str, heading: str | None = None, readme: Path = README) -> None:
    """Replace the README block ``name`` by ``body`` (between its markers, each on a line of its own).

    A README without the block gets it appended, under ``## heading`` when given; a README that does not
    exist yet is created."""
    begin, end = markers(name)
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    if begin not in text:
        section = f"\n## {heading}\n\n" if heading else "\n"
        text = text.rstrip("\n") + "\n" + section + f"{begin}\n{end}\n"
    start, stop = text.index(begin), text.index(end) + len(end)
    readme.write_text(text[:start] + f"{begin}\n{body}\n{end}" + text[stop:])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table: ``| a | b |`` lines under a ``|---|---|`` rule."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``; ``default`` when there is no such file."""
    return json.loads(path.read_text()) if path.exists() else default


def write_json(data: Any, path: Path, indent: int = 2, sort_keys: bool = False) -> None:
    """``data`` as JSON in ``path``, written to ``path.tmp`` and renamed (a killed run leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
    tmp.replace(path)


def compress_argv(model: Path | str, *options: str) -> list[str]:
    """The command line of an ``onnxprune compress`` child run of ``model`` (this interpreter)."""
    return [sys.executable, "-m", "onnxprune", "compress", str(model), *options]


def run_child(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` from the repository root (so the checkout's ``onnxprune`` is the one imported)."""
    return subprocess.run(list(argv), cwd=ROOT, text=True, **kwargs)
