"""The per-image loop of ``segment`` and ``oneshot``: read, predict, write, record; bad files skipped and reported,
one image's internal error logged while the rest goes on, a failed write stops the run (see :mod:`._runs`)."""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, Sequence

from ..errors import RoiPromptError, shown
from ._common import _console, _progress
from ._inputs import Input
from ._runs import PREDICTIONS, BatchRun, StopRun, escape


# -- the loop ---------------------------------------------------------------------------------------------------
def process(run: BatchRun, *, command: str, argv: Sequence[str], verb: str, load: Callable[[], Any],
            predict: Callable[[Input, Any], Any],
            write: Callable[[Input, Any, Any], tuple[dict[str, str], list[dict], list[str]]]) -> int:
    """Run the pending inputs of an opened ``run``, one at a time: ``item.read()``, ``load()`` once before the first
    prediction (so nothing is loaded when nothing is left or every file is bad), ``predict(item, image)``, then
    ``write(item, image, result) -> (outputs {rel: sha256}, rows, console warnings)``, then :meth:`BatchRun.add`.
    NIfTI inputs also get their masks as volumes in the input's grid (:meth:`BatchRun.write_volumes`).

    A bad file (RoiPromptError) is reported and skipped; an unexpected exception for one image is reported, its
    traceback kept for the log, and the rest goes on; an output that cannot be written (:class:`StopRun`) stops
    the run. Returns the exit status: 3 if any image hit an unexpected exception, else 1 if any file was
    skipped, else 0.
    """
    console = _console()
    failures: list[str] = []
    errors: list[tuple[str, str, str]] = []  # (image, one-line summary, traceback)
    for message in run.unreadable:
        console.print(f"[red]skipped[/red] {escape(message)}")
        failures.append(message)
    stopped = False
    try:
        if run.pending:
            _run_pending(run, load, predict, write, verb, failures, errors)
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
    console.print(f"{done} segmented, {len(failures)} skipped{failed}{earlier}: masks, overlays and "
                  f"{PREDICTIONS} in {escape(shown(run.out))}")
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


def _run_pending(run: BatchRun, load: Callable, predict: Callable, write: Callable, verb: str,
                 failures: list[str], errors: list[tuple[str, str, str]]) -> None:
    """The per-image loop of :func:`process`: bad files go to ``failures``, unexpected exceptions to ``errors``."""
    loaded = False
    with _progress() as bar:
        task = bar.add_task(verb, total=len(run.pending))
        for item in run.pending:
            stage = "read"
            try:
                image = item.read()
                if not loaded:
                    stage = "load"
                    load()
                    loaded = True
                stage = "predict"
                result = predict(item, image)
                outputs, rows, warnings = write(item, image, result)
            except StopRun:
                raise
            except Exception as err:  # noqa: BLE001 - sorted below
                if stage == "load":  # the run's error (bad weights: exit 2; a bug: exit 3), not one image's
                    raise
                if isinstance(err, RoiPromptError):  # a bad file: skipped, reported as it comes and at the end
                    failures.append(str(err))
                    bar.console.print(f"[red]skipped[/red] {escape(str(err))}")
                else:  # one image's bug: logged, the rest goes on
                    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    summary = f"{type(err).__name__}: {message}" if message else type(err).__name__
                    errors.append((str(item), summary, traceback.format_exc()))
                    bar.console.print(f"[red]failed[/red] {escape(str(item))}: internal error "
                                      f"({escape(summary)}); see the log")
            else:
                run.add(item, outputs, rows)
                for warning in warnings:
                    bar.console.print(f"[yellow]warning[/yellow] {escape(warning)}")
            bar.advance(task)
