"""The HTML report: one self-contained file with every section, escaped text and embedded plots."""

from __future__ import annotations

import base64
import re

from onnxprune.report.html import render_html

REPORT = {
    "model": "m<1>.onnx",
    "sparsity": "filter:0.7",
    "method": "admm",
    "data": "fashion-mnist",
    "totals": {"macs_before": 2_000_000, "macs_after": 500_000, "params_before": 100, "params_after": 40},
    "accuracy": {"dense_top1": 0.93, "pruned_top1": 0.92},
    "fidelity": {"fidelity": 0.97, "measure": "top-1 agreement"},
    "gates": [{"gate": "max_accuracy_drop", "limit": 1.0, "value": 1.0, "passed": True, "detail": "1.00 pp"}],
    "verification": {
        "max_rel_error": 2.5e-7,
        "per_output": {"logits": 2.5e-7},
        "samples": 24,
        "rtol": 1e-4,
        "passed": True,
    },
    "latency": {
        "speedups": [{"provider": "cpu", "batch": 1, "dense_ms": 0.5, "pruned_ms": 0.2, "speedup": 2.5}]
    },
    "layers": [
        {
            "node": "conv<script>",
            "op_type": "Conv",
            "in_before": 3,
            "in_after": 3,
            "out_before": 8,
            "out_after": 4,
            "params_before": 216,
            "params_after": 108,
            "macs_before": 1000,
            "macs_after": 500,
            "status": "pruned, kept 4/8",
        }
    ],
    "groups": [{"name": "g", "node": "conv", "kept": 4, "channels": 8, "prunable": False, "reason": "a & b"}],
    "history": {"finetune": [{"phase": "finetune", "epoch": 0, "val_acc": 0.91}]},
    "phases": {"train": 12.5},
    "notes": ["normalized"],
    "environment": {"onnxruntime": "1.32.0"},
}


def test_every_section_is_rendered_and_text_is_escaped():
    page = render_html(REPORT, [b"\x89PNG-bytes"])
    for title in (
        "Summary",
        "Quality gates",
        "Verification",
        "Latency",
        "Layers",
        "Pruning groups",
        "Plots",
        "Training",
        "Wall time per phase",
        "Environment",
    ):
        assert f"<h2>{title}" in page
    assert "conv<script>" not in page and "conv&lt;script&gt;" in page
    assert "a &amp; b" in page and "m&lt;1&gt;.onnx" in page
    assert "4.00x fewer" in page and "93.00 % → 92.00 %" in page and "2.50x" in page
    assert page.count("class=pass") == 2  # the gate and the verification


def test_the_page_is_self_contained():
    png = b"\x89PNG\r\n\x1a\nfake"
    page = render_html(REPORT, [png])
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script" not in page


def test_missing_sections_say_so():
    page = render_html({"model": "m.onnx"})
    assert "not run" in page and "not measured" in page and "no gates set" in page
