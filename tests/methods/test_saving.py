"""Fitted methods saved and loaded without pickle (issue 21): ``method.save(path)`` / ``roiprompt.load_fitted``.

Every method is fit here on real BUS-BRA images, saved, and loaded again in a *fresh process*, which predicts the
held-out images; masks, scores, low-res logits and class probabilities must equal the saved method's bit for bit.
The tiny random ``test-litemedsam`` keeps this fast; one ``med_persam_plus`` runs on the real LiteMedSAM too.
Then the refusals: a tampered or missing file, another backbone, a newer format, a method that cannot be saved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.data import sample_per_class
from roiprompt.errors import CheckpointError, InputError, NotSavableError
from roiprompt.methods.saving import FITTED_FILE, FORMAT_VERSION, TENSOR_FILE
from tests.conftest import data_root

REPO = Path(__file__).resolve().parents[2]
WARP = dict(warp_iterations=3, instance_iterations=2)
#: name -> (method, config): small settings, so the whole module stays well under a minute
ONESHOT = {"med_persam_plus": ("med_persam_plus", dict(WARP, views=2)), "med_persam": ("med_persam", WARP),
           "registration": ("registration", WARP), "persam": ("persam", {}),
           "persam_f": ("persam_f", dict(iterations=5))}
CLASSIFIERS = {name: (name, dict(views=2, max_steps=3)) for name in
               ("segprompt", "linear_probe_masked", "vpt", "linear_probe")}
#: the other classifiers, on the backbone each needs (CLIP: the guided blocks and the text tower)
OTHER_CLASSIFIERS = {"medfocusclip": ("test-clip", dict(views=2, max_steps=3, guided_blocks=2)),
                     "zero_shot": ("test-clip", {}), "finetune": ("test-litemedsam", dict(views=1, max_steps=2)),
                     "mask_channel": ("test-litemedsam", dict(views=1, max_steps=2))}

# Runs in a new interpreter: loads each saved folder and predicts the held-out images (arrays, no pickle).
FRESH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    import roiprompt

    root = Path(sys.argv[1])
    job = json.loads((root / "job.json").read_text())
    torch.set_num_threads(job["threads"])
    images = [np.load(root / f"target{i}.npy") for i in range(job["targets"])]
    masks = [np.load(root / f"mask{i}.npy") for i in range(job["targets"])]
    out = {}
    for name, kind in job["methods"].items():
        method = roiprompt.load_fitted(root / name)
        for i, image in enumerate(images):
            if kind == "oneshot":
                pred = method.predict(image)
                out[f"{name}/{i}/mask"] = pred.mask
                out[f"{name}/{i}/logits"] = pred.extras.get("low_res_logits", np.zeros(0))
                out[f"{name}/{i}/scores"] = np.array([pred.scores[k] for k in sorted(pred.scores)], np.float64)
            else:
                pred = method.predict(image, mask=None if kind == "chain" else masks[i])
                out[f"{name}/{i}/proba"] = np.array([pred.scores[c] for c in method.classes], np.float64)
                if kind == "chain":
                    out[f"{name}/{i}/roi"] = pred.extras["mask"]
    np.savez(root / "fresh.npz", **out)
""")


@pytest.fixture(scope="module")
def busbra():
    """(reference, 2 + 2 labelled support samples, 2 held-out test samples) of BUS-BRA."""
    data = roiprompt.load_dataset("busbra", root=data_root("busbra"), label="pathology")
    train, test = data.split("train"), data.split("test")
    support = [train[i] for i in sample_per_class(train, 2, seed=0)]
    return support[0], support, [test[i] for i in range(2)]


@pytest.fixture(scope="module")
def tiny():
    return roiprompt.load_backbone("test-litemedsam")


def _outputs(name: str, kind: str, method, targets) -> dict[str, np.ndarray]:
    out = {}
    for i, t in enumerate(targets):
        if kind == "oneshot":
            pred = method.predict(t.image)
            out[f"{name}/{i}/mask"] = pred.mask
            out[f"{name}/{i}/logits"] = pred.extras.get("low_res_logits", np.zeros(0))
            out[f"{name}/{i}/scores"] = np.array([pred.scores[k] for k in sorted(pred.scores)], np.float64)
        else:
            pred = method.predict(t.image, mask=None if kind == "chain" else t.masks["lesion"])
            out[f"{name}/{i}/proba"] = np.array([pred.scores[c] for c in method.classes], np.float64)
            if kind == "chain":
                out[f"{name}/{i}/roi"] = pred.extras["mask"]
    return out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, busbra, tiny, litemedsam):
    """Fit and save every method, predict with the originals, then load and predict in one fresh process."""
    root = tmp_path_factory.mktemp("fitted")
    reference, support, targets = busbra
    kinds, originals, expected = {}, {}, {}
    for name, (method_name, config) in ONESHOT.items():
        originals[name] = roiprompt.load_method(method_name, backbone=tiny, **config).set_reference(
            reference.image, {"lesion": reference.masks["lesion"]}, source=reference.id)
        kinds[name] = "oneshot"
    for name, (method_name, config) in CLASSIFIERS.items():
        originals[name] = roiprompt.load_method(method_name, backbone=tiny, **config).fit(support)
        kinds[name] = "classifier"
    clip = roiprompt.load_backbone("test-clip")
    for name, (backbone, config) in OTHER_CLASSIFIERS.items():
        originals[name] = roiprompt.load_method(name, backbone=clip if backbone == "test-clip" else tiny,
                                                **config).fit(support)
        kinds[name] = "classifier"
    # a classifier whose ROI comes from a fitted one-shot segmenter: saved as a part of its folder
    segmenter = roiprompt.load_method("persam", backbone=tiny).set_reference(reference.image, reference.masks["lesion"])
    originals["chain"] = roiprompt.load_method("linear_probe_masked", backbone=tiny, segmenter=segmenter,
                                               **CLASSIFIERS["linear_probe_masked"][1]).fit(support)
    kinds["chain"] = "chain"
    # the real LiteMedSAM once (default localisers, small warp fit)
    originals["real_med_persam_plus"] = roiprompt.load_method("med_persam_plus", backbone=litemedsam, views=2, **WARP)
    originals["real_med_persam_plus"].set_reference(reference.image, reference.masks["lesion"])
    kinds["real_med_persam_plus"] = "oneshot"
    for name, method in originals.items():
        assert method.save(root / name) == root / name
        expected.update(_outputs(name, kinds[name], method, targets))
    for i, t in enumerate(targets):
        np.save(root / f"target{i}.npy", t.image)
        np.save(root / f"mask{i}.npy", t.masks["lesion"])
    (root / "job.json").write_text(json.dumps({"methods": kinds, "targets": len(targets),
                                               "threads": torch.get_num_threads()}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", FRESH, str(root)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(root / "fresh.npz", allow_pickle=False) as npz:
        got = {k: npz[k] for k in npz.files}
    return root, originals, expected, got


def _same(expected: dict, got: dict, name: str) -> None:
    keys = sorted(k for k in expected if k.startswith(f"{name}/"))
    assert keys and keys == sorted(k for k in got if k.startswith(f"{name}/"))
    for key in keys:
        a, b = expected[key], got[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{key} differs after loading"


@pytest.mark.parametrize("name", [*ONESHOT, "real_med_persam_plus"])
def test_oneshot_predicts_the_same_masks_in_a_fresh_process(fitted, name):
    _, _, expected, got = fitted
    _same(expected, got, name)
    assert any(expected[f"{name}/{i}/mask"].any() for i in range(2))  # not a trivially empty answer


@pytest.mark.parametrize("name", [*CLASSIFIERS, *OTHER_CLASSIFIERS, "chain"])
def test_classifier_predicts_the_same_probabilities_in_a_fresh_process(fitted, name):
    _, _, expected, got = fitted
    _same(expected, got, name)


def test_folder_records_what_it_needs(fitted):
    root, originals, _, _ = fitted
    record = json.loads((root / "med_persam_plus" / FITTED_FILE).read_text())
    assert record["format_version"] == FORMAT_VERSION and record["roiprompt_version"]
    assert record["method"] == "med_persam_plus" and record["config"]["warp_iterations"] == 3
    assert record["backbone"]["name"] == "test-litemedsam"
    assert record["backbone"]["weights_sha256"] == originals["med_persam_plus"].backbone.weights_sha256
    assert set(record["files"]) == {TENSOR_FILE} and len(record["files"][TENSOR_FILE]["sha256"]) == 64
    assert record["state"]["structures"] == ["lesion"] and record["state"]["heads"] == [True]
    chain = json.loads((root / "chain" / FITTED_FILE).read_text())
    assert chain["parts"]["segmenter"]["folder"] == "segmenter"
    assert json.loads((root / "chain" / "segmenter" / FITTED_FILE).read_text())["method"] == "persam"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary folder left behind



def test_a_head_holding_the_frozen_backbone_saves_only_its_own_tensors(tiny):
    """A head that registers the shared backbone as a submodule: its weights are loaded by name, never copied."""
    from roiprompt.methods.classification.base import _backbone_keys

    head = torch.nn.Module()
    head.backbone, head.linear = tiny, torch.nn.Linear(2, 2)
    keys = _backbone_keys(head, tiny)
    assert keys and keys == {k for k in head.state_dict() if k.startswith("backbone.")}


def test_loaded_config_and_state_equal_the_original(fitted, tiny):
    root, originals, _, _ = fitted
    for name in ("med_persam", "segprompt", "chain"):
        loaded = roiprompt.load_fitted(root / name, backbone=tiny)
        assert loaded.config == originals[name].config and loaded.backbone is tiny
    assert isinstance(loaded.config.classes, (tuple, type(None)))
    assert loaded.classes == originals["chain"].classes and loaded.segmenter.name == "persam"
    assert loaded.segmenter.backbone is tiny  # the part shares the backbone it was saved with
    mpp = roiprompt.load_fitted(root / "med_persam", backbone="test-litemedsam")
    assert isinstance(mpp.config.retrain_area_range, tuple)


def test_loading_refits_nothing(fitted, tiny, monkeypatch):
    """The fitted state is restored, not recomputed: every fit entry point raises while loading."""
    from roiprompt.methods.baselines import persam
    from roiprompt.methods.classification import base
    from roiprompt.methods.med_persam import warp_prior
    from roiprompt.methods.med_persam_plus import method as plus
    from roiprompt.methods.oneshot import OneShotMethod

    def refit(*args, **kwargs):
        raise AssertionError("load_fitted refit something")

    for owner, name in [(warp_prior, "fit_warping"), (plus, "fit_token_head"), (persam, "_fit_mix_weights"),
                        (base, "train_classifier"), (OneShotMethod, "_on_reference")]:
        monkeypatch.setattr(owner, name, refit)
    root, originals, _, _ = fitted
    for name in [*ONESHOT, *CLASSIFIERS, "chain"]:
        roiprompt.load_fitted(root / name, backbone=tiny)


def test_add_reference_after_loading_matches_the_original(tmp_path, busbra, tiny):
    reference, support, targets = busbra
    config = dict(WARP, views=2)
    original = roiprompt.load_method("med_persam_plus", backbone=tiny, **config)
    original.set_reference(reference.image, reference.masks["lesion"])
    loaded = roiprompt.load_fitted(original.save(tmp_path / "m"), backbone=tiny)
    for method in (original, loaded):
        method.add_reference(support[2].image, support[2].masks["lesion"])
    a, b = original.predict(targets[0].image), loaded.predict(targets[0].image)
    assert np.array_equal(a.mask, b.mask) and a.scores == b.scores


# -- refusals -------------------------------------------------------------------------------------------------------
@pytest.fixture
def saved(fitted, tmp_path):
    """A private copy of the saved persam folder, free to damage."""
    return Path(shutil.copytree(fitted[0] / "persam", tmp_path / "persam"))


def test_tampered_tensor_file_is_refused(saved):
    file = saved / TENSOR_FILE
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{TENSOR_FILE}: SHA-256 .* differs from the recorded"):
        roiprompt.load_fitted(saved)


def test_another_backbone_is_refused(saved):
    other = roiprompt.load_backbone("test-litemedsam", seed=1)
    record = json.loads((saved / FITTED_FILE).read_text())["backbone"]["weights_sha256"]
    with pytest.raises(CheckpointError, match="weights SHA-256") as err:
        roiprompt.load_fitted(saved, backbone=other)
    assert record in str(err.value) and other.weights_sha256 in str(err.value)
    with pytest.raises(CheckpointError, match="'test-sam'"):
        roiprompt.load_fitted(saved, backbone="test-sam")


def test_newer_format_is_refused(saved):
    record = json.loads((saved / FITTED_FILE).read_text())
    record["format_version"] = FORMAT_VERSION + 1
    (saved / FITTED_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="upgrade roiprompt"):
        roiprompt.load_fitted(saved)
    record["format_version"] = FORMAT_VERSION
    record["config"]["smarter"] = True  # a field of another roiprompt version
    (saved / FITTED_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="saved config does not fit .*'persam'.*smarter"):
        roiprompt.load_fitted(saved)


def test_missing_files_are_refused(saved, tmp_path):
    (saved / TENSOR_FILE).unlink()
    with pytest.raises(CheckpointError, match=rf"{TENSOR_FILE}: missing"):
        roiprompt.load_fitted(saved)
    (saved / FITTED_FILE).unlink()
    with pytest.raises(CheckpointError, match=rf"{FITTED_FILE}: missing"):
        roiprompt.load_fitted(saved)
    with pytest.raises(CheckpointError, match="no such folder"):
        roiprompt.load_fitted(tmp_path / "nowhere")


def test_what_cannot_be_saved_is_refused_before_writing(tmp_path, tiny, fitted):
    method = roiprompt.load_method("concept_text", backbone=tiny)
    with pytest.raises(NotSavableError, match="concept_text") as err:
        method.save(tmp_path / "c")
    assert isinstance(err.value, NotImplementedError)
    with pytest.raises(InputError, match="no reference set"):
        roiprompt.load_method("persam", backbone=tiny).save(tmp_path / "p")
    with pytest.raises(InputError, match="call fit"):
        roiprompt.load_method("segprompt", backbone=tiny).save(tmp_path / "s")
    assert not list(tmp_path.iterdir())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="refusing to replace"):
        fitted[1]["persam"].save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_saving_again_replaces_the_folder(fitted, tmp_path):
    persam = fitted[1]["persam"]
    first = persam.save(tmp_path / "p")
    (first / "stale").write_text("x")
    persam.save(first)
    assert sorted(p.name for p in first.iterdir()) == sorted([FITTED_FILE, TENSOR_FILE])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
