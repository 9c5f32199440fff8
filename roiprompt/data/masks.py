"""From stored mask values to binary masks: strict by default, converted only when the caller says how.

A mask file must be binary: bool, {0, 1} or {0, 255} (grey, or RGB with equal channels). Anything else (a soft
mask, a label map, a colour label map, a lossy JPEG) is refused with an InputError that names the file and the
option that converts it, because the right conversion is a decision only the caller can make:

- ``threshold=T``: a soft mask (probabilities, a lossy JPEG): foreground where the value (the channel mean for
  RGB) is ``>= T``;
- ``label=V``: a label map: foreground where the value is ``V``; ``label=(R, G, B)`` for a colour label map.
"""

from __future__ import annotations

from typing import Mapping, Union

import numpy as np

from ..errors import InputError

__all__ = ["Label", "binarize", "parse_label", "split_labels"]

#: A label value: an integer of a label map, or an (R, G, B) colour of a colour label map.
Label = Union[int, tuple[int, int, int]]

_BINARY_SETS = ({0, 1}, {0, 255})


def parse_label(text: str) -> Label:
    """``"3"`` -> 3, ``"#ff0000"`` -> (255, 0, 0): a label as written on the command line."""
    text = text.strip()
    if text.startswith("#") and len(text) == 7:
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    try:
        return int(text)
    except ValueError:
        raise InputError(f"label {text!r}: give an integer (e.g. 1) or a colour as #RRGGBB (e.g. #ff0000)") from None


def _grey(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """(HxW values, is_colour): RGB with three equal channels is grey."""
    if values.ndim == 3:
        if values.shape[2] == 1:
            return values[:, :, 0], False
        if (values[..., 0] == values[..., 1]).all() and (values[..., 0] == values[..., 2]).all():
            return values[..., 0], False
        return values, True
    return values, False


def _colours(values: np.ndarray) -> np.ndarray:
    """Distinct RGB colours of an HxWx3 integer array, as an (N, 3) array."""
    packed = values[..., :3].astype(np.int64)
    keys = np.unique(packed[..., 0] * 65536 + packed[..., 1] * 256 + packed[..., 2])
    return np.stack([keys // 65536, keys // 256 % 256, keys % 256], axis=1)


def _show(values: np.ndarray, n: int = 6) -> str:
    head = ", ".join(f"{v:g}" for v in values[:n].tolist())
    return head + (", ..." if len(values) > n else "")


def _refusal(values: np.ndarray, source: str, lossy: bool) -> InputError:
    """The error for a non-binary mask, with the option that converts it."""
    grey, colour = _grey(values)
    if colour:
        colours = _colours(values)
        shown = ", ".join("#%02x%02x%02x" % tuple(c) for c in colours[:6]) + (", ..." if len(colours) > 6 else "")
        if lossy or len(colours) > 64:
            return InputError(f"{source}: mask is a colour image with {len(colours)} colours; expected a binary "
                              "mask (0/255 or 0/1); convert it, or pass threshold=T (CLI: --mask-threshold T) to "
                              "keep pixels whose channel mean is >= T")
        return InputError(f"{source}: mask is a colour label map ({len(colours)} colours: {shown}); pick one "
                          "structure with label=(R, G, B) (CLI: --labels '#rrggbb=NAME')")
    distinct = np.unique(grey)
    if lossy:
        return InputError(f"{source}: mask is a lossy JPEG ({len(distinct)} distinct values: {_show(distinct)}), "
                          "so it is not exactly binary; pass threshold=128 (CLI: --mask-threshold 128) to binarise "
                          "it, or save masks as PNG")
    integral = np.issubdtype(grey.dtype, np.integer) or bool(np.all(np.mod(distinct, 1) == 0))
    if integral and len(distinct) <= 64:
        return InputError(f"{source}: mask is not binary: it has {len(distinct)} distinct values "
                          f"({_show(distinct)}); if it is a label map, pick a structure with label=V (CLI: --labels "
                          "V=NAME, e.g. --labels 1=liver,2=spleen); if it is a soft mask, pass threshold=T (CLI: "
                          "--mask-threshold T)")
    return InputError(f"{source}: mask is not binary: it has {len(distinct)} distinct values ({_show(distinct)}, "
                      f"range {float(distinct[0]):g}..{float(distinct[-1]):g}); if it is a soft mask, pass "
                      "threshold=T (CLI: --mask-threshold T, e.g. 0.5 for probabilities, 128 for 0..255)")


def binarize(values: np.ndarray, source: str, *, threshold: float | None = None, label: Label | None = None,
             lossy: bool = False) -> np.ndarray:
    """Stored mask values -> HxW bool, by the rules of the module docstring.

    Args:
        values: HxW or HxWx3 array of a mask file (bool, integer or float).
        source: file name or label for messages.
        threshold: foreground where value (RGB: channel mean) >= threshold.
        label: foreground where value == label (int) or pixel == colour (R, G, B).
        lossy: the file is a lossy format (JPEG): its refusal message suggests a threshold.

    Raises:
        InputError: NaN values, both options given, a colour label for a grey mask, or a non-binary mask without
            an option.
    """
    if threshold is not None and label is not None:
        raise InputError(f"{source}: give threshold or label, not both")
    values = np.asarray(values)
    if values.ndim not in (2, 3) or values.ndim == 3 and values.shape[2] not in (1, 3):
        raise InputError(f"{source}: mask has shape {values.shape}; expected HxW, or HxWx3 for a colour label map")
    if not (values.dtype == np.bool_ or np.issubdtype(values.dtype, np.integer)
            or np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"{source}: mask has dtype {values.dtype}; expected bool or numbers")
    if values.dtype == np.bool_ and values.ndim == 2:
        return values
    if np.issubdtype(values.dtype, np.floating) and np.isnan(values).any():
        raise InputError(f"{source}: mask contains NaN; a mask must be binary (bool, 0/1 or 0/255)")
    grey, colour = _grey(values)
    if label is not None:
        if isinstance(label, tuple):
            if not colour:
                return grey == label[0] if label[0] == label[1] == label[2] else np.zeros(grey.shape, bool)
            return np.all(values[..., :3] == np.asarray(label, values.dtype), axis=2)
        if colour:
            raise InputError(f"{source}: mask is a colour image; give its label as a colour (R, G, B) (CLI: "
                             "'#rrggbb=NAME')")
        return grey == label
    if threshold is not None:
        level = values[..., :3].mean(axis=2) if colour else grey
        return level >= threshold
    if not colour:
        distinct = set(np.unique(grey).tolist())
        if any(distinct <= allowed for allowed in _BINARY_SETS):
            return grey != 0
    raise _refusal(values, source, lossy)


def split_labels(values: np.ndarray, source: str, labels: Mapping[Label, str]) -> dict[str, np.ndarray]:
    """A label map -> ``{structure name: HxW bool}``, one mask per ``{label: name}`` entry."""
    if not labels:
        raise InputError(f"{source}: no labels given; pass {{value: structure name}}")
    names = list(labels.values())
    if len(set(names)) != len(names):
        raise InputError(f"{source}: structure names repeat in {dict(labels)}")
    return {name: binarize(values, source, label=label) for label, name in labels.items()}
