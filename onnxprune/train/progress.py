"""Progress bars for the training loops: live on a terminal, sparse in a log file.

On a terminal tqdm redraws one line in place. Written to a file or a pipe (CI, ``2> log``), every redraw is
kept, so a bar refreshed ten times a second fills the log with thousands of partial lines; there it
refreshes at most once every :data:`LOG_INTERVAL_S` seconds (and at the end), one line each.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 60.0


def progress(total: int, initial: int, desc: str, quiet: bool, stream: Any = None) -> tqdm:
    """A bar over ``total`` steps from ``initial`` on ``stream`` (default stderr); ``quiet``: none."""
    stream = sys.stderr if stream is None else stream
    live = bool(getattr(stream, "isatty", lambda: False)())
    interval = 0.1 if live else LOG_INTERVAL_S
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        file=stream,
        disable=quiet,
        leave=not live,  # in a log the last line is the record of the phase
        mininterval=interval,
        maxinterval=max(interval, 10.0),
        dynamic_ncols=live,
        ascii=not live,
    )
