"""Speed of one-shot segmentation on this machine, end to end (encoder included, no embedding cache).

Times, for each one-shot method, setting a reference (encode + fits) and segmenting one new target image (encode +
warp + decoder rounds), median over the targets, with ``torch.set_num_threads(2)``; then the same targets again
with their embeddings read from an on-disk cache (``seconds_per_target_cached``: everything but the encoder).
Run it alone: the machine's 2 cores are the budget (issue 4: reference <= 60 s, target <= 2 s; issue 19 for
``med_persam_plus``: reference <= 30 s, target <= 1.5 s, cached <= 0.3 s, peak RSS <= 2.5 GB).

    .venv/bin/python -m benchmarks.oneshot_speed [--targets 5] [--json benchmarks/results/oneshot_speed.json]
    .venv/bin/python -m benchmarks.oneshot_speed --methods med_persam --encoder plain \
        --json benchmarks/results/oneshot_speed_plain.json     # "before": the encoder on the plain eager path
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time

import numpy as np
import torch

from roiprompt.data import load_dataset
from roiprompt.methods import load_method
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.models.backbones import load_backbone

CASES = [("jsrt", None), ("kvasir_seg", None), ("busbra", None)]
METHODS = ["med_persam", "persam", "persam_f", "registration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/oneshot_speed.json")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--encoder", choices=("fast", "plain"), default="fast",
                        help="LiteMedSAM's default inference path, or the plain eager float32 path (fast=False)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    command = "python -m benchmarks.oneshot_speed " + shlex.join(sys.argv[1:])
    backbone = load_backbone("litemedsam", fast=args.encoder == "fast")
    runtime = backbone.inference.runtime
    records = []
    print(f"{'dataset':12s} {'structures':10s} {'method':15s} {'set-ref s':>9s} {'s/target':>9s} {'cached':>9s}")
    for dataset, structures in CASES:
        data = load_dataset(dataset)
        train, test = data.split("train"), data.split("test")
        names = structures or list(data.structures)
        reference = train[0]
        targets = [test[i].image for i in range(args.targets)]
        for name in args.methods.split(","):
            scratch = tempfile.TemporaryDirectory(prefix="roiprompt-speed-")  # empty: every image is encoded once
            method = load_method(name, backbone=backbone, cache_dir=scratch.name)
            start = time.perf_counter()
            method.set_reference(reference.image, {s: reference.masks[s] for s in names})
            ref_s = time.perf_counter() - start
            times, cached = [], []
            for pass_times in (times, cached):  # the second pass reads the embeddings the first one stored
                for image in targets:
                    start = time.perf_counter()
                    method.predict_all(image)
                    pass_times.append(time.perf_counter() - start)
            scratch.cleanup()
            per_target, per_cached = float(np.median(times)), float(np.median(cached))
            label = "all" if structures is None else ",".join(names)
            print(f"{dataset:12s} {label:10s} {name:15s} {ref_s:9.1f} {per_target:9.2f} {per_cached:9.2f}", flush=True)
            for metric, value in (("seconds_set_reference", ref_s), ("seconds_per_target", per_target),
                                  ("seconds_per_target_cached", per_cached)):
                records.append(make_record(
                    method=name, backbone="litemedsam", dataset=dataset, structure=label, task="speed",
                    setting={"threads": 2, "targets": args.targets, "structures": len(names),
                             "cache": metric.endswith("cached"),
                             "encoder": args.encoder, "runtime": runtime},
                    metric=metric, summary={"mean": value, "ci95": [min(t), max(t)] if (t := {
                        "seconds_per_target": times, "seconds_per_target_cached": cached}.get(metric)) else
                        [ref_s, ref_s], "n": len(times)},
                    seconds_per_image=per_target, command=command))
    write_records(args.json, records)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
