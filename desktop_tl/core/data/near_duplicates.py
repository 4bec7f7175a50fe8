"""Near duplicates: the same picture saved again, resized, re-encoded, re-windowed or cropped slightly.

Each image gets perceptual hashes (the sign pattern of its low-frequency DCT, 64 bits) of its central region
at five sizes (70% to 82% of the image). Two images are near duplicates when some pair of their hashes differs
in at most MAX_DISTANCE bits: resizing, JPEG re-encoding and contrast changes leave a hash almost unchanged,
and a centred crop of a few percent brings one image's central region onto another size of the other's.
Measured on the 144 demo photographs (textures, a hard case: every pair looks alike): re-saved, resized,
re-windowed and 3-5% cropped copies are at most 6 bits from their original, while the closest two different
photographs are 10 bits apart.

On sets of look-alikes (small silhouettes, digits) different images also come within 6 bits, so a candidate
pair is checked a second time: the correlation of the two images' grey pixels, their central crops aligned
scale to scale, must be at least MIN_CORRELATION. Measured (benchmarks/near_duplicates.py, RESULTS.md): of the
planted copies the hashes find in four real sets it keeps 914 of 918 (99.6%), and it drops 52 of the 58
look-alike pairs of small silhouettes, textures and digits (solar cells of one kind correlate in their pixels
too: 1,364 pairs become 758). Numpy and Pillow only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
from PIL import Image

SCALES = (0.70, 0.73, 0.76, 0.79, 0.82)
MAX_DISTANCE = 6
MAX_IMAGES = 10_000          # the comparison grows with the square of the count (2,600 images: 6 s)
MAX_CLUSTER = 8              # near duplicates of one picture; a larger chain is look-alikes, not copies
_SIDE = 32
_K = np.arange(_SIDE)
_DCT = np.cos(np.pi * (2 * _K[None, :] + 1) * _K[:, None] / (2 * _SIDE))
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _phash(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].flatten()[1:]          # the 63 lowest frequencies, without the mean
    return np.packbits(low > np.median(low))


FLAT = 2.0                   # grey-level spread (0-255) below which an image has no structure to compare


def image_hashes(image: Image.Image) -> np.ndarray | None:
    """The perceptual hashes of an image's central regions, (len(SCALES), 8) uint8; None for a flat image
    (one colour, or nearly): its hash says nothing, and it would match every other flat image."""
    if float(np.asarray(image.convert("L").resize((_SIDE, _SIDE)), dtype=np.float64).std()) < FLAT:
        return None
    width, height = image.size
    hashes = []
    for scale in SCALES:
        w, h = width * scale, height * scale
        box = (round((width - w) / 2), round((height - h) / 2), round((width + w) / 2), round((height + h) / 2))
        hashes.append(_phash(image.crop(box)))
    return np.stack(hashes)


SIGNATURE_SIDE = 64          # the grey picture kept of each image for the second check
COMPARED_SIDE = 32
FINE_SCALES = tuple(round(0.80 + 0.02 * k, 2) for k in range(9))     # 80% to 96% of the kept picture
MIN_CORRELATION = 0.96       # see the module docstring: copies 0.96-1.00, look-alikes mostly below


def pixel_signature(image: Image.Image) -> np.ndarray:
    """The image in grey at SIGNATURE_SIDE px, kept for the second check of a candidate pair."""
    grey = image.convert("L").resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.uint8)


def _centred_views(signature: np.ndarray) -> np.ndarray:
    """Unit-length, mean-free grey views of the signature's central 80-96%, (len(FINE_SCALES), side**2)."""
    picture = Image.fromarray(signature.astype(np.float32), mode="F")
    views = []
    for scale in FINE_SCALES:
        side = SIGNATURE_SIDE * scale
        offset = (SIGNATURE_SIDE - side) / 2
        view = np.asarray(picture.resize((COMPARED_SIDE, COMPARED_SIDE), Image.Resampling.BILINEAR,
                                         box=(offset, offset, offset + side, offset + side)), dtype=np.float64).ravel()
        view = view - view.mean()
        norm = np.linalg.norm(view)
        views.append(view / norm if norm else view)
    return np.stack(views)


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of two signatures' grey pixels over the central crops aligned scale to scale: the
    same picture re-saved, resized, re-windowed or cropped a few percent correlates at 0.96 or more."""
    return float((_centred_views(a) @ _centred_views(b).T).max())


def near_duplicate_pairs(hashes: Mapping[str, np.ndarray | None], max_distance: int = MAX_DISTANCE,
                         chunk: int = 128, signatures: Mapping[str, np.ndarray] | None = None
                         ) -> list[tuple[str, str, int]]:
    """(path, path, distance) of every pair of images whose hashes come within `max_distance` bits and, with
    `signatures`, whose pixels then correlate at MIN_CORRELATION or more (look-alikes at a small hash distance
    are not copies), in path order; flat images (None) are left out; [] with more than MAX_IMAGES images."""
    names = sorted(name for name, value in hashes.items() if value is not None)
    if len(names) < 2 or len(names) > MAX_IMAGES:
        return []
    stacked = np.stack([hashes[n] for n in names])               # (n, scales, 8)
    pairs = []
    for start in range(0, len(names), chunk):
        block = stacked[start:start + chunk]
        xor = block[:, None, :, None, :] ^ stacked[None, :, None, :, :]   # (b, n, scales, scales, 8)
        distance = _POPCOUNT[xor].sum(axis=-1, dtype=np.int32).min(axis=(2, 3))
        for i, j in zip(*np.nonzero(distance <= max_distance), strict=True):
            if start + i < j:
                pairs.append((names[start + i], names[j], int(distance[i, j])))
    if signatures is not None:
        pairs = [(a, b, d) for a, b, d in pairs if a not in signatures or b not in signatures
                 or pixel_correlation(signatures[a], signatures[b]) >= MIN_CORRELATION]
    return pairs


def near_duplicate_clusters(pairs: list[tuple[str, str, int]]) -> dict[str, str]:
    """Each image in a near-duplicate pair, mapped to its cluster's first path (pairs chain into clusters).
    Clusters larger than MAX_CLUSTER are look-alikes (solar cells of one module, digits), not copies of one
    picture: they are left out, so that grouping cannot swallow a whole class."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    roots = {x: find(x) for x in list(parent)}
    sizes = Counter(roots.values())
    return {x: root for x, root in roots.items() if sizes[root] <= MAX_CLUSTER}
