"""``compress --dry-run``: the stages before training — resolve, load, data, analyze, plan (with the MAC
budget and the alignment) — and nothing after: no training, no torch, no file written.

What it returns is what a run would do: per group its channels and kept count (the predicted MAC fraction
from :func:`onnxprune.graph.macmodel.mac_model`), and the resolved configuration as a recipe
(:func:`recipe_of`), which ``--config`` reads back to the same run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import onnx

from ..config.gates import Gates
from ..config.recipe import Recipe, load_recipe
from ..config.settings import DataSettings, DistillSettings, RunSettings, TrainSettings, entries
from ..config.sparsity import KINDS, Rule
from ..graph.macmodel import mac_model
from ..graph.macs import count_costs
from ..report.layers import format_budget
from ..runtime.tables import format_table
from ..runtime.timing import PhaseClock
from .loading import load, read_data
from .planning import Planned, analyze_model, plan
from .resolve import Config, Given, Outputs, resolve


@dataclass(frozen=True)
class DryRun:
    """A run's configuration and plan, before any training; ``macs``: the kept fraction of the MACs the
    plan's keep counts give (element sparsity not counted: it keeps the dense MACs)."""

    config: Config
    planned: Planned
    macs: float
    data_given: bool

    def recipe(self) -> dict[str, Any]:
        """:func:`recipe_of` the configuration; without data given, no ``data.source`` (a run needs one)."""
        return recipe_of(self.config, self.data_given)

    def format(self) -> str:
        """The plan as a table, the MAC fraction, then the resolved recipe as YAML."""
        import yaml

        rows = []
        for g in self.planned.plan.groups:
            kept = self.planned.keep.get(g.name, g.channels)
            why = g.reason if not g.prunable else f"pruned ({g.kind})" if kept < g.channels else "whole"
            rows.append((g.name, g.source_node, g.op_type, f"{kept}/{g.channels}", why or ""))
        table = format_table(("group", "source node", "op", "kept", ""), rows, rule=True)
        elements = [f"{c.node}: {c.rule or c.kind}" for c in self.planned.elements.values()]
        lines = [
            f"dry run: nothing trained, nothing written ({self.config.sparsity_text})",
            table,
            *(["element sparsity: " + "; ".join(elements)] if elements else []),
            f"MACs kept: {self.macs:.4f} of the model's (align {self.config.spec.align})",
        ]
        if self.planned.budget is not None:
            lines.append(format_budget(self.planned.budget.to_dict()))
        if not self.data_given:
            lines.append("no data given: shapes from random inputs (a run needs --data)")
        head = "# the resolved recipe (onnxprune compress MODEL --config this.yaml runs it)\n"
        return "\n".join(lines) + "\n\n" + head + yaml.safe_dump(self.recipe(), sort_keys=False)


def dry_run(model: str | Path | onnx.ModelProto, recipe: Any, given: Given) -> DryRun:
    """Resolve, load, read the data (random inputs when none is given), analyze and plan; no training, no
    import of torch, no output."""
    rec = load_recipe(recipe) if recipe is not None else Recipe()
    config = resolve(model, rec, given, Outputs(), ((), 30), quiet=True, require_data=False)
    data_given = given.data.data is not None or rec.data.data is not None
    clock = PhaseClock()
    loaded = load(config, clock)
    samples = read_data(config, loaded, clock)
    planned = plan(config, loaded, samples, analyze_model(loaded, samples, clock), None, clock)
    cost = count_costs(loaded.base, samples.inputs.shape)
    macs = mac_model(loaded.base, planned.plan, cost).fraction(planned.keep)
    return DryRun(config, planned, macs, data_given)


def recipe_of(config: Config, with_source: bool = True) -> dict[str, Any]:
    """The resolved configuration as a recipe mapping (the keys of :mod:`onnxprune.config.recipe`);
    ``with_source=False``: without the data source."""
    out: dict[str, Any] = {}
    if config.target_macs is not None:
        out["target_macs"] = config.target_macs
    else:
        out["sparsity"] = [_rule(r) for r in config.spec.rules]
    if config.spec.exclude:
        out["exclude"] = list(config.spec.exclude)
    out["align"] = config.spec.align
    out |= _section(RunSettings, config.run)
    train = _section(TrainSettings, config.train)
    admm, finetune = config.train.split(config.run.method)  # the split of --epochs, resolved
    train = {k: v for k, v in train.items() if k != "epochs"} | {
        "admm_epochs": admm,
        "finetune_epochs": finetune,
    }
    out["train"] = train
    out["distill"] = _section(DistillSettings, config.distill)
    data = _section(DataSettings, config.data)
    if with_source:
        data["source"] = _plain(config.data.source)
    out["data"] = data
    gates = _gates(config.gates)
    if gates:
        out["gates"] = gates
    return out


def _rule(r: Rule) -> dict[str, Any]:
    d: dict[str, Any] = {"type": r.kind}
    if KINDS[r.kind].counted:
        d |= {"n": r.n, "m": r.m}
    else:
        d["ratio"] = r.ratio
    if r.match != "*":
        d["match"] = r.match
    if r.op is not None:
        d["op"] = r.op
    return d


def _section(cls: type, values: Any) -> dict[str, Any]:
    """The recipe keys of section ``cls`` with their resolved values (None values left out)."""
    names = {f.name for f in fields(values)}
    out = {}
    for e in entries(cls):
        if e.meta.recipe and e.name in names and getattr(values, e.name) is not None:
            out[e.name] = _plain(getattr(values, e.name))
    return out


def _gates(gates: Gates) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_accuracy_drop", gates.max_accuracy_drop),
            ("min_fidelity", gates.min_fidelity),
            ("min_speedup", gates.min_speedup),
        )
        if v is not None
    }
    if gates.min_speedup is not None:
        out["speedup_on"] = f"{gates.speedup_provider}:{gates.speedup_batch}"
    return out


def _plain(value: Any) -> Any:
    """A YAML-safe form: tuples as lists, mappings as dicts, other objects as their text."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)


__all__ = ["DryRun", "dry_run", "recipe_of"]
