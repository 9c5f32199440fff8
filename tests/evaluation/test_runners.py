"""The runner registry: one runner per method task, routing by metadata, a shared option vocabulary."""

from __future__ import annotations

import pytest

import roiprompt.evaluation.runners as runners
from roiprompt.errors import InputError
from roiprompt.evaluation import RUNNERS, run_benchmark, runner_options
from roiprompt.methods import list_methods, method_info
from roiprompt.methods.base import TASKS

COMMON = ("root", "backbone", "structures", "limit", "seeds", "split", "split_file", "cache_dir", "config",
          "command", "progress", "log")


def test_one_runner_per_task_and_every_method_has_one():
    assert set(RUNNERS) == set(TASKS)
    assert {method_info(m).task for m in list_methods()} <= set(RUNNERS)
    for task in RUNNERS:
        assert set(COMMON) <= set(runner_options(task)), task


def test_routing_uses_the_method_task(monkeypatch):
    seen = []
    for task in RUNNERS:
        monkeypatch.setitem(runners.RUNNERS, task, lambda method, dataset, *, task=task, **kw: seen.append(
            (task, method, dataset, kw)) or [])
        monkeypatch.setattr(runners, "runner_options", lambda task: COMMON + ("shots",))
    for method in ("box_prompt", "med_persam", "linear_probe_masked", "concept_text"):
        run_benchmark(method, "folder", root="x", shots=[4] if method == "linear_probe_masked" else None)
    assert [(t, m) for t, m, _, _ in seen] == [("segmentation", "box_prompt"), ("oneshot", "med_persam"),
                                               ("classification", "linear_probe_masked"),
                                               ("text_free_segmentation", "concept_text")]
    assert seen[2][3] == {"root": "x", "shots": [4]} and seen[0][3] == {"root": "x"}  # None options dropped


def test_an_option_the_task_does_not_use_is_an_error():
    with pytest.raises(InputError, match="label"):
        run_benchmark("med_persam", "folder", root="x", label="pathology")
    with pytest.raises(InputError, match="references per seed"):
        run_benchmark("med_persam", "jsrt", shots=["all"])
    with pytest.raises(InputError, match="fractions"):
        run_benchmark("segprompt", "busbra", fractions=[0.1])
    with pytest.raises(InputError, match="unknown method|did you mean"):
        run_benchmark("no_such_method", "jsrt")
