"""One-shot methods (med_persam, registration, persam, persam_f) on real JSRT radiographs with LiteMedSAM."""

from __future__ import annotations

import numpy as np
import pytest

import roiprompt
from roiprompt import metrics
from roiprompt.errors import InputError
from roiprompt.methods.oneshot import OneShotMethod
from tests.conftest import data_root

LUNGS = ("left_lung", "right_lung")
FAST_WARP = dict(warp_iterations=60, instance_iterations=60)  # the defaults are 300 / 100: slower, not different


@pytest.fixture(scope="module")
def jsrt():
    """A train reference and 3 test targets (all 5 structures)."""
    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    train, test = data.split("train"), data.split("test")
    return train[0], [test[i] for i in range(3)]


@pytest.fixture(scope="module")
def med_persam(litemedsam, jsrt):
    reference, targets = jsrt
    method = roiprompt.load_method("med_persam", backbone=litemedsam, **FAST_WARP)
    method.set_reference(reference.image, {s: reference.masks[s] for s in (*LUNGS, "heart")},
                         pool=[t.image for t in targets])
    return method


def lung_dice(preds, targets):
    return [metrics.dice(p[s].mask, t.masks[s]) for p, t in zip(preds, targets) for s in LUNGS]


def test_med_persam_segments_lungs_from_one_reference(med_persam, jsrt):
    _, targets = jsrt
    calls = med_persam.predictor.encoder_calls
    preds = [med_persam.predict_all(t.image) for t in targets]
    assert med_persam.predictor.encoder_calls - calls == len(targets)  # once per image for all 3 structures
    dice = lung_dice(preds, targets)
    assert np.mean(dice) >= 0.85 and min(dice) >= 0.7, dice  # measured: mean 0.89, min 0.75
    for p, t in zip(preds, targets):
        assert set(p) == {*LUNGS, "heart"}
        heart = p["heart"]
        assert heart.mask.shape == t.image.shape[:2] and heart.mask.dtype == bool
        assert 0 <= heart.scores["iou_pred"] <= 1.5 and 0 <= heart.scores["warp_agreement"] <= 1
        assert heart.scores["quality"] == heart.scores["iou_pred"]  # the shared quality flag
        assert heart.extras["boxes"].shape == (1, 4) and heart.extras["warped_mask"].shape == t.image.shape[:2]
    assert med_persam.setting()["points_used"] == "none"  # LiteMedSAM takes boxes, not points


def test_med_persam_beats_persam_and_registration_is_a_sound_prior(med_persam, litemedsam, jsrt):
    reference, targets = jsrt
    ours = np.mean(lung_dice([med_persam.predict_all(t.image) for t in targets], targets))
    scores = {}
    for name, config in (("registration", FAST_WARP), ("persam", {})):
        method = roiprompt.load_method(name, backbone=litemedsam, **config)
        method.set_reference(reference.image, {s: reference.masks[s] for s in LUNGS})
        scores[name] = np.mean(lung_dice([method.predict_all(t.image) for t in targets], targets))
    assert ours > scores["persam"] + 0.2, (ours, scores)
    assert scores["registration"] > 0.6, scores  # the warp alone is a sensible prior


def test_single_structure_predict_and_point_schemes(litemedsam, jsrt):
    reference, targets = jsrt
    method = roiprompt.load_method("med_persam", backbone=litemedsam, points="subregion", multimask=False,
                                   refine_rounds=0, **FAST_WARP)
    method.set_reference(reference.image, reference.masks["left_lung"])
    assert method.structures == ["roi"]
    pred = method.predict(targets[0].image)
    points, labels = pred.extras["points"], pred.extras["point_labels"]
    assert 2 <= len(points) <= 8 and set(labels.tolist()) == {0, 1}
    truth = targets[0].masks["left_lung"]
    inside = [truth[int(y), int(x)] for (x, y), lab in zip(points, labels) if lab == 1]
    assert np.mean(inside) >= 0.75, inside  # positive points land in the target's lung


def test_persam_f_fits_mixing_weights_on_the_reference(litemedsam, jsrt):
    reference, targets = jsrt
    method = roiprompt.load_method("persam_f", backbone=litemedsam, iterations=50)
    method.set_reference(reference.image, reference.masks["left_lung"])
    weights = method.mix_weights["roi"]
    assert weights.shape == (3,) and float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(weights.numpy(), 1 / 3)  # the fit moved them
    pred = method.predict(targets[0].image)
    assert pred.mask.shape == targets[0].image.shape[:2] and np.isfinite(pred.scores["iou_pred"])


def test_predict_many_retrains_the_warp_on_confident_masks(litemedsam, jsrt):
    reference, targets = jsrt
    method = roiprompt.load_method("med_persam", backbone=litemedsam, retrain_rounds=1, retrain_iterations=10,
                                   retrain_min_iou=0.0, **FAST_WARP)
    method.set_reference(reference.image, {s: reference.masks[s] for s in LUNGS})
    before = [p.detach().clone() for p in method.warp_states[0].model.parameters()]
    calls = method.predictor.encoder_calls
    ticks = []
    preds = method.predict_many([t.image for t in targets], progress=lambda d, n: ticks.append((d, n)))
    assert method.predictor.encoder_calls - calls == len(targets)  # the second pass re-uses the embeddings
    assert method.retrain_pairs == len(targets) and ticks[-1] == (6, 6)
    assert any(not p.equal(q) for p, q in zip(before, method.warp_states[0].model.parameters()))
    assert min(lung_dice(preds, targets)) >= 0.75


def test_bad_inputs_are_refused_clearly(litemedsam, jsrt):
    reference, targets = jsrt
    method = roiprompt.load_method("persam", backbone=litemedsam)
    with pytest.raises(InputError, match="no reference set"):
        method.predict(targets[0].image)
    with pytest.raises(InputError, match="ref.png.*must match"):
        method.set_reference(reference.image, reference.masks["heart"][:-1], source="ref.png")
    with pytest.raises(InputError, match="no foreground"):
        method.set_reference(reference.image, np.zeros_like(reference.masks["heart"]))
    with pytest.raises(InputError, match="at least one"):
        method.fit([])
    method.fit([reference], structures=list(LUNGS))
    with pytest.raises(InputError, match="pass structure"):
        method.predict(targets[0].image)
    with pytest.raises(InputError, match="unknown structure"):
        method.predict(targets[0].image, structure="liver")
    with pytest.raises(InputError, match="takes no prompts"):
        method.predict(targets[0].image, structure="left_lung", box=[0, 0, 9, 9])
    with pytest.raises(InputError, match="unknown config"):
        roiprompt.load_method("med_persam", backbone=litemedsam, warp_iters=3)
    with pytest.raises(InputError, match="image"):
        method.predict(np.zeros((8, 8, 4), np.uint8), structure="left_lung")
    assert isinstance(method, OneShotMethod)


def test_oneshot_bench_records(litemedsam, monkeypatch):
    from roiprompt.evaluation import oneshot as oneshot_bench

    monkeypatch.setattr(oneshot_bench, "load_backbone", lambda *a, **k: litemedsam)
    run = oneshot_bench.run_oneshot_bench("registration", "jsrt", structures=["heart"], seeds=2, limit=3,
                                          root=str(data_root("jsrt").parent), warp_iterations=5,
                                          instance_iterations=20)
    assert len(run.references) == 2 and len(run.rows) == 6 and len(run.reference_seconds) == 2
    records = {r["metric"]: r for r in run.records("roiprompt bench registration --dataset jsrt")}
    assert set(records) == {"dice", "iou", "hd95", "flag_auroc_warp_agreement"} - {"flag_auroc_warp_agreement"}
    dice = records["dice"]
    assert dice["n"] == 2 and len(dice["seed_means"]) == 2 and dice["setting"]["shots"] == 1
    assert dice["mean"] == pytest.approx(np.mean([r["dice"] for r in run.rows]), abs=1e-9)
    assert "seed" not in dice["setting"] and dice["seconds_set_reference"] > 0
