"""k-shot one-shot benchmark: the default one-shot method, its ablations and the baselines at k = 1, 3, 5.

Protocol (issue 19, methods.md §6.2-6.4): seed s draws k references from the train split (the k = 1 reference
is the draw's first, so k-shot sets are nested); the targets are the first 100 test images; no unlabeled pool.
Each row is one ``(method, variant, dataset, k)`` and is written to
``benchmarks/results/oneshot_kshot/<method>[_<variant>]_<dataset>_k<k>.json`` as soon as it finishes; a row whose
file exists is skipped, so the script can be run in parts (``--rows``) and resumed. Prints a Dice table::

    python -m benchmarks.oneshot_kshot --rows main_k1
    python -m benchmarks.oneshot_kshot --rows main_k1,ablations,main_k5 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from roiprompt.evaluation.oneshot import bench_oneshot
from roiprompt.evaluation.records import write_records

OUT = Path(__file__).parent / "results" / "oneshot_kshot"
DATASETS = ("kvasir_seg", "busbra", "jsrt")
#: name -> list of (method, variant label, config, k)
ROWS = {
    "main_k1": [("med_persam_plus", "", {}, 1)],
    "main_k3": [("med_persam_plus", "", {}, 3)],
    "main_k5": [("med_persam_plus", "", {}, 5)],
    "head_only_k1": [("med_persam_plus", "head_only", {"localisers": "head"}, 1)],
    "ablations": [("med_persam_plus", "warp_only", {"localisers": "warp"}, 1),
                  ("med_persam_plus", "iou_selection", {"selection": "iou"}, 1),
                  ("med_persam_plus", "no_clean", {"clean": False}, 1),
                  ("med_persam_plus", "fusion", {"fusion": True}, 1)],
    "baselines_k1": [("med_persam", "", {}, 1), ("persam", "", {}, 1), ("persam_f", "", {}, 1),
                     ("registration", "", {}, 1)],
    "baselines_k5": [("med_persam", "", {}, 5), ("persam", "", {}, 5), ("registration", "", {}, 5)],
    "head_only_k5": [("med_persam_plus", "head_only", {"localisers": "head"}, 5)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="main_k1", help=f"comma-separated groups of {sorted(ROWS)}")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--cache-dir", default=".cache/embeddings")
    args = parser.parse_args()
    torch.set_num_threads(2)
    command = "python -m benchmarks.oneshot_kshot " + shlex.join(sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'method':16s} {'variant':14s} {'dataset':10s} {'k':>2s} {'structure':15s} {'dice':>6s} "
          f"{'flag AUROC':>10s} {'set-ref s':>9s} {'s/target':>8s} {'RSS MB':>7s}")
    for group in args.rows.split(","):
        for method, variant, config, k in ROWS[group]:
            for dataset in args.datasets.split(","):
                name = f"{method}{'_' + variant if variant else ''}_{dataset}_k{k}"
                path = OUT / f"{name}.json"
                if not path.exists():
                    records = bench_oneshot(method, dataset, seeds=args.seeds, limit=args.limit, shots=k,
                                            cache_dir=args.cache_dir, config=dict(config), command=command)
                    for r in records:
                        r["variant"] = variant or "default"
                    write_records(path, records)
                _print(json.loads(path.read_text()), variant)


def _print(records: list[dict], variant: str) -> None:
    for r in records:
        if r["metric"] != "dice":
            continue
        flag = next((x["mean"] for x in records if x["metric"] == "flag_auroc_quality"
                     and x["structure"] == r["structure"]), None)
        print(f"{r['method']:16s} {variant or 'default':14s} {r['dataset']:10s} {r['setting']['shots']:2d} "
              f"{r['structure']:15s} {r['mean']:6.3f} {'-' if flag is None else f'{flag:.2f}':>10s} "
              f"{r['seconds_set_reference']:9.1f} {r['seconds_per_image']:8.2f} {r['peak_rss_mb']:7.0f}",
              flush=True)


if __name__ == "__main__":
    main()
