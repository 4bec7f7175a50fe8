"""`desktop-tl watch` throughput against `predict` on the same images, side by side.

A head-only EfficientNet-Lite0 run at 224 px on the demo images is trained and exported; then, interleaved three
times, `predict`'s engine (decode, preprocess, batches of 16) and a watch of a folder holding the same images
(`FolderWatch.run(once=True)`: the scan, each file's SHA-256, the same batches, one hash-chained entry per image,
an fsync per batch) classify them. The settle time (how long a file must stay unchanged before it is read) is
set to 0.05 s here and reported apart: it delays each image, it does not slow the stream.
Run: python benchmarks/bench_watch.py [--side 512] [--copies 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics

from common import Timer, isolated_cache, machine, replicated_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=512, help="shorter side of the images (default 512 px)")
    parser.add_argument("--copies", type=int, default=3, help="variants of each demo image (144 each)")
    args = parser.parse_args()

    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs
    from desktop_tl.core.deploy.watch import FolderWatch
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    base = isolated_cache()
    print(machine())
    data = replicated_dataset(base / "data", args.copies, side=args.side)
    run = base / "run"
    create_run(run, replicated_dataset(base / "train", 1), TrainConfig(recipe="custom", epochs=1, batch_size=32,
               freeze="head", augment="none", image_size=224), SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    list(train_run(run))
    export_onnx(run)
    model = run / "model.onnx"
    files = collect_inputs([data])
    n = len(files)
    classifier = OnnxClassifier(model)
    list(classifier.predict_files(files[:32], batch_size=16))          # warm-up

    predict_s, watch_s = [], []
    for round_ in range(3):
        with Timer() as t:
            list(classifier.predict_files(files, batch_size=16))
        predict_s.append(t.seconds)
        log = base / f"trial{round_}.jsonl"
        watch = FolderWatch(model, data, log, settle_s=0.05)
        with Timer() as t:
            counts = watch.run(lambda: False, once=True)
        watch_s.append(t.seconds)
        assert counts.logged == n, counts
        shutil.move(log, base / "kept.jsonl")
    p, w = statistics.median(predict_s), statistics.median(watch_s)
    print(f"{n} images of {args.side} px, model at 224 px, batches of 16, medians of 3 interleaved rounds:")
    print(f"  predict engine: {n / p:.1f} img/s ({', '.join(f'{s:.2f}' for s in predict_s)} s)")
    print(f"  watch --once:   {n / w:.1f} img/s ({', '.join(f'{s:.2f}' for s in watch_s)} s, incl. the 0.05 s settle)")
    print(f"  watch / predict time: x{w / p:.2f}")


if __name__ == "__main__":
    main()
