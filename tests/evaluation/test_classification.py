"""The ``classification`` runner on a folder dataset: seeded stratified split, records per mask source x score."""

from __future__ import annotations

from roiprompt.evaluation import run_benchmark
from roiprompt.evaluation.classification import SCORES
from roiprompt.evaluation.records import REQUIRED_KEYS
from tests.evaluation._folder import busbra_folder

FAST = dict(views=1, epochs=1, min_steps=3)


def test_folder_records_name_the_split_and_keep_failures(tmp_path):
    root = busbra_folder(tmp_path)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with open(root / "labels.csv", "a") as f:
        f.write("broken,benign,patient9999\n")
    split = tmp_path / "splits.csv"
    split.write_text("id,split\n" + "".join(f"p{c}_{s},train\n" for c in ("0001", "0002", "0003", "0004")
                                            for s in "lr")
                     + "p0005_l,test\np0007_l,test\nbroken,test\n")
    records = run_benchmark("linear_probe_masked", "folder", root=str(root), backbone="test-litemedsam", shots=[2],
                            seeds=2, mask_sources=["gt", "gt_dilated"], split_file=str(split),
                            cache_dir=str(tmp_path / "cache"), config=FAST, command="cmd", log=lambda m: None)
    assert {(r["mask_source"], r["metric"]) for r in records} == {
        (s, k) for s in ("gt", "gt_dilated") for k in SCORES}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["task"] == "classification" and r["method"] == "linear_probe_masked"
        assert r["split"].startswith(f"file:{split}#sha256=") and r["split_sizes"] == {"train": 8, "test": 3}
        assert r["failures"] == 1 and r["failed"][0].startswith("broken: ") and r["test_images"] == 2
        assert r["setting"]["shots"] == 2 and len(r["seed_values"]) == 2
        assert r["classes"] == ["benign", "malignant"]


def test_folder_default_split_is_seed_0(tmp_path):
    root = busbra_folder(tmp_path)
    records = run_benchmark("linear_probe", "folder", root=str(root), backbone="test-litemedsam", shots=[4], seeds=1,
                            config=FAST, log=lambda m: None)
    assert {r["split"] for r in records} == {"seed:0"} and records[0]["test_images"] == 4
    assert records[0]["split_sizes"] == {"train": 8, "test": 4} and "failures" not in records[0]
