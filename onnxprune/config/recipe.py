"""Recipes: everything a ``compress`` run needs besides the model, as YAML (``--config recipe.yaml``).

::

    sparsity:                       # 'filter:0.5' (uniform), or rules: the LAST rule selecting a group wins
      - {type: filter, ratio: 0.5}                          # every prunable group
      - {type: filter, ratio: 0.7, op: Gemm}                # Gemm groups
      - {type: filter, ratio: 0.3, match: "/features/features.0/*"}   # by source node name (glob)
      - {type: irregular, ratio: 0.8, op: Gemm}             # single weights of every Gemm (no surgery)
      - {type: nm, n: 2, m: 4, match: "/features/features.3/*"}       # 2 of every 4 along the input dim
    sparse_initializers: true       # store element-pruned weights as ONNX sparse initializers (smaller file)
    # or, instead of 'sparsity': a MAC budget that chooses each group's ratio (see onnxprune.pipeline.budget)
    # target_macs: 0.3              # keep 30 % of the MACs; 'exclude' and 'align' apply to it too
    exclude: ["/classifier/*"]      # groups whose source node matches keep every channel
    align: auto                     # the default: kept filters rounded to the target's step (1: exact ratios)
    method: admm                    # or magnitude
    seed: 0
    train: {admm_epochs: 2, finetune_epochs: 2, lr: 0.003, batch_size: 128, threads: 2}
    distill: {weight: 0.5, loss: auto, temperature: 1, teacher: auto}
    data: {source: imgs/, labels: true, preprocess: "resize=32,crop=28", max_samples: 50000,
           val_fraction: 0.1, input_shape: [1, 1, 28, 28]}
    gates: {max_accuracy_drop: 1.0, min_fidelity: 0.97, min_speedup: 1.5, speedup_on: "cpu:1"}
    quantize: {mode: int8, calibration_samples: 256, calibration_method: minmax, exclude: ["/classifier/*"],
               stem: false, activations: uint8}     # or just: quantize: int8
    # latency: {on: "cpu:32", target_speedup: 3}   # instead of 'sparsity': a budget on the target

Every section is optional. Unknown keys, wrong types and impossible values are rejected with a message
that names them. Command-line options (or explicit ``compress`` arguments) override the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .alignment import resolve_alignment
from .gates import Gates
from .settings import (
    METHODS,
    DataOptions,
    DataSettings,
    DistillSettings,
    GateOptions,
    GateSettings,
    LatencyOptions,
    LatencySettings,
    QuantizeOptions,
    QuantizeSettings,
    RunOptions,
    RunSettings,
    TrainOptions,
    TrainSettings,
    entries,
    parse_section,
)
from .sparsity import KINDS, Rule, SparsitySpec, check_kind, check_nm, check_ratio, check_target, parse_rule

SPEC_KEYS = ("sparsity", "target_macs", "exclude", "align")

_SECTIONS = tuple(
    cls.SECTION
    for cls in (TrainSettings, DistillSettings, DataSettings, GateSettings, QuantizeSettings, LatencySettings)
)
TOP_KEYS = (*SPEC_KEYS, *(e.name for e in entries(RunSettings) if e.meta.recipe), *_SECTIONS)
RULE_KEYS = ("type", "ratio", "match", "op", "n", "m")


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: what it gives, as settings layers (:class:`~onnxprune.config.settings.Options`);
    what it leaves out, the command line or the defaults decide."""

    sparsity: SparsitySpec | None = None  # with target_macs: no rules, only exclude and align
    target_macs: float | None = None
    run: RunOptions = field(default_factory=RunOptions)  # method, seed, sparse_initializers
    train: TrainOptions = field(default_factory=TrainOptions)  # sections train and distill
    data: DataOptions = field(default_factory=DataOptions)
    gates: Gates | None = None
    source: str = "<recipe>"
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    align: int | str | None = None  # as given ('auto' or N; None: not given); the run resolves 'auto'
    latency: LatencyOptions = field(default_factory=LatencyOptions)  # section latency

    @property
    def method(self) -> str | None:
        return self.run.method

    @property
    def seed(self) -> int | None:
        return self.run.seed

    @property
    def sparse_initializers(self) -> bool | None:
        return self.run.sparse_initializers


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
    where = f"recipe {source}"
    unknown = [str(k) for k in content if k not in TOP_KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(TOP_KEYS)})")
    sparsity, target_macs = _spec(content, source)
    align = _align(content, source)
    top = {k: v for k, v in content.items() if k not in SPEC_KEYS and k not in _SECTIONS}
    run = RunOptions(**parse_section(RunSettings, top, where))
    if run.method is not None and run.method not in METHODS:
        raise SpecError(f"{where}: unknown method {run.method!r} (known: {', '.join(METHODS)})")
    train = TrainOptions(
        **_section(content, TrainSettings, where), **_section(content, DistillSettings, where)
    )
    data = DataOptions(**_section(content, DataSettings, where))
    gates = _section(content, GateSettings, where)
    quantize = _quantize(content, where)
    return Recipe(
        sparsity,
        target_macs,
        run,
        train,
        data,
        Gates.of(GateOptions(**gates).build(GateSettings)) if gates else None,
        source,
        quantize,
        align,
        LatencyOptions(**_section(content, LatencySettings, where)),
    )


def _quantize(content: Mapping[str, Any], where: str) -> QuantizeOptions:
    """Section ``quantize``: a mapping, or its mode alone (``quantize: int8``); checked here."""
    value = content.get("quantize")
    if isinstance(value, str):
        content = {"quantize": {"mode": value}}
    given = _section(content, QuantizeSettings, where)
    exclude = given.get("quantize_exclude")
    if isinstance(exclude, str):
        given["quantize_exclude"] = (exclude,)
    elif isinstance(exclude, list | tuple):
        given["quantize_exclude"] = tuple(exclude)
    elif exclude is not None:
        raise SpecError(f"{where}: quantize.exclude must be a list of node names or globs")
    options = QuantizeOptions(**given)
    try:
        options.build(QuantizeSettings).validate()
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    return options


def _section(content: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    """Section ``cls.SECTION`` of the recipe, checked (:func:`~onnxprune.config.settings.parse_section`)."""
    name = getattr(cls, "SECTION", "")
    value = content.get(name) or {}
    if not isinstance(value, Mapping):
        keys = ", ".join(e.name for e in entries(cls) if e.meta.recipe)
        raise SpecError(f"{where}: '{name}' must be a mapping (keys: {keys})")
    return parse_section(cls, value, where)


def _spec(content: Mapping[str, Any], source: str) -> tuple[SparsitySpec | None, float | None]:
    """The sparsity spec (rules, exclusions, alignment) and the MAC budget of the recipe."""
    given = _align(content, source)
    align = given if isinstance(given, int) else 1  # 'auto' and not given: resolved by the run
    exclude = content.get("exclude", []) or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise SpecError(f"recipe {source}: 'exclude' must be a list of node-name globs")
    if "sparsity" in content and "target_macs" in content:
        raise SpecError(
            f"recipe {source}: 'sparsity' and 'target_macs' conflict: give one (ratios, or a MAC budget "
            "that chooses them)"
        )
    if "sparsity" in content:
        return SparsitySpec(_rules(content["sparsity"], source), tuple(exclude), align), None
    if "target_macs" in content:
        target_macs = check_target(content["target_macs"], f"recipe {source}: target_macs")
        return SparsitySpec((), tuple(exclude), align), target_macs
    if exclude or "align" in content:
        raise SpecError(f"recipe {source}: 'exclude' and 'align' need a 'sparsity' or 'target_macs' section")
    return None, None


def _align(content: Mapping[str, Any], source: str) -> int | str | None:
    """The recipe's ``align``: None (not given), ``'auto'`` (resolved for the run's target, see
    :func:`onnxprune.config.alignment.alignment_of`) or a checked integer."""
    raw = content.get("align")
    if raw is None:
        return None
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        return resolve_alignment(raw)
    except (ValueError, AttributeError):
        raise SpecError(f"recipe {source}: align must be a positive integer or 'auto', not {raw!r}") from None


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
        unknown = [str(k) for k in item if k not in RULE_KEYS]
        if unknown:
            raise SpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(RULE_KEYS)})")
        kind = str(item.get("type", "")).lower()
        counted = kind in KINDS and KINDS[kind].counted  # nm:N:M takes n and m, not a ratio
        needed = ("type", "n", "m") if counted else ("type", "ratio")
        missing = [k for k in needed if k not in item]
        if missing:
            raise SpecError(f"{where}: missing {' and '.join(repr(k) for k in missing)}")
        check_kind(kind, f"{where} ({kind})")
        match, op = item.get("match", "*"), item.get("op")
        if not isinstance(match, str) or (op is not None and not isinstance(op, str)):
            raise SpecError(f"{where}: 'match' and 'op' must be strings")
        if counted:
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
