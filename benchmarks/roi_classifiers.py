"""ROI classifiers against the masked linear probe (issue 23): every few-shot classifier on one task, under the
k-per-class protocol (1-32 images per class) or MedFocusCLIP's fraction protocol (5-100 % of the train split),
5 seeds, ground-truth ROI masks. ``make_results`` turns the records into the k-shot and fraction tables and the
paired differences against ``linear_probe_masked`` (same seed = same support set for every row).

Usage (one task x protocol per run; each writes benchmarks/results/roi_classifiers_<task>_<protocol>[_<tag>].json):

    python -m benchmarks.roi_classifiers --task busbra_pathology --protocol kshot
    python -m benchmarks.roi_classifiers --task busbra_pathology --protocol fraction
    python -m benchmarks.roi_classifiers --task busbra_pathology --protocol kshot --split validation --tag validation \\
        --methods medfocusclip,medfocusclip@cue,medfocusclip@residual --shots 16,32
    python -m benchmarks.roi_classifiers --task busbra_pathology --backbone test-clip --methods segprompt,vpt \\
        --shots 16 --tag vit_smoke      # SegPrompt-ViT on a tiny *random* CLIP: a smoke check, not a result

Rows ``name@variant`` are a method with the settings of :data:`VARIANTS` (e.g. ``medfocusclip@cue``: the
segmented-image cue). CPU budget (recorded in each record's setting): k <= 32 trains on 4 cached augmented views
per image (methods.md §2.3); the fraction protocol uses the image alone (1 view: a 100 % support set is ~1,300
BUS-BRA images) and caps training at ``--max-steps`` (300).
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

ROWS = ("linear_probe_masked", "linear_probe", "linear_probe_crop", "vpt", "segprompt", "medfocusclip",
        "medfocusclip@nocue", "clip_adapter")
TEXT_METHODS = ("medfocusclip", "medfocusclip_unguided", "clip_adapter", "zero_shot")
PROTOCOLS = {"kshot": "1,2,4,8,16,32", "fraction": "5%,10%,20%,50%,100%"}

#: Named variants: ``method@variant`` -> settings on top of the method's defaults (the options issue 23 tried).
VARIANTS: dict[str, dict] = {
    # MedFocusCLIP (default: segmented_cue and residual on, chosen on validation data)
    "plain": {"segmented_cue": False, "residual": False},  # as issue 6 built it
    "cue": {"segmented_cue": True, "residual": False},  # the segmented-image cue alone (methods.md §3.1.2)
    "residual": {"segmented_cue": False, "residual": True},  # a linear path on v_roi alone
    "nocue": {"segmented_cue": False, "residual": True},  # the default without the cue
    "cue_residual": {"segmented_cue": True, "residual": True},  # = the default
    "small": {"dim": 64, "segmented_cue": False, "residual": False},  # a 4x narrower fusion head
    "small_residual": {"dim": 64, "segmented_cue": False, "residual": True},
    # SegPrompt
    "probe_init": {"probe_init": True},  # starting from the fitted masked probe
}


def config_for(method: str, size: int | str, task: dict, max_steps: int) -> dict:
    name, _, variant = method.partition("@")
    out: dict = dict(VARIANTS[variant]) if variant else {}
    if isinstance(size, str):  # a fraction ("5%") or "all": the image alone, capped schedule
        out.update(views=1, max_steps=max_steps)
    else:
        out.update(views=4 if size <= 32 else 1)
    if name in TEXT_METHODS:
        out["class_prompts"] = task["class_prompts"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="kshot")
    p.add_argument("--methods", default=",".join(ROWS))
    p.add_argument("--shots", default=None, help="support sizes (default: the protocol's)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--split", default=None, help="'validation' to choose defaults without test images")
    p.add_argument("--max-steps", type=int, default=300, help="training-step cap of the fraction protocol")
    p.add_argument("--backbone", default="litemedsam",
                   help="e.g. test-clip: SegPrompt-ViT on a tiny random CLIP, a smoke row (no CLIP weights offline)")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    sizes = [s if not s.isdigit() else int(s) for s in (args.shots or PROTOCOLS[args.protocol]).split(",")]
    if unknown := [m for m in args.methods.split(",") if "@" in m and m.partition("@")[2] not in VARIANTS]:
        p.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    command = "python -m benchmarks.roi_classifiers " + shlex.join(sys.argv[1:])
    records = run_classification_bench(
        args.methods.split(","), task["dataset"], label=task["label"], structures=task["structures"], shots=sizes,
        seeds=args.seeds, cache_dir=args.cache_dir, split=args.split, backbone=args.backbone,
        config_for=lambda m, k: config_for(m, k, task, args.max_steps),
        command=command, log=lambda m: print(m, flush=True))
    for r in records:
        r["protocol"] = args.protocol
    name = f"roi_classifiers_{args.task}_{args.protocol}" + (f"_{args.tag}" if args.tag else "")
    return finish_classification_bench(records, name)


if __name__ == "__main__":
    sys.exit(main())
