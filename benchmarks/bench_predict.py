"""(3) `desktop-tl predict` (OnnxClassifier) versus PyTorch eager inference, and (4) int8 versus fp32.

A head-only run of EfficientNet-Lite0 at 224 px on the demo images is trained and exported, then
both paths classify the same images: end to end (decode, preprocess, batches of 16) and model only
(the same preprocessed batch). Then the int8 model: speed and accuracy change on val+test images.
Run: python benchmarks/bench_predict.py
"""

from __future__ import annotations

import numpy as np

from common import DEMO, Timer, isolated_cache, machine, replicated_dataset


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds)
    return min(times)


def main() -> None:
    import torch

    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.data.imageio import load_image
    from desktop_tl.core.data.preprocess import Preprocessing, preprocess
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs
    from desktop_tl.core.deploy.quantize import compare_models, format_comparison, quantize_int8
    from desktop_tl.core.runs.folder import create_run, load_index
    from desktop_tl.core.runs.trained import model_from_checkpoint
    from desktop_tl.core.training.run import train_run

    base = isolated_cache()
    print(machine())
    data = replicated_dataset(base / "data", 1)
    run = base / "run"
    create_run(run, data, TrainConfig(recipe="custom", epochs=2, batch_size=32, freeze="head", augment="none", lr=3e-3),
               SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    list(train_run(run))
    export_onnx(run)
    files = collect_inputs([DEMO])[:96]

    classifier = OnnxClassifier(run / "model.onnx")
    model, meta = model_from_checkpoint(run)
    prep = Preprocessing.from_dict(meta["preprocessing"])

    def onnx_end_to_end():
        list(classifier.predict_files(files, batch_size=16))

    @torch.no_grad()
    def torch_end_to_end():
        for start in range(0, len(files), 16):
            batch = np.stack([preprocess(load_image(p), prep) for p, _ in files[start:start + 16]])
            torch.softmax(model(torch.from_numpy(batch)), 1).numpy()

    batch = np.stack([preprocess(load_image(p), prep) for p, _ in files[:16]])

    @torch.no_grad()
    def torch_model_only():
        for _ in range(6):
            torch.softmax(model(torch.from_numpy(batch)), 1).numpy()

    def onnx_model_only():
        for _ in range(6):
            classifier.predict_arrays(batch)

    onnx_end_to_end(), torch_end_to_end(), onnx_model_only(), torch_model_only()  # warm-up
    e2e = {"onnx": best_of(onnx_end_to_end), "torch": best_of(torch_end_to_end)}
    model_only = {"onnx": best_of(onnx_model_only), "torch": best_of(torch_model_only)}
    n = len(files)
    print(f"end to end ({n} images, decode + preprocess + batches of 16): onnxruntime {n / e2e['onnx']:.1f} img/s, "
          f"PyTorch eager {n / e2e['torch']:.1f} img/s -> x{e2e['torch'] / e2e['onnx']:.2f}")
    print(f"model only (batch 16): onnxruntime {96 / model_only['onnx']:.1f} img/s, PyTorch eager "
          f"{96 / model_only['torch']:.1f} img/s -> x{model_only['torch'] / model_only['onnx']:.2f}")

    index = load_index(run)
    with Timer() as t:
        int8 = quantize_int8(run / "model.onnx", index)
    print(f"int8 quantization (32 calibration images): {t.seconds:.1f}s")
    print(format_comparison(compare_models(run / "model.onnx", int8, index)))


if __name__ == "__main__":
    main()
