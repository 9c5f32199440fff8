"""Benchmark record format."""

from __future__ import annotations

import json
import math

import pytest

from roiprompt.evaluation.records import REQUIRED_KEYS, load_records, make_record, write_records


def test_record_round_trip(tmp_path):
    r = make_record(method="m", backbone="b", dataset="d", structure="s", task="segmentation",
                    setting={"shots": 16, "seeds": 5}, metric="dice",
                    summary={"mean": 0.9, "ci95": (0.8, 0.95), "n": 10}, seconds_per_image=0.5, command="x")
    assert set(REQUIRED_KEYS) <= set(r) and r["peak_rss_mb"] > 0 and r["git_commit"]
    path = write_records(tmp_path / "sub" / "r.json", [r])
    assert json.loads(path.read_text())[0]["setting"] == {"shots": 16, "seeds": 5}
    with pytest.raises(ValueError, match="lacks"):
        write_records(tmp_path / "bad.json", [{"method": "m"}])


def test_undefined_values_are_strict_json_null_and_read_back_as_nan(tmp_path):
    r = make_record(method="m", backbone="b", dataset="d", structure=None, task="segmentation", setting={},
                    metric="flag_auroc", summary={"mean": float("nan"), "ci95": [float("nan"), 0.5], "n": 3},
                    seconds_per_image=float("nan"), command="x", extra={"seed_means": [0.5, float("inf")]})
    path = write_records(tmp_path / "r.json", [r])

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    strict = json.loads(path.read_text(), parse_constant=refuse)  # what a strict parser sees
    assert strict[0]["mean"] is None and strict[0]["ci95"] == [None, 0.5] and strict[0]["seed_means"] == [0.5, None]
    back = load_records(path)[0]
    assert math.isnan(back["mean"]) and math.isnan(back["ci95"][0]) and back["ci95"][1] == 0.5
    assert math.isnan(back["seconds_per_image"])
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed
