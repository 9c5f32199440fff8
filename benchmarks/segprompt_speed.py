"""Speed of the few-shot classifiers (SegPrompt, MedFocusCLIP and baselines) on this machine (2 threads by
default; run it alone).

For each frozen-encoder classifier: seconds to fit 16 images per class of BUS-BRA (4 views each, encoder tokens
read from the on-disk cache that ``benchmarks/segprompt.py`` filled; methods.md §2.3 budget: <= 60 s), and
milliseconds to classify one test image with its mask, with the tokens cached and with the encoder run (no cache).

    .venv/bin/python -m benchmarks.segprompt_speed [--images 8] [--json benchmarks/results/segprompt_speed.json]
    .venv/bin/python -m benchmarks.segprompt_speed --methods medfocusclip,medfocusclip_unguided \
        --json benchmarks/results/medfocusclip_speed.json
    .venv/bin/python -m benchmarks.segprompt_speed --methods segprompt,medfocusclip --encoder plain \
        --json benchmarks/results/classify_speed_plain.json   # "before": the encoder on the plain eager path
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from roiprompt.data import load_dataset, sample_per_class
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.evaluation.tasks import TASKS
from roiprompt.methods import load_method
from roiprompt.methods.classification import features
from roiprompt.models.backbones import load_backbone

ROOT = Path(__file__).resolve().parents[1]

METHODS = "segprompt,vpt,linear_probe,linear_probe_masked"
TEXT_METHODS = ("medfocusclip", "medfocusclip_unguided")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "embeddings"))
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "segprompt_speed.json"))
    p.add_argument("--threads", type=int, default=2, help="torch threads (the budget assumes 2)")
    p.add_argument("--encoder", choices=("fast", "plain"), default="fast",
                   help="LiteMedSAM's default inference path, or the plain eager float32 path (fast=False)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.segprompt_speed " + shlex.join(sys.argv[1:])
    backbone = load_backbone("litemedsam", fast=args.encoder == "fast")
    data = load_dataset("busbra", label="pathology")
    train, test = data.split("train"), data.split("test")
    support = [train[i] for i in sample_per_class(train, 16, seed=0)]
    images = [test[i] for i in range(args.images)]
    records = []
    print(f"{'method':22s}{'fit s':>8s}{'steps':>7s}{'ms/img cached':>15s}{'ms/img encoder':>16s}{'params':>9s}")
    for name in args.methods.split(","):
        text = {"class_prompts": TASKS["busbra_pathology"]["class_prompts"]} if name in TEXT_METHODS else {}
        method = load_method(name, backbone=backbone, cache_dir=args.cache_dir, **text)
        method.fit(support)
        fit_s, steps = method.fit_seconds, len(method.losses)
        cached = []
        for s in images:
            start = time.perf_counter()
            method.predict(s.image, mask=s.mask())
            cached.append(time.perf_counter() - start)
        fresh = load_method(name, backbone=backbone, **text)  # no disk cache
        fresh.model, fresh.classes, fresh.feature_dim = method.model, method.classes, method.feature_dim
        uncached = []
        for s in images:
            features._MEMO.items.clear()  # the encoder must run
            features._MEMO.bytes = 0
            start = time.perf_counter()
            fresh.predict(s.image, mask=s.mask())
            uncached.append(time.perf_counter() - start)
        params = method.parameter_report()["trainable_params"]
        print(f"{name:22s}{fit_s:8.1f}{steps:7d}{1e3 * np.median(cached):15.1f}{1e3 * np.median(uncached):16.1f}"
              f"{params:9d}")
        common = dict(method=name, backbone="litemedsam", dataset="busbra", structure=None, task="speed",
                      setting={"shots": 16, "views": method.config.views, "threads": args.threads,
                               "encoder": args.encoder, "runtime": backbone.inference.runtime}, command=command)
        extra = {"steps": steps, "trainable_params": params}
        records.append(make_record(**common, metric="fit_seconds_16_shot",
                                   summary={"mean": fit_s, "ci95": [fit_s, fit_s], "n": 1},
                                   seconds_per_image=float(np.median(cached)), extra=extra))
        for metric, values in (("predict_ms_cached", cached), ("predict_ms_encoder", uncached)):
            ms = 1e3 * np.asarray(values)
            records.append(make_record(**common, metric=metric,
                                       summary={"mean": float(np.median(ms)), "ci95": [float(ms.min()), float(ms.max())],
                                                "n": len(ms)},
                                       seconds_per_image=float(np.median(values)), extra=extra))
    print(f"wrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
