"""Does the inference engine's OpenVINO runtime pay off for SAM's ViT encoders, as it does for LiteMedSAM's TinyViT?
SAM ViT-B (transformers' ``SamConfig()``: the official architecture, 1024x1024 input; random weights, since no
SAM checkpoint is available offline: speed does not depend on the weights) through ``SamBackbone`` with each
runtime, timed in turn on the same random images. Decides the SAM-family default (``VIT_FAST``). Run it alone.

    python -m benchmarks.sam_encoder_speed [--repeats 3] [--threads 2] [--runtimes plain,eager,openvino]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from roiprompt.runtime import InferenceOptions, inference_options
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.models.backbones.sam import VIT_FAST, SamBackbone

ROOT = Path(__file__).resolve().parents[1]

#: name -> options: "plain" is the published path (autograd on, glibc defaults), the others VIT_FAST per runtime
RUNTIMES = {"plain": InferenceOptions.reference(), "eager": VIT_FAST,
            "openvino": inference_options(base=VIT_FAST, runtime="openvino"),
            "compile": inference_options(base=VIT_FAST, runtime="compile")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtimes", default="plain,eager,openvino", help=f"from {','.join(RUNTIMES)}")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sam_encoder_speed.json"))
    args = p.parse_args()
    from transformers import SamConfig, SamModel

    command = "python -m benchmarks.sam_encoder_speed " + shlex.join(sys.argv[1:])
    torch.manual_seed(0)
    model = SamModel(SamConfig()).eval().requires_grad_(False)
    backbones, setup = {}, {}
    pixels = torch.rand(args.repeats, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    for name in args.runtimes.split(","):
        options = inference_options(base=RUNTIMES[name], threads=args.threads)
        backbones[name] = SamBackbone(model, inference=options)  # in-memory weights: converted, never cached
        start = time.perf_counter()
        backbones[name].encode_image(pixels[:1])  # conversion / compilation happens here
        setup[name] = time.perf_counter() - start
        print(f"{name}: first call {setup[name]:.1f} s", flush=True)
    reference = backbones[next(iter(backbones))].encode_image(pixels[:1]).features
    times: dict[str, list[float]] = {name: [] for name in backbones}
    for i in range(args.repeats):  # round robin, so the machine's noise falls on every runtime alike
        for name, backbone in backbones.items():
            start = time.perf_counter()
            backbone.encode_image(pixels[i:i + 1])
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(backbones))])
    print(f"\nSAM ViT-B 1024x1024, {args.threads} threads, {args.repeats} images\n"
          f"{'runtime':10s}{'s/image':>9s}{'x plain':>9s}{'first call s':>14s}{'max |delta|':>13s}")
    records = []
    for name, backbone in backbones.items():
        s = statistics.median(times[name])
        delta = float((backbone.encode_image(pixels[:1]).features - reference).abs().max())
        print(f"{name:10s}{s:9.2f}{base / s:9.2f}{setup[name]:14.1f}{delta:13.1e}")
        records.append(make_record(
            method="sam_vit_b_encoder", backbone="sam", dataset="random 1024x1024", structure=None, task="speed",
            setting={"variant": name, "runtime": backbone.inference.runtime, "threads": args.threads},
            metric="seconds_per_image",
            summary={"mean": s, "ci95": [min(times[name]), max(times[name])], "n": len(times[name])},
            seconds_per_image=s, command=command,
            extra={"speedup_vs_plain": round(base / s, 3), "first_call_seconds": round(setup[name], 1),
                   "max_abs_delta_vs_plain": delta}))
    print(f"\nwrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
