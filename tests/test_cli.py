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
