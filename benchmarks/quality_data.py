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

`python benchmarks/quality_data.py OUT` writes them all (skips the ones already there).
Needs `pip install -e ".[bench]"` (scikit-learn, elpv-dataset).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SETS = ("digits", "faces", "elpv", "textures")


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


WRITERS = {"digits": write_digits, "faces": write_faces, "elpv": write_elpv, "textures": write_textures}


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


if __name__ == "__main__":
    main()
