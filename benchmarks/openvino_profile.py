"""Where the default (OpenVINO float32) LiteMedSAM encoder spends its time: OpenVINO's per-layer counters summed
by layer type, mean of --repeats inferences of one 256x256 image. Explains the distance to the arithmetic floor
that benchmarks/speed.py reports. Run it alone.

    python benchmarks/openvino_profile.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roiprompt.engine.records import make_record, write_records  # noqa: E402
from roiprompt.models.backbones import load_backbone  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "openvino_profile.json"))
    args = p.parse_args()
    import openvino as ov

    command = "python benchmarks/openvino_profile.py " + shlex.join(sys.argv[1:])
    encoder = load_backbone("litemedsam", runtime="eager").model.image_encoder
    source = copy.deepcopy(encoder).eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():  # the conversion EncoderRunner makes (dynamic batch)
        model = ov.convert_model(source, example_input=x, input=[ov.PartialShape([-1, 3, 256, 256])])
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                                                      "INFERENCE_NUM_THREADS": args.threads})
    request = compiled.create_infer_request()
    for _ in range(2):
        request.infer([x.numpy()])
    ms, calls = Counter(), Counter()
    for _ in range(args.repeats):
        request.infer([x.numpy()])
        for layer in request.profiling_info:
            key = f"{layer.node_type} ({layer.exec_type})"
            ms[key] += layer.real_time.total_seconds() * 1e3 / args.repeats
            calls[key] += 1
    total = sum(ms.values())
    print(f"total {total:.0f} ms per image ({args.threads} threads)\n{'layer type (kernel)':45s}{'ms':>8s}{'share':>7s}"
          f"{'layers':>8s}")
    records = []
    for key, value in ms.most_common():
        n = calls[key] // args.repeats
        if value >= 1:
            print(f"{key:45s}{value:8.1f}{100 * value / total:6.1f}%{n:8d}")
        records.append(make_record(
            method="litemedsam_encoder", backbone="litemedsam", dataset="random 256x256", structure=None,
            task="profile", setting={"runtime": "openvino", "threads": args.threads, "layer_type": key, "layers": n},
            metric="ms_per_image", summary={"mean": value, "ci95": [value, value], "n": args.repeats},
            seconds_per_image=total / 1e3, command=command))
    print(f"\nwrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
