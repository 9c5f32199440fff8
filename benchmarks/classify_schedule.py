"""Training schedule of the few-shot classifiers (issue 22): the old fixed floor of 300 steps against the default
(steps scaled with the support size, stopped early on the support loss), paired on the same support sets.

The default was chosen with ``--split validation`` (BUS-BRA's train images as the support pool, its validation
images scored) and checked with ``--split official`` (the test fold), never the other way round.

    python -m benchmarks.classify_schedule --split validation      # choose
    python -m benchmarks.classify_schedule --split official        # check on test

Every record (benchmarks/results/classify_schedule_<split>.json) names its schedule in ``setting.schedule``, with
the steps trained (``train_steps``) and the seconds of training alone (``train_seconds``: the encoder tokens are
cached, and the first schedule run may have paid for encoding, so ``fit_seconds`` is not compared); the table
adds the paired difference default - old (mean over seeds, 95 % t-interval).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from roiprompt.evaluation.classification import run_classification_bench
from roiprompt.evaluation.records import write_records
from roiprompt.evaluation.tasks import TASKS
from roiprompt.metrics import summarize

ROOT = Path(__file__).resolve().parents[1]

# "old": every fit trained max(60 epochs, 300 steps), whatever the support size (the recipe until issue 22).
SCHEDULES = {"old": {"min_steps": 300, "patience": None}, "default": {}}
TEXT_METHODS = ("medfocusclip", "medfocusclip_unguided")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(TASKS), default="busbra_pathology")
    p.add_argument("--split", default="validation", help="validation (choose) or official (check on test)")
    p.add_argument("--methods", default="linear_probe_masked,medfocusclip,segprompt")
    p.add_argument("--shots", default="4,16")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--schedules", default="old,default")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    command = "python -m benchmarks.classify_schedule " + shlex.join(sys.argv[1:])
    records = []
    for schedule in args.schedules.split(","):
        def config_for(method: str, k: int | str, schedule: str = schedule) -> dict:
            text = {"class_prompts": task["class_prompts"]} if method in TEXT_METHODS else {}
            return {"views": 4, **text, **SCHEDULES[schedule]}

        part = run_classification_bench(
            args.methods.split(","), task["dataset"], label=task["label"], structures=task["structures"],
            shots=[int(k) for k in args.shots.split(",")], seeds=args.seeds, mask_sources=["gt"],
            cache_dir=args.cache_dir, config_for=config_for, command=command, split=args.split,
            log=lambda m, s=schedule: print(f"[{s}] {m}", flush=True))
        for r in part:
            r["setting"]["schedule"] = schedule
        records += part
    out = write_records(ROOT / "benchmarks" / "results" / f"classify_schedule_{args.split}.json", records)
    print("\n" + table(records))
    print(f"wrote {out}")
    return 0


def table(records: list[dict]) -> str:
    """Markdown: one row per method x K x schedule, with the paired difference to the "old" schedule."""
    by = {(r["method"], r["setting"]["shots"], r["setting"]["schedule"], r["metric"]): r for r in records}
    lines = ["| method | K/class | schedule | steps | train s | bal. accuracy | AUROC | Δ bal. acc. vs old | "
             "Δ AUROC vs old |", "|---|---|---|---|---|---|---|---|---|"]
    for (method, k, schedule, metric), r in by.items():
        if metric != "balanced_accuracy":
            continue
        auc = by[(method, k, schedule, "auroc")]
        cells = [method, str(k), schedule, f"{r['train_steps']:.0f}", f"{r['train_seconds']:.1f}",
                 f"{r['mean']:.3f}", f"{auc['mean']:.3f}"]
        for m, cur in (("balanced_accuracy", r), ("auroc", auc)):
            old = by.get((method, k, "old", m))
            if old is None or schedule == "old":
                cells.append("–")
                continue
            d = summarize(np.subtract(cur["seed_values"], old["seed_values"]), ci="t")
            cells.append(f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
