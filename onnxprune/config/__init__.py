"""What a run is asked to do (no torch, no onnxruntime).

:mod:`.settings` defines every setting once (dataclass fields with help text, range, recipe key and CLI
flag) and the given-or-not layers a run merges; :mod:`.recipe` reads a YAML recipe into such layers and a
sparsity spec; :mod:`.sparsity` holds the rules and the table of sparsity kinds; :mod:`.alignment` rounds
kept counts to hardware-friendly multiples; :mod:`.gates` evaluates the quality gates.
"""
