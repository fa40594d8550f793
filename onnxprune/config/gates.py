"""Quality gates: an export stage's conditions on the pruned model. A missed gate fails the run.

Checked after verification, evaluation and benchmarking, before any model is written. A missed gate raises
:class:`GateError` (exit code 4, distinct from user errors (2) and verification failures (3)) with a
one-line reason; the report (when asked for) is still written so the pipeline can show why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import OnnxPruneError, SpecError
from .settings import GateSettings


class GateError(OnnxPruneError):
    """The pruned model misses a quality gate; no model was written. ``report``: the run's report."""

    exit_code = 4

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class GateResult:
    gate: str
    limit: float
    value: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gates:
    """``max_accuracy_drop``: top-1 points the pruned model may lose on the labeled test split.
    ``min_fidelity``: lowest fidelity to the dense model (top-1 agreement for classifiers, else
    1 − relative output error; see :mod:`onnxprune.runtime.fidelity`). ``min_speedup``: lowest ORT latency
    speedup (dense median / pruned median) on ``speedup_provider`` at batch ``speedup_batch``."""

    max_accuracy_drop: float | None = None
    min_fidelity: float | None = None
    min_speedup: float | None = None
    speedup_provider: str = "cpu"
    speedup_batch: int = 1

    @classmethod
    def of(cls, given: GateSettings) -> Gates:
        """The gates of the settings as given (``speedup_on`` 'PROVIDER:BATCH', default cpu:1)."""
        provider, batch = parse_speedup_on(given.speedup_on or "cpu:1")
        return cls(given.max_accuracy_drop, given.min_fidelity, given.min_speedup, provider, batch)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_accuracy_drop, self.min_fidelity, self.min_speedup))

    def validate(self, test_labeled: bool, providers: list[str]) -> None:
        """Reject gates that cannot be evaluated, before any work is done."""
        if self.max_accuracy_drop is not None:
            if self.max_accuracy_drop < 0:
                raise SpecError(f"--max-accuracy-drop must be >= 0, not {self.max_accuracy_drop:g}")
            if not test_labeled:
                raise SpecError("--max-accuracy-drop needs labeled test data (the data has no labels)")
        if self.min_fidelity is not None and not 0 <= self.min_fidelity <= 1:
            raise SpecError(f"--min-fidelity must be in [0, 1], not {self.min_fidelity:g}")
        if self.min_speedup is not None:
            if self.min_speedup <= 0:
                raise SpecError(f"--min-speedup must be > 0, not {self.min_speedup:g}")
            if self.speedup_provider not in providers:
                raise SpecError(
                    f"--min-speedup on provider '{self.speedup_provider}', which this onnxruntime lacks "
                    f"(available: {', '.join(providers)})"
                )
            if self.speedup_batch < 1:
                raise SpecError(f"--speedup-on batch must be >= 1, not {self.speedup_batch}")

    def evaluate(
        self, accuracy: dict[str, Any] | None, fidelity: dict[str, Any], speedups: list[dict[str, Any]]
    ) -> list[GateResult]:
        results = []
        if self.max_accuracy_drop is not None:
            drop = None if accuracy is None else accuracy.get("drop_pp")
            results.append(
                GateResult(
                    "max_accuracy_drop",
                    self.max_accuracy_drop,
                    drop,
                    drop is not None and drop <= self.max_accuracy_drop,
                    f"top-1 drop {_fmt(drop)} pp (limit {self.max_accuracy_drop:g} pp)",
                )
            )
        if self.min_fidelity is not None:
            value = fidelity.get("fidelity")
            results.append(
                GateResult(
                    "min_fidelity",
                    self.min_fidelity,
                    value,
                    value is not None and value >= self.min_fidelity,
                    f"fidelity ({fidelity.get('measure')}) {_fmt(value)} (min {self.min_fidelity:g})",
                )
            )
        if self.min_speedup is not None:
            row = next(
                (
                    s
                    for s in speedups
                    if s["provider"] == self.speedup_provider and s["batch"] == self.speedup_batch
                ),
                None,
            )
            value = None if row is None else float(row["speedup"])
            results.append(
                GateResult(
                    "min_speedup",
                    self.min_speedup,
                    value,
                    value is not None and value >= self.min_speedup,
                    f"ORT {self.speedup_provider} batch {self.speedup_batch} speedup {_fmt(value)}x "
                    f"(min {self.min_speedup:g}x)",
                )
            )
        return results


def raise_if_missed(results: list[GateResult], report: Any = None) -> None:
    missed = [r for r in results if not r.passed]
    if missed:
        reasons = "; ".join(r.detail for r in missed)
        raise GateError(f"quality gate missed: {reasons}; no model was written", report)


def parse_speedup_on(text: str) -> tuple[str, int]:
    """``'cpu:1'`` -> ('cpu', 1)."""
    provider, sep, batch = text.partition(":")
    try:
        value = int(batch) if sep else 1
    except ValueError:
        raise SpecError(f"invalid --speedup-on {text!r}: expected PROVIDER:BATCH, e.g. cpu:1") from None
    if not provider or value < 1:
        raise SpecError(f"invalid --speedup-on {text!r}: expected PROVIDER:BATCH, e.g. cuda:32")
    return provider.strip().lower(), value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
