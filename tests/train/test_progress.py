"""Progress bars: redrawn live on a terminal, at most one line a minute in a log file."""

from __future__ import annotations

import io

from onnxprune.train.progress import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_at_the_end_not_one_per_step() -> None:
    log = io.StringIO()
    bar = progress(1000, 0, "admm", quiet=False, stream=log)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, lines
    assert "1000/1000" in lines[-1]


def test_a_terminal_gets_live_redraws_and_quiet_gets_nothing() -> None:
    tty = _Tty()
    bar = progress(50, 0, "finetune", quiet=False, stream=tty)
    bar.mininterval = 0  # redraw on every step, as a slow loop on a terminal would
    for _ in range(50):
        bar.update(1)
    bar.close()
    assert tty.getvalue().count("\r") > 10
    silent = io.StringIO()
    bar = progress(50, 0, "finetune", quiet=True, stream=silent)
    bar.update(50)
    bar.close()
    assert silent.getvalue() == ""
