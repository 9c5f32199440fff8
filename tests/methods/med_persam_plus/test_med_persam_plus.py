"""med_persam_plus on real Kvasir-SEG polyps and JSRT radiographs: the learned localiser, k references, the quality
flag, batch independence and bad references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt import metrics
from roiprompt.data import sample_references
from roiprompt.errors import InputError
from roiprompt.methods.med_persam_plus.candidates import clean_mask, components, rank, Candidate
from roiprompt.methods.oneshot import k_medoids
from tests.conftest import data_root

HEAD_ONLY = dict(localisers="head")  # no warping fit: the polyp tests need only the learned localiser


@pytest.fixture(scope="module")
def kvasir():
    """Two train references (seeds 0 and 1 of the benchmark draw) and the first 5 test images."""
    data = roiprompt.load_dataset("kvasir_seg", root=data_root("kvasir_seg").parent)
    train, test = data.split("train"), data.split("test")
    refs = [train[sample_references(train, 1, seed, structure="polyp")[0]] for seed in (0, 1)]
    return refs, [test[i] for i in range(5)]


@pytest.fixture(scope="module")
def polyp_method(litemedsam, kvasir):
    refs, _ = kvasir
    method = roiprompt.load_method("med_persam_plus", backbone=litemedsam, **HEAD_ONLY)
    return method.set_reference(refs[0].image, refs[0].masks["polyp"], source=refs[0].id)


def test_localiser_puts_polyps_in_the_top_candidate(polyp_method, kvasir):
    _, targets = kvasir
    dice = []
    for t in targets:
        top = polyp_method.candidates(polyp_method._prepare(t.image, t.id), "roi")[0]
        dice.append(metrics.dice(polyp_method.to_original(polyp_method._target, top.logits), t.masks["polyp"]))
    assert sum(d >= 0.5 for d in dice) >= 4, np.round(dice, 3)
    pred = polyp_method.predict(targets[0].image)
    assert pred.extras["source"] == "head" and pred.extras["boxes"].shape == (1, 4)
    assert 0.0 <= pred.scores["quality"] <= 1.0 and "head_prob" in pred.scores and "iou_pred" in pred.scores


def test_adding_a_reference_fixes_a_failure(litemedsam, kvasir):
    refs, targets = kvasir
    hard = targets[2]  # the first reference's localiser picks a fold beside this polyp
    method = roiprompt.load_method("med_persam_plus", backbone=litemedsam, **HEAD_ONLY)
    method.set_reference(refs[0].image, refs[0].masks["polyp"])
    before = metrics.dice(method.predict(hard.image).mask, hard.masks["polyp"])
    method.add_reference(refs[1].image, refs[1].masks["polyp"], source=refs[1].id)
    after = metrics.dice(method.predict(hard.image).mask, hard.masks["polyp"])
    assert before < 0.5 and after > before + 0.2, (before, after)
    assert len(method.references) == 2 and method.setting()["references"] == 2
    # set_reference with a list is the same two references
    both = roiprompt.load_method("med_persam_plus", backbone=litemedsam, **HEAD_ONLY)
    both.set_reference([(r.image, r.masks["polyp"]) for r in refs])
    assert metrics.dice(both.predict(hard.image).mask, method.predict(hard.image).mask) > 0.99


def test_quality_ranks_a_wrong_reference_below_a_right_one(polyp_method, litemedsam, kvasir):
    refs, targets = kvasir
    right = [polyp_method.predict(t.image).scores["quality"] for t in targets]
    image, truth = refs[0].image, refs[0].masks["polyp"]
    h, w = truth.shape
    wrong = np.zeros_like(truth)  # a patch of normal mucosa on the other side of the image
    cy, cx = np.argwhere(truth).mean(0)
    y0, x0 = (int(h * 0.1) if cy > h / 2 else int(h * 0.6)), (int(w * 0.1) if cx > w / 2 else int(w * 0.6))
    wrong[y0:y0 + h // 4, x0:x0 + w // 4] = True
    assert not (wrong & truth).any()
    method = roiprompt.load_method("med_persam_plus", backbone=litemedsam, **HEAD_ONLY)
    method.set_reference(image, wrong)
    bad = [method.predict(t.image).scores["quality"] for t in targets]
    assert np.mean(right) > np.mean(bad) + 0.2, (right, bad)


def test_prediction_does_not_depend_on_the_batch(polyp_method, kvasir):
    _, targets = kvasir
    alone = polyp_method.predict_all(targets[3].image)["roi"].mask
    in_batch = polyp_method.predict_many([t.image for t in targets])[3]["roi"].mask
    in_small = polyp_method.predict_many([targets[0].image, targets[3].image])[1]["roi"].mask
    assert np.array_equal(alone, in_batch) and np.array_equal(alone, in_small)


def test_masks_have_no_speckle(polyp_method, kvasir):
    from scipy import ndimage

    _, targets = kvasir
    for t in targets:
        mask = polyp_method.predict(t.image).mask
        assert ndimage.label(mask, structure=np.ones((3, 3)))[1] <= 2
        assert not (ndimage.binary_fill_holes(mask) & ~mask).any()  # the reference polyp has no hole


def test_bad_references_name_the_image(litemedsam, kvasir):
    refs, _ = kvasir
    method = roiprompt.load_method("med_persam_plus", backbone=litemedsam, **HEAD_ONLY)
    a, b = refs
    with pytest.raises(InputError, match="b.png.*annotates.*a.png"):
        method.set_reference([(a.image, {"polyp": a.masks["polyp"]}), (b.image, {"lesion": b.masks["polyp"]})],
                             source=["a.png", "b.png"])
    with pytest.raises(InputError, match="empty.png"):
        method.set_reference(a.image, np.zeros_like(a.masks["polyp"]), source="empty.png")
    method.set_reference(a.image, {"polyp": a.masks["polyp"]}, source="a.png")
    with pytest.raises(InputError, match="c.png.*annotates"):
        method.add_reference(b.image, {"polyp": b.masks["polyp"], "extra": b.masks["polyp"]}, source="c.png")
    assert len(method.references) == 1  # a refused reference leaves the set as it was


def test_suggest_references_picks_medoids(polyp_method, kvasir):
    _, targets = kvasir
    images = [t.image for t in targets] + [targets[0].image[:, ::-1].copy()]
    picks = polyp_method.suggest_references(images, k=2)
    assert len(set(picks)) == 2 and all(0 <= i < len(images) for i in picks)
    with pytest.raises(InputError, match="k must be between 1 and 6"):
        polyp_method.suggest_references(images, k=7)
    # on a known geometry: two tight clusters, the medoid of each is chosen
    points = torch.tensor([[0.0], [0.1], [-0.1], [10.0], [10.2], [9.9]])
    assert sorted(k_medoids((points - points.T).abs(), 2)) == [0, 3]


def test_rule_trusts_registration_only_where_it_matches():
    def cand(source, fill, iou):
        logits = np.full((8, 8), -5.0)
        logits[fill] = 5.0
        c = Candidate(source, logits, iou)
        c.signals, c.score = {"iou_pred": iou}, iou
        return c

    head = cand("head", (slice(0, 4), slice(0, 4)), 0.9)
    warp = cand("warp", (slice(4, 8), slice(4, 8)), 0.8)
    raw = cand("registration", (slice(4, 8), slice(4, 8)), 0.8)
    assert rank([head, warp, raw], warp_match=0.2)[0] is head  # endoscopy-like: registration means nothing
    assert rank([head, warp, raw], warp_match=0.7)[0] is warp  # radiograph-like, they disagree: the warp
    leaky = cand("warp", (slice(2, 8), slice(2, 8)), 0.8)
    assert rank([head, leaky, raw], warp_match=0.7)[0] is raw  # the decoder leaked: the raw warped mask


def test_components_and_clean_mask():
    prob = np.zeros((32, 32))
    prob[2:10, 2:10] = 0.9
    prob[20:30, 20:30] = 0.6
    comps = components(prob > 0.5, prob, 3)
    assert len(comps) == 2 and comps[0][25, 25] and comps[1][5, 5]  # mass 60 > 57.6: the larger first
    mask = np.zeros((32, 32), bool)
    mask[5:20, 5:20] = True
    mask[10:12, 10:12] = False  # a hole
    mask[28, 28] = True  # a speck
    clean = clean_mask(mask, keep=None, fill_holes=True)
    assert clean[10, 10] and not clean[28, 28] and clean.sum() == 15 * 15


def test_jsrt_anatomy_uses_registration(litemedsam):
    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    train, test = data.split("train"), data.split("test")
    ref, targets = train[0], [test[i] for i in range(2)]
    method = roiprompt.load_method("med_persam_plus", backbone=litemedsam, warp_iterations=60,
                                   instance_iterations=60)
    method.set_reference(ref.image, {s: ref.masks[s] for s in ("heart", "left_clavicle")})
    for t in targets:
        preds = method.predict_all(t.image)
        assert preds["heart"].scores["warp_match"] > 0.45  # radiographs line up: registration is trusted
        assert preds["heart"].extras["source"] in ("warp", "registration", "head")
        assert metrics.dice(preds["heart"].mask, t.masks["heart"]) > 0.75
        assert metrics.dice(preds["left_clavicle"].mask, t.masks["left_clavicle"]) > 0.4
