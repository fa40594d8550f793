"""The torch side: import an ONNX model with weights keyed by initializer name, ADMM training, pruning.

Importing this package needs torch (the ``train`` extra); nothing here edits ONNX protobuf.
"""
