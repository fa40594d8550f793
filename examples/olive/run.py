"""Run ``workflow.json`` (onnxprune's pass, then Olive's static quantization and latency evaluation) and
print the metrics: ``python examples/olive/run.py [--samples N] [--output DIR]``.

Olive runs offline here: the model is a local file and the data comes from the user script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def workflow(samples: int, output: Path) -> dict:
    """workflow.json with the sample count and the output/cache folders set, paths made absolute."""
    config = json.loads((HERE / "workflow.json").read_text())
    config["input_model"]["model_path"] = str((HERE / config["input_model"]["model_path"]).resolve())
    data = config["data_configs"][0]
    data["user_script"] = str(HERE / data["user_script"])
    data["load_dataset_config"]["params"]["samples"] = samples
    config["output_dir"] = str(config_output(output))
    config["cache_dir"] = str(output / "cache")
    return config


def config_output(root: Path) -> Path:
    """Olive's output folder under ``root`` (as :func:`workflow` sets it)."""
    return root / "output"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="calibration / latency samples")
    parser.add_argument("--output", type=Path, default=HERE / "run", help="Olive's output and cache root")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
    from onnxprune.errors import OnnxPruneError
    from onnxprune.integrations.olive import run_workflow

    try:
        outputs = run_workflow(workflow(args.samples, args.output))
    except OnnxPruneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    del outputs  # the engine's WorkflowOutput: the metrics are also written as JSON, read back here
    result = Path(config_output(args.output))
    for name in ("input_model_metrics.json", "metrics.json"):
        print(name, json.loads((result / name).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
