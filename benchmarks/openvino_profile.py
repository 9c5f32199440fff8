"""Where the default (OpenVINO float32) LiteMedSAM encoder spends its time, and how far each layer is from its
roofline: OpenVINO's per-layer counters (mean of --repeats inferences of one 256x256 image), each layer's FLOPs
and bytes read from its shapes, and the machine's peak GFLOP/s and copy bandwidth measured in the same run.

Each layer at ``max(FLOPs / peak, bytes / bandwidth)``, summed, is the *roofline estimate*: closer to what the
hardware allows than the arithmetic floor (FLOPs / peak) that benchmarks/speed.py reports, because the stage-0
convolutions at 256x256 and the window reshuffles are limited by memory, not arithmetic. An estimate, not a bound:
tensors that stay in cache move faster than the DRAM copy bandwidth. Run it alone.

    python -m benchmarks.openvino_profile [--repeats 5] [--threads 2] [--precision f32|bf16]

The model is the one the default path runs: converted with ``split_qkv`` applied and compiled for a static batch
of 1 (``InferenceOptions.static_batch``). ``--precision bf16`` profiles it under OpenVINO's bf16 inference hint
(the whole encoder: ``precision="bfloat16"`` keeps the 0.4 % patch embedding in a separate float32 model), held to
the bfloat16 matmul peak and with 2-byte activations in the roofline; it needs a CPU with native bf16.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import torch

from roiprompt.runtime import cpu_has_native_bf16, split_qkv
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.evaluation.speed import (copy_bandwidth_gbs, encoder_gflops, openvino_layer_costs,
                                        peak_gflops)
from roiprompt.models.backbones import load_backbone

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    p.add_argument("--json", default=None, help="default: benchmarks/results/openvino_profile[_bf16].json")
    args = p.parse_args()
    import openvino as ov

    bf16 = args.precision == "bf16"
    if bf16 and not cpu_has_native_bf16():
        p.exit(2, "--precision bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX)\n")
    dtype = torch.bfloat16 if bf16 else torch.float32
    json_path = args.json or str(ROOT / "benchmarks" / "results" / f"openvino_profile{'_bf16' if bf16 else ''}.json")

    command = "python -m benchmarks.openvino_profile " + shlex.join(sys.argv[1:])
    encoder = load_backbone("litemedsam", runtime="eager").model.image_encoder
    source = split_qkv(copy.deepcopy(encoder).eval().to(memory_format=torch.contiguous_format))
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():  # the conversion EncoderRunner makes (dynamic batch), compiled as it does (static batch)
        model = ov.convert_model(source, example_input=x, input=[ov.PartialShape([-1, 3, 256, 256])])
    model.reshape({0: ov.PartialShape([1, 3, 256, 256])})
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                                                      "INFERENCE_PRECISION_HINT": args.precision,
                                                      "INFERENCE_NUM_THREADS": args.threads})
    peaks = [peak_gflops(args.threads, dtype=dtype)]
    bandwidths = [copy_bandwidth_gbs(args.threads)]
    costs = openvino_layer_costs(compiled, [x.numpy()], args.repeats, bytes_per_value=2 if bf16 else 4)
    peaks.append(peak_gflops(args.threads, dtype=dtype))
    bandwidths.append(copy_bandwidth_gbs(args.threads))
    peak, bandwidth = max(peaks), max(bandwidths)

    by_type: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for layer in costs:
        row = by_type[layer.kind]
        row["ms"] += layer.ms
        row["layers"] += 1
        row["gflop"] += layer.flops / 1e9
        row["mb"] += layer.bytes / 1e6
        row["roofline_ms"] += max(layer.flops / (peak * 1e9), layer.bytes / (bandwidth * 1e9)) * 1e3
    total = sum(r["ms"] for r in by_type.values())
    gflop = sum(r["gflop"] for r in by_type.values())
    roofline = sum(r["roofline_ms"] for r in by_type.values())
    arithmetic = encoder_gflops() / peak * 1e3
    print(f"{args.precision}: peak {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s, {args.threads} threads\n"
          f"measured {total:.0f} ms/image (counters on); GFLOP counted from layer shapes {gflop:.1f}\n"
          f"arithmetic floor {arithmetic:.0f} ms (x{total / arithmetic:.2f}); roofline estimate {roofline:.0f} ms "
          f"(x{total / roofline:.2f})\n")
    print(f"{'layer type (kernel)':40s}{'ms':>8s}{'share':>7s}{'layers':>7s}{'GFLOP':>7s}{'GFLOP/s':>8s}{'MB':>7s}"
          f"{'roofline ms':>12s}")
    records = []
    for key, r in sorted(by_type.items(), key=lambda kv: -kv[1]["ms"]):
        rate = r["gflop"] / r["ms"] * 1e3 if r["gflop"] else 0.0
        if r["ms"] >= 1:
            print(f"{key:40s}{r['ms']:8.1f}{100 * r['ms'] / total:6.1f}%{int(r['layers']):7d}{r['gflop']:7.2f}"
                  f"{rate:8.0f}{r['mb']:7.0f}{r['roofline_ms']:12.1f}")
        records.append(make_record(
            method="litemedsam_encoder", backbone="litemedsam", dataset="random 256x256", structure=None,
            task="profile", setting={"runtime": "openvino", "precision": args.precision, "threads": args.threads,
                                     "layer_type": key,
                                     "layers": int(r["layers"])},
            metric="ms_per_image", summary={"mean": r["ms"], "ci95": [r["ms"], r["ms"]], "n": args.repeats},
            seconds_per_image=total / 1e3, command=command,
            extra={"gflop": round(r["gflop"], 3), "mb_moved": round(r["mb"], 1),
                   "roofline_ms": round(r["roofline_ms"], 2), "peak_gflops": round(peak, 1),
                   "copy_bandwidth_gbs": round(bandwidth, 2), "arithmetic_floor_ms": round(arithmetic, 1),
                   "roofline_estimate_ms": round(roofline, 1), "total_ms": round(total, 1)}))
    print(f"\nwrote {write_records(json_path, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
