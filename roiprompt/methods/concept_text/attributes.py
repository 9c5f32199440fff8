"""ROI attributes and their one-sentence description: phase 0 of conceptual text prompts (methods.md §4.1, §4.5).

**Official rule (paper, CoTexNet):** the ROI image (input image, background set to 0 by the mask) goes to
LLaVA-1.5-13B, which answers one JSON record with keys ``number, location, shape, size, color`` (temperature 0.2);
a coordinate-style location is turned into words, and the record becomes one sentence::

    "<n> <shape> <size> <colour> <keyword>(s), located in the <location> of the image."
    e.g. "one round small pink polyp area, located in the center of the image."

**Offline replacement (our choice, the default):** :func:`measure_attributes` computes the five attributes from image
and mask. Thresholds (fractions on a [0, 1] scale):

- number: 8-connected components with area >= 1 % of the mask area, capped at 5, at least 1.
- location: centre of the union box of those components; "center" if within +-0.1 of the image centre in both axes,
  else "<top|center|bottom> <left|center|right>" (top if cy < 0.4, bottom if cy > 0.6; left/right likewise).
- shape (largest component): "round" if circularity >= 0.8 and axis ratio <= 1.3; "oval" if axis ratio > 1.3 and
  solidity >= 0.9; else "irregular". Circularity = 4 pi area / perimeter^2 (clipped to 1), the perimeter = pi/4 x
  the count of mask/background pixel edges (the count alone overestimates a direction-free boundary by 4/pi; a
  digitised disc of radius 10 / 40 px gives 0.92 / 0.98). Axis ratio = sqrt of the eigenvalue ratio of the
  pixel-coordinate covariance (+1/12, a pixel's own variance, so a 1-px line stays finite). Solidity = area / area
  of the convex hull of the pixel corners (defined for any non-empty mask, a single pixel included).
- size: "small" below 3 % of the image area, "large" above 15 %, else "medium".
- colour: RGB -> the palette name (red, pink, white, yellow, brown, black, purple) nearest to the ROI's per-channel
  median colour in the HSV cone (hue matters in proportion to chroma, so dark or pale colours ignore it); greyscale
  (HxW, or RGB with equal channels) -> "dark" / "bright" when the ROI median is 0.1 below / above the image median,
  else "grey".

**Extended attributes (§4.5 ablation, our rules):** margin from solidity and roughness = perimeter / convex hull
perimeter: "smooth" (solidity >= 0.9 and roughness <= 1.1), "irregular" (roughness > 1.25 or solidity < 0.6: a
jagged or spiculated outline), else "lobulated" (a few broad bulges). Contrast = ROI median minus the median of a
surrounding ring (Euclidean dilation by 10 % of the equivalent diameter, at least 1 px, minus the mask; 0 when
there is no ring): "hypo-intense" below -0.05, "hyper-intense" above 0.05, else "iso-intense". Texture:
"heterogeneous" when the ROI intensity std exceeds 0.12, else "homogeneous". Intensity = grey level, or the ITU-R
601 luma of an RGB image.

Pluggable sentence sources (the measured default and the opt-in LMM clients) live in :mod:`.sources`.
"""

from __future__ import annotations

import colorsys
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ...data.validate import check_image, check_mask
from ...errors import DataError, InputError

__all__ = [
    "CSV_COLUMNS", "OFFICIAL_KEYS", "RoiAttributes", "describe", "location_word", "measure_attributes",
    "read_attributes_csv", "render_sentence", "roi_image", "write_attributes_csv",
]

OFFICIAL_KEYS = ("number", "location", "shape", "size", "color")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")
MAX_NUMBER = 5
MIN_COMPONENT_FRACTION = 0.01
CENTRE_TOLERANCE = 0.1
ROUND_MIN_CIRCULARITY, ROUND_MAX_AXIS_RATIO, OVAL_MIN_SOLIDITY = 0.8, 1.3, 0.9
SMALL_AREA, LARGE_AREA = 0.03, 0.15
GREY_TOLERANCE = 0.1
SMOOTH_MIN_SOLIDITY, SMOOTH_MAX_ROUGHNESS, IRREGULAR_ROUGHNESS, IRREGULAR_SOLIDITY = 0.9, 1.1, 1.25, 0.6
RING_WIDTH, CONTRAST_TOLERANCE, TEXTURE_STD = 0.1, 0.05, 0.12
# (hue degrees, saturation, value) of each colour name; compared in the HSV cone, see _cone.
PALETTE = {"red": (0, 0.75, 0.75), "pink": (345, 0.35, 0.9), "white": (0, 0.0, 0.95), "yellow": (50, 0.7, 0.85),
           "brown": (25, 0.6, 0.45), "black": (0, 0.0, 0.1), "purple": (285, 0.5, 0.55)}
CSV_COLUMNS = ("id", *OFFICIAL_KEYS, "sentence", "margin", "contrast", "texture", "area_fraction", "circularity",
               "axis_ratio", "solidity", "roughness", "centre_x", "centre_y", "contrast_value", "intensity_std")
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class RoiAttributes:
    """The five official attributes, the three extended ones, and the raw measurements behind them."""

    number: int
    location: str
    shape: str
    size: str
    colour: str
    margin: str
    contrast: str
    texture: str
    area_fraction: float  # mask area / image area
    circularity: float  # of the largest component, clipped to [0, 1]
    axis_ratio: float  # major / minor axis of the largest component, >= 1
    solidity: float  # largest component area / its convex hull area
    roughness: float  # largest component perimeter / its convex hull perimeter
    centre: tuple[float, float]  # (x, y) of the union box centre, fractions of width and height
    contrast_value: float  # ROI median minus ring median, [0, 1] intensity scale
    intensity_std: float  # ROI intensity std, [0, 1] scale

    def record(self) -> dict[str, Any]:
        """The official JSON record (keys number, location, shape, size, color)."""
        return dict(zip(OFFICIAL_KEYS, (self.number, self.location, self.shape, self.size, self.colour)))


def location_word(cx: float, cy: float) -> str:
    """Official location words for a box centre (x, y) given as fractions of the image width and height."""
    vertical = "top" if cy < 0.5 - CENTRE_TOLERANCE else "bottom" if cy > 0.5 + CENTRE_TOLERANCE else "center"
    horizontal = "left" if cx < 0.5 - CENTRE_TOLERANCE else "right" if cx > 0.5 + CENTRE_TOLERANCE else "center"
    return "center" if vertical == horizontal == "center" else f"{vertical} {horizontal}"


def _perimeter(mask: np.ndarray) -> float:
    """Perimeter in pixels: the number of pixel edges between mask and background, times pi/4.

    The edge count of a staircase is |dx| + |dy|, on average 4/pi times the length of a boundary with no preferred
    direction, so the pi/4 factor makes it unbiased there (exactly 2 pi r on a digitised disc's octant staircases).
    Axis-aligned straight edges come out pi/4 too short: a square reads as round (circularity clipped to 1).
    """
    padded = np.pad(mask, 1)
    edges = np.count_nonzero(padded[1:] != padded[:-1]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return math.pi / 4 * edges


def _shape_measures(component: np.ndarray) -> tuple[float, float, float, float]:
    """(circularity, axis ratio, solidity, roughness) of one connected component."""
    ys, xs = np.nonzero(component)
    area = float(xs.size)
    perimeter = _perimeter(component[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    circularity = min(1.0, 4 * math.pi * area / perimeter**2) if perimeter > 0 else 1.0
    eigen = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float), bias=True) + np.eye(2) / 12)
    axis_ratio = math.sqrt(eigen[1] / eigen[0])
    # The hull of the border pixels' corners equals that of all pixels and is never degenerate (1 px = a unit square).
    border = component & ~ndimage.binary_erosion(component, border_value=0)
    by, bx = np.nonzero(border)
    corners = np.concatenate([np.stack([bx + dx, by + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    try:
        hull = ConvexHull(corners)
        solidity, roughness = min(1.0, area / hull.volume), perimeter / hull.area  # 2-D: volume=area, area=perimeter
    except QhullError:
        solidity, roughness = 1.0, 1.0
    return circularity, axis_ratio, solidity, roughness


def _cone(hue: float, saturation: float, value: float) -> np.ndarray:
    """HSV (hue in degrees) as a point of the HSV cone, where hue counts in proportion to chroma."""
    chroma = saturation * value
    return np.array([chroma * math.cos(math.radians(hue)), chroma * math.sin(math.radians(hue)), value])


def _checked(image: np.ndarray, mask: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    image = check_image(image, source)
    mask = check_mask(mask, image.shape[:2], source, allow_empty=True)
    if not mask.any():  # our own message: the validator's speaks of a "reference"
        raise InputError(f"{source}: the ROI mask is empty (no foreground pixel); attributes need a non-empty ROI")
    return image, mask


def measure_attributes(image: np.ndarray, mask: np.ndarray, source: str = "image") -> RoiAttributes:
    """Measure the official and extended attributes of the ROI ``mask`` in ``image`` (rules: module docstring).

    Raises:
        InputError: bad image or mask (see :func:`~roiprompt.data.validate.check_mask`), or an empty ROI mask.
    """
    image, mask = _checked(image, mask, source)
    grey = image.ndim == 2 or bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())
    luma = image if image.ndim == 2 else image[..., 0] if grey else image @ np.array([0.299, 0.587, 0.114])
    intensity = luma / 255.0

    area = int(mask.sum())
    labels, count = ndimage.label(mask, _EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    kept = np.flatnonzero(sizes >= MIN_COMPONENT_FRACTION * area) + 1
    number = int(min(MAX_NUMBER, max(1, kept.size)))
    ys, xs = np.nonzero(np.isin(labels, kept))
    height, width = mask.shape
    centre = ((xs.min() + xs.max() + 1) / 2 / width, (ys.min() + ys.max() + 1) / 2 / height)
    circularity, axis_ratio, solidity, roughness = _shape_measures(labels == int(np.argmax(sizes)) + 1)
    shape = ("round" if circularity >= ROUND_MIN_CIRCULARITY and axis_ratio <= ROUND_MAX_AXIS_RATIO
             else "oval" if axis_ratio > ROUND_MAX_AXIS_RATIO and solidity >= OVAL_MIN_SOLIDITY else "irregular")
    area_fraction = area / mask.size
    size = "small" if area_fraction < SMALL_AREA else "large" if area_fraction > LARGE_AREA else "medium"

    roi = intensity[mask]
    if grey:
        delta = float(np.median(roi) - np.median(intensity))
        colour = "dark" if delta < -GREY_TOLERANCE else "bright" if delta > GREY_TOLERANCE else "grey"
    else:
        h, s, v = colorsys.rgb_to_hsv(*(np.median(image[mask], axis=0) / 255.0))
        point = _cone(h * 360, s, v)
        colour = min(PALETTE, key=lambda name: float(np.linalg.norm(_cone(*PALETTE[name]) - point)))

    margin = ("smooth" if solidity >= SMOOTH_MIN_SOLIDITY and roughness <= SMOOTH_MAX_ROUGHNESS
              else "irregular" if roughness > IRREGULAR_ROUGHNESS or solidity < IRREGULAR_SOLIDITY else "lobulated")
    # Ring by Euclidean distance (round, unlike iterated 3x3 dilation), on a crop around the mask to stay cheap.
    width_px = max(1.0, RING_WIDTH * math.sqrt(4 * area / math.pi))
    pad, rows, cols = int(math.ceil(width_px)) + 1, np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1 = max(0, rows[0] - pad), min(height, rows[-1] + pad + 1)
    x0, x1 = max(0, cols[0] - pad), min(width, cols[-1] + pad + 1)
    crop = mask[y0:y1, x0:x1]
    ring = (ndimage.distance_transform_edt(~crop) <= width_px) & ~crop
    contrast_value = float(np.median(roi) - np.median(intensity[y0:y1, x0:x1][ring])) if ring.any() else 0.0
    contrast = ("hypo-intense" if contrast_value < -CONTRAST_TOLERANCE
                else "hyper-intense" if contrast_value > CONTRAST_TOLERANCE else "iso-intense")
    intensity_std = float(roi.std())
    texture = "heterogeneous" if intensity_std > TEXTURE_STD else "homogeneous"
    return RoiAttributes(number, location_word(*centre), shape, size, colour, margin, contrast, texture,
                         float(area_fraction), float(circularity), float(axis_ratio), float(solidity),
                         float(roughness), (float(centre[0]), float(centre[1])), contrast_value, intensity_std)


def render_sentence(number: int, location: str, shape: str, size: str, colour: str, keyword: str) -> str:
    """The official sentence, e.g. "one round small pink polyp area, located in the center of the image."."""
    if not isinstance(keyword, str) or not keyword.strip():
        raise InputError(f"keyword must be a non-empty string such as 'polyp area', got {keyword!r}")
    number = int(min(MAX_NUMBER, max(1, int(number))))
    noun = keyword.strip() + ("s" if number > 1 else "")
    return f"{NUMBER_WORDS[number]} {shape} {size} {colour} {noun}, located in the {location} of the image."


def describe(attrs: RoiAttributes, keyword: str, extended: bool = False) -> str:
    """Render ``attrs`` as the official sentence; ``extended`` appends margin, contrast and texture."""
    sentence = render_sentence(attrs.number, attrs.location, attrs.shape, attrs.size, attrs.colour, keyword)
    if not extended:
        return sentence
    article = "an" if attrs.margin[0] in "aeiou" else "a"
    subject, has, is_, their = ("They", "have", "are", "their") if attrs.number > 1 else ("It", "has", "is", "its")
    return (f"{sentence} {subject} {has} {article} {attrs.margin} margin, {is_} {attrs.contrast} relative to "
            f"{their} surroundings and {has} a {attrs.texture} texture.")


def write_attributes_csv(path: str | Path, rows: Iterable[tuple[str, RoiAttributes, str]]) -> Path:
    """Write (id, attributes, sentence) rows with the official columns first (:data:`CSV_COLUMNS`)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for sample_id, a, sentence in rows:
            writer.writerow([sample_id, a.number, a.location, a.shape, a.size, a.colour, sentence, a.margin,
                             a.contrast, a.texture, *(f"{v:.6g}" for v in (a.area_fraction, a.circularity,
                             a.axis_ratio, a.solidity, a.roughness, *a.centre, a.contrast_value, a.intensity_std))])
    return path


def read_attributes_csv(path: str | Path) -> dict[str, str]:
    """Read a CSV written by :func:`write_attributes_csv` (or any with id and sentence columns): id -> sentence."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: attribute CSV not found; write it with write_attributes_csv")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"id", "sentence"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path}: needs columns 'id' and 'sentence', has {reader.fieldnames}")
        sentences: dict[str, str] = {}
        for row in reader:
            if row["id"] in sentences:
                raise DataError(f"{path}: id {row['id']!r} appears twice")
            sentences[row["id"]] = row["sentence"]
    return sentences


def roi_image(image: np.ndarray, mask: np.ndarray, source: str = "image") -> np.ndarray:
    """The official ROI image: ``image`` with every pixel outside ``mask`` set to 0 (same shape, uint8)."""
    image, mask = _checked(image, mask, source)
    return np.where(mask if image.ndim == 2 else mask[..., None], image, 0).astype(np.uint8)
