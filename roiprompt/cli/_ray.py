"""``--ray ADDRESS``: run a batch command's per-image work on a Ray cluster with Ray Data.

The driver (this process) lists the inputs, opens the run (:class:`~._runs.BatchRun`: settings, resume) and
records the outcomes; the workers do what :func:`~._loop.run_one` does locally. The pending inputs become a Ray
dataset (one row per input, one block per row, so images stream to whichever worker is free), and
``map_batches`` runs them through an actor pool: one actor per worker, each holding the loaded model and
:class:`~._loop.Job`, each writing its images' files into the output folder. Each :class:`~._loop.Outcome` comes
back to the driver, which appends the manifest line and the CSV rows and advances the progress bar, exactly as a
local run does, so the output folder holds the same files byte for byte when each worker runs the threads the
local run would (``--threads``; PyTorch's float sums depend on the thread count).

Paths must be on storage every node sees (a shared file system); inputs and ``--out`` are made absolute.
Scheduling, retries of lost workers and placement are Ray's; roiprompt adds no pool or scheduler of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..batch.inputs import Input
from ..errors import RoiPromptError
from ..runtime.allocator import release_memory
from ._loop import Executor, Job, Outcome, local_executor, run_one

#: ``--ray local``: start a Ray instance on this machine for the run (and stop it after).
LOCAL = "local"


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """``--ray`` and ``--workers`` for a batch command."""
    g = p.add_argument_group("cluster (Ray)")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the cluster `ray start` set up on this node), an address "
                        "(HOST:PORT or ray://HOST:10001), or 'local' (start one on this machine for the run). "
                        "Inputs and --out must be paths every node sees. Each worker loads the model once; the "
                        "outputs are those of a local run, file for file")
    g.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: number of workers, one model each (default: the cluster's CPUs divided by "
                        "the threads per worker)")


def executor(args: argparse.Namespace, prepare: Callable[[], Any] | None = None) -> Executor:
    """The executor ``args`` ask for: :func:`~._loop.local_executor`, or a Ray one for ``--ray``.

    Args:
        prepare: called once, on the driver, before a Ray run starts, with nothing pending locally; returns
            the job to send to the workers (e.g. a one-shot job whose reference was fitted and saved once).
    """
    if getattr(args, "ray", None) is None:
        if getattr(args, "workers", None) is not None:
            raise RoiPromptError("--workers is for --ray runs; a local run uses --threads")
        return local_executor
    if args.workers is not None and args.workers < 1:
        raise RoiPromptError(f"--workers must be >= 1, got {args.workers}")
    try:
        import ray.data  # noqa: F401 - checked before any work starts
    except ImportError:
        raise RoiPromptError("--ray needs Ray with Ray Data: pip install 'roiprompt[ray]' (on every node)") from None
    threads = args.threads or 1

    def run(job: Job, work: Sequence[tuple[int, Input, str]]) -> Iterator[Outcome]:
        if prepare is not None:
            job = prepare()
        yield from ray_outcomes(job, work, address=args.ray, workers=args.workers, threads=threads)

    return run


class _Worker:
    """A Ray Data actor: one loaded job; each batch row is one input, each output row its pickled outcome."""

    def __init__(self, job: Job, threads: int, cwd: str) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job = job
        # In the driver's working directory (on a shared file system), relative input paths read and are named
        # in messages exactly as on the driver; where it does not exist, the absolute paths are read.
        try:
            os.chdir(cwd)
            self.as_given = True
        except OSError:
            self.as_given = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = []
        for index, given, absolute, stem in zip(batch["index"], batch["item"], batch["absolute"], batch["stem"]):
            item = pickle.loads(given if self.as_given else absolute)
            outcomes.append(_pickled(run_one(self.job, int(index), item, str(stem))))
            release_memory()
        return {"outcome": np.array(outcomes, dtype=object)}


def _pickled(outcome: Outcome) -> bytes:
    try:
        return pickle.dumps(outcome)
    except Exception:  # noqa: BLE001 - an exception object that does not pickle: keep its summary
        return pickle.dumps(replace(outcome, error=RuntimeError(outcome.message)))


def _connect(address: str) -> bool:
    """Connect to (or start, for ``local``) a Ray cluster unless this process already is; True if connected here."""
    import ray

    if ray.is_initialized():  # a caller (a notebook, a test) set Ray up: use it as it is
        return False
    options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
    try:
        ray.init(**options) if address == LOCAL else ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RoiPromptError(f"--ray {address}: cannot connect to a Ray cluster ({str(err).splitlines()[0]}); "
                             "start one with `ray start --head` (then --ray auto), or use --ray local") from None
    return True


def ray_outcomes(job: Job, work: Sequence[tuple[int, Input, str]], *, address: str, workers: int | None,
                 threads: int) -> Iterator[Outcome]:
    """Run ``job`` over ``work`` on a Ray cluster; yield the outcomes as the workers finish them."""
    import ray
    import ray.data

    connected = _connect(address)
    try:
        # Ray's notices about its own deprecated settings are not the user's concern
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = min(workers or max(1, cpus // threads), len(work))  # no idle actor loading a model for nothing
        if size * threads > cpus:  # Ray would wait for CPUs that may never come (unless the cluster autoscales)
            logging.getLogger(__name__).warning(
                "--workers %d x %d thread(s) asks for more CPUs than the cluster has now (%d): the workers that do "
                "not fit wait for CPUs", size, threads, cpus)
        rows = [{"index": index, "item": pickle.dumps(item), "stem": stem,
                 "absolute": pickle.dumps(Input(Path(item.path).resolve(), item.slice, item.axis))}
                for index, item, stem in work]
        env = {k: v for k, v in os.environ.items() if k.startswith("ROIPROMPT_")}  # --runtime, caches, limits
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _Worker, fn_constructor_kwargs={"job": job, "threads": threads, "cwd": os.getcwd()}, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=threads,
            runtime_env={"env_vars": env} if env else None)
        for row in dataset.iter_rows():
            outcome = pickle.loads(row["outcome"])
            yield outcome
            if outcome.status in ("fatal", "stop"):
                return
    finally:
        if connected:
            ray.shutdown()


__all__ = ["LOCAL", "add_ray_options", "executor", "local_executor", "ray_outcomes"]
