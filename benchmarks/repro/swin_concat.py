"""Diagnosis aid: timm swin_tiny (img 128, window 4) at filter:0.5.

`compress --method magnitude --finetune-epochs 0` (the corpus preview) fails with "the pruned model fails the
ONNX checker: ... Concat_1 ... Input 3 has rank 2 != 1" (exit 3, nothing written). This script runs the
ONNX-side steps alone (normalize, analyze at 1x3x128x128, keep counts, magnitude masks, prune_model) and
prints Concat_1's inputs before and after surgery: here the checker passes, so the rank-2 input comes from
a step compress adds (the fixed-shape / batch handling or the write-back), not from the channel rules.

Root cause (fixed): the write-back of the trained values (graph.protos.set_tensor) turned every 0-d
initializer into shape (1,) (np.ascontiguousarray returns at least 1-d): the window pad's Unsqueeze of a
scalar became rank 2. Regression test: tests/graph/test_surgery.py
(test_write_back_keeps_scalar_initializers_scalar).

    python -m benchmarks.run_realworld --export swin_tiny_patch4_window7_224 --dir /tmp/swin
    python benchmarks/repro/swin_concat.py "$(cat /tmp/swin/model.path)"
"""

import sys

import onnx

from onnxprune.config.sparsity import keep_counts, parse_sparsity
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import prune_model
from onnxprune.graph.load import normalize
from onnxprune.graph.probe import channel_norms, magnitude_mask
from onnxprune.graph.protos import tensor_array

path = sys.argv[1]  # add --reshare to merge normalize's initializer copies back, as compress does
normalized = normalize(onnx.load(path))
base = normalized.model
plan = analyze(base, (1, 3, 128, 128))
keep = keep_counts(plan, parse_sparsity("filter:0.5"))
masks = {g.name: magnitude_mask(channel_norms(base, g), keep[g.name]) for g in plan.prunable}
pruned = prune_model(base, plan, masks)
if "--reshare" in sys.argv:
    from onnxprune.graph.load import reshare

    pruned = reshare(pruned, normalized.copies)
name = "/layers/layers.0/blocks/blocks.0/Concat_1"
for label, m in (("original", base), ("pruned", pruned)):
    inits = {t.name: t for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    node = next(n for n in m.graph.node if n.name == name)
    desc = []
    for i in node.input:
        if i in inits:
            desc.append(f"{i}={tensor_array(inits[i]).tolist()}")
        else:
            p = prod.get(i)
            desc.append(f"{i}<-{p.op_type if p else 'input'}")
    print(label, desc)
try:
    onnx.checker.check_model(pruned, full_check=True)
    print("checker ok")
except Exception as e:
    print("checker:", str(e)[:300])
