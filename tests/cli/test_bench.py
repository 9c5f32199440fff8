"""``roiprompt bench`` on your own folder: routing by the method's task, splits recorded, real LiteMedSAM."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import roiprompt.cli
from roiprompt.cli import main
from roiprompt.evaluation.records import REQUIRED_KEYS
from roiprompt.methods import list_methods
from tests.evaluation._folder import busbra_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 real BUS-BRA images (6 patients, 3 benign + 3 malignant) as images/, masks/lesion/, labels.csv with a
    group (patient) column; no official split."""
    return busbra_folder(tmp_path_factory.mktemp("bench"))


def test_oneshot_on_a_folder_with_a_seeded_split(folder, tmp_path):
    out = tmp_path / "r.json"
    code = main(["bench", "med_persam", "--dataset", "folder", "--root", str(folder), "--split", "seed:0",
                 "--limit", "2", "--cache-dir", str(tmp_path / "cache"), "--config", "warp_iterations=5",
                 "--config", "instance_iterations=5", "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert {r["metric"] for r in records} >= {"dice", "iou", "hd95"}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["method"] == "med_persam" and r["backbone"] == "litemedsam"
        assert r["split"] == "seed:0" and r["split_sizes"] == {"train": 8, "test": 4}
        assert r["dataset"] == "folder" and r["structure"] == "lesion" and r["targets_per_seed"] == 2
        assert r["variant"] == "warp_iterations=5,instance_iterations=5"
    reference = records[0]["references"][0]
    assert reference.split("_")[0] not in {"p0005", "p0007"}  # seed:0 puts these two patients in test
    dice = next(r for r in records if r["metric"] == "dice")
    assert 0 <= dice["mean"] <= 1 and dice["command"].startswith("roiprompt bench med_persam")


def test_classifier_on_a_folder_defaults_to_seed_0(folder, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["bench", "linear_probe_masked", "--dataset", "folder", "--root", str(folder), "--shots", "4",
                 "--cache-dir", str(tmp_path / "cache"), "--config", "views=1", "--config", "min_steps=20",
                 "--config", "epochs=1", "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 4 and {r["metric"] for r in records} == {"accuracy", "balanced_accuracy", "macro_f1",
                                                                    "auroc"}
    for r in records:
        assert set(REQUIRED_KEYS) <= set(r) and r["task"] == "classification"
        assert r["split"] == "seed:0" and r["split_sizes"] == {"train": 8, "test": 4}
        assert r["setting"]["shots"] == 4 and r["test_images"] == 4 and r["classes"] == ["benign", "malignant"]
    assert "split: seed:0 (train 8, test 4)" in capsys.readouterr().out


def test_split_file_is_recorded_with_its_hash(folder, tmp_path):
    split = tmp_path / "splits.csv"
    split.write_text("id,split\np0001_l,train\np0001_r,train\np0002_l,test\np0003_r,test\n")
    out = tmp_path / "r.json"
    assert main(["bench", "box_prompt", "--dataset", "folder", "--root", str(folder), "--split-file", str(split),
                 "--backbone", "test-litemedsam", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert {r["split"] for r in records} == {f"file:{split}#sha256=" + records[0]["split"].split("=")[-1]}
    assert len(records[0]["split"].split("=")[-1]) == 12 and records[0]["n"] == 2


def test_options_of_another_task_and_bad_splits_are_errors(folder, capsys):
    assert main(["bench", "med_persam", "--dataset", "folder", "--root", str(folder), "--label", "pathology"]) == 2
    assert "label" in capsys.readouterr().err
    assert main(["bench", "med_persam", "--dataset", "folder", "--root", str(folder), "--shots", "all"]) == 2
    assert "references per seed" in capsys.readouterr().err
    assert main(["bench", "box_prompt", "--dataset", "folder", "--root", str(folder), "--split", "random"]) == 2
    assert "unknown split" in capsys.readouterr().err
    assert main(["bench", "linear_probe", "--dataset", "folder", "--root", str(folder), "--split", "official"]) == 2
    assert "no official" in capsys.readouterr().err


def _conditions(tree: ast.AST):
    """(line, string constant) of every string tested in a condition, comparison or startswith/endswith."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
            exprs, prefix = [node.test], False
        elif isinstance(node, ast.Compare):
            exprs, prefix = [node], False
        elif isinstance(node, ast.comprehension):
            exprs, prefix = node.ifs, False
        elif isinstance(node, ast.match_case):
            exprs, prefix = [node.pattern], False
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")):
            exprs, prefix = node.args, True
        else:
            continue
        for expr in exprs:
            for c in ast.walk(expr):
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    yield getattr(c, "lineno", 0), c.value, prefix


def test_cli_routes_by_metadata_not_by_method_name():
    names = set(list_methods())
    caught = [v for src in ("if args.method == 'box_prompt': pass", "x = args.method.startswith('concept_text')",
                            "y = 1 if m in ('persam', 'a') else 2") for _, v, _ in _conditions(ast.parse(src))]
    assert {"box_prompt", "concept_text", "persam"} <= set(caught)  # the scan itself sees routing by name
    found = []
    for path in sorted(Path(roiprompt.cli.__file__).parent.glob("*.py")):
        for line, value, prefix in _conditions(ast.parse(path.read_text())):
            if value in names or (prefix and any(n.startswith(value) for n in names)):
                found.append(f"{path.name}:{line}: {value!r}")
    assert not found, "method names in CLI conditions: " + ", ".join(found)


def test_a_bad_method_setting_names_the_config_option(folder, capsys):
    """A misspelt choice is refused before any image is encoded, in the CLI's own terms (--config KEY=VALUE)."""
    code = main(["bench", "med_persam", "--dataset", "folder", "--root", str(folder), "--seeds", "1",
                 "--config", "points=subregon"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--config points='subregon'" in err and "'subregion'" in err and "Traceback" not in err
