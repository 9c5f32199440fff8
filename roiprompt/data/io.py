"""Reading images and masks from disk (PNG, JPEG, BMP, TIFF, GIF, DICOM, NIfTI) and writing masks and overlays.

Every reader returns what :mod:`roiprompt.data.validate` accepts (images HxW or HxWx3 uint8, masks HxW bool) and
turns every failure (missing file, unsupported extension, corrupt or truncated data, 16-bit or float raster,
RGBA) into an :class:`~roiprompt.errors.InputError` that names the file and the decoder's own message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError
from ..files import atomic_path
from .validate import check_image, check_mask

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_mask", "split_extension", "write_mask_png"]

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


def _kind(path: Path) -> str:
    """'pil', 'dicom' or 'nifti' for an existing file, or raise InputError for a missing or unsupported one."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
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
    raise InputError(f"{path}: unsupported file type {ext or '(no extension)'!r}; supported: "
                     f"{', '.join(IMAGE_EXTENSIONS)} (and DICOM files without extension)")


def _open_pil(path: Path) -> Image.Image:
    """Open and fully decode one frame with Pillow, so truncated files fail here and not later."""
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(f"{path}: has {frames} frames/pages; roiprompt reads 2-D images: save one "
                                 "frame per file")
            im.load()
            return im
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def _drop_opaque_alpha(im: Image.Image, path: Path) -> Image.Image:
    """LA/RGBA with every pixel opaque -> L/RGB; with real transparency -> InputError (what would it mean?)."""
    alpha = np.asarray(im.getchannel("A"))
    if (alpha == 255).all():
        return im.convert("L" if im.mode == "LA" else "RGB")
    raise InputError(f"{path}: image has an alpha channel ({im.mode}) with {int((alpha < 255).sum())} "
                     "transparent pixel(s); drop the alpha and convert to RGB (PIL: Image.open(p).convert('RGB')) "
                     "or grey ('L')")


def _pil_array(im: Image.Image, path: Path) -> np.ndarray:
    """Pixels of a decoded Pillow image as HxW or HxWx3 uint8 (grey palettes come back as HxW)."""
    mode = im.mode
    if mode in _16BIT_MODES:
        bits = 32 if mode == "I" else 16
        raise InputError(f"{path}: {bits}-bit image (PIL mode {mode!r}); roiprompt expects 8-bit images: convert "
                         "it to 8-bit first (window or min-max to 0-255), or give it as DICOM/NIfTI, which "
                         "roiprompt rescales to 8-bit itself")
    if mode == "F":
        raise InputError(f"{path}: floating-point image (PIL mode 'F'); roiprompt expects 8-bit images: rescale "
                         "to 0-255 and save as uint8, or give it as NIfTI, which roiprompt rescales itself")
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
        raise InputError(f"{path}: unsupported PIL image mode {im.mode!r}; save it as 8-bit grey (L) or RGB")
    arr = np.asarray(im)
    if palette and arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        arr = arr[..., 0]  # a grey palette (e.g. JSRT's inverted ramp) is a grey image
    return arr


def _minmax_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _first(value: Any) -> float:
    """DICOM window values may be multi-valued (several presets): use the first."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _read_dicom(path: Path, raw: bool = False) -> np.ndarray:
    """Single-frame DICOM pixels: stored values if ``raw``, else display values as uint8 (see read_image)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise InputError(f"{path}: DICOM has {frames} frames; roiprompt reads single-frame images: export "
                             "one frame")
        pixels = ds.pixel_array
    except InputError:
        raise
    except Exception as err:  # pydicom raises many types (InvalidDicomError, AttributeError, RuntimeError...)
        raise InputError(f"{path}: cannot read DICOM ({type(err).__name__}: {err})") from err
    if raw:
        return pixels
    if pixels.ndim == 3:  # colour (pydicom converts YBR to RGB): keep 8-bit as is, rescale anything else
        return pixels.astype(np.uint8) if pixels.dtype == np.uint8 else _minmax_uint8(pixels, path)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float64) * slope + intercept  # modality LUT: stored values -> HU / real units
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is not None and width is not None and _first(width) >= 1:
        c, w = _first(centre), _first(width)
        # DICOM PS3.3 C.11.2.1.2 linear VOI function, mapped to 0..255
        scaled = np.clip(((values - (c - 0.5)) / (w - 1 if w > 1 else 1) + 0.5) * 255.0, 0, 255)
        out = np.round(scaled).astype(np.uint8)
    else:
        out = _minmax_uint8(values, path)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: low values are bright; flip so that high = bright as everywhere else
    return out


def _read_nifti(path: Path, slice_index: int | None, axis: int) -> np.ndarray:
    """One 2-D slice of a NIfTI volume as float64, in array order (no reorientation)."""
    import nibabel as nib

    if axis not in (0, 1, 2):
        raise InputError(f"{path}: axis must be 0, 1 or 2, got {axis!r}")
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        dims = list(shape)
        while len(dims) > 3 and dims[-1] == 1:  # (X, Y, Z, 1): a 3-D volume stored as 4-D
            dims.pop()
        if len(dims) > 3:
            raise InputError(f"{path}: NIfTI has shape {shape}; roiprompt reads 2-D or 3-D volumes")
        if len(dims) == 2:
            data = np.asarray(img.dataobj).reshape(dims)
        else:
            n = dims[axis]
            index = n // 2 if slice_index is None else int(slice_index)
            if not -n <= index < n:
                raise InputError(f"{path}: slice_index {slice_index} is out of range for axis {axis} of a volume "
                                 f"of shape {shape} ({n} slices)")
            slicer: list[Any] = [slice(None)] * 3
            slicer[axis] = index % n
            data = np.asarray(img.dataobj[tuple(slicer) + (0,) * (len(shape) - 3)])
    except InputError:
        raise
    except Exception as err:  # nibabel: ImageFileError, EOFError/zlib errors on truncated .gz, OSError...
        raise InputError(f"{path}: cannot read NIfTI ({type(err).__name__}: {err})") from err
    if data.dtype.names is not None:
        raise InputError(f"{path}: NIfTI with structured (RGB) voxels is not supported; store grey values")
    return np.asarray(data, dtype=np.float64)


def read_image(path: str | os.PathLike, slice_index: int | None = None, axis: int = 2) -> np.ndarray:
    """Read one 2-D image as HxW (grey) or HxWx3 (RGB) uint8 at its original resolution.

    - PNG, JPEG, BMP, TIFF, GIF (Pillow, fully decoded so a truncated file fails): 8-bit grey and RGB as stored;
      1-bit and palette images become grey (or RGB for a colour palette); an alpha channel that is fully opaque
      is dropped. 16-bit, 32-bit integer and float rasters are refused (no silent rescale).
    - DICOM (pydicom, single frame): the rescale slope/intercept is applied, then the first window
      (centre/width) when the file has one, else a min-max stretch, to uint8; MONOCHROME1 images are inverted so
      that bright means high attenuation as in MONOCHROME2. Files without extension are recognised by the
      "DICM" marker.
    - NIfTI ``.nii`` / ``.nii.gz`` (nibabel): the slice ``slice_index`` (default: the middle one) along
      ``axis`` of a 3-D volume, in array order (no reorientation: ``data[:, :, k]`` for axis 2), min-max
      stretched to uint8.

    Args:
        path: image file.
        slice_index: NIfTI only: slice to read; None = middle slice.
        axis: NIfTI only: axis (0, 1 or 2) to slice along.

    Returns:
        HxW or HxWx3 uint8 array.

    Raises:
        InputError: missing file, unsupported extension, corrupt or truncated file, 16-bit/float raster, RGBA
            with transparency, multi-frame file, NaN voxels. The message names the file and the decoder error.

    Example:
        >>> image = read_image("shared/data/busbra/BUSBRA/Images/bus_0001-l.png")  # (256, 199) uint8
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "pil":
        arr = _pil_array(_open_pil(path), path)
    elif kind == "dicom":
        arr = _read_dicom(path)
    else:
        arr = _minmax_uint8(_read_nifti(path, slice_index, axis), path)
    return check_image(arr, str(path))


def _threshold_pil_mask(im: Image.Image, path: Path, lossy: bool) -> np.ndarray:
    """Binary mask from a decoded Pillow image (see read_mask for the rule)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool)
    if mode in _16BIT_MODES or mode == "F":
        values = np.asarray(im)
        if mode == "F":
            return values  # check_mask decides: 0/1 or 0/255 floats pass, anything else is refused
        distinct = np.unique(values)
        if len(distinct) > 2 or (len(distinct) == 2 and distinct[0] != 0):
            raise InputError(f"{path}: mask is not binary: it has {len(distinct)} distinct values "
                             f"({', '.join(map(str, distinct[:6].tolist()))}); expected 0 and one other value")
        return values > 0
    if mode == "P":
        index = np.asarray(im)
        if index.max() <= 1:
            return index > 0  # palette index 0/1 masks (e.g. SCR GIFs): the index is the label
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA"):
        im = _drop_opaque_alpha(im, path)
    arr = np.asarray(im)
    grey = arr.mean(axis=2) if arr.ndim == 3 else arr  # JPEG masks are lossy RGB: threshold the channel mean
    top = float(grey.max())
    if top <= 1:
        return grey > 0  # 0/1 masks
    if not lossy and top < 128:
        values = np.unique(arr)
        raise InputError(f"{path}: mask values are all below 128 ({len(values)} distinct: "
                         f"{', '.join(map(str, values[:6].tolist()))}); expected a binary mask (0/255 or 0/1); "
                         "a label map must be split into one mask per structure")
    return grey >= 128


def read_mask(path: str | os.PathLike, image_hw: tuple[int, int] | None = None, allow_empty: bool = False,
              slice_index: int | None = None, axis: int = 2) -> np.ndarray:
    """Read one binary mask as HxW bool.

    Rules: 1-bit images as stored; 0/1 images (grey or palette index, e.g. GIF) as ``value > 0``; 8-bit grey
    and RGB images as ``value >= 128`` (RGB: the mean of the channels; JPEG masks such as Kvasir-SEG's are lossy
    RGB, so their near-0/near-255 values are thresholded); a lossless mask whose values are all below 128 but not
    0/1 (a label map) is refused. 16-bit masks must hold two values (0 and one other). NIfTI (same slice rules as
    :func:`read_image`) and DICOM masks: ``value > 0``.

    Args:
        path: mask file.
        image_hw: (H, W) of the image it belongs to; None skips the size check.
        allow_empty: accept a mask with no foreground pixel.
        slice_index, axis: NIfTI only, as in :func:`read_image`.

    Returns:
        HxW bool array.

    Raises:
        InputError: missing/unsupported/corrupt file, size different from ``image_hw``, non-binary values, empty
            mask (unless ``allow_empty``). The message names the file.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "pil":
        mask = _threshold_pil_mask(_open_pil(path), path, lossy=split_extension(path)[1] in _LOSSY)
    elif kind == "dicom":
        pixels = _read_dicom(path, raw=True)
        mask = (pixels.max(axis=2) if pixels.ndim == 3 else pixels) > 0
    else:
        data = _read_nifti(path, slice_index, axis)
        if np.isnan(data).any():
            raise InputError(f"{path}: mask contains NaN; a mask must be binary")
        mask = data > 0
    return check_mask(mask, image_hw, str(path), allow_empty=allow_empty)


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
