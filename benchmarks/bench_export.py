"""ONNX export time of the graph `export` writes (calibrated softmax, class activation maps and the unfamiliarity
score), interleaved: torch.export (`dynamo=True`) against the tracing exporter core.deploy.export uses.

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


def _torch_export_seconds(wrapped: torch.nn.Module, size: int) -> float:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(2, 3, size, size),), input_names=["input"],
                          output_names=["probabilities", "class_activation_maps", "unfamiliarity"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), opset_version=18,
                          dynamo=True, verbose=False, external_data=False)
    return time.perf_counter() - started


def _tracing_seconds(wrapped: torch.nn.Module, size: int) -> float:
    from desktop_tl.core.deploy.export import _traced_onnx

    started = time.perf_counter()
    _traced_onnx(wrapped, torch.zeros(2, 3, size, size), ["probabilities", "class_activation_maps", "unfamiliarity"])
    return time.perf_counter() - started


def main() -> None:
    from desktop_tl.core.deploy.export import _WithSoftmax
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
    ways = {"torch.export": _torch_export_seconds, "tracing (export)": _tracing_seconds}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, seconds in ways.items():
            model = create_model(args.model, "none", 4)[0].eval()
            statistics_ = fit_statistics(rng.normal(size=(200, model.num_features)), np.arange(200) % 4, 4)
            wrapped = _WithSoftmax(model, 1.0, True, UnfamiliarityScore(statistics_), model).eval()
            times[name].append(seconds(wrapped, args.size))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(v) for name, v in times.items()}
    slowest = medians["torch.export"]
    for name, median in medians.items():
        print(f"median {name}: {median:.2f} s ({slowest / median:.1f}x faster than torch.export)")

if __name__ == "__main__":
    main()
