"""The command line, called in-process through main(argv)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from roiprompt.cli import main
from roiprompt.engine.records import REQUIRED_KEYS
from tests.conftest import data_root


def test_datasets_lists_counts(capsys):
    root = data_root("kvasir_seg").parent
    assert main(["datasets", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "kvasir_seg" in out and "1000" in out and "1875" in out and "247" in out


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
    assert len(list((out / "masks").glob("*.png"))) == 2
    assert len(list((out / "overlays").glob("*.png"))) == 2
    mask = np.array(Image.open(next((out / "masks").glob("*.png"))))
    assert mask.any()
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,iou_pred,area_px" and len(rows) == 3


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
    assert main(["demo", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "ROIPROMPT_DATA" in capsys.readouterr().out


def test_demo_on_real_data(tmp_path, capsys):
    root = data_root("kvasir_seg").parent
    assert main(["demo", "--root", str(root), "--n", "1", "--out", str(tmp_path / "o")]) == 0
    assert "mean Dice" in capsys.readouterr().out
    assert len(list((tmp_path / "o").glob("*.png"))) >= 3


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
    assert rows[0] == "image,structure,iou_pred,warp_agreement,area_px" and len(rows) == 7
    for row in rows[1:]:
        image, structure, iou, agreement, area = row.split(",")
        assert image.split(".")[0] in ids and structure in ("left_lung", "heart")
        assert np.isfinite(float(iou)) and 0 <= float(agreement) <= 1 and int(area) > 0


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
                 "--config", "min_steps=2", "--config", "epochs=1", "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 8  # 2 mask sources x 4 scores
    assert all(set(REQUIRED_KEYS) <= set(r) and r["task"] == "classification" for r in records)
    assert {r["mask_source"] for r in records} == {"gt", "gt_dilated"}
    assert all(r["variant"] == "views=1,min_steps=2,epochs=1" for r in records)


def test_explain_writes_attention_panels(tmp_path, capsys):
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
