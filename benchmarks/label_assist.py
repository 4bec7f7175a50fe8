"""Label assist against random labelling: does labelling the images `desktop-tl suggest` ranks first teach
the model more than labelling as many images chosen at random?

On scikit-learn's 1,797 real handwritten digits (8x8, upscaled): 500 are a test set no choice sees; the rest
are the unlabelled pool. Starting from 2 labelled digits per class, each round adds 20 labels, chosen either
by the app's ranking (`core.deploy.label_assist.least_certain_first`) or at random, and refits the app's
linear probe (`core.training.probe_fit.fit_logistic` on the frozen EfficientNet-Lite0 features, as a Quick
retrain would). Test accuracy after each round, mean over 5 seeds, the two strategies side by side.

    pip install -e ".[bench]"
    python benchmarks/label_assist.py
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from common import isolated_cache, machine

ROUNDS, PER_ROUND, START_PER_CLASS, TEST, SEEDS = 6, 20, 2, 500, 5
L2 = 1e-3     # the label review's penalty (core.training.label_review.L2)


def digit_features() -> tuple[np.ndarray, np.ndarray]:
    """Pooled frozen-backbone features of every digit, as the app computes them (224 px, bundled weights)."""
    from sklearn.datasets import load_digits

    from desktop_tl.core.data.preprocess import Preprocessing, preprocess
    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.models.structure import data_config
    from desktop_tl.core.training.probe import pre_logits

    digits = load_digits()
    model, _ = create_model("efficientnet_lite0", "bundled", 10)
    model.eval()
    prep = Preprocessing.from_data_config(data_config(model))
    images = [Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST)
              for d in digits.images]
    features = []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            batch = torch.from_numpy(np.stack([preprocess(i.convert("RGB"), prep) for i in images[start:start + 64]]))
            features.append(pre_logits(model, batch).double().numpy())
    return np.concatenate(features), digits.target.astype(np.int64)


def fit_and_score(features, labels, train, test) -> tuple[float, np.ndarray]:
    """Test accuracy of the app's probe fitted on `train`, and its probabilities for every image."""
    from desktop_tl.core.training.probe_fit import FeatureScaling, fit_logistic

    x = torch.from_numpy(features)
    scaling = FeatureScaling.of(x[train])
    weight, bias = fit_logistic(scaling.apply(x[train]), torch.from_numpy(labels[train]), 10, L2)
    probs = torch.softmax(scaling.apply(x) @ weight.T + bias, 1).numpy()
    return float((probs[test].argmax(1) == labels[test]).mean()), probs


def run(features, labels, seed: int, strategy: str) -> list[float]:
    from desktop_tl.core.deploy.label_assist import least_certain_first

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    test, pool = order[:TEST], order[TEST:]
    labelled = np.concatenate([pool[labels[pool] == k][:START_PER_CLASS] for k in range(10)])
    accuracies = []
    for _ in range(ROUNDS + 1):
        accuracy, probs = fit_and_score(features, labels, labelled, test)
        accuracies.append(accuracy)
        unlabelled = np.setdiff1d(pool, labelled)
        if strategy == "assist":
            chosen = unlabelled[least_certain_first(probs[unlabelled])[:PER_ROUND]]
        else:
            chosen = rng.choice(unlabelled, PER_ROUND, replace=False)
        labelled = np.concatenate([labelled, chosen])
    return accuracies


def main() -> None:
    isolated_cache()
    print(machine())
    features, labels = digit_features()
    results = {s: np.mean([run(features, labels, seed, s) for seed in range(SEEDS)], axis=0)
               for s in ("assist", "random")}
    print("| labels | random | label assist | gain |\n|---|---|---|---|")
    for r in range(ROUNDS + 1):
        n = 10 * START_PER_CLASS + r * PER_ROUND
        a, b = results["random"][r], results["assist"][r]
        print(f"| {n} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")


if __name__ == "__main__":
    main()
