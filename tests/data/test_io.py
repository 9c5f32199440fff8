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
    two = read_image(path, slice=2)
    assert two.shape == (24, 32) and two.dtype == np.uint8 and (two.min(), two.max()) == (0, 255)
    expected = np.round((vol[:, :, 2] - vol[:, :, 2].min()) / np.ptp(vol[:, :, 2]) * 255)
    assert np.abs(two.astype(int) - expected).max() <= 1
    assert read_image(path, slice=-1).shape == (24, 32)
    assert read_image(path, slice=0, axis=0).shape == (5, 24)  # sagittal: rows S->I, columns A->P
    assert read_image(save_nifti(tmp_path / "flat.nii", vol[:, :, 0])).shape == (24, 32)
    with pytest.raises(InputError, match=named(path) + r": slice 9 is out of range for axis 2"):
        read_image(path, slice=9)


def test_a_volume_needs_a_slice(tmp_path):
    path = save_nifti(tmp_path / "vol.nii.gz", np.zeros((24, 32, 5), np.float32))
    with pytest.raises(InputError, match=named(path) + r": is a 3-D volume with 5 slices along axis 2; choose one: "
                       r"slice=N \(CLI: --slice N"):
        read_image(path)  # never a silent middle slice
    with pytest.raises(InputError, match=named(path) + r": is a 3-D volume"):
        read_mask(path)


def test_nifti_reads_as_the_dicom_it_came_from(tmp_path):
    """A standard axial DICOM (rows A->P, columns R->L) and its NIfTI (voxels indexed by column and row, affine in
    RAS: x = -column, y = -row) read as the same pixels; array order would give the transpose."""
    import nibabel as nib

    pixels = grey(24, 32)
    dicom = read_image(save_dicom(tmp_path / "slice.dcm", pixels, ImageOrientationPatient=[1, 0, 0, 0, 1, 0]))
    assert np.array_equal(dicom, pixels)
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])  # LPS voxel axes, as converters write a DICOM series
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(pixels.T[:, :, None].astype(np.int16), affine), str(path))  # voxel [col, row, 0]
    assert np.array_equal(read_image(path), dicom)
    assert not np.array_equal(np.asarray(nib.load(str(path)).dataobj)[:, :, 0], dicom)  # array order differs
    # the same anatomy stored flipped along x (RAS voxel axes) reads the same
    flipped = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(pixels.T[::-1, :, None].astype(np.int16), np.diag([0.7, -0.7, 2.5, 1.0])), str(flipped))
    assert np.array_equal(read_image(flipped), dicom)


@pytest.mark.parametrize("affine", [np.eye(4), np.diag([-1.0, -1.0, 1.0, 1.0]),
                                    np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])])
def test_write_mask_nifti_keeps_the_grid(tmp_path, affine):
    import nibabel as nib

    from roiprompt.data import write_mask_nifti

    like = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 24, 6)).astype(np.float32), affine), str(like))
    shapes = {k: read_image(like, slice=k).shape for k in (1, 4)}
    masks = {k: disc(*shapes[k], shapes[k][0] / 2, shapes[k][1] / 2, 4) for k in (1, 4)}
    out = write_mask_nifti(tmp_path / "mask.nii.gz", like, masks)
    written = nib.load(str(out))
    assert np.allclose(written.affine, nib.load(str(like)).affine) and written.shape == (20, 24, 6)
    assert written.get_data_dtype() == np.uint8
    for k in range(6):
        back = read_mask(out, slice=k, allow_empty=True)
        assert np.array_equal(back, masks[k]) if k in masks else not back.any()


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


def test_read_mask_refuses_a_lossy_jpeg_unless_told(tmp_path):
    m = disc(64, 64, 32, 32, 20)
    path = save_pil(tmp_path / "mask.jpg", np.repeat(m[:, :, None].astype(np.uint8) * 255, 3, 2), quality=75)
    raw = np.asarray(Image.open(path))
    assert len(np.unique(raw)) > 2  # the JPEG really is lossy...
    with pytest.raises(InputError, match=named(path) + r": mask is a lossy JPEG .*threshold=128 \(CLI: "
                       "--mask-threshold 128"):
        read_mask(path)  # ...so strict reading refuses it...
    assert np.array_equal(read_mask(path, threshold=128), m)  # ...and the explicit threshold recovers it


def test_read_mask_dicom_and_nifti(tmp_path):
    m = disc()
    assert np.array_equal(read_mask(save_dicom(tmp_path / "m.dcm", m.astype(np.uint8))), m)
    assert np.array_equal(read_mask(save_dicom(tmp_path / "m255.dcm", m.astype(np.uint8) * 255)), m)
    vol = np.stack([np.zeros_like(m), m, np.zeros_like(m)], axis=2).astype(np.uint8)
    assert np.array_equal(read_mask(save_nifti(tmp_path / "m.nii.gz", vol), slice=1), m)
    labels = save_nifti(tmp_path / "labels.nii.gz", vol * 3)
    with pytest.raises(InputError, match=named(labels) + r": mask is not binary: it has 2 distinct values \(0, 3\); "
                       r"if it is a label map, pick a structure with label=V \(CLI: --labels V=NAME"):
        read_mask(labels, slice=1)  # a label 3 is not silently "> 0"
    assert np.array_equal(read_mask(labels, slice=1, label=3), m)


def test_soft_masks_need_a_threshold(tmp_path):
    """A probability map in NIfTI or DICOM was once read as "> 0" (99 % foreground); now it needs threshold=."""
    yy, xx = np.mgrid[:24, :32]
    soft = (0.98 * np.exp(-((yy - 12) ** 2 + (xx - 16) ** 2) / 40.0) + 0.01).astype(np.float32)
    nii = save_nifti(tmp_path / "prob.nii.gz", soft)
    with pytest.raises(InputError, match=named(nii) + r": mask is not binary: .*pass threshold=T \(CLI: "
                       "--mask-threshold T"):
        read_mask(nii)
    assert np.array_equal(read_mask(nii, threshold=0.5), soft >= 0.5)
    dcm = save_dicom(tmp_path / "prob.dcm", np.round(soft * 1000).astype(np.uint16))
    with pytest.raises(InputError, match=named(dcm) + r": mask is not binary"):
        read_mask(dcm)
    grey_png = save_pil(tmp_path / "grey.png", np.round(soft * 255).astype(np.uint8))
    with pytest.raises(InputError, match=named(grey_png) + r": mask is not binary"):
        read_mask(grey_png)  # was thresholded at 128 silently
    assert np.array_equal(read_mask(grey_png, threshold=128), np.round(soft * 255) >= 128)


def test_label_maps_give_several_structures(tmp_path):
    from roiprompt.data import read_label_map

    labels = np.zeros((24, 32), np.uint8)
    labels[2:8, 2:10], labels[12:20, 5:25] = 1, 2
    path = save_pil(tmp_path / "labels.png", labels)
    masks = read_label_map(path, {1: "liver", 2: "spleen"}, image_hw=(24, 32))
    assert list(masks) == ["liver", "spleen"]
    assert np.array_equal(masks["liver"], labels == 1) and np.array_equal(masks["spleen"], labels == 2)
    with pytest.raises(InputError, match=named(path) + r" \(label for 'kidney'\): mask has no foreground"):
        read_label_map(path, {1: "liver", 7: "kidney"})
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[2:8, 2:10] = (255, 0, 0)
    colour[12:20, 5:25] = (0, 255, 0)
    cpath = save_pil(tmp_path / "colours.png", colour)
    with pytest.raises(InputError, match=named(cpath) + r": mask is a colour label map \(3 colours: #000000, "
                       r"#00ff00, #ff0000\); pick one structure with label=\(R, G, B\)"):
        read_mask(cpath)  # a red structure no longer vanishes in a channel mean
    assert np.array_equal(read_mask(cpath, label=(255, 0, 0)), labels == 1)
    assert np.array_equal(read_label_map(cpath, {(0, 255, 0): "spleen"})["spleen"], labels == 2)


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
        read_image(nii, slice=3)


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
    labels[:5], labels[10:15] = 1, 2
    path = save_pil(tmp_path / "labelmap.png", labels)
    with pytest.raises(InputError, match=named(path) + r": mask is not binary: it has 3 distinct values \(0, 1, 2\)"):
        read_mask(path)
    deep = save_pil(tmp_path / "deep_mask.png", labels.astype(np.uint16) * 1000)
    with pytest.raises(InputError, match=named(deep) + r": mask is not binary: it has 3 distinct values"):
        read_mask(deep)
    floats = save_pil(tmp_path / "soft.tif", (labels / 4).astype(np.float32))
    with pytest.raises(InputError, match=named(floats) + r": mask is not binary: it has 3 distinct values"):
        read_mask(floats)
    with pytest.raises(InputError, match=named(path) + ": give threshold or label, not both"):
        read_mask(path, threshold=1, label=1)
