"""Conceptual text prompts (issue 7): the text-free distilled student vs the teacher with real text, a fixed
class-name prompt and no text, on Kvasir-SEG, BUS-BRA and JSRT (lungs, heart), with 10 / 25 / 100 % of the labels.

Usage (one task per run; each writes benchmarks/results/concept_text_<task>[_<tag>].json with its command):

    python -m benchmarks.concept_text --task jsrt_heart
    python -m benchmarks.concept_text --task kvasir_polyp --fractions 0.1,0.25,1.0

Training reads cached LiteMedSAM embeddings (``--cache-dir``); a decoder training step for a batch of 8
took 4-7 s on one shared core (the fit s column), so the CPU recipe caps training at ``--max-steps``
(default 300) steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from roiprompt.evaluation.concept import run_concept_bench
from roiprompt.evaluation.records import write_records
from roiprompt.evaluation.tasks import SEG_TASKS

ROOT = Path(__file__).resolve().parents[1]

METHODS = "concept_text,concept_text_class_name,concept_text_no_text"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(SEG_TASKS), required=True)
    p.add_argument("--methods", default=METHODS, help="concept_text also reports concept_text_teacher")
    p.add_argument("--fractions", default="1.0", help="label budgets: fractions of the train split")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--limit", type=int, default=None, help="first N test images only (development)")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="method config override for an ablation, e.g. kd_weight=1 (use with --tag)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m benchmarks.concept_text " + shlex.join(sys.argv[1:])
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.config)}
    records = run_concept_bench(args.methods.split(","), args.task, [float(f) for f in args.fractions.split(",")],
                                seeds=args.seeds, cache_dir=args.cache_dir,
                                config={"max_steps": args.max_steps, **overrides},
                                limit=args.limit, command=command, log=lambda m: print(m, flush=True))
    name = f"concept_text_{args.task}" + (f"_{args.tag}" if args.tag else "")
    out = write_records(ROOT / "benchmarks" / "results" / f"{name}.json", records)
    print(f"\n{'method':<26}{'labels':>7}{'Dice':>16}{'HD95':>9}{'fit s':>8}{'s/img':>7}")
    for r in records:
        if r["metric"] != "dice":
            continue
        hd = next(x["mean"] for x in records if x["metric"] == "hd95" and x["method"] == r["method"]
                  and x["setting"]["label_fraction"] == r["setting"]["label_fraction"])
        half = (r["ci95"][1] - r["ci95"][0]) / 2
        print(f"{r['method']:<26}{r['setting']['label_fraction']:>7.0%}{r['mean']:>9.3f} ±{half:.3f}"
              f"{hd:>9.1f}{r['fit_seconds']:>8.0f}{r['seconds_per_image']:>7.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
