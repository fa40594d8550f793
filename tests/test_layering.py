"""The layering of the package, checked: the ONNX side never loads torch, graph/ imports nothing above it,
no module imports another's private names, no submodule shadows a public function of the package."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import onnxprune

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "onnxprune"
TORCH_SIDE = "onnxprune.train"


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "onnxprune."))


def _imports(path: Path, module: str) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every ``from ... import ...`` in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names]))
    return out


def _source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_importing_every_onnx_side_module_leaves_torch_unloaded() -> None:
    onnx_side = [m for m in _modules() if not m.startswith(TORCH_SIDE)]
    assert len(onnx_side) > 40  # the walk found the package
    code = (
        f"import importlib, sys\nfor m in {onnx_side!r}:\n    importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'onnx2torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_graph_imports_nothing_above_it() -> None:
    allowed = (
        "onnxprune.graph",
        "onnxprune.plan",
        "onnxprune.errors",
        "onnxprune.data",
        "onnxprune.runtime.sessions",
    )
    for module in (m for m in _modules() if m.startswith("onnxprune.graph")):
        for target, _ in _imports(_source(module), module):
            if target.startswith("onnxprune"):
                assert target.startswith(allowed), f"{module} imports {target}"


def test_no_module_imports_another_modules_private_names() -> None:
    for module in _modules():
        for target, names in _imports(_source(module), module):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not (target.startswith("onnxprune") and private), (
                f"{module}: from {target} import {private}"
            )


def test_no_submodule_is_named_like_a_public_function() -> None:
    public = {name for name in onnxprune.__all__ if callable(getattr(onnxprune, name, None))}
    submodules = {m.name for m in pkgutil.iter_modules([str(PACKAGE)])}
    assert public and not (public & submodules)
