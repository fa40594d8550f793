"""Helpers shared by the tests and the benchmarks (not used by the library itself): model corpora.

:mod:`.corpus` — the torchvision classification corpus: which models, their input sizes, export with
random weights (nothing downloaded), and one ``compress`` preview run per model (needs torchvision).
:mod:`.realworld` — models as users bring them: exported at run time by ultralytics, timm, transformers and
tf2onnx, plus graphs in other conventions (fixed batch, old opsets, Constant weights, several inputs).
"""
