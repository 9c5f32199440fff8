"""Few-shot classification with segmentation-guided attention (issue 6): MedFocusCLIP vs its unguided twin and
linear probes, k = 1, 2, 4, 8, 16 images per class, test-time masks from the ground truth and from ``box_prompt``.

Usage (one task per run; each writes benchmarks/results/medfocusclip_<task>[_<tag>].json with its command):

    python -m benchmarks.medfocusclip --task busbra_pathology
    python -m benchmarks.medfocusclip --task busbra_birads
    python -m benchmarks.medfocusclip --task jsrt_nodule

Offline the backbone is LiteMedSAM (tokens cached, 4 augmented views per training image) with MiniLM class
prompts (``TASKS`` in roiprompt/evaluation/classification.py). ``zero_shot`` needs an aligned CLIP text tower, so it
runs only with ``--backbone clip --weights DIR`` (a local Hugging Face CLIP folder).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from benchmarks import finish_classification_bench
from roiprompt.evaluation.classification import run_classification_bench
from roiprompt.evaluation.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("medfocusclip", "medfocusclip_unguided", "linear_probe", "linear_probe_masked")
TEXT_METHODS = ("medfocusclip", "medfocusclip_unguided", "zero_shot")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--shots", default="1,2,4,8,16")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--masks", default="gt,box_prompt", help="comma-separated test-time mask sources")
    p.add_argument("--views", type=int, default=4, help="augmented views per training image")
    p.add_argument("--backbone", default="litemedsam")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    shots = [s if s == "all" else int(s) for s in args.shots.split(",")]
    command = "python -m benchmarks.medfocusclip " + shlex.join(sys.argv[1:])

    def config_for(method: str, k: int | str) -> dict:
        text = {"class_prompts": task["class_prompts"]} if method in TEXT_METHODS else {}
        return {"views": args.views, **text}

    records = run_classification_bench(
        args.methods.split(","), task["dataset"], label=task["label"], structures=task["structures"], shots=shots,
        seeds=args.seeds, mask_sources=args.masks.split(","), backbone=args.backbone, cache_dir=args.cache_dir,
        config_for=config_for, command=command, log=lambda m: print(m, flush=True))
    name = f"medfocusclip_{args.task}" + (f"_{args.tag}" if args.tag else "")
    return finish_classification_bench(records, name)


if __name__ == "__main__":
    sys.exit(main())
