"""Decoding of every supported format, and plain reasons for files that cannot be used."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000, JPEGLSLossless

from desktop_tl.core.data.imageio import ImageLoadError, is_dicom_file, load_image, read_group_id

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def _dicom(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares a huge 1-bit image but holds almost no data (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# --- formats that must load -----------------------------------------------------------------


@pytest.mark.parametrize("suffix,options", [
    (".jpg", {"quality": 95}), (".png", {}), (".bmp", {}), (".tif", {}), (".webp", {"lossless": True}), (".gif", {}),
])
def test_common_formats_load_as_rgb(tmp_path, suffix, options):
    path = tmp_path / f"red{suffix}"
    Image.new("RGB", (30, 20), (220, 10, 10)).save(path, **options)
    img = load_image(path)
    assert img.size == (30, 20)
    r, g, b = _pixels(img)[10, 15]
    assert r > 180 and g < 60 and b < 60


def test_grayscale_png_becomes_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (8, 8), 77).save(path)
    assert (_pixels(load_image(path)) == 77).all()


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # full magenta + yellow = red
    r, g, b = _pixels(load_image(path))[8, 8]
    assert r > 200 and g < 60 and b < 60


def test_16bit_tiff_scaled_by_its_own_range(tmp_path):
    path = tmp_path / "deep.tif"
    arr = np.linspace(1000, 5000, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(arr).save(path)
    out = _pixels(load_image(path))[:, :, 0]
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out.ravel()) >= 0).all()  # order of intensities kept


def test_flat_16bit_image_is_black(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((4, 4), 3000, dtype=np.uint16)).save(path)
    assert (_pixels(load_image(path)) == 0).all()


def test_multipage_tiff_gives_first_page(tmp_path):
    path = tmp_path / "pages.tiff"
    first, second = Image.new("RGB", (10, 10), (0, 0, 250)), Image.new("RGB", (10, 10), (250, 0, 0))
    first.save(path, save_all=True, append_images=[second])
    assert tuple(_pixels(load_image(path))[5, 5]) == (0, 0, 250)


def test_animated_gif_gives_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (10, 10), (0, 200, 0)), Image.new("RGB", (10, 10), (200, 0, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    r, g, b = _pixels(load_image(path))[5, 5]
    assert g > 150 and r < 50


def test_palette_png_transparency_composited_on_white(tmp_path):
    path = tmp_path / "pal.png"
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))  # left half red, right half palette 0 = transparent
    img.save(path, transparency=0)
    out = _pixels(load_image(path))
    assert tuple(out[5, 2]) == (255, 0, 0)
    assert tuple(out[5, 8]) == (255, 255, 255)


def test_rgba_png_transparency_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (6, 6), (0, 0, 0, 0)).save(path)
    assert (_pixels(load_image(path)) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_result_is_fully_decoded(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(path)
    img = load_image(path)
    path.unlink()
    assert tuple(_pixels(img)[0, 0]) == (1, 2, 3)


# --- files that must be refused with a plain reason -----------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageLoadError, match=r"empty file \(0 bytes\)"):
        load_image(path)


@pytest.mark.parametrize("suffix,kind", [(".jpg", "JPEG"), (".png", "PNG")])
def test_truncated_file(tmp_path, suffix, kind):
    path = tmp_path / f"cut{suffix}"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=f"truncated or corrupt {kind}"):
        load_image(path)


@pytest.mark.parametrize("name,content,reason", [
    ("notes.png", b"just some notes\nnothing to see\n", "not an image (the file holds text)"),
    ("page.jpg", b"<!DOCTYPE html><html><body>404</body></html>", "not an image (the file is a web page, HTML)"),
    ("noise.bmp", bytes(np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8)),
     "not an image (unrecognised file content)"),
])
def test_not_an_image(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason == reason


@pytest.mark.parametrize("side", [20000, 10000])  # over 2x the limit (Pillow error), over 1x (Pillow warning)
def test_decompression_bomb_refused(tmp_path, side):
    path = _png_header_only(tmp_path / "bomb.png", side, side)
    assert path.stat().st_size < 1000
    with pytest.raises(ImageLoadError, match=rf"image too large \({side * side:,} pixels; images over"):
        load_image(path)


def test_non_dicom_named_dcm(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"hello, not dicom at all" * 20)
    assert is_dicom_file(path)
    with pytest.raises(ImageLoadError, match="not a DICOM file"):
        load_image(path)


def test_dicom_without_pixel_data(tmp_path):
    ds = _dicom("CT_small.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(ImageLoadError, match="DICOM file has no pixel data"):
        load_image(tmp_path / "nopix.dcm")


def test_dicom_with_undecodable_jpeg2000_data(tmp_path):
    ds = _dicom("MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = JPEG2000
    ds.PixelData = encapsulate([bytes(ds.PixelData)])  # raw samples, not a JPEG 2000 codestream
    ds.save_as(tmp_path / "j2k.dcm")
    with pytest.raises(ImageLoadError, match="DICOM pixel data is truncated or cannot be decoded"):
        load_image(tmp_path / "j2k.dcm")


def test_dicom_transfer_syntax_without_decoder(monkeypatch):
    """A machine where the pylibjpeg plugins are missing (a partial install) says which syntax it cannot read."""
    from desktop_tl.core.data import imageio

    real = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(imageio, "get_decoder", lambda uid: type("Missing", (), {"is_available": False})()
                        if uid == JPEGLSLossless else real)
    with pytest.raises(ImageLoadError, match="DICOM transfer syntax JPEG-LS Lossless .* cannot be decoded here"):
        load_image(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))


def test_truncated_dicom():
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(get_testdata_file("MR_truncated.dcm"))


# --- DICOM ----------------------------------------------------------------------------------


def test_dicom_ct_min_max_when_no_window(tmp_path):
    img = load_image(get_testdata_file("CT_small.dcm"))
    out = _pixels(img)
    assert img.size == (128, 128)
    assert out.min() == 0 and out.max() == 255
    assert (out[:, :, 0] == out[:, :, 1]).all()


def test_dicom_extensionless_file_with_preamble(tmp_path):
    path = tmp_path / "IM0001"
    shutil.copy(get_testdata_file("CT_small.dcm"), path)
    assert is_dicom_file(path)
    assert load_image(path).size == (128, 128)


def test_dicom_window_applied_after_rescale(tmp_path):
    ds = _dicom("CT_small.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 0, 400
    ds.save_as(tmp_path / "ct.dcm")
    hu = ds.pixel_array.astype(float) - 1024
    expected = np.rint(np.clip((hu - (0 - 0.5)) / (400 - 1) + 0.5, 0, 1) * 255)
    assert np.abs(_pixels(load_image(tmp_path / "ct.dcm"))[:, :, 0] - expected).max() <= 1


def test_dicom_voi_lut_sequence(tmp_path):
    ds = _dicom("MR_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "US", list(range(4095, -1, -1)))  # an inverting LUT
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(tmp_path / "voi.dcm")
    expected = np.rint((4095 - ds.pixel_array.astype(float)) / 4095 * 255)
    assert np.array_equal(_pixels(load_image(tmp_path / "voi.dcm"))[:, :, 0], expected)


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = _dicom("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "m2.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    normal, inverted = _pixels(load_image(tmp_path / "m2.dcm")), _pixels(load_image(tmp_path / "m1.dcm"))
    assert np.array_equal(inverted, 255 - normal)


def test_dicom_multiframe_gives_middle_frame(tmp_path):
    ds = _dicom("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    frames = np.full((3, 8, 8), 100, dtype=np.int16)
    frames[1, :, 4:] = 900  # only the middle frame has a right half that differs
    ds.set_pixel_data(frames, "MONOCHROME2", 16)
    ds.save_as(tmp_path / "multi.dcm")
    out = _pixels(load_image(tmp_path / "multi.dcm"))[:, :, 0]
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_dicom_palette_colour():
    out = _pixels(load_image(get_testdata_file("examples_palette.dcm")))
    assert (out[:, :, 0] != out[:, :, 2]).any()  # colours, not grey


def test_dicom_rgb_and_ybr():
    rgb = load_image(get_testdata_file("examples_rgb_color.dcm"))
    assert rgb.size == (320, 240)
    ybr = _pixels(load_image(get_testdata_file("SC_ybr_full_422_uncompressed.dcm")))
    r, g, b = ybr[0, 0]  # this sample's first rows are pure red
    assert r > 240 and g < 15 and b < 15


def test_dicom_rle_colour_8bit_multiframe_and_16bit():
    assert load_image(get_testdata_file("SC_rgb_rle_2frame.dcm")).size == (100, 100)
    r, g, b = _pixels(load_image(get_testdata_file("SC_rgb_rle_16bit.dcm")))[0, 0]  # a red stripe
    assert r > 240 and g < 15 and b < 15


def test_read_group_id(tmp_path):
    assert read_group_id(get_testdata_file("CT_small.dcm")) == "1CT1"
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    assert read_group_id(tmp_path / "a.png") is None
    ds = _dicom("CT_small.dcm")
    ds.PatientID = ""
    ds.save_as(tmp_path / "anon.dcm")
    assert read_group_id(tmp_path / "anon.dcm") is None


def test_imageio_never_imports_torch():
    code = "import sys, desktop_tl.core.data.imageio; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- compressed DICOM: every compressed sample of pydicom's own test data ---------------------------------

def _pydicom_test_files() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"   # the files pydicom ships (no download)


# Files that no decoder reads as they are: a JPEG whose scan markers are invalid for its process, a JPEG 2000
# stream whose header is damaged, and a file without pixel data. They must be skipped with a reason.
UNDECODABLE = {"JPEG-lossy.dcm": "JPEG Extended", "JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000",
               "UN_sequence.dcm": "no pixel data"}
# Lossless twins: the same pixels stored uncompressed (or in another lossless syntax) in pydicom's data.
TWINS = {"MR_small_RLE.dcm": "MR_small.dcm", "MR_small_jp2klossless.dcm": "MR_small.dcm",
         "MR_small_jpeg_ls_lossless.dcm": "MR_small.dcm", "rtdose_rle.dcm": "rtdose.dcm",
         "rtdose_rle_1frame.dcm": "rtdose_1frame.dcm", "SC_rgb_jpeg_gdcm.dcm": "SC_rgb_rle.dcm"}


def _compressed_samples() -> list[tuple[Path, str]]:
    found = []
    for path in sorted(_pydicom_test_files().glob("*.dcm")):
        try:
            syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:  # noqa: BLE001 - pydicom's deliberately broken samples are tested elsewhere
            continue
        if syntax.is_compressed:
            found.append((path, syntax.name))
    return found


def test_every_compressed_dicom_sample_decodes_or_is_skipped_with_its_syntax_named():
    samples = _compressed_samples()
    assert len(samples) >= 39, len(samples)
    syntaxes = {name for _, name in samples}
    assert any("JPEG-LS" in s for s in syntaxes) and any("Process 14" in s for s in syntaxes)
    decoded = []
    for path, syntax in samples:
        if path.name in UNDECODABLE:
            with pytest.raises(ImageLoadError) as caught:
                load_image(path)
            assert UNDECODABLE[path.name] in str(caught.value), (path.name, str(caught.value))
            assert path.name == "UN_sequence.dcm" or syntax in str(caught.value)
            continue
        image = load_image(path)
        assert image.mode == "RGB" and image.width > 0, path.name
        decoded.append(path.name)
    assert len(decoded) == len(samples) - len(UNDECODABLE)


@pytest.mark.parametrize("compressed, twin", sorted(TWINS.items()))
def test_lossless_compressed_dicom_gives_the_same_pixels_as_its_twin(compressed, twin):
    folder = _pydicom_test_files()
    assert np.array_equal(np.asarray(load_image(folder / compressed)), np.asarray(load_image(folder / twin)))


def test_pydicoms_notes_about_odd_files_do_not_reach_the_terminal():
    code = ("import pathlib, pydicom.data\nfrom desktop_tl.core.data.imageio import ImageLoadError, load_image\n"
            "for p in sorted((pathlib.Path(pydicom.data.__file__).parent / 'test_files').glob('*.dcm')):\n"
            "    try:\n        load_image(p)\n    except ImageLoadError:\n        pass\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
