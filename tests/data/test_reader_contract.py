"""The reader error contract: size limits before decoding, odd header values, OS errors; always InputError."""

from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import pytest

from roiprompt.data import read_image, read_mask
from roiprompt.data.io import DEFAULT_MAX_PIXELS
from roiprompt.errors import InputError

from ._make import disc, grey, save_dicom, save_nifti, save_pil


def named(path) -> str:
    return re.escape(path.name)


def _png_declaring(path, width: int, height: int):
    """A tiny valid-looking PNG whose header declares width x height (a decompression bomb's shape)."""
    save_pil(path, grey(4, 4))
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _tiff_declaring(path, width: int, height: int):
    """A 1x1 TIFF with its ImageWidth/ImageLength tags rewritten (the 3 KB file that decoded to 134 Mpx)."""
    save_pil(path, np.zeros((1, 1), np.uint8))
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # LONG, so values over 65535 fit
    path.write_bytes(bytes(data))
    return path


def test_the_default_limit_is_64_mpx():
    assert DEFAULT_MAX_PIXELS == 8192 * 8192


@pytest.mark.parametrize("make", [_png_declaring, _tiff_declaring])
def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, make):
    path = make(tmp_path / f"bomb{'.png' if make is _png_declaring else '.tif'}", 11000, 11000)
    assert path.stat().st_size < 4000
    with pytest.raises(InputError, match=named(path) + r": 11000x11000 = 121 Mpx is over the limit of 67 Mpx"):
        read_image(path)
    with pytest.raises(InputError, match=named(path) + r": 11000x11000 = 121 Mpx is over the limit"):
        read_mask(path)


def test_the_limit_is_a_setting(tmp_path, monkeypatch):
    path = save_pil(tmp_path / "a.png", grey(100, 100))
    assert read_image(path).shape == (100, 100)
    with pytest.raises(InputError, match=named(path) + r": 100x100 = 0 Mpx is over the limit of 0 Mpx"):
        read_image(path, max_pixels=5000)
    monkeypatch.setenv("ROIPROMPT_MAX_PIXELS", "5000")
    with pytest.raises(InputError, match="over the limit"):
        read_image(path)
    monkeypatch.setenv("ROIPROMPT_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match=r"ROIPROMPT_MAX_PIXELS='lots': give a number of pixels"):
        read_image(path)


def test_dicom_and_nifti_sizes_are_checked_from_the_header(tmp_path):
    dcm = save_dicom(tmp_path / "big.dcm", grey(4, 4).astype(np.uint16))
    import pydicom

    ds = pydicom.dcmread(dcm)
    ds.Rows, ds.Columns = 12000, 12000  # 144 Mpx declared, 32 bytes of pixel data
    ds.save_as(dcm)
    with pytest.raises(InputError, match=named(dcm) + r": 12000x12000 = 144 Mpx is over the limit"):
        read_image(dcm)
    nii = save_nifti(tmp_path / "vol.nii.gz", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match=named(nii) + r": slice of 64x64 = 0 Mpx is over the limit"):
        read_image(nii, slice=0, max_pixels=1000)


@pytest.mark.parametrize("tags, message", [
    ({"RescaleSlope": "abc"}, r"DICOM RescaleSlope is 'abc', not a number"),
    ({"WindowCenter": "wide", "WindowWidth": "100"}, r"DICOM WindowCenter is 'wide', not a number"),
])
def test_malformed_dicom_values_name_the_element(tmp_path, tags, message):
    import pydicom

    path = save_dicom(tmp_path / "odd.dcm", grey().astype(np.uint16))
    ds = pydicom.dcmread(path)
    for key, value in tags.items():  # stored as text (VR LO), as broken writers do
        tag = pydicom.datadict.tag_for_keyword(key)
        ds[tag] = pydicom.DataElement(tag, "LO", value)
    ds.save_as(path)
    with pytest.raises(InputError, match=named(path) + ": " + message):
        read_image(path)


def test_empty_dicom_values_fall_back_to_the_defaults(tmp_path):
    import pydicom

    stored = grey().astype(np.uint16)
    path = save_dicom(tmp_path / "empty.dcm", stored)
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = "", "", "", ""
    ds.save_as(path)
    plain = read_image(save_dicom(tmp_path / "plain.dcm", stored))
    assert np.array_equal(read_image(path), plain)  # no rescale, no window: min-max, as for a plain file


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = save_pil(tmp_path / "secret.png", grey())
    path.chmod(0)
    with pytest.raises(InputError, match=named(path) + ": permission denied"):
        read_image(path)


def test_a_name_that_is_not_utf8_is_shown_escaped(tmp_path):
    raw = os.fsencode(tmp_path) + b"/bad\xffname.png"
    path = os.fsdecode(raw)
    with open(raw, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(InputError) as err:
        read_image(path)
    message = str(err.value)
    assert "bad\\xffname.png: cannot read image" in message
    message.encode("utf-8")  # printable: no lone surrogates


def test_masks_obey_the_same_limits_and_contract(tmp_path):
    path = save_pil(tmp_path / "m.png", disc().astype(np.uint8) * 255)
    with pytest.raises(InputError, match=named(path) + ": .* over the limit"):
        read_mask(path, max_pixels=100)


def test_os_errors_become_input_errors(tmp_path, monkeypatch):
    """Whatever the OS says (permission, I/O error), the reader names the file; runs as root too."""
    import PIL.Image

    path = save_pil(tmp_path / "a.png", grey())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    with pytest.raises(InputError, match=named(path) + r": permission denied \(Permission denied\)"):
        read_image(path)

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(PIL.Image, "open", fail)
    with pytest.raises(InputError, match=named(path) + r": cannot read image \(OSError: \[Errno 5\] Input/output"):
        read_mask(path)


def test_a_decoder_bug_is_still_an_input_error(tmp_path, monkeypatch):
    """2 % of mutated TIFFs made Pillow raise TypeError; any exception type from a decoder is converted."""
    import PIL.Image

    path = save_pil(tmp_path / "odd.tif", grey())
    monkeypatch.setattr(PIL.Image.Image, "load", lambda self: (_ for _ in ()).throw(TypeError("bad tag type")))
    with pytest.raises(InputError, match=named(path) + r": cannot read image \(TypeError: bad tag type\)"):
        read_image(path)


def test_a_two_sample_dicom_mask_is_refused_by_shape(tmp_path):
    """Found by the fuzzer: a DICOM whose SamplesPerPixel became 2 decoded to HxWx2 and crashed the label-map
    message with IndexError."""
    import pydicom

    path = save_dicom(tmp_path / "two.dcm", np.zeros((16, 48), np.uint8))
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.Columns, ds.PlanarConfiguration = 2, 24, 0
    ds.save_as(path)
    with pytest.raises(InputError, match=named(path)):
        read_mask(path)
    with pytest.raises(InputError, match=named(path)):
        read_image(path)
