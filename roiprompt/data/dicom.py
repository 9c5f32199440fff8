"""Single-frame DICOM pixels: stored values for masks, display values (modality LUT, window, MONOCHROME1) for images.

Header values are read defensively: a rescale or window stored as text, empty, or under an unknown VR is either
ignored (empty) or refused with an InputError that names the file and the element, never a bare ValueError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, shown

__all__ = ["read_dicom"]


def _number(ds: Any, keyword: str, default: float | None, path: Path) -> float | None:
    """The first value of a numeric DICOM element; ``default`` when absent or empty."""
    element = ds.get(keyword)
    if element is None:
        return default
    value = getattr(element, "value", element)
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return default
    if isinstance(value, (bytes, bytearray)):  # an unknown VR comes back as raw bytes
        value = value.decode("latin-1").strip("\0 ")
    try:
        first = value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value
        number = float(str(first).split("\\")[0])
    except (TypeError, ValueError, IndexError) as err:
        raise InputError(f"{shown(path)}: DICOM {keyword} is {value!r}, not a number") from err
    if not np.isfinite(number):
        raise InputError(f"{shown(path)}: DICOM {keyword} is {number}, not a finite number")
    return number


def minmax_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """Stretch any real array to 0..255 uint8 (constant -> 0), in float32 to bound memory on large images."""
    values = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{shown(path)}: contains {int(bad.sum())} NaN or infinite value(s)")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    values = values - lo  # a new array: the caller's is untouched; the rest happens in place
    values *= 255.0 / (hi - lo)
    np.round(values, out=values)
    return values.astype(np.uint8)


def _check_deflated_size(path: Path, max_pixels: int) -> None:
    """Refuse a deflated DICOM whose data set inflates past what ``max_pixels`` can need, before pydicom inflates
    it whole in memory (a 2 MB file can hold gigabytes): the stream is inflated in chunks and only counted."""
    import zlib

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise InputError(f"{shown(path)}: deflated DICOM without a file meta group length; re-save it uncompressed")
    cap = 4 * max_pixels + (64 << 20)  # 16-bit RGB pixels at the limit plus a generous header
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as f:
        f.seek(128 + 4 + 12 + int(group_length))  # preamble, "DICM", the group length element, the meta group
        while chunk := f.read(1 << 20):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 24))
                if total > cap:
                    raise InputError(f"{shown(path)}: deflated DICOM inflates to more than {cap >> 20} MB, more "
                                     f"than an image under the pixel limit ({max_pixels / 1e6:.0f} Mpx) needs")
                chunk = inflater.unconsumed_tail


def read_dicom(path: str | os.PathLike, raw: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Pixels of a single-frame DICOM.

    Args:
        path: DICOM file.
        raw: return the stored values (for masks) instead of display values.
        max_pixels: refuse an image with more pixels (checked on Rows x Columns, before decoding).

    Returns:
        ``raw``: the stored HxW (or HxWx3) array. Otherwise HxW or HxWx3 uint8: the rescale slope/intercept,
        then the first window (centre/width) when present, else a min-max stretch; MONOCHROME1 inverted.
    """
    import pydicom

    path = Path(path)
    if max_pixels is not None:
        _check_deflated_size(path, max_pixels)
    ds = pydicom.dcmread(path)
    frames = int(_number(ds, "NumberOfFrames", 1, path) or 1)
    if frames > 1:
        raise InputError(f"{shown(path)}: DICOM has {frames} frames; roiprompt reads single-frame images: export "
                         "one frame")
    rows, cols = int(_number(ds, "Rows", 0, path) or 0), int(_number(ds, "Columns", 0, path) or 0)
    if max_pixels is not None and rows * cols > max_pixels:
        raise InputError(f"{shown(path)}: {cols}x{rows} = {rows * cols / 1e6:.0f} Mpx is over the limit of "
                         f"{max_pixels / 1e6:.0f} Mpx (ROIPROMPT_MAX_PIXELS raises it)")
    pixels = ds.pixel_array
    if raw:
        return pixels
    if pixels.ndim == 3:  # colour (pydicom converts YBR to RGB): keep 8-bit as is, rescale anything else
        return pixels.astype(np.uint8) if pixels.dtype == np.uint8 else minmax_uint8(pixels, path)
    slope = _number(ds, "RescaleSlope", 1.0, path)
    intercept = _number(ds, "RescaleIntercept", 0.0, path)
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= slope  # modality LUT: stored values -> HU / real units
    if intercept != 0.0:
        values += intercept
    centre = _number(ds, "WindowCenter", None, path)
    width = _number(ds, "WindowWidth", None, path)
    if centre is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2 linear VOI function, mapped to 0..255, in place
        values -= centre - 0.5
        values /= width - 1 if width > 1 else 1
        values += 0.5
        values *= 255.0
        np.clip(values, 0, 255, out=values)
        np.round(values, out=values)
        out = values.astype(np.uint8)
    else:
        out = minmax_uint8(values, path)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        np.subtract(255, out, out=out)  # low values are bright: flip so that high = bright as everywhere else
    return out
