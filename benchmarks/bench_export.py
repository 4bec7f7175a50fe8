"""ONNX export time with in-place activations as timm builds them, against the same model with them switched
off (what core.deploy.export does before exporting), interleaved, on the graph `export` writes: calibrated
softmax, class activation maps and the unfamiliarity score.

    python benchmarks/bench_export.py [--model efficientnet_lite0] [--size 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine


def _export_seconds(wrapped: torch.nn.Module, size: int) -> float:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(2, 3, size, size),), input_names=["input"],
                          output_names=["probabilities", "class_activation_maps", "unfamiliarity"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), opset_version=18,
                          dynamo=True, verbose=False, external_data=False)
    return time.perf_counter() - started


def main() -> None:
    from desktop_tl.core.deploy.export import _without_inplace_activations, _WithSoftmax
    from desktop_tl.core.evaluation.familiarity import fit_statistics
    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.models.familiarity import UnfamiliarityScore

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(machine(), flush=True)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"in-place (as built)": [], "not in-place (export)": []}
    for _ in range(args.repeats):
        for name in times:
            model = create_model(args.model, "none", 4)[0].eval()
            statistics_ = fit_statistics(rng.normal(size=(200, model.num_features)), np.arange(200) % 4, 4)
            wrapped = _WithSoftmax(model, 1.0, True, UnfamiliarityScore(statistics_), model).eval()
            if name.startswith("not"):
                _without_inplace_activations(wrapped)
            times[name].append(_export_seconds(wrapped, args.size))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    before, after = (statistics.median(v) for v in times.values())
    print(f"median {before:.1f} s -> {after:.1f} s: {before / after:.2f}x faster")


if __name__ == "__main__":
    main()
