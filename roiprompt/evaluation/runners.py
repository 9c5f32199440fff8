"""One benchmark runner per method task, and :func:`run_benchmark`, which routes a method to its runner by the
task the method declares (``method_info(name).task``), never by its name.

Every runner has the same form, ``runner(method, dataset, **options) -> list[record]``, and the options they
share mean the same everywhere:

``root``, ``backbone``, ``structures``, ``limit`` (first N test images), ``seeds``, ``split`` / ``split_file``
(:func:`~roiprompt.data.splits.resolve_split`: ``official``, ``seed:N[,test=F]``, ``file:PATH``), ``cache_dir``,
``config`` (method config overrides), ``command`` (recorded), ``log``;

plus the task's own: ``progress`` (segmentation, oneshot), ``label`` / ``shots`` / ``mask_sources``
(classification), ``fractions`` (text_free_segmentation). Every record names its split (``"split"``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import InputError
from ..methods import method_info
from .classification import bench_classification
from .concept import bench_concept
from .oneshot import bench_oneshot
from .segmentation import bench_segmentation

Runner = Callable[..., list[dict[str, Any]]]

#: task (``MethodInfo.task``) -> its runner.
RUNNERS: dict[str, Runner] = {
    "segmentation": bench_segmentation,            # prompted from the ground truth (box_prompt): every image
    "oneshot": bench_oneshot,                      # seeded references from train, targets from test
    "classification": bench_classification,        # K per class x seeds, test-time mask sources
    "text_free_segmentation": bench_concept,       # label budgets of train, the test split, student + teacher
}


def runner_options(task: str) -> tuple[str, ...]:
    """The keyword options the runner of ``task`` takes."""
    params = inspect.signature(RUNNERS[task]).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def run_benchmark(method: str, dataset: str, **options: Any) -> list[dict[str, Any]]:
    """Benchmark ``method`` on ``dataset`` with the runner of its task; returns the JSON records.

    Options left at None are dropped (the runner's defaults apply); an option the task's runner does not take is
    an error, so a setting never goes silently unused.

    Example:
        >>> run_benchmark("med_persam", "folder", root="my_data", split="seed:0", seeds=2, limit=20)
        >>> run_benchmark("linear_probe_masked", "folder", root="my_data", shots=[4], config={"views": 1})

    Raises:
        InputError: unknown method, or an option its runner does not take.
    """
    task = method_info(method).task
    if task not in RUNNERS:
        raise InputError(f"no benchmark runner for task {task!r} (method {method!r}); runners: {sorted(RUNNERS)}")
    given = {k: v for k, v in options.items() if v is not None}
    accepted = runner_options(task)
    if unknown := sorted(set(given) - set(accepted)):
        raise InputError(f"{method} is benchmarked as {task}; option(s) {unknown} do not apply "
                         f"(it takes {', '.join(accepted)})")
    return RUNNERS[task](method, dataset, **given)
