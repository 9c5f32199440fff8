"""Checks at the boundary: every image and mask that enters roiprompt passes through here.

``check_image`` returns an HxW or HxWx3 ``uint8`` array and ``check_mask`` an HxW ``bool`` array; anything else
raises :class:`~roiprompt.errors.InputError` with a message that names the source (a file name or a caller's
label), what was expected, what came, and how to fix it. They raise rather than assert: asserts vanish under
``python -O``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .masks import binarize

__all__ = ["check_image", "check_mask"]


def _describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


def check_image(image: Any, source: str = "image") -> np.ndarray:
    """Return ``image`` as an HxW or HxWx3 uint8 array, or raise InputError naming ``source``.

    HxWx1 is squeezed to HxW. Nothing is rescaled: a 16-bit, float or boolean image is refused with a hint to
    convert it to 8-bit, because a silent rescale would change what the model sees.

    Args:
        image: numpy array, HxW (grey) or HxWx3 (RGB), uint8 in [0, 255].
        source: file name or label used in error messages.

    Returns:
        The same pixels as a C-contiguous HxW or HxWx3 uint8 array.

    Raises:
        InputError: not a numpy array, zero-size, wrong ndim or channel count, RGBA, NaN/inf, dtype not uint8.

    Example:
        >>> check_image(np.zeros((4, 5, 1), np.uint8), "a.png").shape
        (4, 5)
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{source}: image must be a numpy array, got {_describe(image)}; "
                         "convert it with np.asarray(...)")
    if image.size == 0:
        raise InputError(f"{source}: image is empty (shape {image.shape})")
    if image.ndim not in (2, 3):
        raise InputError(f"{source}: image has {image.ndim} dimensions (shape {image.shape}); expected HxW (grey) "
                         "or HxWx3 (RGB); for a volume, pick one 2-D slice")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            raise InputError(f"{source}: image has 4 channels (RGBA); drop the alpha channel and convert to RGB, "
                             "e.g. image[..., :3] or PIL Image.convert('RGB')")
        if channels not in (1, 3):
            hint = ""
            if image.shape[0] in (1, 3) and image.shape[2] > 4:
                hint = "; it looks channel-first: use np.moveaxis(image, 0, -1)"
            raise InputError(f"{source}: image has {channels} channels (shape {image.shape}); 1 (grey, HxW or "
                             f"HxWx1) or 3 (RGB, HxWx3, channels last) work{hint}")
        if channels == 1:
            image = image[:, :, 0]
    if np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.complexfloating):
        bad = ~np.isfinite(image)
        if bad.any():
            raise InputError(f"{source}: image contains {int(bad.sum())} NaN or infinite pixel value(s); "
                             "replace them (np.nan_to_num) and convert to 8-bit")
    if image.dtype != np.uint8:
        if image.dtype == np.bool_:
            what = "boolean"
        elif np.issubdtype(image.dtype, np.integer):
            what = f"{image.dtype.itemsize * 8}-bit integer ({image.dtype})"
        else:
            what = f"{image.dtype}"
        raise InputError(f"{source}: image is {what}; roiprompt expects 8-bit (uint8, 0-255) images: rescale "
                         "to 0-255 (e.g. window a CT/MR, or min-max) and cast with .astype(np.uint8)")
    return np.ascontiguousarray(image)


def check_mask(mask: Any, image_hw: tuple[int, int] | np.ndarray | None, source: str = "mask",
               allow_empty: bool = False) -> np.ndarray:
    """Return ``mask`` as an HxW bool array, or raise InputError naming ``source``.

    Accepted values: bool, or numbers whose distinct values are a subset of {0, 1} or {0, 255} (HxWx1 is
    squeezed). Anything else is refused rather than thresholded, since a label map or a soft mask needs a decision
    only the caller can make.

    Args:
        mask: HxW array.
        image_hw: (H, W) of the image the mask belongs to (an image array is accepted too), or None to skip the
            size check.
        source: file name or label used in error messages.
        allow_empty: accept a mask with no foreground pixel (unlabelled or negative images).

    Returns:
        HxW bool array.

    Raises:
        InputError: not a numpy array, wrong ndim, NaN, non-binary values, size different from the image, empty.

    Example:
        >>> check_mask(np.array([[0, 255]], np.uint8), (1, 2), "m.png").tolist()
        [[False, True]]
    """
    if not isinstance(mask, np.ndarray):
        raise InputError(f"{source}: mask must be a numpy array, got {_describe(mask)}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise InputError(f"{source}: mask has {mask.ndim} dimensions (shape {mask.shape}); expected HxW (one "
                         "binary mask per structure)")
    if mask.size == 0:
        raise InputError(f"{source}: mask is empty (shape {mask.shape})")
    if image_hw is not None:
        hw = tuple(image_hw.shape[:2]) if isinstance(image_hw, np.ndarray) else tuple(int(v) for v in image_hw)
        if mask.shape != hw:
            raise InputError(f"{source}: mask is {mask.shape[0]}x{mask.shape[1]} but its image is "
                             f"{hw[0]}x{hw[1]} (H x W); they must match")
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
            raise InputError(f"{source}: mask has dtype {mask.dtype}; expected bool or 0/1 or 0/255 numbers")
        mask = binarize(mask, source)  # strict: refuses a soft mask or label map, saying how to convert it
    if not allow_empty and not mask.any():
        raise InputError(f"{source}: mask has no foreground pixel; a reference needs a non-empty ROI")
    return np.ascontiguousarray(mask)
