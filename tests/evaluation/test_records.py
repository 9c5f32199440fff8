"""Benchmark record format."""

from __future__ import annotations

import json

import pytest

from roiprompt.evaluation.records import REQUIRED_KEYS, make_record, write_records


def test_record_round_trip(tmp_path):
    r = make_record(method="m", backbone="b", dataset="d", structure="s", task="segmentation",
                    setting={"shots": 16, "seeds": 5}, metric="dice",
                    summary={"mean": 0.9, "ci95": (0.8, 0.95), "n": 10}, seconds_per_image=0.5, command="x")
    assert set(REQUIRED_KEYS) <= set(r) and r["peak_rss_mb"] > 0 and r["git_commit"]
    path = write_records(tmp_path / "sub" / "r.json", [r])
    assert json.loads(path.read_text())[0]["setting"] == {"shots": 16, "seeds": 5}
    with pytest.raises(ValueError, match="lacks"):
        write_records(tmp_path / "bad.json", [{"method": "m"}])
