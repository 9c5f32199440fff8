"""Where to split LiteMedSAM's encoder between float32 and bfloat16 (OpenVINO): mask Dice and speed per split.

``precision="bfloat16"`` runs the encoder as two OpenVINO models, a float32 head and a bf16 rest (OpenVINO's
precision hint is per compiled model). This measures what the split point costs and buys: the first ``k`` units of
TinyViT (patch embedding, stage 0's two MBConv blocks, its patch merging, stages 1-3, neck) in float32, the rest in
bf16, for each ``k`` of ``--splits``. Dice / max |delta logits| of box-prompted masks against float32 on the same
real images as benchmarks/speed.py; ms/image at batch 1, the splits timed in turn (median of ``--repeats``
passes). Needs a CPU with native bf16. Run it alone.

    python -m benchmarks.bf16_split [--images 64] [--splits 0,1,2,4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from roiprompt.runtime import cpu_has_native_bf16, split_qkv
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.evaluation.speed import dice_and_delta, load_images, median
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.base import ImageEmbedding

ROOT = Path(__file__).resolve().parents[1]


def units(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """TinyViT as a chain of (B, C, H, W) -> (B, C', H', W') units; ``forward`` is their composition."""
    stage0 = encoder.layers[0]
    return ([("patch_embed", encoder.patch_embed)]
            + [(f"stage0.mbconv{i}", b) for i, b in enumerate(stage0.blocks)]
            + [("stage0.merge", stage0.downsample)]
            + [(f"stage{i}", s) for i, s in enumerate(encoder.layers) if i > 0] + [("neck", encoder.neck)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--time-images", type=int, default=8)
    p.add_argument("--splits", default="0,1,2,4", help="float32 units before the bf16 part (1: the default stem)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bf16_split.json"))
    args = p.parse_args()
    if not cpu_has_native_bf16():
        p.exit(2, "needs a CPU with native bfloat16 (AVX512-BF16 or AMX)\n")
    import openvino as ov

    command = "python -m benchmarks.bf16_split " + shlex.join(sys.argv[1:])
    torch.set_num_threads(args.threads)
    backbone = load_backbone("litemedsam", runtime="eager")
    encoder = split_qkv(copy.deepcopy(backbone.model.image_encoder).eval())  # as the engine converts it
    chain = units(encoder)
    pixels, boxes, names = load_images(args.images)

    def decode(features, box: torch.Tensor) -> torch.Tensor:
        return backbone.decode(ImageEmbedding(torch.as_tensor(features).float()), boxes=box)[0][:, 0].float()

    with torch.no_grad():
        assert (encoder(pixels[:1]) - nn.Sequential(*(m for _, m in chain))(pixels[:1])).abs().max() == 0
        reference = torch.cat([decode(encoder(pixels[i:i + 1]), boxes[i:i + 1]) for i in range(len(pixels))])

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads}
    pipelines = {}
    for k in (int(s) for s in args.splits.split(",")):
        parts, x = [], torch.zeros(1, 3, 256, 256)
        for modules, hint in ((chain[:k], "f32"), (chain[k:], "bf16")):
            if not modules:
                continue
            part = nn.Sequential(*(m for _, m in modules))
            with torch.no_grad():
                model = ov.convert_model(part, example_input=x)
                x = part(x)
            request = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": hint})
            parts.append(request.create_infer_request())

        def run(image: np.ndarray, parts=parts) -> np.ndarray:
            parts[0].infer([image])
            for previous, request in zip(parts, parts[1:]):
                request.set_input_tensor(previous.get_output_tensor(0))
                request.infer()
            return parts[-1].get_output_tensor(0).data.copy()

        pipelines[k] = run

    scores = {}
    for k, run in pipelines.items():
        logits = torch.cat([decode(run(pixels[i:i + 1].numpy()), boxes[i:i + 1]) for i in range(len(pixels))])
        scores[k] = dice_and_delta(logits, reference)
    timing = [np.ascontiguousarray(pixels[i:i + 1].numpy()) for i in range(args.time_images)]
    times: dict[int, list[float]] = {k: [] for k in pipelines}
    keys = list(pipelines)
    for r in range(args.repeats):  # in turn, the order rotated every repeat
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            pipelines[k](timing[0])  # untimed first call of the pass
            start = time.perf_counter()
            for image in timing:
                pipelines[k](image)
            times[k].append(1e3 * (time.perf_counter() - start) / len(timing))

    base = median(times[keys[0]])
    print(f"{len(names)} images, {args.threads} threads; float32 part -> bf16 part")
    print(f"{'float32 units':58s}{'ms/img':>8s}{'x first':>8s}{'Dice mean':>10s}{'min':>8s}{'<0.99':>6s}")
    records = []
    for k in keys:
        (dice, delta), ms = scores[k], median(times[k])
        head = "+".join(n for n, _ in chain[:k]) or "(none: all bf16)"
        print(f"{head:58s}{ms:8.0f}{base / ms:8.2f}{dice.mean():10.4f}{dice.min():8.4f}{int((dice < 0.99).sum()):6d}")
        records.append(make_record(
            method="litemedsam_encoder", backbone="litemedsam", dataset="kvasir_seg+busbra+jsrt", structure=None,
            task="bf16_split", setting={"float32_units": k, "float32_part": head, "threads": args.threads,
                                        "timed_images": len(timing), "runtime": "openvino"},
            metric="ms_per_image", summary={"mean": ms, "ci95": [min(times[k]), max(times[k])], "n": len(times[k])},
            seconds_per_image=ms / 1e3, command=command,
            extra={"scored_images": len(dice), "dice_mean": float(dice.mean()), "dice_min": float(dice.min()),
                   "images_below_0_99": int((dice < 0.99).sum()), "max_abs_delta_logits": float(delta.max()),
                   "worst_images": [n for _, n in sorted(zip(dice.tolist(), names))[:3]]}))
    print(f"\nwrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
