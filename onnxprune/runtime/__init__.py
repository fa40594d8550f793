"""ONNX Runtime, and where it runs (never imports torch; :mod:`.benchmark` imports the torch side only for
its torch runtimes, on use).

:mod:`.sessions` — providers, sessions, feeds, batched runs; :mod:`.timing` — the one timer (interleaved
runs, the phase clock); :mod:`.machine` — CPU and GPU names, the environment record, the torchrun job;
:mod:`.tables` — the one text-table formatter. Their users: :mod:`.benchmark` (``bench``),
:mod:`.profiling` (``profile``), :mod:`.forms` (dense vs lowered shape-pruned layers), :mod:`.fidelity`
(pruned vs dense on held-out data).
"""
