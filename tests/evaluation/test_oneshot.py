"""The ``oneshot`` runner: seeded references from the train part, targets from the test part, split recorded."""

from __future__ import annotations

import numpy as np

from roiprompt.evaluation import run_benchmark
from roiprompt.evaluation.oneshot import run_oneshot_bench
from roiprompt.evaluation.records import REQUIRED_KEYS
from tests.conftest import data_root
from tests.evaluation._folder import busbra_folder

FAST = dict(warp_iterations=3, instance_iterations=2)


def test_per_structure_records_on_the_official_split():
    run = run_oneshot_bench("registration", "jsrt", structures=["heart", "left_lung"], seeds=1, limit=2,
                            root=str(data_root("jsrt").parent), backbone="test-litemedsam", **FAST)
    assert len(run.rows) == 4 and {r["structure"] for r in run.rows} == {"heart", "left_lung"}
    records = run.records("cmd")
    assert {r["structure"] for r in records} == {"heart", "left_lung"}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["split"] == "official" and r["references"] == run.references
    assert run.references[0].startswith("JPC")  # drawn from JSRT's official train split
    dice = next(r for r in records if r["metric"] == "dice" and r["structure"] == "heart")
    assert np.isclose(dice["mean"], np.mean([r["dice"] for r in run.rows if r["structure"] == "heart"]))


def test_folder_seeded_split_keeps_reference_patients_out_of_the_targets(tmp_path):
    root = busbra_folder(tmp_path)
    run = run_oneshot_bench("med_persam", "folder", seeds=2, root=str(root), backbone="test-litemedsam",
                            split="seed:0", **FAST)
    targets = {r["id"] for r in run.rows}
    assert len(targets) == 4 and len(run.references) == 2
    patient = lambda sid: sid.split("_")[0]  # noqa: E731
    assert not {patient(i) for i in run.references} & {patient(i) for i in targets}
    records = run.records("cmd")
    assert {r["split"] for r in records} == {"seed:0"}
    assert all(r["split_sizes"] == {"train": 8, "test": 4} and r["structure"] == "lesion" for r in records)
    dice = next(r for r in records if r["metric"] == "dice")
    assert dice["n"] == 2 and len(dice["seed_means"]) == 2 and dice["images"] == 8


def test_unreadable_target_is_recorded_not_dropped(tmp_path):
    root = busbra_folder(tmp_path)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    split = tmp_path / "splits.csv"
    split.write_text("id,split\n" + "".join(f"p{c}_{s},train\n" for c in ("0001", "0002") for s in "lr")
                     + "p0003_l,test\nbroken,test\n")
    records = run_benchmark("med_persam", "folder", root=str(root), backbone="test-litemedsam", seeds=1,
                            split_file=str(split), config=FAST, log=lambda m: None)
    dice = next(r for r in records if r["metric"] == "dice")
    assert dice["failures"] == 1 and dice["failed"][0].startswith("broken: ") and dice["targets_per_seed"] == 1
    assert dice["split"].startswith(f"file:{split}#sha256=") and dice["split_sizes"] == {"train": 4, "test": 2}
