"""box_prompt: the oracle upper bound, on real Kvasir-SEG and JSRT images with the real LiteMedSAM weights."""

from __future__ import annotations

import numpy as np
import pytest

import roiprompt
from roiprompt import InputError, metrics
from tests.conftest import data_root


@pytest.fixture(scope="module")
def method(litemedsam):
    return roiprompt.load_method("box_prompt", backbone=litemedsam)


def test_registry_lists_and_rejects_typos():
    assert "box_prompt" in roiprompt.list_methods()
    with pytest.raises(InputError, match="Did you mean 'box_prompt'"):
        roiprompt.load_method("box_promt")
    with pytest.raises(InputError, match="unknown config"):
        roiprompt.load_method("box_prompt", backbone="test-litemedsam", boxpad=0.1)


def test_dice_on_20_kvasir_images(method):
    data = roiprompt.load_dataset("kvasir_seg", root=data_root("kvasir_seg").parent)
    dice = []
    for i in range(20):
        sample = data[i]
        pred = method.predict(sample.image, **method.prompts_from_truth(sample, "polyp"))
        assert pred.mask.shape == sample.image.shape[:2] and pred.mask.dtype == bool
        assert 0.0 <= pred.scores["iou_pred"] <= 1.2
        dice.append(metrics.dice(pred.mask, sample.masks["polyp"]))
    assert np.mean(dice) >= 0.85, dice


def test_jsrt_five_structures_encode_once(method):
    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    sample = data[0]
    calls = method.predictor.encoder_calls
    dice = {}
    for structure in data.structures:
        pred = method.predict(sample.image, **method.prompts_from_truth(sample, structure))
        dice[structure] = metrics.dice(pred.mask, sample.masks[structure])
    assert method.predictor.encoder_calls == calls + 1  # one image, five structures, one encode
    assert dice["left_lung"] > 0.85 and dice["right_lung"] > 0.85 and dice["heart"] > 0.8, dice


def test_bad_inputs_are_rejected(method):
    image = np.zeros((64, 64), np.uint8)
    with pytest.raises(InputError, match="needs box"):
        method.predict(image)
    with pytest.raises(InputError, match="outside"):
        method.predict(image + 1, box=[100, 100, 120, 120])
    with pytest.raises(InputError, match="RGBA|4 channels"):
        method.predict(np.zeros((64, 64, 4), np.uint8), box=[1, 1, 20, 20])
    with pytest.raises(InputError, match="8-bit|uint8"):
        method.predict(np.zeros((64, 64), np.float32), box=[1, 1, 20, 20])
