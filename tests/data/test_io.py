"""read_image / read_mask on every supported format, every bad file, and the mask/overlay writers."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from PIL import Image

from roiprompt.data import read_image, read_mask, write_mask_png, write_overlay_png
from roiprompt.errors import InputError

from ._make import disc, grey, rgb, save_dicom, save_nifti, save_pil


def named(path) -> str:
    """A match pattern that requires the file's name in the message."""
    return re.escape(path.name)


# -- images: every format --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext, kw", [(".png", {}), (".bmp", {}), (".tif", {}), (".tiff", {"compression": "tiff_lzw"})])
def test_lossless_formats_roundtrip(tmp_path, ext, kw):
    for arr in (grey(), rgb()):
        path = save_pil(tmp_path / f"img_{arr.ndim}{ext}", arr, **kw)
        out = read_image(path)
        assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_jpeg_is_close(tmp_path):
    arr = np.full((24, 32, 3), (200, 100, 50), np.uint8)
    out = read_image(save_pil(tmp_path / "a.jpg", arr, quality=95))
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).max() <= 3


def test_one_bit_and_palette_become_grey(tmp_path):
    mask = disc()
    assert np.array_equal(read_image(save_pil(tmp_path / "b.png", mask)), mask.astype(np.uint8) * 255)
    ramp = grey()
    im = Image.fromarray(ramp).convert("P")  # palette of greys (like JSRT's inverted ramp)
    im.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    im.putdata(list(ramp.ravel()))
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == ramp.shape and np.array_equal(out, 255 - ramp)


def test_opaque_alpha_is_dropped(tmp_path):
    arr = np.dstack([rgb(), np.full((24, 32), 255, np.uint8)])
    assert np.array_equal(read_image(save_pil(tmp_path / "opaque.png", arr)), arr[..., :3])


def test_dicom_window_rescale_and_monochrome1(tmp_path):
    stored = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)  # 0..767
    # rescale to -100..667 "HU", window centre 100 width 201 -> 0 below 0 HU, 255 from 200 HU
    path = save_dicom(tmp_path / "ct.dcm", stored, RescaleSlope=1, RescaleIntercept=-100,
                      WindowCenter=100, WindowWidth=201)
    out = read_image(path)
    hu = stored.astype(float) - 100
    assert out.dtype == np.uint8 and out.shape == stored.shape
    assert (out[hu < 0] == 0).all() and (out[hu >= 200] == 255).all()
    assert 120 <= out[hu == 100][0] <= 135
    plain = read_image(save_dicom(tmp_path / "plain.dcm", stored))  # no window: min-max
    assert plain.min() == 0 and plain.max() == 255 and plain[0, 0] == 0
    inverted = read_image(save_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    assert np.array_equal(inverted, 255 - plain)


def test_dicom_without_extension_is_recognised(tmp_path):
    path = save_dicom(tmp_path / "IM0001", grey().astype(np.uint16))
    assert read_image(path).shape == (24, 32)


def test_nifti_slices(tmp_path):
    vol = np.zeros((24, 32, 5), np.float32)
    for k in range(5):
        vol[:, :, k] = k * 10 + grey(seed=k) / 255.0
    path = save_nifti(tmp_path / "vol.nii.gz", vol)
    middle = read_image(path)
    assert middle.shape == (24, 32) and middle.dtype == np.uint8 and (middle.min(), middle.max()) == (0, 255)
    expected = np.round((vol[:, :, 2] - vol[:, :, 2].min()) / np.ptp(vol[:, :, 2]) * 255)
    assert np.abs(middle.astype(int) - expected).max() <= 1
    assert read_image(path, slice_index=0, axis=0).shape == (32, 5)
    assert read_image(save_nifti(tmp_path / "flat.nii", vol[:, :, 0])).shape == (24, 32)
    with pytest.raises(InputError, match=named(path) + r".*slice_index 9 is out of range"):
        read_image(path, slice_index=9)


# -- masks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, to_disk", [
    ("m255.png", lambda m: m.astype(np.uint8) * 255),
    ("m01.png", lambda m: m.astype(np.uint8)),
    ("m1bit.png", lambda m: m),
    ("mask.gif", lambda m: m.astype(np.uint8) * 255),
    ("mask.bmp", lambda m: m.astype(np.uint8) * 255),
    ("rgb.png", lambda m: np.repeat(m[:, :, None].astype(np.uint8) * 255, 3, 2)),
])
def test_read_mask_formats(tmp_path, name, to_disk):
    m = disc()
    out = read_mask(save_pil(tmp_path / name, to_disk(m)), image_hw=(24, 32))
    assert out.dtype == bool and np.array_equal(out, m)


def test_read_mask_thresholds_lossy_rgb_jpeg(tmp_path):
    m = disc(64, 64, 32, 32, 20)
    path = save_pil(tmp_path / "mask.jpg", np.repeat(m[:, :, None].astype(np.uint8) * 255, 3, 2), quality=75)
    raw = np.asarray(Image.open(path))
    assert len(np.unique(raw)) > 2  # the JPEG really is lossy...
    assert np.array_equal(read_mask(path), m)  # ...and thresholding at 128 recovers the mask


def test_read_mask_dicom_and_nifti(tmp_path):
    m = disc()
    assert np.array_equal(read_mask(save_dicom(tmp_path / "m.dcm", m.astype(np.uint8))), m)
    vol = np.stack([np.zeros_like(m), m, np.zeros_like(m)], axis=2).astype(np.uint8) * 3  # label 3 counts as > 0
    assert np.array_equal(read_mask(save_nifti(tmp_path / "m.nii.gz", vol)), m)


def test_write_mask_png_roundtrip(tmp_path):
    m = disc()
    path = write_mask_png(tmp_path / "sub" / "out.png", m)
    assert np.array_equal(read_mask(path, (24, 32)), m)
    assert set(np.unique(np.asarray(Image.open(path))).tolist()) == {0, 255}


def test_overlay(tmp_path):
    image = np.full((40, 50), 100, np.uint8)
    masks = {"heart": disc(40, 50, 20, 15, 8), "left_lung": disc(40, 50, 20, 35, 8)}
    path = write_overlay_png(tmp_path / "o" / "overlay.png", image, masks, boxes=[[5, 5, 25, 35], [25, 10, 45, 30]],
                             points=[[15, 20], [45, 5]], labels=[1, 0])
    out = np.asarray(Image.open(path))
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[20, 15], out[20, 35])  # two structures, two colours
    assert (out[38, 2] == 100).all()  # untouched background stays grey
    single = np.asarray(Image.open(write_overlay_png(tmp_path / "single.png", np.dstack([image] * 3),
                                                     masks["heart"], boxes=[5, 5, 25, 35])))
    assert single.shape == (40, 50, 3)
    with pytest.raises(InputError, match="mask is 24x32 but its image is 40x50"):
        write_overlay_png(tmp_path / "bad.png", image, disc())
    with pytest.raises(InputError, match="2 points but 1 labels"):
        write_overlay_png(tmp_path / "bad.png", image, None, points=[[1, 2], [3, 4]], labels=[1])


# -- every bad file names itself -------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.png"
    with pytest.raises(InputError, match=named(path) + ": file not found"):
        read_image(path)
    with pytest.raises(InputError, match=named(path) + ": file not found"):
        read_mask(path)


def test_truncated_png(tmp_path):
    path = save_pil(tmp_path / "cut.png", rgb(64, 64))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=named(path) + r": cannot read image \(OSError: .*truncated"):
        read_image(path)
    with pytest.raises(InputError, match=named(path) + ": cannot read image"):
        read_mask(path)


def test_garbage_png(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputError, match=named(path) + r": cannot read image \(UnidentifiedImageError"):
        read_image(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InputError, match=named(path) + r": unsupported file type '\.txt'; supported: \.png"):
        read_image(path)


def test_sixteen_bit_png(tmp_path):
    path = save_pil(tmp_path / "deep.png", np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)
    with pytest.raises(InputError, match=named(path) + r": 16-bit image .*expects 8-bit"):
        read_image(path)


def test_float_tiff(tmp_path):
    path = save_pil(tmp_path / "float.tif", np.random.default_rng(0).random((24, 32)).astype(np.float32))
    with pytest.raises(InputError, match=named(path) + r": floating-point image .*8-bit"):
        read_image(path)


def test_rgba_with_transparency(tmp_path):
    arr = np.dstack([rgb(), np.full((24, 32), 128, np.uint8)])
    path = save_pil(tmp_path / "alpha.png", arr)
    with pytest.raises(InputError, match=named(path) + r": image has an alpha channel \(RGBA\).*convert\('RGB'\)"):
        read_image(path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the junk before refusing it
def test_corrupt_dicom_and_truncated_nifti(tmp_path):
    dcm = tmp_path / "broken.dcm"
    dcm.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 5)
    with pytest.raises(InputError, match=named(dcm) + ": cannot read DICOM"):
        read_image(dcm)
    nii = save_nifti(tmp_path / "cut.nii.gz", np.ones((30, 30, 30), np.float32))
    nii.write_bytes(gzip.compress(gzip.decompress(nii.read_bytes())[:2000]))
    with pytest.raises(InputError, match=named(nii) + ": cannot read NIfTI"):
        read_image(nii)


def test_mask_size_mismatch(tmp_path):
    path = save_pil(tmp_path / "mask_0001-l.png", (disc() * 255).astype(np.uint8))
    with pytest.raises(InputError, match=named(path) + r": mask is 24x32 but its image is 256x199 \(H x W\)"):
        read_mask(path, image_hw=(256, 199))


def test_empty_mask(tmp_path):
    path = save_pil(tmp_path / "empty.png", np.zeros((24, 32), np.uint8))
    with pytest.raises(InputError, match=named(path) + ": mask has no foreground pixel"):
        read_mask(path)
    assert not read_mask(path, allow_empty=True).any()


def test_non_binary_masks(tmp_path):
    labels = np.zeros((24, 32), np.uint8)
    labels[:5], labels[10:15] = 1, 2  # a label map: values all below 128
    path = save_pil(tmp_path / "labelmap.png", labels)
    with pytest.raises(InputError, match=named(path) + r": mask values are all below 128 \(3 distinct"):
        read_mask(path)
    deep = save_pil(tmp_path / "deep_mask.png", labels.astype(np.uint16) * 1000)
    with pytest.raises(InputError, match=named(deep) + r": mask is not binary: it has 3 distinct values"):
        read_mask(deep)
    floats = save_pil(tmp_path / "soft.tif", (labels / 4).astype(np.float32))
    with pytest.raises(InputError, match=named(floats) + r": mask is not binary: it has 3 distinct values"):
        read_mask(floats)
