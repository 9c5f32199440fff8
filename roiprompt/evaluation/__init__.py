"""Evaluation over the methods: one benchmark runner per task, the task definitions and the JSON records.

* :mod:`.runners`: :data:`RUNNERS` (task -> runner) and :func:`run_benchmark`, which routes a method by
  ``method_info(name).task``;
* one module per runner: :mod:`.segmentation`, :mod:`.oneshot`, :mod:`.classification`, :mod:`.concept`
  (and :mod:`.speed`, the encoder-speed helpers of ``benchmarks/``);
* :mod:`.tasks`: the task definitions (classification TASKS with class prompts, SEG_TASKS, mask sources);
* :mod:`.records`: the record format. Splits come from :mod:`roiprompt.data.splits`.

``RUNNERS``, ``run_benchmark`` and ``runner_options`` are imported on first use, so ``evaluation.records`` and
``evaluation.tasks`` stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RUNNERS", "run_benchmark", "runner_options"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runners

        return getattr(runners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
