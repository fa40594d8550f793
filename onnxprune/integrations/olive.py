"""onnxprune as a Microsoft Olive pass (the ``olive`` extra: ``pip install 'onnxprune[olive]'``).

Olive finds a pass by its ``type`` in a *package config* (``olive_config.json``: type -> ``module_path``),
and a package config given to ``olive run --package-config`` (or ``olive.workflows.run(...,
package_config=...)``) replaces Olive's own. :func:`package_config` is therefore Olive's default config plus
one entry, ``OnnxPrunePass`` -> ``onnxprune.integrations.olive.OnnxPrunePass``; a workflow names the pass
by that type::

    "passes": {"prune": {"type": "OnnxPrunePass", "sparsity": "filter:0.5", "method": "magnitude",
                         "epochs": 0}, "quantize": {"type": "OnnxStaticQuantization", ...}}

and runs through :func:`run_workflow` (or ``olive run --config w.json --package-config p.json`` with the
file :func:`write_package_config` wrote). The pass runs :func:`onnxprune.prune` (torch-free) for magnitude
pruning without fine-tuning, :func:`onnxprune.compress` otherwise, on the input model's file, and returns an
``ONNXModelHandler`` for the pruned model; the report JSON lies beside it (``<stem>.report.json``).

``import onnxprune.integrations.olive`` works without Olive (the pass class is built on first access of
:data:`OnnxPrunePass`, which is when Olive imports it); without Olive that access is a one-line
:class:`~onnxprune.errors.DependencyError` naming the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DependencyError
from ..extras import installed

NO_OLIVE = "the Olive pass needs olive-ai: pip install 'onnxprune[olive]'"
PASS_TYPE = "OnnxPrunePass"
MODULE_PATH = f"{__name__}.{PASS_TYPE}"


def require_olive() -> None:
    """A one-line :class:`DependencyError` naming the extra when olive-ai is not installed."""
    if not installed("olive"):
        raise DependencyError(NO_OLIVE)


def package_config() -> dict[str, Any]:
    """Olive's default package config with :data:`PASS_TYPE` added (Olive replaces, never merges, the
    package config it is given, so its own passes must stay listed)."""
    require_olive()
    from olive.package_config import OlivePackageConfig

    with open(OlivePackageConfig.get_default_config_path()) as f:
        config: dict[str, Any] = json.load(f)
    config["passes"][PASS_TYPE] = {
        "module_path": MODULE_PATH,
        "supported_providers": ["*"],
        "supported_accelerators": ["*"],
        "supported_precisions": ["*"],
    }
    return config


def write_package_config(path: str | Path) -> Path:
    """:func:`package_config` as JSON at ``path`` (for ``olive run --package-config``)."""
    path = Path(path)
    path.write_text(json.dumps(package_config(), indent=2))
    return path


def run_workflow(workflow: str | Path | dict[str, Any], **kwargs: Any) -> Any:
    """``olive.workflows.run`` with :func:`package_config` (``workflow``: a JSON/YAML file or a dict)."""
    require_olive()
    from olive.workflows import run

    return run(workflow, package_config=package_config(), **kwargs)


def _options() -> dict[str, tuple[type, Any, str]]:
    """The pass's parameters: name -> (type, default, description)."""
    return {
        "sparsity": (str, "filter:0.5", "onnxprune sparsity spec, e.g. 'filter:0.5'"),
        "method": (str, "admm", "admm (trains: needs the train extra) or magnitude"),
        "epochs": (int, 0, "fine-tune epochs (magnitude with 0: the torch-free onnxprune.prune)"),
        "data": (str, None, "an onnxprune --data source (required by admm or fine-tuning)"),
        "align": (str, None, "channel alignment (e.g. '8' or 'auto')"),
        "max_samples": (int, None, "cap on the samples loaded from data"),
        "compress_options": (dict, {}, "further keyword arguments of onnxprune.compress"),
    }


def _prune_file(source: Path, output: Path, config: Any) -> None:
    """Prune ``source`` into ``output`` (report beside it), by the torch-free stage when nothing trains."""
    import onnxprune

    report = output.with_suffix(".report.json")
    align = config.align
    if config.method == "magnitude" and config.epochs == 0 and not config.compress_options:
        result = onnxprune.prune(
            source,
            config.sparsity,
            data=config.data,
            align=align,
            max_samples=config.max_samples,
            output=output,
        )
        summary = {
            "method": "magnitude",
            "sparsity": config.sparsity,
            "kept": {name: int(mask.sum()) for name, mask in result.masks.items()},
            "channels": {name: int(mask.size) for name, mask in result.masks.items()},
            "verification": result.verification.to_dict(),
        }
        report.write_text(json.dumps(summary, indent=2))
        return
    from ..config.settings import TrainOptions

    options = dict(config.compress_options)
    train = options.pop("train", None) or TrainOptions(finetune_epochs=config.epochs)
    onnxprune.compress(
        source,
        config.sparsity,
        config.data,
        output,
        method=config.method,
        train=train,
        align=align,
        max_samples=config.max_samples,
        report_path=report,
        quiet=True,
        **options,
    )


def _build_pass() -> type:
    """The Olive ``Pass`` subclass (defined here so that Olive is imported only when it is asked for)."""
    require_olive()
    from olive.model import ONNXModelHandler
    from olive.passes import Pass
    from olive.passes.pass_config import PassConfigParam

    class OnnxPrunePass(Pass):
        """Structured pruning by onnxprune: a physically smaller, verified ONNX model."""

        @classmethod
        def _default_config(cls, accelerator_spec: Any) -> dict[str, Any]:
            return {
                name: PassConfigParam(type_=kind, default_value=default, description=text)
                for name, (kind, default, text) in _options().items()
            }

        def _run_for_config(self, model: Any, config: Any, output_model_path: str) -> Any:
            if not isinstance(model, ONNXModelHandler):
                raise ValueError(f"{PASS_TYPE} takes an ONNX model, not {type(model).__name__}")
            source = Path(model.model_path)
            out_dir = Path(output_model_path).with_suffix("")
            out_dir.mkdir(parents=True, exist_ok=True)
            output = out_dir / f"{source.stem}.pruned.onnx"
            _prune_file(source, output, config)
            return ONNXModelHandler(model_path=str(out_dir), onnx_file_name=output.name)

    OnnxPrunePass.__module__ = __name__
    return OnnxPrunePass


_PASS: type | None = None


def __getattr__(name: str) -> Any:
    """:data:`OnnxPrunePass`, built on first access (Olive's ``import_pass_module`` does a getattr)."""
    global _PASS
    if name == PASS_TYPE:
        if _PASS is None:
            _PASS = _build_pass()
        return _PASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODULE_PATH",
    "NO_OLIVE",
    "PASS_TYPE",
    "package_config",
    "require_olive",
    "run_workflow",
    "write_package_config",
]
