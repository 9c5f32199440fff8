"""SamPredictor on the real LiteMedSAM: prompts in original pixels, masks at original resolution, cache."""

from __future__ import annotations

import numpy as np
import pytest

import roiprompt
from roiprompt import InputError, SamPredictor, metrics
from roiprompt.models.cache import EmbeddingCache
from roiprompt.prompts import box_from_mask
from tests.conftest import data_root


@pytest.fixture(scope="module")
def busbra_sample():
    return roiprompt.load_dataset("busbra", root=data_root("busbra").parent)[0]


def test_grey_image_box_and_points(litemedsam, busbra_sample, tmp_path):
    cache = EmbeddingCache(tmp_path)
    predictor = SamPredictor(litemedsam, cache=cache)
    image, target = busbra_sample.image, busbra_sample.masks["lesion"]
    assert image.ndim == 2  # BUS-BRA is greyscale
    predictor.set_image(image)
    box = box_from_mask(target, 0.05)
    out = predictor.predict(box=box)
    assert out.masks.shape == (1, *image.shape) and out.iou.shape == (1,)
    assert out.low_res_logits.shape == (1, 256, 256)
    assert metrics.dice(out.masks[0], target) > 0.8
    # The same SamOutput unpacks as segment-anything's (masks, iou_predictions, low_res_masks).
    masks, iou, low = out
    assert masks is out.masks and iou is out.iou and low is out.low_res_logits
    assert len(out) == 3 and out[0] is out.masks and out[-1] is out.low_res_logits
    # Box + a foreground point at the lesion's most interior pixel, three candidate masks.
    from scipy.ndimage import distance_transform_edt

    y, x = np.unravel_index(np.argmax(distance_transform_edt(target)), target.shape)
    multi = predictor.predict(points=[[x, y]], point_labels=[1], box=box, multimask=True)
    assert multi.masks.shape == (3, *image.shape) and multi.iou.shape == (3,)
    assert multi.best()[0][y, x] and metrics.dice(multi.best()[0], target) > 0.7
    # LiteMedSAM was trained with box prompts: a lone point gives a near-empty mask and says so through a low
    # predicted IoU (documented in the backbone; one-shot methods always pass a box).
    alone = predictor.predict(points=[[x, y]], point_labels=[1], multimask=True)
    assert alone.iou.max() < 0.5
    # Feeding the low-res logits back as a mask prompt keeps the answer.
    again = predictor.predict(box=box, mask_input=out.low_res_logits[0])
    assert metrics.dice(again.masks[0], out.masks[0]) > 0.9
    # Second set_image of the same pixels comes from the cache, with identical masks.
    p2 = SamPredictor(litemedsam, cache=cache)
    p2.set_image(image.copy())
    assert p2.encoder_calls == 0 and cache.hits == 1
    np.testing.assert_array_equal(p2.predict(box=box).masks, out.masks)


def test_errors(litemedsam):
    predictor = SamPredictor(litemedsam)
    with pytest.raises(InputError, match="set_image"):
        predictor.predict(box=[0, 0, 5, 5])
    predictor.set_image(np.full((32, 48), 7, np.uint8))
    with pytest.raises(InputError, match="outside"):
        predictor.predict(points=[[100, 100]])
    with pytest.raises(InputError, match="mask_input"):
        predictor.predict(box=[0, 0, 5, 5], mask_input=np.zeros((10, 10)))
    with pytest.raises(InputError, match="wrong number of channels|channels"):
        predictor.set_image(np.zeros((32, 32, 2), np.uint8))


def test_vocabularies(litemedsam, busbra_sample):
    """roiprompt's keywords keep roiprompt's defaults (1 mask); a segment-anything keyword selects its defaults
    (3 masks); one argument in both vocabularies is refused before anything runs."""
    predictor = SamPredictor(litemedsam)
    for kwargs in ({"points": [[1, 1]], "point_coords": [[1, 1]]}, {"multimask": True, "multimask_output": True},
                   {"points": [[1, 1]], "point_coords": None}):
        with pytest.raises(InputError, match="once"):
            predictor.predict(**kwargs)
    predictor.set_image(busbra_sample.image)
    box = box_from_mask(busbra_sample.masks["lesion"])
    assert predictor.predict(box=box).masks.shape[0] == 1                            # roiprompt: multimask=False
    assert predictor.predict(None, None, box).masks.shape[0] == 1                     # positional: roiprompt's
    assert predictor.predict(box=box, point_coords=None).masks.shape[0] == 3         # segment-anything: True
    assert predictor.predict(box=box, return_logits=False).masks.shape[0] == 3
    assert predictor.predict(box=box, multimask_output=False).masks.shape[0] == 1
    assert predictor.predict(box=box, multimask=True).masks.dtype == bool


def test_backbone_without_decoder_is_refused():
    with pytest.raises(InputError, match="no prompt decoder"):
        SamPredictor(roiprompt.load_backbone("minilm"))


def test_points_alone_on_a_box_trained_backbone_warn(litemedsam, busbra_sample):
    """LiteMedSAM was trained with boxes: a point alone gives a near-empty mask, and the caller is told so."""
    import warnings

    from roiprompt.errors import PromptWarning

    image, mask = busbra_sample.image, busbra_sample.masks["lesion"]
    predictor = SamPredictor(litemedsam)
    predictor.set_image(image)
    ys, xs = np.nonzero(mask)
    with pytest.warns(PromptWarning, match="trained with box prompts only: points without a box"):
        predictor.predict(points=np.array([[xs.mean(), ys.mean()]]), point_labels=np.array([1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptWarning)  # a box (with or without points) is what it was trained on
        out = predictor.predict(box=box_from_mask(mask), points=np.array([[xs.mean(), ys.mean()]]),
                                point_labels=np.array([1]))
    assert out.masks.any()
