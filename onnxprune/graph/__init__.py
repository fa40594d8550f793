"""The ONNX side: load/normalize, pruning-group analysis, surgery, verification, cost counting.

Nothing under this package imports torch.
"""
