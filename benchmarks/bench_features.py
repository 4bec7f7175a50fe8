"""(2) Head-only training without augmentation: feature cache on versus off, per epoch after the first.

Same run settings both ways (EfficientNet-Lite0 at 224 px, bundled weights, batch 32); seconds of
epochs 2..N (training and validation, as EpochEnd reports them) and the test accuracy of both.
Run: python benchmarks/bench_features.py
"""

from __future__ import annotations

from common import isolated_cache, machine, replicated_dataset


def run(data, out, feature_cache: bool, epochs: int):
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.events import EpochEnd, Failed, Finished
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    config = TrainConfig(recipe="custom", epochs=epochs, batch_size=32, image_size=224, freeze="head", augment="none", lr=3e-3,
                         feature_cache=feature_cache)
    create_run(out, data, config, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    events = list(train_run(out))
    if isinstance(events[-1], Failed):
        raise RuntimeError(events[-1])
    epoch_seconds = {e.epoch: e.seconds for e in events if isinstance(e, EpochEnd)}
    finished = next(e for e in events if isinstance(e, Finished))
    return epoch_seconds, finished.metrics["test"]["accuracy"]


def main() -> None:
    base = isolated_cache()
    print(machine())
    data = replicated_dataset(base / "data", 2)
    epochs = 4
    # The decode cache is filled by a first run, so both measured runs read images the same way.
    cached, acc_cached = run(data, base / "features", True, epochs)
    plain, acc_plain = run(data, base / "plain", False, epochs)
    later_cached = sum(cached[e] for e in range(2, epochs + 1)) / (epochs - 1)
    later_plain = sum(plain[e] for e in range(2, epochs + 1)) / (epochs - 1)
    print(f"epoch 1: {cached[1]:.2f}s with feature cache, {plain[1]:.2f}s without")
    print(f"epochs 2-{epochs} (mean): {later_cached:.3f}s with feature cache, {later_plain:.2f}s without "
          f"-> x{later_plain / later_cached:.0f} faster")
    print(f"test accuracy: {acc_cached:.1%} with feature cache, {acc_plain:.1%} without "
          f"({(acc_cached - acc_plain) * 100:+.1f} points)")


if __name__ == "__main__":
    main()
