"""The ``text_free_segmentation`` runner: a student's fit also scores its teacher; any dataset's structure."""

from __future__ import annotations

import numpy as np
import pytest

from roiprompt.errors import InputError
from roiprompt.evaluation import run_benchmark
from roiprompt.evaluation.concept import run_concept_bench
from roiprompt.evaluation.records import REQUIRED_KEYS
from roiprompt.evaluation.tasks import SEG_TASKS, segmentation_task
from tests.evaluation._folder import busbra_folder

FAST = dict(max_steps=2, batch_size=2)


def test_task_resolution():
    assert segmentation_task("jsrt", "lungs") == SEG_TASKS["jsrt_lungs"]
    assert segmentation_task("kvasir_seg") == SEG_TASKS["kvasir_polyp"]
    with pytest.raises(InputError, match="several"):
        segmentation_task("jsrt", None, ("heart", "left_lung"))
    generic = segmentation_task("folder", None, ("lesion",))
    assert generic["structure"] == "lesion" and generic["parts"] == ("lesion",) and generic["keyword"] is None
    with pytest.raises(InputError, match="choose one"):
        segmentation_task("folder", None, ("a", "b"))
    with pytest.raises(InputError, match="no structure"):
        segmentation_task("folder", "liver", ("lesion",))


def test_student_fit_also_scores_its_teacher_once(tmp_path, monkeypatch):
    from roiprompt.methods.concept_text.method import ConceptText

    fits = []
    fit = ConceptText.fit
    monkeypatch.setattr(ConceptText, "fit", lambda self, support: fits.append(type(self).name) or fit(self, support))
    root = busbra_folder(tmp_path)
    spec = segmentation_task("folder", None, ("lesion",))
    records = run_concept_bench(["concept_text", "concept_text_teacher"], spec, [1.0], root=str(root),
                                backbone="test-litemedsam", config=FAST, limit=2, command="cmd", log=lambda m: None)
    assert fits == ["concept_text"]  # one fit gives both rows
    assert {(r["method"], r["metric"]) for r in records} == {
        (m, k) for m in ("concept_text", "concept_text_teacher") for k in ("dice", "iou", "hd95")}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["structure"] == "lesion" and r["dataset"] == "folder"
        assert r["split"] == "seed:0" and r["split_sizes"] == {"train": 8, "test": 4} and r["test_images"] == 2
        assert r["setting"]["train_images"] == 8 and len(r["per_image"]) == 2
        assert np.isclose(np.mean(r["per_image"]), r["mean"], atol=1e-3)


def test_teacher_alone_is_fitted_and_unreadable_test_images_are_recorded(tmp_path):
    root = busbra_folder(tmp_path)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    split = tmp_path / "splits.csv"
    split.write_text("id,split\np0001_l,train\np0001_r,train\np0002_l,train\np0003_l,test\nbroken,test\n")
    records = run_benchmark("concept_text_teacher", "folder", root=str(root), backbone="test-litemedsam",
                            split_file=str(split), config=FAST, log=lambda m: None)
    assert {r["method"] for r in records} == {"concept_text_teacher"}
    r = records[0]
    assert r["failures"] == 1 and r["failed"][0].startswith("broken: ") and r["test_images"] == 1
    assert r["split"].startswith(f"file:{split}#sha256=")
