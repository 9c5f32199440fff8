"""check_image / check_mask: accepted forms and one test per refusal, each naming its source."""

from __future__ import annotations

import numpy as np
import pytest

from roiprompt.data import check_image, check_mask
from roiprompt.errors import InputError


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 1)])
def test_check_image_accepts_grey_rgb_and_squeezes(shape):
    out = check_image(np.zeros(shape, np.uint8), "ok.png")
    assert out.dtype == np.uint8 and out.shape == shape[:2] + ((3,) if shape[-1:] == (3,) else ())


@pytest.mark.parametrize("image, match", [
    ([[1, 2], [3, 4]], r"scan\.png: image must be a numpy array, got list"),
    (np.zeros((0, 4), np.uint8), r"scan\.png: image is empty"),
    (np.zeros((2, 3, 4, 5), np.uint8), r"scan\.png: image has 4 dimensions"),
    (np.zeros((6, 6, 2), np.uint8), r"scan\.png: image has 2 channels .*1 \(grey.*3 \(RGB"),
    (np.zeros((3, 16, 16), np.uint8), r"scan\.png: .*channel-first"),
    (np.zeros((6, 6, 4), np.uint8), r"scan\.png: image has 4 channels \(RGBA\); drop the alpha"),
    (np.zeros((6, 6), np.uint16), r"scan\.png: image is 16-bit integer .*8-bit"),
    (np.zeros((6, 6), np.float32), r"scan\.png: image is float32; .*8-bit"),
    (np.zeros((6, 6), bool), r"scan\.png: image is boolean"),
    (np.array([[0.5, np.nan]]), r"scan\.png: image contains 1 NaN or infinite"),
    (np.array([[0.5, np.inf]]), r"scan\.png: image contains 1 NaN or infinite"),
])
def test_check_image_refuses(image, match):
    with pytest.raises(InputError, match=match):
        check_image(image, "scan.png")


@pytest.mark.parametrize("mask", [
    np.array([[0, 1], [1, 0]], np.uint8), np.array([[0, 255], [255, 0]], np.uint8),
    np.array([[False, True], [True, False]]), np.array([[0.0, 1.0], [1.0, 0.0]]),
    np.array([[0, 255], [255, 0]], np.int64)[:, :, None],
])
def test_check_mask_accepts_binary_forms(mask):
    out = check_mask(mask, (2, 2), "m.png")
    assert out.dtype == bool and out.tolist() == [[False, True], [True, False]]


def test_check_mask_takes_an_image_for_its_size():
    assert check_mask(np.ones((3, 4), bool), np.zeros((3, 4, 3), np.uint8), "m.png").shape == (3, 4)


@pytest.mark.parametrize("mask, hw, match", [
    (np.ones((120, 80), bool), (256, 199),
     r"bus_0001-l\.png: mask is 120x80 but its image is 256x199 \(H x W\); they must match"),
    (np.array([[0, 1], [2, 0]], np.uint8), (2, 2), r"bus_0001-l\.png: mask is not binary: it has 3 distinct values"),
    (np.array([[0, 0.5], [1, 0]]), (2, 2), r"bus_0001-l\.png: mask is not binary: it has 3 distinct values"),
    (np.zeros((4, 4), np.uint8), (4, 4), r"bus_0001-l\.png: mask has no foreground pixel"),
    (np.array([[0, np.nan]]), (1, 2), r"bus_0001-l\.png: mask contains NaN"),
    (np.ones((2, 2, 2), bool), (2, 2), r"bus_0001-l\.png: mask has 3 dimensions"),
    ([[0, 1]], (1, 2), r"bus_0001-l\.png: mask must be a numpy array"),
])
def test_check_mask_refuses(mask, hw, match):
    with pytest.raises(InputError, match=match):
        check_mask(mask, hw, "bus_0001-l.png")


def test_check_mask_allow_empty():
    assert not check_mask(np.zeros((4, 4), np.uint8), (4, 4), "m.png", allow_empty=True).any()
