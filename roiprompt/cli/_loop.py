"""The per-image work of the batch commands (``segment``, ``oneshot``, ``classify predict``), run here or on a
Ray cluster.

A command describes its work as a :class:`Job`: ``load()`` the model once, ``predict(item, image)``, and
``write(item, stem, image, result)`` the image's files into the output folder. :func:`run_one` does one input
(read, load once, predict, write) and sorts what happened into an :class:`Outcome`; :func:`process` feeds the run's
pending inputs through an executor, in this process or on Ray workers (:mod:`._ray`), and records each outcome on
the driver as it arrives: the manifest line and CSV rows (:meth:`BatchRun.add`), the skipped and failed files,
the progress bar. The outputs are the same files either way, byte for byte.
"""

from __future__ import annotations

import abc
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import RoiPromptError, shown
from ..batch.inputs import Input
from ..batch.runs import PREDICTIONS, BatchRun, StopRun, escape
from ._common import _console, _progress


class Job(abc.ABC):
    """What one batch command does to each image; picklable, so Ray workers can run it (see :mod:`._ray`).

    Attributes:
        out: the output folder (absolute: a worker may run in another directory).
        weights_sha256: the loaded model's weights hash, set by :meth:`load`.
    """

    out: Path
    weights_sha256: str | None = None
    _loaded: bool = False

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model (once, before the first prediction); set :attr:`weights_sha256`."""

    @abc.abstractmethod
    def predict(self, item: Input, image: Any) -> Any:
        """The prediction of one image."""

    @abc.abstractmethod
    def write(self, item: Input, stem: str, image: Any, result: Any
              ) -> tuple[dict[str, str], list[dict], list[str]]:
        """Write one image's files (atomically, via :func:`~._runs.write_output`) -> (outputs {rel: sha256}, CSV
        rows, console warnings)."""

    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True


@dataclass
class Outcome:
    """What became of one input.

    ``status``: ``done`` (``outputs``, ``rows``, ``warnings``), ``skipped`` (a bad file: ``message`` is the
    reader's), ``failed`` (an unexpected exception: ``message`` is its one-line summary, ``traceback`` the rest),
    ``stop`` (an output could not be written: the run stops) or ``fatal`` (the model did not load: ``error`` is
    the exception, the run's error, not the image's).
    """

    index: int
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    traceback: str = ""
    error: BaseException | None = None
    weights_sha256: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: read, load, predict, write


def _summary(err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def run_one(job: Job, index: int, item: Input, stem: str) -> Outcome:
    """Read, (load,) predict and write one input; every exception becomes an :class:`Outcome`."""
    seconds: dict[str, float] = {}
    stage, start = "read", time.perf_counter()

    def next_stage(name: str) -> None:
        nonlocal stage, start
        now = time.perf_counter()
        seconds[stage] = now - start
        stage, start = name, now

    try:
        image = item.read()
        next_stage("load")
        job.ensure_loaded()
        next_stage("predict")
        result = job.predict(item, image)
        next_stage("write")
        outputs, rows, warnings = job.write(item, stem, image, result)
        next_stage("done")
    except StopRun as err:
        return Outcome(index, "stop", message=str(err))
    except Exception as err:  # noqa: BLE001 - sorted here
        if stage == "load":  # the run's error (bad weights: exit 2; a bug: exit 3), not one image's
            return Outcome(index, "fatal", message=_summary(err), traceback=traceback.format_exc(), error=err)
        if isinstance(err, RoiPromptError):  # a bad file: skipped
            return Outcome(index, "skipped", message=str(err))
        return Outcome(index, "failed", message=_summary(err), traceback=traceback.format_exc())
    return Outcome(index, "done", outputs, rows, warnings, weights_sha256=job.weights_sha256, seconds=seconds)


#: An executor runs ``job`` over ``[(index, input, stem), ...]`` and yields each :class:`Outcome` as it is done.
Executor = Callable[[Job, Sequence[tuple[int, Input, str]]], Iterable[Outcome]]


def local_executor(job: Job, work: Sequence[tuple[int, Input, str]]) -> Iterator[Outcome]:
    """Run the work in this process, one image at a time, stopping at the first ``fatal`` or ``stop``."""
    from ..runtime.allocator import release_memory  # (here: importing runtime pulls in torch)

    for index, item, stem in work:
        outcome = run_one(job, index, item, stem)
        release_memory()  # one huge image must not leave its peak resident for the rest of the run
        yield outcome
        if outcome.status in ("fatal", "stop"):
            return


# -- the driver ---------------------------------------------------------------------------------------------------
def process(run: BatchRun, job: Job, *, command: str, argv: Sequence[str], verb: str,
            executor: Executor = local_executor, noun: str = "segmented") -> int:
    """Run the pending inputs of an opened ``run`` through ``executor`` and record each outcome as it arrives.

    The model is loaded by the first input that reads (so nothing loads when nothing is left or every file is
    bad). A bad file is reported and skipped; an unexpected exception for one image is reported, its traceback
    kept for the log, and the rest goes on; an output that cannot be written stops the run (exit 2). NIfTI inputs
    also get their masks as volumes in the input's grid (:meth:`BatchRun.write_volumes`).

    Returns:
        The exit status: 3 if any image hit an unexpected exception, else 1 if any file was skipped, else 0.
    """
    console = _console()
    failures: list[str] = []
    errors: list[tuple[str, str, str]] = []  # (image, one-line summary, traceback)
    stages: dict[str, float] = {}
    for message in run.unreadable:
        console.print(f"[red]skipped[/red] {escape(message)}")
        failures.append(message)
    stopped = False
    try:
        if run.pending:
            _record(run, job, executor, verb, failures, errors, stages)
        run.write_volumes()
    except StopRun:
        stopped = True
        raise
    finally:
        try:
            run.rewrite()  # predictions.csv in input order, exactly the images whose outputs are on disk
        except StopRun:
            if not stopped:
                raise
    done = len(run.entries)
    earlier = f" ({run.resumed} of them done by an earlier run)" if run.resumed else ""
    failed = f", {len(errors)} failed" if errors else ""
    console.print(f"{done} {noun}, {len(failures)} skipped{failed}{earlier}: results and {PREDICTIONS} in "
                  f"{escape(shown(run.out))}")
    if finished := stages.pop("images", 0):  # where the time goes: reading, the model, writing
        load = stages.pop("load", 0.0)
        console.print("time per image: " + ", ".join(f"{stage} {total / finished:.3f} s"
                                                     for stage, total in stages.items())
                      + f"; model loading {load:.1f} s (summed over workers)")
    if failures:
        console.print(f"[red]skipped {len(failures)} file(s):[/red]")
        for message in failures:
            console.print(f"  {escape(message)}")
    if not errors:
        return 1 if failures else 0
    from ._common import write_error_log

    text = "".join(f"== {label}: {summary}\n{tb}\n" for label, summary, tb in errors)
    try:
        where = f"the traceback(s) are in {shown(write_error_log(command, argv, text))}"
    except OSError as err:
        where = f"the log could not be written ({err.strerror or err})"
    console.print(f"[red]failed {len(errors)} file(s) with an internal error:[/red]")
    for label, summary, _ in errors:
        console.print(f"  {escape(label)}: {escape(summary)} (see the log)")
    print(f"roiprompt {command}: internal error on {len(errors)} image(s) (first: {errors[0][0]}: {errors[0][1]}); "
          f"{where}", file=sys.stderr)
    return 3


def _record(run: BatchRun, job: Job, executor: Executor, verb: str, failures: list[str],
            errors: list[tuple[str, str, str]], stages: dict[str, float]) -> None:
    """Feed the pending inputs to ``executor`` and record each outcome: bad files go to ``failures``, unexpected
    exceptions to ``errors``; ``fatal`` re-raises the load error, ``stop`` raises :class:`StopRun`."""
    work = [(i, item, run.stems[item]) for i, item in enumerate(run.pending)]
    with _progress() as bar:
        task = bar.add_task(verb, total=len(work))
        for outcome in executor(job, work):
            item = run.pending[outcome.index]
            if outcome.status == "fatal":
                err = outcome.error if outcome.error is not None else RuntimeError(outcome.message)
                if not isinstance(err, RoiPromptError) and outcome.traceback:
                    err.add_note(f"where it was raised:\n{outcome.traceback}")
                raise err
            if outcome.status == "stop":
                raise StopRun(f"{outcome.message}. Stopped; the {len(run.entries)} image(s) finished are kept: "
                              "rerun the same command to resume once this is fixed")
            if outcome.status == "skipped":  # reported as it comes and at the end
                failures.append(outcome.message)
                bar.console.print(f"[red]skipped[/red] {escape(outcome.message)}")
            elif outcome.status == "failed":  # one image's bug: logged, the rest goes on
                errors.append((str(item), outcome.message, outcome.traceback))
                bar.console.print(f"[red]failed[/red] {escape(str(item))}: internal error "
                                  f"({escape(outcome.message)}); see the log")
            else:
                run.set_weights(outcome.weights_sha256)
                run.add(item, outcome.outputs, outcome.rows)
                for stage, seconds in outcome.seconds.items():
                    stages[stage] = stages.get(stage, 0.0) + seconds
                stages["images"] = stages.get("images", 0) + 1
                for warning in outcome.warnings:
                    bar.console.print(f"[yellow]warning[/yellow] {escape(warning)}")
            bar.advance(task)
