"""Speed of one-shot segmentation on this machine, end to end (encoder included, no embedding cache).

Times, for each one-shot method, setting a reference (encode + fits) and segmenting one new target image (encode +
warp + decoder rounds), median over the targets, with ``torch.set_num_threads(2)``. Run it alone: the machine's
2 cores are the budget the issue sets (reference <= 60 s, target <= 2 s).

    .venv/bin/python -m benchmarks.oneshot_speed [--targets 5] [--json benchmarks/results/oneshot_speed.json]
    .venv/bin/python -m benchmarks.oneshot_speed --methods med_persam --encoder plain \
        --json benchmarks/results/oneshot_speed_plain.json     # "before": the encoder on the plain eager path
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from roiprompt.data import load_dataset
from roiprompt.methods import load_method
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.models.backbones import load_backbone

CASES = [("jsrt", None), ("kvasir_seg", None)]
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
    print(f"{'dataset':12s} {'structures':10s} {'method':13s} {'set-ref s':>9s} {'s/target':>9s}")
    for dataset, structures in CASES:
        data = load_dataset(dataset)
        train, test = data.split("train"), data.split("test")
        names = structures or list(data.structures)
        reference = train[0]
        targets = [test[i].image for i in range(args.targets)]
        for name in args.methods.split(","):
            method = load_method(name, backbone=backbone)  # no cache: every image is encoded
            start = time.perf_counter()
            method.set_reference(reference.image, {s: reference.masks[s] for s in names})
            ref_s = time.perf_counter() - start
            times = []
            for image in targets:
                start = time.perf_counter()
                method.predict_all(image)
                times.append(time.perf_counter() - start)
            per_target = float(np.median(times))
            label = "all" if structures is None else ",".join(names)
            print(f"{dataset:12s} {label:10s} {name:13s} {ref_s:9.1f} {per_target:9.2f}", flush=True)
            for metric, value in (("seconds_set_reference", ref_s), ("seconds_per_target", per_target)):
                records.append(make_record(
                    method=name, backbone="litemedsam", dataset=dataset, structure=label, task="speed",
                    setting={"threads": 2, "targets": args.targets, "structures": len(names), "cache": False,
                             "encoder": args.encoder, "runtime": runtime},
                    metric=metric, summary={"mean": value, "ci95": [min(times), max(times)] if "target" in metric
                                            else [ref_s, ref_s], "n": len(times)},
                    seconds_per_image=per_target, command=command))
    write_records(args.json, records)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
