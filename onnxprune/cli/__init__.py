"""Command line: ``onnxprune compress | quantize | inspect | bench | profile | latency | env``, one module
per command family.

:mod:`.common` holds the ``onnxprune`` group and the one-line error handling every command shares,
:mod:`.options` the options generated from :mod:`onnxprune.config.settings` and those ``bench`` and
``profile`` share; :mod:`.compression`, :mod:`.quantization`, :mod:`.inspection`, :mod:`.runtime`,
:mod:`.latency` and :mod:`.environment` the commands. User errors print one line (``error: ...``) and exit
non-zero; no traceback, no partial output.
"""

from __future__ import annotations

from . import compression, environment, inspection, latency, quantization, runtime  # noqa: F401  (registers the commands)
from .common import main

__all__ = ["main"]
