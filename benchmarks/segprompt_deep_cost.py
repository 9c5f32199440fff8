"""What SegPrompt's "deep" variant would cost on this CPU (issue 23; methods.md §2.2's optional variant).

The deep variant adds a zero-initialised 1x1-conv embedding of the mask to the input of TinyViT's third stage
(64x64, 160 channels), so every training step runs stages 3-4 and the neck forward *and backward* (the encoder
stays frozen; the gradient flows through it to the conv). The first stages can be cached per view. This script
times one such step against one step of SegPrompt-Lite (cached tokens) in the same run, at the 16-shot
schedule's batch (16 views; ``--batch`` smaller when memory is short: the step time is scaled to 16, since both
parts are linear in the batch), and projects a 16-shot fit (120 steps) against methods.md §2.3's 60 s budget.

Usage:
    python -m benchmarks.segprompt_deep_cost [--threads 2] [--repeats 3]

Writes benchmarks/results/segprompt_deep_cost.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from roiprompt.evaluation.records import make_record, write_records
from roiprompt.methods.classification.heads import SegPromptHead
from roiprompt.models.backbones import load_backbone

ROOT = Path(__file__).resolve().parents[1]
STEPS_16_SHOT = 120  # max(60 epochs x ceil(32 images / 16), 50 steps)
BUDGET_S = 60.0


def timed(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    encoder = load_backbone("litemedsam").model.image_encoder.eval()
    for q in encoder.parameters():
        q.requires_grad_(False)
    b = args.batch
    stage3_in = torch.randn(b, 160, 64, 64)  # cached input of the third stage (what the first two produce)
    mask = (torch.rand(b, 1, 256, 256) > 0.5).float()
    mask_embed = nn.Conv2d(1, 160, kernel_size=1)
    nn.init.zeros_(mask_embed.weight)
    nn.init.zeros_(mask_embed.bias)
    head = SegPromptHead(256, 16, 256, 2, readout="cls_roi")
    labels = torch.randint(0, 2, (b,))

    def deep_step() -> None:
        x = stage3_in + mask_embed(F.adaptive_avg_pool2d(mask, 64))
        for stage in encoder.layers[2:]:
            x = stage(x)
        tokens = F.adaptive_avg_pool2d(encoder.neck(x), 16)
        F.cross_entropy(head(tokens, mask), labels).backward()

    cached = torch.randn(b, 256, 16, 16)

    def lite_step() -> None:
        F.cross_entropy(head(cached, mask), labels).backward()

    deep, lite = timed(deep_step, args.repeats), timed(lite_step, args.repeats)
    command = "python -m benchmarks.segprompt_deep_cost " + shlex.join(sys.argv[1:])
    setting = {"threads": args.threads, "batch": b, "steps_16_shot": STEPS_16_SHOT}
    records = [
        make_record(method=name, backbone="litemedsam", dataset="synthetic", structure=None, task="deep_cost",
                    setting=setting, metric="seconds_per_step", summary={"mean": t, "ci95": [t, t], "n": args.repeats},
                    seconds_per_image=t / b, command=command,
                    extra={"projected_16_shot_fit_s": round(t * 16 / b * STEPS_16_SHOT, 1), "budget_s": BUDGET_S,
                           "ratio_to_lite": round(t / lite, 1)})
        for name, t in (("segprompt_deep", deep), ("segprompt", lite))]
    out = write_records(ROOT / "benchmarks" / "results" / "segprompt_deep_cost.json", records)
    print(f"{'variant':<16}{'s/step':>10}{'16-shot fit s':>16}{'x Lite':>8}")
    for r in records:
        print(f"{r['method']:<16}{r['mean']:>10.3f}{r['projected_16_shot_fit_s']:>16.1f}{r['ratio_to_lite']:>8.1f}")
    print(f"budget: {BUDGET_S:.0f} s per 16-shot fit; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
