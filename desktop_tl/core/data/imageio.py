"""Decode any supported image file (photos, scans, DICOM) into an 8-bit RGB PIL image.

Only the standard library, NumPy, Pillow and pydicom are imported here, never torch: the
ONNX predictor uses this module on machines without torch.

High-bit-depth data (16-bit TIFF/PNG, 32-bit integer or float images, DICOM without a
VOI LUT or window) is scaled to 8 bits by the image's own minimum and maximum. Scientific
and medical images often fill only 10-12 of their 16 bits, so scaling by the full 16-bit
range would leave them nearly black.

Compressed DICOM (JPEG Baseline, Extended and Lossless, JPEG-LS, JPEG 2000, RLE) is decoded by pydicom's
plugins from the pylibjpeg family. pydicom's own notes about odd files ("excess padding", say) are logged at
debug level through the "pydicom" logger instead of being printed to the user's terminal.
"""

from __future__ import annotations

import logging
import re
import struct
import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DICOM_SUFFIX = ".dcm"

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA"})
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What Pillow and pydicom raise on damaged data once a file has been recognised.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)

StrPath = str | PathLike[str]


def _to_debug(record: logging.LogRecord) -> bool:
    """Lower pydicom's log records to debug level: notes about a file, not problems of the app."""
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return True


# pydicom both logs and warns each note (pydicom.misc.warn_and_log): keep the log line, drop the warning.
logging.getLogger("pydicom").addFilter(_to_debug)
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")


class ImageLoadError(Exception):
    """A file could not be used as an image; the message is a short plain-language reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_dicom_file(path: StrPath) -> bool:
    """True for a `.dcm` file or any file with the 'DICM' marker at byte 128."""
    path = Path(path)
    if path.suffix.lower() == DICOM_SUFFIX:
        return True
    try:
        if not path.is_file():  # opening a FIFO or a device to sniff it could block or never end
            return False
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def load_image(path: StrPath) -> Image.Image:
    """Decode `path` fully into an RGB image, with EXIF orientation applied.

    Transparent areas are composited on white; multipage files give their first page and
    multi-frame DICOM its middle frame. Raises ImageLoadError with a plain reason when
    the file is empty, damaged, not an image, too large, or a DICOM that cannot be shown.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(f"cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageLoadError("empty file (0 bytes)")
    if is_dicom_file(path):
        return _load_dicom(path)
    return _load_with_pillow(path)


def read_group_id(path: StrPath) -> str | None:
    """The DICOM PatientID of `path` (pixels are not read), or None for other files.

    The value identifies a person: hash it at once and never log or store it.
    """
    if not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (InvalidDicomError, *_DECODE_ERRORS):
        return None
    value = str(ds.get("PatientID", "") or "").strip()
    return value or None


DICOM_ATTRIBUTES = ("Modality", "Manufacturer", "BodyPartExamined")   # describe the acquisition, not the person


def read_dicom_attributes(path: StrPath) -> tuple[tuple[str, str], ...]:
    """The non-identifying acquisition tags of a DICOM file (DICOM_ATTRIBUTES that are set), for subgroup
    figures; () for other files."""
    if not is_dicom_file(path):
        return ()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(DICOM_ATTRIBUTES))
    except (InvalidDicomError, *_DECODE_ERRORS):
        return ()
    values = ((name, str(ds.get(name, "") or "").strip()) for name in DICOM_ATTRIBUTES)
    return tuple((name, value) for name, value in values if value)


def _check_pixel_count(width: int, height: int) -> None:
    """Refuse images over Pillow's decompression-bomb limit.

    Pillow checks this itself when opening, but the warnings filter that turns its
    warning into an error is process-wide, so another thread could change it; this
    check holds regardless and also covers DICOM.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageLoadError(_bomb_reason(width * height))


def _bomb_reason(pixels: int | None) -> str:
    count = f"{pixels:,} pixels" if pixels is not None else "too many pixels"
    return (f"image too large ({count}; images over {Image.MAX_IMAGE_PIXELS:,} pixels are not read, which guards "
            "against files built to exhaust memory)")


def _load_with_pillow(path: Path) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                _check_pixel_count(*img.size)
                kind = img.format or path.suffix.lstrip(".").upper() or "image"
                try:
                    img.load()
                    rgb = _to_rgb(_apply_exif_orientation(img))
                    rgb.load()
                except _DECODE_ERRORS as exc:
                    raise ImageLoadError(f"truncated or corrupt {kind}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            match = re.search(r"(\d+) pixels", str(exc))
            raise ImageLoadError(_bomb_reason(int(match.group(1)) if match else None)) from exc
        except UnidentifiedImageError as exc:
            raise ImageLoadError(_not_an_image_reason(path)) from exc
        except OSError as exc:
            raise ImageLoadError(f"cannot read the file ({exc.strerror or exc})") from exc
    return rgb


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Rotate by the EXIF orientation tag; a damaged EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: high depth scaled by range, transparency on white."""
    if img.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_scale_to_uint8(np.asarray(img))).convert("RGB")
    if "transparency" in img.info and img.mode in ("P", "L", "RGB", "1"):
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map the array's own minimum..maximum onto 0..255 (a flat image becomes black)."""
    data = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.rint((data - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _not_an_image_reason(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an image (unrecognised file content)"
    if not text.strip() or not all(ch.isprintable() or ch.isspace() for ch in text):
        return "not an image (unrecognised file content)"
    if "<html" in text.lower() or "<!doctype" in text.lower():
        return "not an image (the file is a web page, HTML)"
    return "not an image (the file holds text)"


def _load_dicom(path: Path) -> Image.Image:
    try:
        ds = pydicom.dcmread(path, force=False)
    except InvalidDicomError as exc:
        raise ImageLoadError("not a DICOM file") from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError("truncated or corrupt DICOM file") from exc
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageLoadError("DICOM file has no pixel data")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if not syntax:
        raise ImageLoadError("DICOM file does not say how its pixel data is encoded (no transfer syntax)")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise ImageLoadError(f"DICOM transfer syntax {syntax.name} cannot be decoded here") from exc
    if not decoder.is_available:
        raise ImageLoadError(f"DICOM transfer syntax {syntax.name} cannot be decoded here (no decoder installed)")
    try:
        _check_pixel_count(int(ds.Columns), int(ds.Rows))
        frames = int(ds.get("NumberOfFrames") or 1)
        arr, pixel_info = decoder.as_array(ds, index=frames // 2)
        rgb = _dicom_to_rgb(arr, ds, str(getattr(pixel_info["photometric_interpretation"], "value",
                                                 pixel_info["photometric_interpretation"])))
    except ImageLoadError:
        raise
    except (AttributeError, NotImplementedError, RuntimeError, *_DECODE_ERRORS) as exc:
        raise ImageLoadError(f"DICOM pixel data is truncated or cannot be decoded ({syntax.name})") from exc
    return Image.fromarray(rgb)


def _dicom_to_rgb(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """One decoded DICOM frame to an (H, W, 3) uint8 array."""
    if photometric == "PALETTE COLOR":
        colour = apply_color_lut(arr, ds)
        return colour if colour.dtype == np.uint8 else np.rint(colour / 257.0).astype(np.uint8)
    if arr.ndim == 3:
        if photometric != "RGB":
            raise ImageLoadError(f"DICOM colour space {photometric} is not supported")
        if arr.dtype == np.uint8:
            return arr
        full_scale = 2 ** int(ds.get("BitsStored", 16)) - 1
        return np.rint(np.clip(arr, 0, full_scale) * (255.0 / full_scale)).astype(np.uint8)
    values = apply_modality_lut(arr, ds)
    gray = _apply_voi(values, ds)
    if gray is None:
        gray = _scale_to_uint8(values)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[:, :, None], 3, axis=2)


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Apply the file's VOI LUT or window to 0..255, or None when it has neither (or a bad one)."""
    lut_items = ds.get("VOILUTSequence")
    has_lut = bool(lut_items) and all(lut_items[0].get(k) is not None for k in ("LUTDescriptor", "LUTData"))
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if not (has_lut or has_window):
        return None
    # pydicom windows onto the range of the stored bits; a view that claims unsigned
    # 8-bit data makes the window land on exactly 0..255.
    view = Dataset()
    view.file_meta = ds.file_meta
    view.PhotometricInterpretation = "MONOCHROME2"
    view.BitsStored = 8
    view.PixelRepresentation = 0
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence"):
        if keyword in ds:
            view[keyword] = ds[keyword]
    try:
        if not has_lut:
            return np.rint(np.clip(apply_voi_lut(values, view), 0, 255)).astype(np.uint8)
        first, count = int(lut_items[0].LUTDescriptor[1]), int(lut_items[0].LUTDescriptor[0]) or 2**16
        table = apply_voi_lut(np.arange(first, first + count), view).astype(np.float64)
        mapped = apply_voi_lut(np.rint(values).astype(np.int64), view).astype(np.float64)
    except (ValueError, NotImplementedError, AttributeError, TypeError, IndexError):
        return None
    lo, hi = float(table.min()), float(table.max())
    if hi <= lo:
        return None
    return np.rint((mapped - lo) * (255.0 / (hi - lo))).astype(np.uint8)
