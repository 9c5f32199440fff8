"""The ``segmentation`` runner (box_prompt-style oracle prompts) on real images with the tiny random LiteMedSAM."""

from __future__ import annotations

import numpy as np

from roiprompt.evaluation import run_benchmark
from roiprompt.evaluation.records import REQUIRED_KEYS
from roiprompt.evaluation.segmentation import run_segmentation_bench
from tests.conftest import data_root
from tests.evaluation._folder import busbra_folder


def test_one_record_per_structure_and_metric_on_every_image_by_default():
    root = str(data_root("jsrt").parent)
    run = run_segmentation_bench("box_prompt", "jsrt", structures=["heart", "left_lung"], limit=2, root=root,
                                 backbone="test-litemedsam")
    assert len(run.rows) == 4 and {r["structure"] for r in run.rows} == {"heart", "left_lung"}
    records = run.records("cmd")
    assert {(r["structure"], r["metric"]) for r in records} == {
        (s, m) for s in ("heart", "left_lung") for m in ("dice", "iou", "hd95")}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["task"] == "segmentation" and r["n"] == 2
        assert r["split"] == "all" and "failures" not in r  # box_prompt's committed protocol: every image
        rows = [x[r["metric"]] for x in run.rows if x["structure"] == r["structure"]]
        assert np.isclose(r["mean"], np.mean(rows))


def test_folder_with_a_split_scores_its_test_part_and_records_failures(tmp_path):
    root = busbra_folder(tmp_path)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    records = run_benchmark("box_prompt", "folder", root=str(root), backbone="test-litemedsam", command="cmd",
                            log=lambda m: None)
    dice = next(r for r in records if r["metric"] == "dice")
    assert dice["split"] == "all" and dice["n"] == 12  # every readable image, the broken one listed apart
    assert dice["failures"] == 1 and dice["failed"][0].startswith("broken: ")
    path = tmp_path / "splits.csv"
    path.write_text("id,split\nbroken,test\np0001_l,test\np0002_l,train\n")
    records = run_benchmark("box_prompt", "folder", root=str(root), backbone="test-litemedsam",
                            split_file=str(path), log=lambda m: None)
    dice = next(r for r in records if r["metric"] == "dice")
    assert dice["split"].startswith(f"file:{path}#sha256=") and dice["split_sizes"] == {"train": 1, "test": 2}
    assert dice["n"] == 1 and dice["failures"] == 1
    assert all(set(REQUIRED_KEYS) <= set(r) for r in records)
