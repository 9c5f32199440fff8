"""``classify fit | predict`` and ``oneshot --save-reference / --reference-dir``: fitted methods leave the process
that fitted them through the CLI, and come back predicting what the API predicts. Real BUS-BRA images; the tiny
random ``test-litemedsam`` (the values must match, not be good)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import roiprompt
from roiprompt.cli import main
from roiprompt.data import read_image, read_mask
from tests.cli.test_batch_runs import busbra_images, copy_images
from tests.conftest import data_root

TINY = ["--backbone", "test-litemedsam"]
QUICK = ["--config", "epochs=2", "--config", "min_steps=2", "--config", "views=1"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def reference() -> list[str]:
    root = data_root("busbra") / "BUSBRA"
    return ["--reference", str(root / "Images" / "bus_0001-l.png"),
            "--reference-mask", str(root / "Masks" / "mask_0001-l.png")]


@pytest.fixture
def study(tmp_path) -> tuple[Path, Path]:
    """6 BUS-BRA images and their masks, named like the images (what --masks reads)."""
    root = data_root("busbra") / "BUSBRA"
    images = copy_images(busbra_images(6, offset=40), tmp_path / "images")
    masks = tmp_path / "masks"
    masks.mkdir()
    for image in images.iterdir():
        shutil.copyfile(root / "Masks" / image.name.replace("bus_", "mask_"), masks / image.name)
    return images, masks


def fit(tmp_path: Path, *extra: str) -> Path:
    model = tmp_path / "model"
    assert main(["classify", "fit", "--dataset", "busbra", "--root", str(data_root("busbra").parent), "--split",
                 "train", "--shots", "3", *TINY, *QUICK, "--save", str(model), *extra]) == 0
    return model


def test_classify_predict_matches_the_api_and_resumes(tmp_path, study, capsys):
    images, masks = study
    model = fit(tmp_path)
    (images / "bus_9999-x.png").write_bytes((images / sorted(p.name for p in images.iterdir())[0]).read_bytes())
    out = tmp_path / "out"
    command = ["classify", "predict", "--model", str(model), "--images", str(images), "--masks", str(masks),
               "--out", str(out)]
    assert main(command) == 1  # the image without a mask is skipped and reported
    log = capsys.readouterr().out
    assert "6 classified, 1 skipped" in log and "bus_9999-x.png: no ROI mask" in log
    table = rows(out / "predictions.csv")
    assert [r["image"] for r in table] == sorted(p.name for p in masks.iterdir())
    method = roiprompt.load_fitted(model)
    assert list(table[0]) == ["image", "slice", "label", *(f"p_{c}" for c in method.classes), "roi"]
    for row in table:
        pred = method.predict(read_image(images / row["image"]), read_mask(masks / row["image"]))
        assert row["label"] == pred.label
        assert [float(row[f"p_{c}"]) for c in method.classes] == [round(pred.scores[c], 4) for c in method.classes]
        assert row["roi"] == row["image"]
    before = (out / "predictions.csv").read_bytes()
    assert main(command) == 1
    assert "6 of them done by an earlier run" in capsys.readouterr().out
    assert (out / "predictions.csv").read_bytes() == before


def test_classifier_with_a_saved_segmenter_needs_no_masks(tmp_path, study, capsys):
    """oneshot --save-reference -> classify fit --segmenter-dir -> predict segments each ROI itself."""
    images, _ = study
    reference_dir = tmp_path / "reference"
    assert main(["oneshot", *reference(), "--images", str(images), "--out", str(tmp_path / "seg"), "--method",
                 "persam", *TINY, "--save-reference", str(reference_dir)]) == 0
    model = fit(tmp_path, "--segmenter-dir", str(reference_dir))
    out = tmp_path / "out"
    assert main(["classify", "predict", "--model", str(model), "--images", str(images), "--out", str(out)]) == 0
    table = rows(out / "predictions.csv")
    assert len(table) == 6 and {r["roi"] for r in table} == {"segmenter persam"}
    for row in table:  # the ROI the classifier used is the one-shot mask of the oneshot run
        stem = row["image"].removesuffix(".png")
        assert (out / "masks" / f"{stem}_roi.png").read_bytes() == (
            tmp_path / "seg" / "masks" / f"{stem}_roi.png").read_bytes()
    # without a segmenter and without --masks, predict refuses before loading anything
    plain = fit(tmp_path / "plain")
    capsys.readouterr()
    assert main(["classify", "predict", "--model", str(plain), "--images", str(images), "--out",
                 str(tmp_path / "none")]) == 2
    assert "give --masks DIR" in capsys.readouterr().err


def test_reference_dir_reproduces_the_fitted_run(tmp_path, study, capsys):
    images, _ = study
    saved = tmp_path / "reference"
    common = ["--images", str(images), *TINY]
    assert main(["oneshot", *reference(), *common, "--method", "med_persam", "--warp-iterations", "5",
                 "--out", str(tmp_path / "a"), "--save-reference", str(saved)]) == 0
    assert main(["oneshot", "--reference-dir", str(saved), *common, "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    names = sorted(p.name for p in (a / "masks").iterdir())
    assert len(names) == 6
    assert [(b / "masks" / n).read_bytes() for n in names] == [(a / "masks" / n).read_bytes() for n in names]
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert (a / "overlays" / "reference.png").read_bytes() == (b / "overlays" / "reference.png").read_bytes()
    settings = json.loads((b / "manifest.jsonl").read_text().splitlines()[0])["settings"]
    assert settings["method"] == "med_persam" and "fitted_sha256" in settings["reference"]
    # the API reads the same folder
    method = roiprompt.load_fitted(saved)
    first = sorted(images.iterdir())[0]
    expected = read_mask(a / "masks" / f"{first.stem}_roi.png", allow_empty=True)
    assert np.array_equal(method.predict(read_image(first)).mask, expected)
    capsys.readouterr()
    # refusals: another method, a classifier folder, a tampered folder, both reference forms
    assert main(["oneshot", "--reference-dir", str(saved), *common, "--method", "persam", "--out",
                 str(tmp_path / "c")]) == 2
    assert "holds a fitted 'med_persam'" in capsys.readouterr().err
    model = fit(tmp_path)
    assert main(["oneshot", "--reference-dir", str(model), *common, "--out", str(tmp_path / "d")]) == 2
    assert "not a one-shot method" in capsys.readouterr().err
    assert main(["classify", "predict", "--model", str(saved), "--images", str(images), "--out",
                 str(tmp_path / "e")]) == 2
    assert "not a classifier" in capsys.readouterr().err
    tensors = saved / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 1
    tensors.write_bytes(bytes(data))
    assert main(["oneshot", "--reference-dir", str(saved), *common, "--out", str(tmp_path / "f")]) == 2
    assert "differs from the recorded" in capsys.readouterr().err
    assert main(["oneshot", "--reference-dir", str(saved), *reference(), *common, "--out", str(tmp_path / "g")]) == 2
    assert "not both" in capsys.readouterr().err


def test_mask_files_pairs_each_image_with_its_masks(tmp_path):
    """<stem>.<ext> first, else every <stem>_<structure>.png, each owned by the longest stem it starts with."""
    from roiprompt.batch.inputs import Input
    from roiprompt.cli.classify import mask_files

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for name in ("a.png", "a_2.png", "b.png", "c.png", "d.png"):
        (images / name).write_bytes(b"")
    for name in ("a_roi.png", "a_2_roi.png", "b.jpg", "b_roi.png", "c_left_lung.png", "c_heart.png", "x.png"):
        (masks / name).write_bytes(b"")
    inputs = [Input(images / n) for n in ("a.png", "a_2.png", "b.png", "c.png", "d.png")]
    found = {item.path.name: sorted(p.name for p in paths) for item, paths in mask_files(masks, inputs).items()}
    assert found == {"a.png": ["a_roi.png"], "a_2.png": ["a_2_roi.png"], "b.png": ["b.jpg"],
                     "c.png": ["c_heart.png", "c_left_lung.png"]}


def test_fit_takes_a_share_of_each_class(tmp_path, capsys):
    args = ["classify", "fit", "--dataset", "busbra", "--root", str(data_root("busbra").parent), "--split", "train",
            *TINY, *QUICK, "--save", str(tmp_path / "model")]
    assert main([*args, "--shots", "1%"]) == 0  # 1 % of each class of the train split: MedFocusCLIP's protocol
    out = capsys.readouterr().out
    train = roiprompt.data.load_dataset("busbra", root=data_root("busbra").parent, label="pathology").split("train")
    expected = len(roiprompt.data.sample_fraction(train, 0.01, seed=0))
    assert f"training on {expected} labelled images" in out, out
    assert main([*args, "--shots", "x%"]) != 0
    assert "'x%' is not a percentage" in capsys.readouterr().err
