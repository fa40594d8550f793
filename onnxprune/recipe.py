"""Recipes: everything a ``compress`` run needs besides the model, as YAML (``--config recipe.yaml``).

::

    sparsity:                       # 'filter:0.5' (uniform), or rules: the LAST rule selecting a group wins
      - {type: filter, ratio: 0.5}                          # every prunable group
      - {type: filter, ratio: 0.7, op: Gemm}                # Gemm groups
      - {type: filter, ratio: 0.3, match: "/features/features.0/*"}   # by source node name (glob)
      - {type: irregular, ratio: 0.8, op: Gemm}             # single weights of every Gemm (no surgery)
      - {type: nm, n: 2, m: 4, match: "/features/features.3/*"}       # 2 of every 4 along the input dim
    sparse_initializers: true       # store element-pruned weights as ONNX sparse initializers (smaller file)
    # or, instead of 'sparsity': a MAC budget that chooses each group's ratio (see onnxprune.budget)
    # target_macs: 0.3              # keep 30 % of the MACs; 'exclude' and 'align' apply to it too
    exclude: ["/classifier/*"]      # groups whose source node matches keep every channel
    align: auto                     # kept filters rounded to the runtime's multiple (8 on ORT CPU/CUDA)
    method: admm                    # or magnitude
    seed: 0
    train: {admm_epochs: 2, finetune_epochs: 2, lr: 0.003, batch_size: 128, threads: 2}
    distill: {weight: 0.5, loss: auto, temperature: 1, teacher: auto}
    data: {source: imgs/, labels: true, preprocess: "resize=32,crop=28", max_samples: 50000,
           val_fraction: 0.1, input_shape: [1, 1, 28, 28]}
    gates: {max_accuracy_drop: 1.0, min_fidelity: 0.97, min_speedup: 1.5, speedup_on: "cpu:1"}

Every section is optional. Unknown keys, wrong types and impossible values are rejected with a message
that names them. Command-line options (or explicit ``compress`` arguments) override the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .alignment import resolve_alignment
from .errors import SpecError
from .gates import Gates, parse_speedup_on
from .sparsity import Rule, SparsitySpec, check_kind, check_nm, check_ratio, check_target, parse_rule

TOP_KEYS = (
    "sparsity",
    "target_macs",
    "exclude",
    "align",
    "method",
    "seed",
    "sparse_initializers",
    "train",
    "distill",
    "data",
    "gates",
)
RULE_KEYS = ("type", "ratio", "match", "op", "n", "m")
TRAIN_KEYS = {
    "admm_epochs": int,
    "finetune_epochs": int,
    "round_iters": int,
    "lr": float,
    "finetune_lr": float,
    "rho0": float,
    "rho_growth": float,
    "rho_max": float,
    "batch_size": int,
    "weight_decay": float,
    "device": str,
    "threads": int,
    "amp": str,
}
# recipe key -> TrainOptions field
DISTILL_KEYS = {
    "weight": "distill",
    "loss": "distill_loss",
    "temperature": "temperature",
    "teacher": "teacher",
}
DATA_KEYS = ("source", "labels", "preprocess", "max_samples", "val_fraction", "input_shape")
GATE_KEYS = ("max_accuracy_drop", "min_fidelity", "min_speedup", "speedup_on")


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe; ``None`` / empty = not given (the command line or the defaults decide)."""

    sparsity: SparsitySpec | None = None  # with target_macs: no rules, only exclude and align
    target_macs: float | None = None
    method: str | None = None
    seed: int | None = None
    train: dict[str, Any] = field(default_factory=dict)  # TrainOptions fields
    data: dict[str, Any] = field(default_factory=dict)  # DATA_KEYS
    gates: Gates | None = None
    source: str = "<recipe>"
    sparse_initializers: bool | None = None


def load_recipe(recipe: str | Path | Mapping[str, Any] | Recipe) -> Recipe:
    """Read and validate a recipe from a YAML file, or a mapping of the same structure."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return parse_recipe(recipe, "<recipe>")
    path = Path(recipe)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"cannot read recipe {path}: {e.strerror or e}") from None
    import yaml

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SpecError(f"recipe {path} is not valid YAML{line}: {getattr(e, 'problem', e)}") from None
    if content is None:
        content = {}
    if not isinstance(content, Mapping):
        raise SpecError(f"recipe {path}: expected a mapping of sections ({', '.join(TOP_KEYS)})")
    return parse_recipe(content, str(path))


def parse_recipe(content: Mapping[str, Any], source: str) -> Recipe:
    _known(content, TOP_KEYS, f"recipe {source}")
    raw_align = content.get("align", 1)
    try:  # 'auto': the default of the runtime the speedup gate names (cpu when none does)
        speedup_on = str((content.get("gates") or {}).get("speedup_on", "cpu:1"))
        align = resolve_alignment(raw_align, speedup_on.partition(":")[0] or "cpu")
    except (ValueError, AttributeError):
        raise SpecError(
            f"recipe {source}: align must be a positive integer or 'auto', not {raw_align!r}"
        ) from None
    exclude = content.get("exclude", []) or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise SpecError(f"recipe {source}: 'exclude' must be a list of node-name globs")
    sparsity, target_macs = None, None
    if "sparsity" in content and "target_macs" in content:
        raise SpecError(
            f"recipe {source}: 'sparsity' and 'target_macs' conflict: give one (ratios, or a MAC budget "
            "that chooses them)"
        )
    if "sparsity" in content:
        sparsity = SparsitySpec(_rules(content["sparsity"], source), tuple(exclude), align)
    elif "target_macs" in content:
        target_macs = check_target(content["target_macs"], f"recipe {source}: target_macs")
        sparsity = SparsitySpec((), tuple(exclude), align)
    elif exclude or "align" in content:
        raise SpecError(f"recipe {source}: 'exclude' and 'align' need a 'sparsity' or 'target_macs' section")
    method = content.get("method")
    if method is not None and method not in ("admm", "magnitude"):
        raise SpecError(f"recipe {source}: unknown method {method!r} (known: admm, magnitude)")
    seed = content.get("seed")
    if seed is not None:
        seed = _typed(seed, int, "seed", source)
    train = {
        k: _typed(v, TRAIN_KEYS[k], f"train.{k}", source)
        for k, v in _section(content, "train", source, tuple(TRAIN_KEYS)).items()
    }
    distill = _section(content, "distill", source, tuple(DISTILL_KEYS))
    train |= {DISTILL_KEYS[k]: v for k, v in distill.items()}
    data = _section(content, "data", source, DATA_KEYS)
    gate_values = _section(content, "gates", source, GATE_KEYS)
    gates = None
    if gate_values:
        provider, batch = parse_speedup_on(str(gate_values.get("speedup_on", "cpu:1")))
        gates = Gates(
            **{
                k: _typed(v, float, f"gates.{k}", source) for k, v in gate_values.items() if k != "speedup_on"
            },
            speedup_provider=provider,
            speedup_batch=batch,
        )
    sparse = content.get("sparse_initializers")
    if sparse is not None and not isinstance(sparse, bool):
        raise SpecError(f"recipe {source}: sparse_initializers must be true or false, not {sparse!r}")
    return Recipe(sparsity, target_macs, method, seed, train, data, gates, source, sparse)


def _rules(value: Any, source: str) -> tuple[Rule, ...]:
    if isinstance(value, str):
        return (parse_rule(value),)
    if not isinstance(value, list) or not value:
        raise SpecError(f"recipe {source}: 'sparsity' must be 'TYPE:RATIO' or a non-empty list of rules")
    rules = []
    for i, item in enumerate(value):
        where = f"recipe {source}: sparsity rule {i + 1}"
        if isinstance(item, str):
            rules.append(parse_rule(item))
            continue
        if not isinstance(item, Mapping):
            raise SpecError(f"{where}: expected a mapping with {', '.join(RULE_KEYS)}")
        _known(item, RULE_KEYS, where)
        kind = str(item.get("type", "")).lower()
        needed = ("type", "n", "m") if kind == "nm" else ("type", "ratio")
        missing = [k for k in needed if k not in item]
        if missing:
            raise SpecError(f"{where}: missing {' and '.join(repr(k) for k in missing)}")
        check_kind(kind, f"{where} ({kind})")
        match, op = item.get("match", "*"), item.get("op")
        if not isinstance(match, str) or (op is not None and not isinstance(op, str)):
            raise SpecError(f"{where}: 'match' and 'op' must be strings")
        if kind == "nm":
            if "ratio" in item:
                raise SpecError(f"{where}: an nm rule takes 'n' and 'm', not 'ratio'")
            check_nm(item["n"], item["m"], f"{where} (nm:{item['n']}:{item['m']})")
            rules.append(Rule(kind, 0.0, match, op, n=item["n"], m=item["m"]))
            continue
        if "n" in item or "m" in item:
            raise SpecError(f"{where}: 'n' and 'm' belong to nm rules only")
        check_ratio(item["ratio"], f"{where} (ratio {item['ratio']!r})")
        rules.append(Rule(kind, float(item["ratio"]), match, op))
    return tuple(rules)


def _section(content: Mapping[str, Any], name: str, source: str, keys: tuple[str, ...]) -> dict[str, Any]:
    value = content.get(name) or {}
    if not isinstance(value, Mapping):
        raise SpecError(f"recipe {source}: '{name}' must be a mapping (keys: {', '.join(keys)})")
    _known(value, keys, f"recipe {source}: {name}")
    return dict(value)


def _known(mapping: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = [str(k) for k in mapping if k not in keys]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")


def _typed(value: Any, kind: type, name: str, source: str) -> Any:
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise SpecError(f"recipe {source}: {name} must be {kind.__name__}, not {value!r}")
    return float(value) if kind is float else value
