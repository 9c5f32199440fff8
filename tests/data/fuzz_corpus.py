"""Seed files and mutators for fuzzing ``read_image`` / ``read_mask`` (issue 20), shared by
``tests/data/test_fuzz_readers.py`` (hypothesis) and ``benchmarks/fuzz_readers.py`` (long seeded run).

Everything here is bytes in, bytes out, and deterministic: a fuzz input is fully described by a seed name and a
list of :data:`Op` tuples, so any input either driver found can be rebuilt from those alone (the benchmark records
them next to each failure). An op is ``(name, a, b, c)`` with ``0 <= a, c < 2**16`` and ``0 <= b < 256``; each op
reads its integers modulo whatever it indexes (a byte offset, a header field, a value pool), so hypothesis and a
numpy RNG can draw them the same way and hypothesis can shrink them.

Seeds are valid files of every format the readers take (PNG, JPEG, BMP, TIFF, GIF, DICOM, NIfTI, ``.nii.gz``),
written with Pillow, pydicom and nibabel, plus mask-like rasters (grey 0..255, colour label maps, soft masks) and
*heavy* seeds that declare huge sizes (121-134 Mpx) in a few KB; heavy seeds cost seconds to decode, so drivers
use them sparingly.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

__all__ = ["FORMATS", "GENERIC_OPS", "HEAVY_NAMES", "MASK_KINDS", "MASK_EXTS", "Op", "Seed", "format_ops",
           "generic_ops", "mask_like_file", "mutate", "random_ops", "seeds"]

#: (name, a, b, c); see the module docstring.
Op = tuple[str, int, int, int]
A_MAX, B_MAX, C_MAX = 1 << 16, 1 << 8, 1 << 16

FORMATS = ("png", "jpeg", "bmp", "tiff", "gif", "dicom", "nifti", "nifti_gz")

#: integers that tend to break parsers: limits of each width, sizes that overflow a product, typical field values
INTS = (0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 24, 32, 64, 127, 128, 255, 256, 1000, 11000, 11600, 32767, 32768,
        65535, 65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, -1, -2, -11000, -32768, -0x80000000)
SMALL = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 17, 24, 31, 32, 33, 64, 127, 128, 255)
FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 3.5, 348.0, 352.0, 1e9, 1e38, -1e38, 1e-38, float("nan"), float("inf"),
          float("-inf"))


@dataclass(frozen=True)
class Seed:
    """One valid (or deliberately refused) file: ``fmt`` groups counts, ``ext`` names the file for the reader."""

    name: str
    fmt: str
    ext: str
    data: bytes
    heavy: bool = False  # declares >= 100 Mpx: seconds per read
    must_read: bool = False  # read_image must return an array for it, with the old readers and the new ones

    @property
    def gz(self) -> bool:
        return self.ext == ".nii.gz"


# -- seed writers -----------------------------------------------------------------------------------------------
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _grey(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return _rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _disc(h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 4) ** 2


def _soft(h: int = 24, w: int = 32) -> np.ndarray:
    """A blurred disc: 0..255 with every value in between (a soft mask / probability map)."""
    yy, xx = np.mgrid[:h, :w]
    d = np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (min(h, w) / 3)
    return np.clip(255 * (1.5 - d), 0, 255).astype(np.uint8)


def _pil_bytes(im: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _palette_image(arr: np.ndarray, palette: Sequence[int]) -> Image.Image:
    im = Image.fromarray(arr.astype(np.uint8), mode="L").convert("P")
    im.putpalette(list(palette))
    im.putdata(list(arr.astype(np.uint8).ravel()))
    return im


def _dicom_bytes(arr: np.ndarray, photometric: str = "MONOCHROME2", syntax: str = "explicit",
                 pixel_data: bytes | None = None, **tags) -> bytes:
    """A single-frame DICOM with fixed UIDs (deterministic bytes); ``syntax``: explicit, implicit, deflated,
    rle or jpeg (``pixel_data`` then holds the already encoded frame)."""
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.filebase import DicomBytesIO

    ts = {"explicit": uid.ExplicitVRLittleEndian, "implicit": uid.ImplicitVRLittleEndian,
          "deflated": uid.DeflatedExplicitVRLittleEndian, "rle": uid.ExplicitVRLittleEndian,
          "jpeg": uid.JPEGBaseline8Bit}[syntax]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.issubdtype(arr.dtype, np.signedinteger) else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    if syntax == "jpeg":
        ds.PixelData = encapsulate([pixel_data])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    if syntax == "rle":
        ds.compress(uid.RLELossless, arr)
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _nifti_bytes(arr: np.ndarray, version: int = 1, gz: bool = False, slope: float | None = None) -> bytes:
    import nibabel as nib

    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(np.asarray(arr), np.eye(4))
    if slope is not None:
        img.header.set_slope_inter(slope, -10.0)
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw  # mtime=0: the same bytes every run


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_raw(width: int, height: int, bit_depth: int, colour: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _tiff_raw(width: int, height: int, compression: int, strip: bytes, bits: int = 8, samples: int = 1) -> bytes:
    """A one-strip little-endian TIFF written by hand, so that it can lie about its size."""
    photometric = 2 if samples == 3 else 1
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, compression),
               (262, 3, 1, photometric), (273, 4, 1, 0), (277, 3, 1, samples), (278, 4, 1, height),
               (279, 4, 1, len(strip))]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        value = strip_offset if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, count)
        out += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    out += struct.pack("<I", 0) + strip
    return bytes(out)


_ZERO_BLOCK = 16 << 20


def _deflate_piece(data: bytes, last: bool = False) -> bytes:
    """Raw deflate of ``data``, ending in a full flush (or the final block): the compressor starts afresh each
    time, so pieces concatenate into one valid stream and a zero block is compressed once, not once per 16 MB."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)


def _deflate_zeros(prefix: bytes, zeros: int) -> bytes:
    """Raw deflate stream of ``prefix`` + ``zeros`` zero bytes, built in ~0.1 s whatever the size."""
    block = _deflate_piece(bytes(_ZERO_BLOCK)) * (zeros // _ZERO_BLOCK)
    return _deflate_piece(prefix) + block + _deflate_piece(bytes(zeros % _ZERO_BLOCK), last=True)


def _gzip_zeros(prefix: bytes, zeros: int) -> bytes:
    """A .gz file of ``prefix`` + ``zeros`` zero bytes (the gzip frame written by hand around _deflate_zeros)."""
    crc = zlib.crc32(prefix)
    zero_block = bytes(_ZERO_BLOCK)
    for _ in range(zeros // _ZERO_BLOCK):
        crc = zlib.crc32(zero_block, crc)
    crc = zlib.crc32(bytes(zeros % _ZERO_BLOCK), crc)
    size = (len(prefix) + zeros) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + _deflate_zeros(prefix, zeros)
            + struct.pack("<II", crc, size))


def _zlib_zeros(prefix: bytes, zeros: int) -> bytes:
    """A zlib stream (PNG IDAT, TIFF deflate strip) of ``prefix`` + ``zeros`` zero bytes."""
    adler = zlib.adler32(prefix)
    zero_block = bytes(_ZERO_BLOCK)
    for _ in range(zeros // _ZERO_BLOCK):
        adler = zlib.adler32(zero_block, adler)
    adler = zlib.adler32(bytes(zeros % _ZERO_BLOCK), adler)
    return b"\x78\xda" + _deflate_zeros(prefix, zeros) + struct.pack(">I", adler)


def _deflated_dicom(rows: int, cols: int, pixel_bytes: int) -> bytes:
    """A deflated-transfer-syntax 8-bit DICOM declaring ``rows`` x ``cols`` whose PixelData is ``pixel_bytes``
    long (one 1, then zeros): ~1/1000 of that on disk, paid in full by a reader that inflates the whole data set
    before any size check."""
    plain = bytearray(_dicom_bytes(_grey(32, 32), Rows=rows, Columns=cols))
    elems = _dicom_elements(plain)
    ts = next(e for e in elems if e.tag == (0x0002, 0x0010))
    pixels = next(e for e in elems if e.tag == (0x7FE0, 0x0010))
    meta_end = next(e.start for e in elems if e.tag[0] != 0x0002)
    body = bytes(plain[meta_end:pixels.start]) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixel_bytes)
    meta = _dicom_replace(plain[:meta_end], ts, b"1.2.840.10008.1.2.1.99")
    return bytes(meta) + _deflate_zeros(body + b"\x01", pixel_bytes - 1)


def _gif_canvas(width: int, height: int) -> bytes:
    """A valid GIF whose logical screen is ``width`` x ``height`` but whose one frame is 1x1 (Pillow allocates the
    whole canvas)."""
    small = _pil_bytes(_palette_image(np.array([[1]]), [0, 0, 0, 255, 255, 255] + [0] * 762), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def _small_seeds() -> list[Seed]:
    grey, rgb, disc, soft = _grey(), _rgb(), _disc(), _soft()
    inv_ramp = [v for i in range(256) for v in (255 - i,) * 3]
    bw = [0, 0, 0, 255, 255, 255] + [0] * 762
    la = np.dstack([grey, np.where(disc, 255, 0).astype(np.uint8)])
    rgba = np.dstack([rgb, np.full(grey.shape, 255, np.uint8)])
    labels = np.zeros(grey.shape, np.uint8)
    labels[4:12, 4:12], labels[14:20, 18:28] = 1, 3
    colour_labels = np.zeros(rgb.shape, np.uint8)
    colour_labels[4:12, 4:12], colour_labels[14:20, 18:28] = (255, 0, 0), (0, 255, 0)
    mask255 = disc.astype(np.uint8) * 255
    u16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 60).astype(np.uint16)
    volume = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    label_volume = np.zeros((12, 10, 5), np.uint8)
    label_volume[2:8, 3:7, 1:4] = 1
    label_volume[8:11, 1:3, 2] = 3
    jpeg_grey = _pil_bytes(grey, "JPEG", quality=90)
    s: list[Seed] = []

    def add(name: str, fmt: str, ext: str, data: bytes, must_read: bool = False) -> None:
        s.append(Seed(name, fmt, ext, data, must_read=must_read))

    add("png_grey", "png", ".png", _pil_bytes(grey, "PNG"), True)
    add("png_rgb", "png", ".png", _pil_bytes(rgb, "PNG"), True)
    add("png_palette", "png", ".png", _pil_bytes(Image.fromarray(rgb).quantize(16), "PNG"), True)
    add("png_palette_grey", "png", ".png", _pil_bytes(_palette_image(grey, inv_ramp), "PNG"), True)
    add("png_1bit", "png", ".png", _pil_bytes(Image.fromarray(disc), "PNG"), True)
    add("png_rgba_opaque", "png", ".png", _pil_bytes(rgba, "PNG"), True)
    add("png_la", "png", ".png", _pil_bytes(Image.fromarray(la, "LA"), "PNG"))
    add("png_grey_trns", "png", ".png", _pil_bytes(Image.fromarray(grey), "PNG", transparency=0))
    add("png_16bit", "png", ".png", _pil_bytes(Image.fromarray(u16), "PNG"))
    add("mask_png", "png", ".png", _pil_bytes(mask255, "PNG"), True)
    add("mask_png_01", "png", ".png", _pil_bytes(disc.astype(np.uint8), "PNG"), True)
    add("mask_png_grey_ramp", "png", ".png", _pil_bytes(grey, "PNG"), True)
    add("mask_png_labels", "png", ".png", _pil_bytes(labels, "PNG"), True)
    add("mask_png_colour_labels", "png", ".png", _pil_bytes(colour_labels, "PNG"), True)
    add("mask_png_soft", "png", ".png", _pil_bytes(soft, "PNG"), True)
    add("mask_png_16bit", "png", ".png", _pil_bytes(Image.fromarray(disc.astype(np.uint16) * 65535), "PNG"))

    add("jpeg_rgb", "jpeg", ".jpg", _pil_bytes(rgb, "JPEG", quality=90), True)
    add("jpeg_grey", "jpeg", ".jpeg", jpeg_grey, True)
    add("jpeg_progressive", "jpeg", ".jpg", _pil_bytes(rgb, "JPEG", quality=80, progressive=True), True)
    add("jpeg_444", "jpeg", ".jpg", _pil_bytes(rgb, "JPEG", quality=95, subsampling=0), True)
    add("jpeg_cmyk", "jpeg", ".jpg", _pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"), True)
    add("mask_jpeg", "jpeg", ".jpg", _pil_bytes(np.dstack([mask255] * 3), "JPEG", quality=90), True)

    add("bmp_rgb", "bmp", ".bmp", _pil_bytes(rgb, "BMP"), True)
    add("bmp_grey", "bmp", ".bmp", _pil_bytes(grey, "BMP"), True)
    add("bmp_1bit", "bmp", ".bmp", _pil_bytes(Image.fromarray(disc), "BMP"), True)
    add("bmp_rgba_opaque", "bmp", ".bmp", _pil_bytes(rgba, "BMP"))
    add("mask_bmp", "bmp", ".bmp", _pil_bytes(mask255, "BMP"), True)

    add("tiff_grey", "tiff", ".tif", _pil_bytes(grey, "TIFF"), True)
    add("tiff_rgb_lzw", "tiff", ".tiff", _pil_bytes(rgb, "TIFF", compression="tiff_lzw"), True)
    add("tiff_deflate", "tiff", ".tif", _pil_bytes(grey, "TIFF", compression="tiff_adobe_deflate"), True)
    add("tiff_packbits", "tiff", ".tif", _pil_bytes(rgb, "TIFF", compression="packbits"), True)
    add("tiff_jpeg", "tiff", ".tif", _pil_bytes(rgb, "TIFF", compression="jpeg"), True)
    add("tiff_group4", "tiff", ".tif", _pil_bytes(Image.fromarray(disc), "TIFF", compression="group4"), True)
    tags = {270: "fuzz seed", 305: "roiprompt", 306: "2024:01:01 00:00:00", 315: "nobody", 33432: "none",
            282: 72.0, 283: 72.0, 296: 2}
    add("tiff_multitag", "tiff", ".tif", _pil_bytes(grey, "TIFF", tiffinfo=tags), True)
    add("tiff_palette", "tiff", ".tif", _pil_bytes(Image.fromarray(rgb).quantize(8), "TIFF"), True)
    add("tiff_float", "tiff", ".tif", _pil_bytes(Image.fromarray(grey.astype(np.float32) / 255), "TIFF"))
    add("tiff_16bit", "tiff", ".tif", _pil_bytes(Image.fromarray(u16), "TIFF"))
    two_pages = io.BytesIO()
    Image.fromarray(grey).save(two_pages, format="TIFF", save_all=True, append_images=[Image.fromarray(grey)])
    add("tiff_2pages", "tiff", ".tif", two_pages.getvalue())
    add("mask_tiff", "tiff", ".tif", _pil_bytes(mask255, "TIFF", compression="tiff_lzw"), True)
    add("mask_tiff_soft_float", "tiff", ".tif", _pil_bytes(Image.fromarray(soft.astype(np.float32) / 255), "TIFF"))

    add("gif_grey", "gif", ".gif", _pil_bytes(_palette_image(grey, inv_ramp), "GIF"), True)
    add("gif_rgb", "gif", ".gif", _pil_bytes(Image.fromarray(rgb).quantize(32), "GIF"), True)
    add("gif_transparency", "gif", ".gif", _pil_bytes(Image.fromarray(rgb).quantize(8), "GIF", transparency=0))
    add("mask_gif_index", "gif", ".gif", _pil_bytes(_palette_image(disc.astype(np.uint8), bw), "GIF"), True)
    two = io.BytesIO()
    Image.fromarray(rgb).quantize(8).save(two, format="GIF", save_all=True,
                                          append_images=[Image.fromarray(rgb[::-1]).quantize(8)])
    add("gif_2frames", "gif", ".gif", two.getvalue())

    add("dcm_mono2_window", "dicom", ".dcm", _dicom_bytes(u16, RescaleSlope=2, RescaleIntercept=-1024,
                                                          WindowCenter=40, WindowWidth=400), True)
    add("dcm_mono2_multiwindow", "dicom", ".dcm", _dicom_bytes(u16, RescaleSlope="1.5", RescaleIntercept="-10",
                                                               WindowCenter=[40, 300], WindowWidth=[400, 1500]),
        True)
    add("dcm_mono1", "dicom", ".dcm", _dicom_bytes(u16, "MONOCHROME1"), True)
    add("dcm_int16", "dicom", ".dcm", _dicom_bytes((u16.astype(np.int32) - 20000).astype(np.int16)), True)
    add("dcm_uint8", "dicom", ".dicom", _dicom_bytes(grey), True)
    add("dcm_rgb", "dicom", ".dcm", _dicom_bytes(rgb, "RGB"), True)
    add("dcm_noext", "dicom", "", _dicom_bytes(grey), True)  # no extension: found by its "DICM" marker
    add("dcm_implicit", "dicom", ".dcm", _dicom_bytes(u16, syntax="implicit", RescaleSlope=1, RescaleIntercept=0),
        True)
    add("dcm_rle", "dicom", ".dcm", _dicom_bytes(u16, syntax="rle"), True)
    add("dcm_jpeg", "dicom", ".dcm", _dicom_bytes(grey, syntax="jpeg", pixel_data=jpeg_grey), True)
    add("dcm_empty_window", "dicom", ".dcm", _dicom_bytes(u16, WindowCenter=None, WindowWidth=None,
                                                          RescaleSlope=None), True)
    add("mask_dcm", "dicom", ".dcm", _dicom_bytes(disc.astype(np.uint8)), True)

    add("nii_2d", "nifti", ".nii", _nifti_bytes(grey.astype(np.float32)), True)
    add("nii_3d", "nifti", ".nii", _nifti_bytes(volume, slope=0.5))
    add("nii_4d_singleton", "nifti", ".nii", _nifti_bytes(volume[..., None]))
    add("nii2_2d", "nifti", ".nii", _nifti_bytes(grey, version=2), True)
    add("nii_rgb24", "nifti", ".nii", _nifti_bytes(rgb[:, :, None, :].copy().view(
        np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])).reshape(24, 32)))
    add("mask_nii_2d", "nifti", ".nii", _nifti_bytes(disc.astype(np.uint8)), True)
    add("mask_nii_labels_3d", "nifti", ".nii", _nifti_bytes(label_volume))
    add("nii_gz_2d", "nifti_gz", ".nii.gz", _nifti_bytes(grey.astype(np.int16), gz=True), True)
    add("nii_gz_3d", "nifti_gz", ".nii.gz", _nifti_bytes(volume.astype(np.float64), gz=True))
    add("mask_nii_gz_3d", "nifti_gz", ".nii.gz", _nifti_bytes((label_volume > 0).astype(np.uint8), gz=True))
    return s


def _heavy_seeds() -> list[Seed]:
    """Files of a few KB that declare 121-134 Mpx: header-only lies (truncated data) and valid bombs whose
    zeros compress ~1000:1. One non-zero pixel each, so a min-max stretch cannot take its all-equal shortcut."""
    big, bombw = 11000, 11600  # 121 Mpx; 11600^2 = 134.6 Mpx, above Pillow's 89.5 Mpx warning, below its error
    s: list[Seed] = []

    def add(name: str, fmt: str, ext: str, data: bytes) -> None:
        s.append(Seed(name, fmt, ext, data, heavy=True))

    rgb_row = b"\x00" + b"\x00" * (3 * big)
    add("png_huge_header", "png", ".png", _png_raw(big, big, 8, 2, zlib.compress(rgb_row * 2, 9)[:-4]))
    row_bytes = 1 + (bombw + 7) // 8  # filter byte + packed bits; every row but the first is zeros
    add("png_bomb_1bit", "png", ".png", _png_raw(bombw, bombw, 1, 0, _zlib_zeros(b"\x00\x80", bombw * row_bytes - 2)))
    add("tiff_huge_header", "tiff", ".tif", _tiff_raw(big, big, 1, bytes(range(256)) * 12))
    add("tiff_bomb_deflate", "tiff", ".tif", _tiff_raw(bombw, bombw, 8, _zlib_zeros(b"\x01", bombw * bombw - 1)))
    add("gif_huge_canvas", "gif", ".gif", _gif_canvas(big, big))
    bmp = bytearray(_pil_bytes(_rgb(32, 32), "BMP"))
    struct.pack_into("<ii", bmp, 18, big, big)
    add("bmp_huge_header", "bmp", ".bmp", bytes(bmp))
    jpeg = bytearray(_pil_bytes(_rgb(), "JPEG", quality=90))
    sof = jpeg.index(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, sof + 5, big, big)
    add("jpeg_huge_header", "jpeg", ".jpg", bytes(jpeg))
    add("dcm_huge_header", "dicom", ".dcm", _dicom_bytes(_grey(), Rows=big, Columns=big))
    add("dcm_bomb_deflated", "dicom", ".dcm", _deflated_dicom(big, big, big * big))
    add("dcm_deflate_bomb_small_image", "dicom", ".dcm", _deflated_dicom(32, 32, 2300 << 20))  # 2.3 GB of pixels
    nifti = bytearray(_nifti_bytes(np.zeros((1, 1), np.uint8)))[:352]
    struct.pack_into("<3h", nifti, 40, 2, big, big)
    add("nii_gz_bomb", "nifti_gz", ".nii.gz", _gzip_zeros(bytes(nifti) + b"\x01", big * big - 1))
    header = bytearray(_nifti_bytes(np.zeros((4, 4), np.int16)))
    struct.pack_into("<8h", header, 40, 3, big, big, 1, 1, 1, 1, 1)
    add("nii_huge_header", "nifti", ".nii", bytes(header))
    return s


#: names of the heavy seeds, known without building them (test ids)
HEAVY_NAMES = ("png_huge_header", "png_bomb_1bit", "tiff_huge_header", "tiff_bomb_deflate", "gif_huge_canvas",
               "bmp_huge_header", "jpeg_huge_header", "dcm_huge_header", "dcm_bomb_deflated",
               "dcm_deflate_bomb_small_image", "nii_gz_bomb", "nii_huge_header")


@functools.cache
def _small() -> tuple[Seed, ...]:
    return tuple(_small_seeds())


@functools.cache
def _heavy() -> tuple[Seed, ...]:
    out = tuple(_heavy_seeds())
    assert tuple(s.name for s in out) == HEAVY_NAMES
    return out


def seeds(heavy: bool = False) -> dict[str, Seed]:
    """Every seed by name (built once per process, ~0.3 s); ``heavy`` adds the huge-declared-size ones (~3 s and
    ~400 MB to build, once)."""
    return {s.name: s for s in _small() + (_heavy() if heavy else ())}


# -- generic byte mutators --------------------------------------------------------------------------------------
def _pack_int(value: int, width: int, big_endian: bool) -> bytes:
    return (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big" if big_endian else "little")


def _flip(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if d:
        for k in range(1 + c % 4):  # 1-4 flipped bits close together: a damaged field rather than noise
            i = (a + 7 * k * (c >> 2)) % len(d)
            d[i] ^= 1 << ((b + k) % 8)
    return d


def _set_byte(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if d:
        d[a % len(d)] = (b, 0, 0xFF, 0x7F, 0x80)[c % 5]
    return d


def _set_int(d: bytearray, a: int, b: int, c: int) -> bytearray:
    width, big = (1, 2, 4, 8)[c % 4], bool((c >> 2) & 1)
    if len(d) >= width:
        i = a % (len(d) - width + 1)
        d[i:i + width] = _pack_int(INTS[b % len(INTS)], width, big)
    return d


def _truncate(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if not d:
        return d
    keep = a % len(d) if c % 2 else len(d) - 1 - (a % min(len(d), 64))  # anywhere, or just the last bytes
    return d[:keep]


def _insert(d: bytearray, a: int, b: int, c: int) -> bytearray:
    i = a % (len(d) + 1)
    n = 1 + c % 64
    fill = bytes(_rng(c).integers(0, 256, n, dtype=np.uint8)) if b % 2 else bytes([b]) * n
    return d[:i] + fill + d[i:]


def _duplicate(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if not d:
        return d
    i = a % len(d)
    chunk = d[i:i + 1 + c % 512]
    j = (b * (len(d) + 1)) // B_MAX
    return d[:j] + chunk + d[j:]


def _delete(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if not d:
        return d
    i = a % len(d)
    return d[:i] + d[i + 1 + c % 256:]


def _fill(d: bytearray, a: int, b: int, c: int) -> bytearray:
    if d:
        i = a % len(d)
        n = min(len(d) - i, 1 + c % 256)
        d[i:i + n] = bytes([(0, 0xFF, b)[c % 3]]) * n
    return d


GENERIC: dict[str, Callable[[bytearray, int, int, int], bytearray]] = {
    "flip": _flip, "set_byte": _set_byte, "set_int": _set_int, "truncate": _truncate, "insert": _insert,
    "duplicate": _duplicate, "delete": _delete, "fill": _fill,
}
GENERIC_OPS = tuple(GENERIC)


# -- PNG --------------------------------------------------------------------------------------------------------
def _png_chunks(d: bytes) -> list[tuple[int, bytes, bytes]] | None:
    """[(offset, type, payload)] of a PNG, or None when it no longer parses."""
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, i = [], 8
    while i + 12 <= len(d):
        (n,) = struct.unpack_from(">I", d, i)
        if i + 12 + n > len(d):
            return None
        out.append((i, bytes(d[i + 4:i + 8]), bytes(d[i + 8:i + 8 + n])))
        i += 12 + n
    return out or None


def _png_join(chunks: Iterable[tuple[bytes, bytes]]) -> bytearray:
    return bytearray(b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(t, p) for t, p in chunks))


_IHDR_FIELDS = ((0, 4), (4, 4), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1))  # width height depth colour comp filt lace
_PNG_TYPES = (b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"PLTE", b"tRNS", b"gAMA", b"sBIT", b"pHYs", b"IDAT", b"IEND",
              b"acTL", b"fcTL", b"fdAT", b"eXIf", b"cHRM", b"sRGB", b"bKGD", b"hIST", b"IHDR", b"zzZz")


def _png_ihdr(d: bytearray, a: int, b: int, c: int) -> bytearray:
    chunks = _png_chunks(d)
    if not chunks or chunks[0][1] != b"IHDR" or len(chunks[0][2]) != 13:
        return d
    off, width = _IHDR_FIELDS[a % len(_IHDR_FIELDS)]
    value = INTS[b % len(INTS)] if width == 4 else SMALL[b % len(SMALL)]
    payload = bytearray(chunks[0][2])
    payload[off:off + width] = _pack_int(value, width, True)
    if c % 4 == 0:  # keep the stale CRC sometimes: the CRC check itself is a code path
        start = chunks[0][0] + 8
        d[start:start + 13] = payload
        return d
    return _png_join([(b"IHDR", bytes(payload))] + [(t, p) for _, t, p in chunks[1:]])


def _png_chunk_op(d: bytearray, a: int, b: int, c: int) -> bytearray:
    chunks = _png_chunks(d)
    if not chunks:
        return d
    items = [(t, p) for _, t, p in chunks]
    i = a % len(items)
    action = b % 5
    if action == 0:
        items.insert(i, items[i])
    elif action == 1:
        del items[i]
    elif action == 2 and i + 1 < len(items):
        items[i], items[i + 1] = items[i + 1], items[i]
    elif action == 3:
        out = _png_join(items)
        crc_at = 8 + sum(12 + len(p) for _, p in items[:i]) + 8 + len(items[i][1])
        out[crc_at] ^= 0xFF
        return out
    elif action == 4:
        items[i] = (items[i][0], items[i][1][:c % (len(items[i][1]) + 1)])
    return _png_join(items)


@functools.lru_cache(maxsize=1)
def _text_bomb() -> bytes:
    return zlib.compress(bytes(8 << 20), 9)


def _png_insert(d: bytearray, a: int, b: int, c: int) -> bytearray:
    chunks = _png_chunks(d)
    if not chunks:
        return d
    items = [(t, p) for _, t, p in chunks]
    kind = _PNG_TYPES[b % len(_PNG_TYPES)]
    noise = bytes(_rng(c).integers(0, 256, c % 97, dtype=np.uint8))
    if kind == b"PLTE":
        payload = noise[: 3 * (len(noise) // 3)]
    elif kind == b"acTL":  # APNG: more than one frame
        payload = struct.pack(">II", 1 + c % 3, 0)
    elif kind == b"zTXt":  # a text bomb (8 MB of zeros) or a short text
        payload = b"Comment\x00\x00" + (_text_bomb() if c % 2 else zlib.compress(noise))
    elif kind in (b"iCCP", b"IDAT"):
        payload = (b"icc\x00\x00" if kind == b"iCCP" else b"") + zlib.compress(noise)
    elif kind == b"tEXt":
        payload = b"k\x00" + noise
    else:
        payload = noise
    items.insert(1 + a % len(items), (kind, payload))
    return _png_join(items)


def _png_pixels(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """Change the decompressed scanlines (filter bytes, a short or long stream) and recompress: the damage reaches
    the unfilter code instead of stopping at zlib."""
    chunks = _png_chunks(d)
    if not chunks:
        return d
    try:
        raw = bytearray(zlib.decompress(b"".join(p for _, t, p in chunks if t == b"IDAT")))
    except zlib.error:
        return d
    if not raw:
        return d
    action = c % 4
    if action == 0:
        raw[a % len(raw)] = b
    elif action == 1:
        raw[0] = 5 + b % 251  # an unknown filter type
    elif action == 2:
        raw = raw[: a % len(raw)]
    else:
        raw += bytes(1 + b)
    items, done = [], False
    for _, t, p in chunks:
        if t != b"IDAT":
            items.append((t, p))
        elif not done:
            items.append((b"IDAT", zlib.compress(bytes(raw))))
            done = True
    return _png_join(items)


# -- TIFF -------------------------------------------------------------------------------------------------------
_TIFF_TAGS = (256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339, 340,
              341, 530, 532, 34665, 65000)
_TIFF_VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 255, 65535, 11000, 11600, 0xFFFFFFFF, 0x7FFFFFFF, 100000)


def _tiff_ifd(d: bytes) -> tuple[str, int, int] | None:
    """(struct byte order, IFD offset, entry count) of the first IFD, or None."""
    if d[:4] not in (b"II*\x00", b"MM\x00*") or len(d) < 8:
        return None
    order = "<" if d[:2] == b"II" else ">"
    (off,) = struct.unpack_from(order + "I", d, 4)
    if off + 2 > len(d):
        return None
    (n,) = struct.unpack_from(order + "H", d, off)
    if off + 2 + 12 * n > len(d) or n == 0:
        return None
    return order, off, n


def _tiff_entry(d: bytearray, a: int, b: int, c: int) -> bytearray:
    ifd = _tiff_ifd(d)
    if ifd is None:
        return d
    order, off, n = ifd
    at = off + 2 + 12 * (a % n)
    field = c % 4
    if field == 0:
        struct.pack_into(order + "H", d, at, _TIFF_TAGS[b % len(_TIFF_TAGS)])
    elif field == 1:
        struct.pack_into(order + "H", d, at + 2, b % 20)  # 13..19: unknown or BigTIFF-only types
    elif field == 2:
        struct.pack_into(order + "I", d, at + 4, INTS[b % len(INTS)] & 0xFFFFFFFF)
    else:
        (typ,) = struct.unpack_from(order + "H", d, at + 2)
        value = _TIFF_VALUES[b % len(_TIFF_VALUES)]
        if typ == 3:
            struct.pack_into(order + "H", d, at + 8, value & 0xFFFF)
        else:
            struct.pack_into(order + "I", d, at + 8, value)
    return d


def _tiff_set(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """Give a key tag (size, bits, compression, strips...) a hostile value, appending the tag when it is absent:
    the IFD is rewritten at the end of the file, so every offset it points to stays valid."""
    ifd = _tiff_ifd(d)
    if ifd is None:
        return d
    order, off, n = ifd
    tag = _TIFF_TAGS[a % len(_TIFF_TAGS)]
    value = _TIFF_VALUES[b % len(_TIFF_VALUES)]
    entries = [bytearray(d[off + 2 + 12 * i: off + 14 + 12 * i]) for i in range(n)]
    (next_ifd,) = struct.unpack_from(order + "I", d, off + 2 + 12 * n) if off + 6 + 12 * n <= len(d) else (0,)
    for e in entries:
        (t, typ) = struct.unpack_from(order + "HH", e)
        if t == tag:
            struct.pack_into(order + "I", e, 4, 1)
            if typ == 3 and value <= 0xFFFF and c % 2:
                struct.pack_into(order + "HH", e, 8, value, 0)
            else:
                struct.pack_into(order + "HI", e, 2, 4, value)
            break
    else:
        entries.append(bytearray(struct.pack(order + "HHII", tag, 4, 1, value)))
        entries.sort(key=lambda e: struct.unpack_from(order + "H", e)[0])
    new_off = len(d) + len(d) % 2
    out = d + b"\x00" * (len(d) % 2) + struct.pack(order + "H", len(entries)) + b"".join(entries)
    out += struct.pack(order + "I", next_ifd)
    struct.pack_into(order + "I", out, 4, new_off)
    return bytearray(out)


def _tiff_next(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """Point the next-IFD link at itself, the first IFD, past the end or anywhere: loops and wild pages."""
    ifd = _tiff_ifd(d)
    if ifd is None:
        return d
    order, off, n = ifd
    at = off + 2 + 12 * n
    if at + 4 > len(d):
        return d
    target = (off, 8, len(d) + 100, a % len(d), 0xFFFFFFFF, at)[b % 6]
    struct.pack_into(order + "I", d, at, target)
    return d


def _tiff_count(d: bytearray, a: int, b: int, c: int) -> bytearray:
    ifd = _tiff_ifd(d)
    if ifd is None:
        return d
    order, off, n = ifd
    struct.pack_into(order + "H", d, off, (0, 1, n - 1, n + 1, 65535, a)[b % 6] & 0xFFFF)
    return d


# -- BMP, GIF, JPEG ---------------------------------------------------------------------------------------------
_BMP_FIELDS = ((2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4), (46, 4), (50, 4))


def _bmp_field(d: bytearray, a: int, b: int, c: int) -> bytearray:
    off, width = _BMP_FIELDS[a % len(_BMP_FIELDS)]
    if len(d) >= off + width:
        value = INTS[b % len(INTS)] if c % 2 else SMALL[b % len(SMALL)]
        d[off:off + width] = _pack_int(value, width, False)
    return d


def _gif_blocks(d: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """(offset of the first image descriptor, [(start, end)] of every block after the header), or None."""
    if d[:3] != b"GIF" or len(d) < 13:
        return None
    i = 13 + (3 * (2 << (d[10] & 7)) if d[10] & 0x80 else 0)
    blocks, first_image = [], -1
    while i < len(d):
        start = i
        if d[i] == 0x3B:
            blocks.append((i, i + 1))
            break
        if d[i] == 0x21:
            i += 2
        elif d[i] == 0x2C:
            if i + 10 > len(d):
                return None
            first_image = i if first_image < 0 else first_image
            flags = d[i + 9]
            i += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
        else:
            return None
        while i < len(d) and d[i]:  # data sub-blocks
            i += d[i] + 1
        i += 1
        if i > len(d):
            return None
        blocks.append((start, i))
    return (first_image, blocks) if first_image >= 0 else None


def _gif_field(d: bytearray, a: int, b: int, c: int) -> bytearray:
    parsed = _gif_blocks(d)
    fields = [(6, 2), (8, 2), (10, 1), (11, 1)]
    if parsed:
        img = parsed[0]
        fields += [(img + 1, 2), (img + 3, 2), (img + 5, 2), (img + 7, 2), (img + 9, 1)]
        flags = d[img + 9]
        lzw_at = img + 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
        if lzw_at < len(d):
            fields.append((lzw_at, 1))
    off, width = fields[a % len(fields)]
    value = INTS[b % len(INTS)] if c % 2 else SMALL[b % len(SMALL)]
    if off + width <= len(d):
        d[off:off + width] = _pack_int(value, width, False)
    return d


def _gif_block(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """Drop or repeat a whole block (a repeated image block makes a second frame)."""
    parsed = _gif_blocks(d)
    if not parsed:
        return d
    start, end = parsed[1][a % len(parsed[1])]
    return d[:start] + d[end:] if b % 2 else d[:end] + d[start:end] + d[end:]


def _jpeg_segments(d: bytes) -> list[tuple[int, int, int]]:
    """[(marker, start, end)] of the marker segments before the entropy-coded data (SOS included)."""
    out, i = [], 2
    if d[:2] != b"\xff\xd8":
        return out
    while i + 4 <= len(d) and d[i] == 0xFF:
        marker = d[i + 1]
        (n,) = struct.unpack_from(">H", d, i + 2)
        out.append((marker, i, min(len(d), i + 2 + n)))
        if marker == 0xDA:
            break
        i += 2 + n
    return out


def _jpeg_sof(d: bytearray, a: int, b: int, c: int) -> bytearray:
    sof = [s for s in _jpeg_segments(d) if s[0] in (0xC0, 0xC1, 0xC2, 0xC3)]
    if not sof:
        return d
    p = sof[0][1] + 4  # payload: precision(1) height(2) width(2) ncomp(1) then 3 bytes per component
    fields = [(p, 1), (p + 1, 2), (p + 3, 2), (p + 5, 1)] + [(p + 6 + 3 * k + j, 1) for k in range(3) for j in range(3)]
    off, width = fields[a % len(fields)]
    value = INTS[b % len(INTS)] if width == 2 and c % 2 else SMALL[b % len(SMALL)]
    if off + width <= len(d):
        d[off:off + width] = _pack_int(value, width, True)
    return d


def _jpeg_segment(d: bytearray, a: int, b: int, c: int) -> bytearray:
    segs = _jpeg_segments(d)
    if not segs:
        return d
    marker, start, end = segs[a % len(segs)]
    action = b % 4
    if action == 0:
        return d[:start] + d[end:]
    if action == 1:
        return d[:end] + d[start:end] + d[end:]
    if action == 2:  # the length field lies
        struct.pack_into(">H", d, start + 2, (0, 1, 2, 0xFFFF, end - start, c)[c % 6] & 0xFFFF)
        return d
    d[start + 1] = (0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCF, 0xC4, 0xDB, 0xDD, 0xE1, 0xFE, 0x01)[c % 12]  # another kind
    return d


# -- DICOM ------------------------------------------------------------------------------------------------------
_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"OV", b"UC", b"UR", b"SV", b"UV"}
_KEY_TAGS = {  # keyword -> (group, element, VR)
    "TransferSyntaxUID": (0x0002, 0x0010, b"UI"), "NumberOfFrames": (0x0028, 0x0008, b"IS"),
    "SamplesPerPixel": (0x0028, 0x0002, b"US"), "PhotometricInterpretation": (0x0028, 0x0004, b"CS"),
    "PlanarConfiguration": (0x0028, 0x0006, b"US"), "Rows": (0x0028, 0x0010, b"US"),
    "Columns": (0x0028, 0x0011, b"US"), "BitsAllocated": (0x0028, 0x0100, b"US"),
    "BitsStored": (0x0028, 0x0101, b"US"), "HighBit": (0x0028, 0x0102, b"US"),
    "PixelRepresentation": (0x0028, 0x0103, b"US"), "WindowCenter": (0x0028, 0x1050, b"DS"),
    "WindowWidth": (0x0028, 0x1051, b"DS"), "RescaleIntercept": (0x0028, 0x1052, b"DS"),
    "RescaleSlope": (0x0028, 0x1053, b"DS"), "PixelData": (0x7FE0, 0x0010, b"OW"),
}
_KEYS = tuple(_KEY_TAGS)
_TEXT_VALUES = (b"", b" ", b"abc", b"1e400", b"-1e400", b"nan", b"inf", b"-inf", b"0", b"-0", b"1", b"-1", b"0.0001",
                b"40\\400", b"\\", b"1,5", b"1e-320", b"99999999999999999999", b"MONOCHROME1", b"MONOCHROME2",
                b"RGB", b"PALETTE COLOR", b"YBR_FULL_422", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.5",
                b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.4.90", b"\x00\x00", b"\xff\xfe")
_US_VALUES = (0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 24, 32, 33, 64, 255, 0x7FFF, 0xFFFF, 11000, 11600)
_VRS = (b"ZZ", b"\x00\x00", b"UN", b"OB", b"SQ", b"DS", b"US", b"xx", b"OW", b"UT", b"SS", b"FD", b"AT", b"UI")


@dataclass
class _Elem:
    start: int  # tag
    explicit: bool
    vr: bytes
    len_at: int
    len_width: int
    value_at: int
    length: int
    tag: tuple[int, int]


def _dicom_elements(d: bytes) -> list[_Elem]:
    """The top-level elements of an uncompressed little-endian DICOM file (explicit or implicit VR), in order; it
    stops at the first undefined length (a sequence or encapsulated pixel data) or anything that does not parse."""
    if d[128:132] != b"DICM":
        return []
    out, i = [], 132
    while i + 8 <= len(d):
        group, elem = struct.unpack_from("<HH", d, i)
        vr = bytes(d[i + 4:i + 6])
        explicit = vr.isalpha() and vr.isupper()
        if explicit and vr in _LONG_VRS:
            if i + 12 > len(d):
                break
            len_at, width, value_at = i + 8, 4, i + 12
        elif explicit:
            len_at, width, value_at = i + 6, 2, i + 8
        else:
            len_at, width, value_at = i + 4, 4, i + 8
        (length,) = struct.unpack_from("<I" if width == 4 else "<H", d, len_at)
        out.append(_Elem(i, explicit, vr if explicit else b"", len_at, width, value_at, length, (group, elem)))
        if length == 0xFFFFFFFF or value_at + length > len(d):
            break
        i = value_at + length
    return out


def _dicom_replace(d: bytearray, e: _Elem, value: bytes) -> bytearray:
    value += b" " * (len(value) % 2)  # DICOM values have an even length
    if e.length == 0xFFFFFFFF or e.len_width == 2 and len(value) > 0xFFFF:
        return d
    out = d[:e.value_at] + value + d[e.value_at + e.length:]
    struct.pack_into("<I" if e.len_width == 4 else "<H", out, e.len_at, len(value))
    if e.tag[0] == 0x0002 and e.tag[1] != 0:  # keep the meta group length right: the damage goes past the header
        elems = _dicom_elements(out)
        if elems and elems[0].tag == (0x0002, 0x0000):
            end = max((x.value_at + x.length for x in elems if x.tag[0] == 0x0002), default=0)
            if 0 < end - (elems[0].value_at + 4) <= 0xFFFFFFFF:
                struct.pack_into("<I", out, elems[0].value_at, end - (elems[0].value_at + 4))
    return out


def _dicom_value(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """A keyword's value becomes text of any kind (empty, 'abc', '1e400', NaN, a multi-value, a wrong UID...),
    or a binary integer for US elements; an absent keyword is inserted in tag order."""
    elems = _dicom_elements(d)
    if not elems:
        return d
    key = _KEYS[a % len(_KEYS)]
    group, elem, vr = _KEY_TAGS[key]
    if vr == b"US" and c % 3:
        value = struct.pack("<H", _US_VALUES[b % len(_US_VALUES)])
    elif key == "PixelData":
        value = bytes(d[-1 - b % 64:])  # too short, or odd
    else:
        value = _TEXT_VALUES[b % len(_TEXT_VALUES)]
    for e in elems:
        if e.tag == (group, elem):
            return _dicom_replace(d, e, value)
    after = [e for e in elems if e.tag > (group, elem)]
    if not after or group == 0x0002:
        return d
    at = after[0].start
    explicit = after[0].explicit
    value += b" " * (len(value) % 2)
    header = struct.pack("<HH", group, elem)
    header += vr + struct.pack("<H", len(value)) if explicit else struct.pack("<I", len(value))
    return d[:at] + header + value + d[at:]


def _dicom_any(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """Any element: its value replaced by text, emptied, or cut to half (an odd-length binary value)."""
    elems = _dicom_elements(d)
    if not elems:
        return d
    e = elems[a % len(elems)]
    value = _TEXT_VALUES[b % len(_TEXT_VALUES)] if c % 3 == 0 else b"" if c % 3 == 1 else \
        bytes(d[e.value_at:e.value_at + e.length // 2])
    return _dicom_replace(d, e, value)


def _dicom_vr(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """An unknown or wrong VR: the parser reads the length with the wrong width from there on."""
    elems = [e for e in _dicom_elements(d) if e.explicit]
    if elems:
        e = elems[a % len(elems)]
        d[e.start + 4:e.start + 6] = _VRS[b % len(_VRS)]
    return d


def _dicom_length(d: bytearray, a: int, b: int, c: int) -> bytearray:
    elems = _dicom_elements(d)
    if elems:
        e = elems[a % len(elems)]
        value = (0, 1, 3, e.length + 1, e.length + 2, e.length - 1 if e.length else 0, 0xFFFF, 0xFFFFFFFF,
                 0x7FFFFFFF, len(d))[b % 10]
        d[e.len_at:e.len_at + e.len_width] = _pack_int(value, e.len_width, False)
    return d


def _dicom_drop(d: bytearray, a: int, b: int, c: int) -> bytearray:
    elems = _dicom_elements(d)
    if not elems:
        return d
    want = _KEY_TAGS[_KEYS[a % len(_KEYS)]][:2]
    for e in elems:
        if e.tag == want and e.length != 0xFFFFFFFF:
            return d[:e.start] + d[e.value_at + e.length:]
    return d


# -- NIfTI ------------------------------------------------------------------------------------------------------
#: NIfTI-1 header fields: (offset, struct code)
_NIFTI_FIELDS = ((0, "i"), (39, "B"), (40, "h"), (42, "h"), (44, "h"), (46, "h"), (48, "h"), (56, "h"),
                 (68, "h"), (70, "h"), (72, "h"), (76, "f"), (80, "f"), (84, "f"), (108, "f"), (112, "f"),
                 (116, "f"), (120, "h"), (123, "B"), (124, "f"), (128, "f"), (252, "h"), (254, "h"), (344, "4s"))
_NIFTI_INTS = (0, 1, -1, 2, 3, 4, 5, 7, 8, 2, 4, 16, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304,
               11000, 32767, -32768, 348, 540)
_MAGICS = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"xxxx", b"\x00\x00\x00\x00")


def _nifti_field(d: bytearray, a: int, b: int, c: int) -> bytearray:
    """dim / datatype / bitpix / pixdim / vox_offset / scl_slope / magic... of a NIfTI-1 header."""
    if len(d) < 348:
        return d
    off, code = _NIFTI_FIELDS[a % len(_NIFTI_FIELDS)]
    order = "<" if struct.unpack_from("<i", d, 0)[0] == 348 else ">"
    if code == "f":
        struct.pack_into(order + "f", d, off, FLOATS[b % len(FLOATS)])
    elif code == "4s":
        d[off:off + 4] = _MAGICS[b % len(_MAGICS)]
    else:
        value = _NIFTI_INTS[b % len(_NIFTI_INTS)]
        size = struct.calcsize(code)
        d[off:off + size] = _pack_int(value, size, order == ">")
    return d


FORMAT_OPS: dict[str, dict[str, Callable[[bytearray, int, int, int], bytearray]]] = {
    "png": {"png_ihdr": _png_ihdr, "png_chunk": _png_chunk_op, "png_insert": _png_insert,
            "png_pixels": _png_pixels},
    "jpeg": {"jpeg_sof": _jpeg_sof, "jpeg_segment": _jpeg_segment},
    "bmp": {"bmp_field": _bmp_field},
    "tiff": {"tiff_entry": _tiff_entry, "tiff_set": _tiff_set, "tiff_next": _tiff_next, "tiff_count": _tiff_count},
    "gif": {"gif_field": _gif_field, "gif_block": _gif_block},
    "dicom": {"dicom_value": _dicom_value, "dicom_any": _dicom_any, "dicom_vr": _dicom_vr,
              "dicom_length": _dicom_length, "dicom_drop": _dicom_drop},
    "nifti": {"nifti_field": _nifti_field},
    # raw_* ops act on the compressed bytes of a .nii.gz (see mutate)
    "nifti_gz": {"nifti_field": _nifti_field, "raw_truncate": _truncate, "raw_flip": _flip},
}
_ALL_OPS = {**GENERIC, **{k: v for ops in FORMAT_OPS.values() for k, v in ops.items()}}


def format_ops(fmt: str) -> tuple[str, ...]:
    """The structured (format-aware) op names for ``fmt``."""
    return tuple(FORMAT_OPS[fmt])


def generic_ops(fmt: str) -> tuple[str, ...]:
    """The format-blind op names for ``fmt`` (for .nii.gz: on the NIfTI inside, plus two on the gzip bytes)."""
    return GENERIC_OPS + (("raw_truncate", "raw_flip") if fmt == "nifti_gz" else ())


def mutate(seed: Seed, ops: Sequence[Op]) -> bytes:
    """``seed``'s bytes after ``ops`` in order. For a ``.nii.gz`` seed every op but ``raw_*`` acts on the
    decompressed NIfTI, which is then recompressed (so the damage reaches nibabel, not only gzip)."""
    inner = [op for op in ops if not op[0].startswith("raw_")]
    outer = [op for op in ops if op[0].startswith("raw_")]
    data = bytearray(gzip.decompress(seed.data) if seed.gz else seed.data)
    for name, a, b, c in inner:
        data = _ALL_OPS[name](data, a, b, c)
    if seed.gz:
        data = bytearray(gzip.compress(bytes(data), compresslevel=1, mtime=0))
        for name, a, b, c in outer:
            data = _ALL_OPS[name.removeprefix("raw_")](data, a, b, c)
    return bytes(data)


def random_ops(rng: np.random.Generator, seed: Seed, max_ops: int = 3, structured: float = 0.5) -> list[Op]:
    """1..max_ops ops drawn with ``rng``: each a format-aware op with probability ``structured``, else generic."""
    names_structured, names_generic = format_ops(seed.fmt), generic_ops(seed.fmt)
    ops = []
    for _ in range(int(rng.integers(1, max_ops + 1))):
        pool = names_structured if rng.random() < structured else names_generic
        ops.append((str(pool[int(rng.integers(len(pool)))]), int(rng.integers(A_MAX)), int(rng.integers(B_MAX)),
                    int(rng.integers(C_MAX))))
    return ops


# -- mask-like rasters ------------------------------------------------------------------------------------------
MASK_KINDS = ("binary_255", "binary_01", "binary_rgb", "inverted", "empty", "full", "single_pixel", "grey_ramp",
              "soft", "labels_low", "colour_labels", "binary_16bit", "labels_16bit", "soft_float", "nan_float")
MASK_EXTS = (".png", ".bmp", ".tif", ".gif", ".jpg", ".dcm", ".nii", ".nii.gz")


def _mask_array(kind: str, h: int, w: int, seed: int) -> np.ndarray:
    rng = _rng(seed)
    fg = rng.random((h, w)) < 0.3
    if kind == "binary_255":
        return fg.astype(np.uint8) * 255
    if kind == "binary_01":
        return fg.astype(np.uint8)
    if kind == "binary_rgb":
        return np.dstack([fg.astype(np.uint8) * 255] * 3)
    if kind == "inverted":
        return (~fg).astype(np.uint8) * 255
    if kind == "empty":
        return np.zeros((h, w), np.uint8)
    if kind == "full":
        return np.full((h, w), 255, np.uint8)
    if kind == "single_pixel":
        out = np.zeros((h, w), np.uint8)
        out[int(rng.integers(h)), int(rng.integers(w))] = 255
        return out
    if kind == "grey_ramp":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == "soft":
        return _soft(h, w)
    if kind == "labels_low":
        return rng.integers(0, 5, (h, w), dtype=np.uint8)
    if kind == "colour_labels":
        colours = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], np.uint8)
        return colours[rng.integers(0, 5, (h, w))]
    if kind == "binary_16bit":
        return fg.astype(np.uint16) * 65535
    if kind == "labels_16bit":
        return rng.integers(0, 4, (h, w)).astype(np.uint16) * 1000
    if kind == "soft_float":
        return rng.random((h, w)).astype(np.float32)
    out = fg.astype(np.float32)  # nan_float
    out[0, 0] = np.nan
    return out


def mask_like_file(kind: str, ext: str, h: int, w: int, seed: int = 0) -> bytes:
    """A mask-like raster of ``kind`` (see MASK_KINDS) as the bytes of an ``ext`` file; a dtype the format cannot
    store is converted to the nearest one it can (float -> uint8 0..255 in PNG, colour -> grey in DICOM...)."""
    arr = _mask_array(kind, h, w, seed)
    if ext in (".nii", ".nii.gz"):
        return _nifti_bytes(arr if arr.ndim == 2 else arr.mean(axis=2).astype(np.uint8), gz=ext == ".nii.gz")
    if np.issubdtype(arr.dtype, np.floating):
        if ext == ".tif":
            return _pil_bytes(Image.fromarray(arr, "F"), "TIFF")
        arr = np.nan_to_num(arr * 255).astype(np.uint8)
    if ext == ".dcm":
        return _dicom_bytes(arr if arr.ndim == 2 else arr[..., 0])
    if arr.dtype == np.uint16 and ext not in (".png", ".tif"):
        arr = (arr >> 8).astype(np.uint8)
    fmt = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".gif": "GIF", ".jpg": "JPEG"}[ext]
    return _pil_bytes(arr, fmt)
