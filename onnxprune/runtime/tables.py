"""The one plain-text table formatter of the reports (compress, inspect, bench, profile)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int | None = None, rule: bool = False
) -> str:
    """Columns padded to equal width, two spaces apart, trailing spaces dropped: the first ``left`` columns
    left-aligned (every column when None), the others right-aligned; ``rule``: a line of dashes under the
    header."""
    lines = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if left is None or i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    out = [render(lines[0])]
    if rule:
        out.append(render(["-" * w for w in widths]))
    return "\n".join(out + [render(line) for line in lines[1:]])


__all__ = ["format_table"]
