"""Adapters that run onnxprune inside other tools' pipelines (each imports its tool lazily, on use)."""
