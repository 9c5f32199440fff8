"""Rerun one committed benchmark row per method task and compare it with the committed record.

A refactor must not move a number. This reruns, through :func:`roiprompt.evaluation.run_benchmark` (the same
path as ``roiprompt bench``), the cheapest committed row of each task and compares the value with the one in
``benchmarks/results/``:

=========================  ===============================================  ======================================
task                       rerun                                            compared with
=========================  ===============================================  ======================================
segmentation               box_prompt, JSRT heart, every image              box_prompt_jsrt.json, Dice mean
oneshot                    med_persam, JSRT, seed 0, first 100 test images  oneshot_med_persam_jsrt.json, seed 0
classification             linear_probe_masked, JSRT nodule, K=8, seed 0    segprompt_jsrt_nodule.json, seed 0
text_free_segmentation     concept_text_no_text, JSRT heart, 10 %, seed 0   concept_text_jsrt_heart_frac10.json
=========================  ===============================================  ======================================

Each row runs with the thread count and settings of the committed command (``--threads 1`` where it had it).
A committed record may predate later, intended changes of the arithmetic (the one-shot row was recorded before
issue 8 changed the encoder's summation order); ``--before TASK=RECORDS.json`` then adds the same row measured
at the commit just before the change under test (its records, e.g. from ``roiprompt bench`` run in a worktree of
that commit), so a delta can be told apart from drift that came earlier. Prints a table and writes JSON records
(``metric`` = ``regression_<metric>``, ``mean`` = the rerun value, with ``committed``, ``delta`` and, where
given, ``before``, ``before_commit``, ``delta_before``)::

    python -m benchmarks.regression [--rows segmentation,oneshot,classification,text_free_segmentation]
    python -m benchmarks.regression --before oneshot=benchmarks/results/regression/oneshot_med_persam_jsrt_1370f8a.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from roiprompt.evaluation import run_benchmark
from roiprompt.evaluation.records import make_record, write_records

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _committed(file: str, pick: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    records = json.loads((RESULTS / file).read_text())
    found = [r for r in records if pick(r)]
    if len(found) != 1:
        raise SystemExit(f"{file}: expected one committed record, found {len(found)}")
    return found[0]


def _rows(cache_dir: str) -> dict[str, dict[str, Any]]:
    """task -> how to rerun its row and read the committed value (rerun value, committed value)."""
    return {
        "segmentation": dict(
            method="box_prompt", dataset="jsrt", structure="heart", metric="dice", threads=None,
            options=dict(structures=["heart"], cache_dir=cache_dir),
            rerun=lambda recs: next(r["mean"] for r in recs if r["metric"] == "dice"),
            committed=lambda: _committed("box_prompt_jsrt.json",
                                         lambda r: r["structure"] == "heart" and r["metric"] == "dice")["mean"]),
        "oneshot": dict(
            method="med_persam", dataset="jsrt", structure="heart", metric="dice", threads=None,
            options=dict(seeds=1, limit=100, cache_dir=cache_dir),
            rerun=lambda recs: next(r["seed_means"][0] for r in recs
                                    if r["metric"] == "dice" and r["structure"] == "heart"),
            committed=lambda: _committed("oneshot_med_persam_jsrt.json",
                                         lambda r: r["structure"] == "heart" and r["metric"] == "dice")
            ["seed_means"][0]),
        "classification": dict(
            method="linear_probe_masked", dataset="jsrt", structure="left_lung,right_lung",
            metric="balanced_accuracy", threads=1,
            options=dict(structures=["left_lung", "right_lung"], shots=[8], seeds=1, mask_sources=["gt"],
                         cache_dir=cache_dir, config={"views": 1}),
            rerun=lambda recs: next(r["seed_values"][0] for r in recs if r["metric"] == "balanced_accuracy"),
            committed=lambda: _committed(
                "segprompt_jsrt_nodule.json",
                lambda r: (r["method"] == "linear_probe_masked" and r["metric"] == "balanced_accuracy"
                           and r["setting"]["shots"] == 8 and r["mask_source"] == "gt"))["seed_values"][0]),
        "text_free_segmentation": dict(
            method="concept_text_no_text", dataset="jsrt", structure="heart", metric="dice", threads=1,
            options=dict(structures=["heart"], fractions=[0.1], seeds=1, cache_dir=cache_dir,
                         config={"max_steps": 150}),
            rerun=lambda recs: next(r["mean"] for r in recs
                                    if r["metric"] == "dice" and r["method"] == "concept_text_no_text"),
            committed=lambda: _committed("concept_text_jsrt_heart_frac10.json",
                                         lambda r: r["method"] == "concept_text_no_text" and r["metric"] == "dice")
            ["mean"]),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="segmentation,oneshot,classification,text_free_segmentation",
                   help="comma-separated tasks to rerun")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--tolerance", type=float, default=5e-4, help="largest |delta| that counts as unchanged")
    p.add_argument("--json", default=str(RESULTS / "regression.json"))
    p.add_argument("--before", action="append", default=[], metavar="TASK=RECORDS.json",
                   help="records of the same row measured at the commit before the change (repeatable)")
    args = p.parse_args()
    before = dict(item.split("=", 1) for item in args.before)
    command = "python -m benchmarks.regression " + shlex.join(sys.argv[1:])
    rows = _rows(args.cache_dir)
    default_threads = torch.get_num_threads()
    out, ok = [], True
    print(f"{'task':<24}{'method':<22}{'metric':<19}{'committed':>10}{'rerun':>10}{'delta':>10}{'s':>7}")
    for task in args.rows.split(","):
        row = rows[task]
        torch.set_num_threads(row["threads"] or default_threads)
        start = time.perf_counter()
        records = run_benchmark(row["method"], row["dataset"], command=command,
                                log=lambda m: print("  " + m, flush=True), **row["options"])
        seconds = time.perf_counter() - start
        value, committed = float(row["rerun"](records)), float(row["committed"]())
        delta = value - committed
        extra: dict[str, Any] = {}
        if task in before:  # the change under test is judged against the commit just before it
            earlier = json.loads(Path(before[task]).read_text())
            extra = {"before": float(row["rerun"](earlier)), "before_commit": earlier[0]["git_commit"],
                     "before_command": earlier[0]["command"]}
            extra["delta_before"] = value - extra["before"]
            delta_judged = extra["delta_before"]
        else:
            delta_judged = delta
        ok &= abs(delta_judged) <= args.tolerance
        print(f"{task:<24}{row['method']:<22}{row['metric']:<19}{committed:>10.4f}{value:>10.4f}{delta:>+10.4f}"
              f"{seconds:>7.0f}" + (f"  (before: {extra['before']:.4f}, delta {extra['delta_before']:+.4f})"
                                    if extra else ""), flush=True)
        out.append(make_record(
            method=row["method"], backbone="litemedsam", dataset=row["dataset"], structure=row["structure"],
            task="regression", setting={"task": task, "threads": row["threads"] or default_threads, **{
                k: v for k, v in row["options"].items() if k != "cache_dir"}},
            metric=f"regression_{row['metric']}", summary={"mean": value, "ci95": [np.nan, np.nan], "n": 1},
            seconds_per_image=float("nan"), command=command,
            extra={"committed": committed, "delta": delta, **extra, "unchanged": abs(delta_judged) <= args.tolerance,
                   "tolerance": args.tolerance, "seconds": round(seconds, 1)}))
    path = write_records(args.json, out)
    print(f"wrote {path}; {'every row unchanged' if ok else 'SOME ROWS CHANGED'} (tolerance {args.tolerance})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
