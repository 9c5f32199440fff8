"""Reading images and masks from disk (PNG, JPEG, BMP, TIFF, GIF, DICOM, NIfTI) and writing masks.

The error contract: every reader returns what :mod:`roiprompt.data.validate` accepts (images HxW or HxWx3
uint8, masks HxW bool) or raises :class:`~roiprompt.errors.InputError` naming the file, whatever went wrong:
a missing or unreadable file (permissions), an unsupported extension, corrupt or truncated data, odd header
values, a 16-bit or float raster, RGBA, too many pixels, even a decoder bug. Nothing else escapes a reader.

Size: images over :func:`max_pixels_limit` (8192 x 8192 = 67 Mpx unless ``ROIPROMPT_MAX_PIXELS`` says otherwise) are refused from
their header, before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from PIL import Image

from ..errors import InputError, shown
from ..files import atomic_path
from .dicom import minmax_uint8, read_dicom
from .masks import Label, binarize, split_labels
from .nifti import read_nifti_slice, write_mask_nifti
from .validate import check_image, check_mask

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "max_pixels_limit", "read_image", "read_label_map", "read_mask",
           "split_extension", "write_mask_nifti", "write_mask_png"]

PIL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
DICOM_EXTENSIONS = (".dcm", ".dicom")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
IMAGE_EXTENSIONS = PIL_EXTENSIONS + DICOM_EXTENSIONS + NIFTI_EXTENSIONS
_LOSSY = (".jpg", ".jpeg")
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def split_extension(path: str | os.PathLike) -> tuple[str, str]:
    """``("case_01", ".nii.gz")`` for ``.../case_01.nii.gz``: the stem and the lower-cased extension."""
    name = Path(path).name
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")], ".nii.gz"
    suffix = Path(name).suffix
    return name[: len(name) - len(suffix)], suffix.lower()


#: Default pixel limit: 8192 x 8192 (67 Mpx); ``ROIPROMPT_MAX_PIXELS`` overrides it.
DEFAULT_MAX_PIXELS = 8192 * 8192


def max_pixels_limit(value: int | None = None) -> int:
    """The pixel limit in force: ``value`` if given, else ``$ROIPROMPT_MAX_PIXELS``, else 8192 x 8192."""
    if value is not None:
        return int(value)
    env = os.environ.get("ROIPROMPT_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(env))
    except ValueError:
        raise InputError(f"ROIPROMPT_MAX_PIXELS={env!r}: give a number of pixels, e.g. 67108864") from None
    if limit < 1:
        raise InputError(f"ROIPROMPT_MAX_PIXELS={env!r}: must be >= 1")
    return limit


def _check_size(path: Path, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise InputError(f"{shown(path)}: {width}x{height} = {width * height / 1e6:.0f} Mpx is over the limit of "
                         f"{limit / 1e6:.0f} Mpx; downsample it, or raise the limit with ROIPROMPT_MAX_PIXELS "
                         "(memory grows with the pixel count, see the README)")


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn every failure while reading ``path`` into an InputError naming it: the reader error contract."""
    try:
        yield
    except InputError:
        raise
    except PermissionError as err:
        raise InputError(f"{shown(path)}: permission denied ({err.strerror})") from err
    except MemoryError as err:
        raise InputError(f"{shown(path)}: not enough memory to decode this {what}") from err
    except RecursionError as err:
        raise InputError(f"{shown(path)}: cannot read {what} (its structure nests too deeply)") from err
    except Exception as err:  # PIL, pydicom, nibabel, zlib, numpy and OS errors of every type
        raise InputError(f"{shown(path)}: cannot read {what} ({type(err).__name__}: {err})") from err


def _kind(path: Path) -> str:
    """'pil', 'dicom' or 'nifti' for an existing file, or raise InputError for a missing or unsupported one."""
    if not path.exists():
        raise InputError(f"{shown(path)}: file not found")
    if not path.is_file():
        raise InputError(f"{shown(path)}: not a file")
    ext = split_extension(path)[1]
    if ext in PIL_EXTENSIONS:
        return "pil"
    if ext in DICOM_EXTENSIONS:
        return "dicom"
    if ext in NIFTI_EXTENSIONS:
        return "nifti"
    with open(path, "rb") as f:  # DICOM files often come without an extension: look for the "DICM" magic
        if f.read(132)[128:132] == b"DICM":
            return "dicom"
    raise InputError(f"{shown(path)}: unsupported file type {ext or '(no extension)'!r}; supported: "
                     f"{', '.join(IMAGE_EXTENSIONS)} (and DICOM files without extension)")


def _open_pil(path: Path, limit: int) -> Image.Image:
    """Open, check the size from the header, then fully decode one frame (a truncated file fails here)."""
    with warnings.catch_warnings():  # Pillow's own bomb warning: the limit below is the one that applies
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as err:  # over twice Pillow's own limit (179 Mpx): ours is lower
            raise InputError(f"{shown(path)}: over the pixel limit ({err})") from err
    with im:
        _check_size(path, *im.size, limit)
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise InputError(f"{shown(path)}: has {frames} frames/pages; roiprompt reads 2-D images: save one "
                             "frame per file")
        im.load()
        return im


def _drop_opaque_alpha(im: Image.Image, path: Path) -> Image.Image:
    """LA/RGBA with every pixel opaque -> L/RGB; with real transparency -> InputError (what would it mean?)."""
    alpha = np.asarray(im.getchannel("A"))
    if (alpha == 255).all():
        return im.convert("L" if im.mode == "LA" else "RGB")
    raise InputError(f"{shown(path)}: image has an alpha channel ({im.mode}) with {int((alpha < 255).sum())} "
                     "transparent pixel(s); drop the alpha and convert to RGB (PIL: Image.open(p).convert('RGB')) "
                     "or grey ('L')")


def _pil_array(im: Image.Image, path: Path) -> np.ndarray:
    """Pixels of a decoded Pillow image as HxW or HxWx3 uint8 (grey palettes come back as HxW)."""
    mode = im.mode
    if mode in _16BIT_MODES:
        bits = 32 if mode == "I" else 16
        raise InputError(f"{shown(path)}: {bits}-bit image (PIL mode {mode!r}); roiprompt expects 8-bit images: "
                         "convert it to 8-bit first (window or min-max to 0-255), or give it as DICOM/NIfTI, which "
                         "roiprompt rescales to 8-bit itself")
    if mode == "F":
        raise InputError(f"{shown(path)}: floating-point image (PIL mode 'F'); roiprompt expects 8-bit images: "
                         "rescale to 0-255 and save as uint8, or give it as NIfTI, which roiprompt rescales itself")
    palette = mode in ("P", "PA")
    if mode == "1":
        im = im.convert("L")
    elif palette:
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA"):
        im = _drop_opaque_alpha(im, path)
    if im.mode not in ("L", "RGB"):
        raise InputError(f"{shown(path)}: unsupported PIL image mode {im.mode!r}; save it as 8-bit grey (L) or RGB")
    arr = np.asarray(im)
    if palette and arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        arr = arr[..., 0]  # a grey palette (e.g. JSRT's inverted ramp) is a grey image
    return arr


def read_image(path: str | os.PathLike, slice: int | None = None, axis: int | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """Read one 2-D image as HxW (grey) or HxWx3 (RGB) uint8 at its original resolution.

    - PNG, JPEG, BMP, TIFF, GIF (Pillow, fully decoded so a truncated file fails): 8-bit grey and RGB as stored;
      1-bit and palette images become grey (or RGB for a colour palette); an alpha channel that is fully opaque
      is dropped. 16-bit, 32-bit integer and float rasters are refused (no silent rescale).
    - DICOM (pydicom, single frame): the rescale slope/intercept is applied, then the first window
      (centre/width) when the file has one, else a min-max stretch, to uint8; MONOCHROME1 images are inverted so
      that bright means high attenuation as in MONOCHROME2. Files without extension are recognised by the
      "DICM" marker.
    - NIfTI ``.nii`` / ``.nii.gz`` (nibabel): one slice, in the orientation viewers show
      (:mod:`roiprompt.data.nifti`), min-max stretched to uint8. A 3-D volume needs ``slice``; a 2-D image does not.

    Args:
        path: image file.
        slice: NIfTI only: index of the slice along ``axis``; required for a 3-D volume.
        axis: NIfTI only: 0 sagittal, 1 coronal, 2 axial (the default) of the RAS-reoriented volume.
        max_pixels: pixel limit (default :func:`max_pixels_limit`), checked before decoding.

    Returns:
        HxW or HxWx3 uint8 array.

    Raises:
        InputError: always, whatever the failure (see the module docstring); the message names the file.

    Example:
        >>> image = read_image("shared/data/busbra/BUSBRA/Images/bus_0001-l.png")  # (256, 199) uint8
    """
    path = Path(path)
    limit = max_pixels_limit(max_pixels)
    kind = _kind(path)
    with _reading(path, {"pil": "image", "dicom": "DICOM", "nifti": "NIfTI"}[kind]):
        if kind == "pil":
            arr = _pil_array(_open_pil(path, limit), path)
        elif kind == "dicom":
            arr = read_dicom(path, max_pixels=limit)
        else:
            arr = minmax_uint8(read_nifti_slice(path, slice, axis, max_pixels=limit), path)
        return check_image(arr, shown(path))


def _pil_mask_values(im: Image.Image, path: Path) -> np.ndarray:
    """Stored values of a decoded Pillow mask: bool, HxW numbers, or HxWx3 RGB (alpha dropped if opaque)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool)
    if mode in _16BIT_MODES or mode == "F":
        return np.asarray(im)
    if mode == "P":
        index = np.asarray(im)
        if index.max() <= 1:
            return index  # palette index 0/1 masks (e.g. SCR GIFs): the index is the label
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA"):
        im = _drop_opaque_alpha(im, path)
    return np.asarray(im)


def _mask_values(path: Path, slice: int | None, axis: int | None, max_pixels: int | None) -> np.ndarray:
    """The stored values of a mask file (no conversion), any format."""
    limit = max_pixels_limit(max_pixels)
    kind = _kind(path)
    with _reading(path, {"pil": "image", "dicom": "DICOM", "nifti": "NIfTI"}[kind]):
        if kind == "pil":
            return _pil_mask_values(_open_pil(path, limit), path)
        if kind == "dicom":
            return read_dicom(path, raw=True, max_pixels=limit)
        return read_nifti_slice(path, slice, axis, max_pixels=limit)


def read_mask(path: str | os.PathLike, image_hw: tuple[int, int] | None = None, allow_empty: bool = False, *,
              threshold: float | None = None, label: Label | None = None, slice: int | None = None,
              axis: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read one binary mask as HxW bool: strictly by default, converted only when asked.

    By default the file must be binary: bool (1-bit), {0, 1} or {0, 255}, grey or RGB with equal channels, in any
    format (a 0/1 palette index, as in SCR GIFs, counts). Anything else is refused with a message that says which
    option converts it (:mod:`roiprompt.data.masks`):

    - ``threshold=T``: a soft mask or a lossy JPEG (e.g. Kvasir-SEG's, T = 128): value >= T (RGB: channel mean);
    - ``label=V``: one structure of a label map (``V`` an integer, or ``(R, G, B)`` for a colour label map).
      :func:`read_label_map` reads several at once.

    Args:
        path: mask file.
        image_hw: (H, W) of the image it belongs to; None skips the size check.
        allow_empty: accept a mask with no foreground pixel.
        threshold, label: the explicit conversion (at most one).
        slice, axis, max_pixels: as in :func:`read_image`.

    Returns:
        HxW bool array.

    Raises:
        InputError: any unreadable file, size different from ``image_hw``, non-binary values without a
            conversion, empty mask (unless ``allow_empty``). The message names the file.
    """
    path = Path(path)
    values = _mask_values(path, slice, axis, max_pixels)
    lossy = split_extension(path)[1] in _LOSSY
    with _reading(path, "mask"):
        mask = binarize(values, shown(path), threshold=threshold, label=label, lossy=lossy)
        return check_mask(mask, image_hw, shown(path), allow_empty=allow_empty)


def read_label_map(path: str | os.PathLike, labels: Mapping[Label, str], image_hw: tuple[int, int] | None = None,
                   allow_empty: bool = False, *, slice: int | None = None, axis: int | None = None,
                   max_pixels: int | None = None) -> dict[str, np.ndarray]:
    """Read several structures from one label map: ``{label value: structure name}`` -> ``{name: HxW bool}``.

    Example:
        >>> masks = read_label_map("case_01_labels.nii.gz", {1: "liver", 2: "spleen"}, slice=40)
    """
    path = Path(path)
    values = _mask_values(path, slice, axis, max_pixels)
    with _reading(path, "mask"):
        return {name: check_mask(mask, image_hw, f"{shown(path)} (label for {name!r})", allow_empty=allow_empty)
                for name, mask in split_labels(values, shown(path), labels).items()}


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write an HxW binary mask as an 8-bit grey PNG (0 / 255), atomically, creating parent folders; returns the path.

    :func:`read_mask` reads it back exactly.

    Raises:
        InputError: the mask is not a binary HxW array (see :func:`check_mask`).
    """
    path = Path(path)
    mask = check_mask(mask, None, str(path), allow_empty=True)
    with atomic_path(path) as tmp:
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
    return path
