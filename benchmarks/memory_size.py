"""Peak memory of ``roiprompt segment`` and ``roiprompt oneshot`` as a function of image size (issue 20).

For each size (1, 4, 16, 36 and 64 Mpx, square) and kind (grey, RGB), a synthetic PNG (a smooth gradient with a
bright disc: it compresses to a few hundred KB, as the issue's 375 KB 11000^2 PNG did) is segmented by the CLI in
a fresh process, and its peak resident set size (``wait4``'s ``ru_maxrss``) and wall time are recorded:

* ``segment``: LiteMedSAM from a box around the disc (``--threads 2``);
* ``oneshot``: the default method (``med_persam_plus``) from a reference of the same size (the disc moved, its
  mask as the reference mask), ``--warp-iterations`` small (default 30; the warping fit works on 128^2 grey
  squares whatever the image size, so it changes the time, not how memory grows with the image).

Then peak ~= a + b * Mpx is fit per command and kind (least squares) and printed with the table. Results go to
``benchmarks/results/memory_size.json`` (records of the common format, task ``memory_size``; the exact CLI command
of each run in ``run_command``). ``--root`` runs another checkout of the code (e.g. ``git worktree add
/tmp/before HEAD`` for the numbers before a change) under ``--label``; records of other labels in the JSON are
kept, so "before" and "after" sit in one file. Run it alone: the machine's memory and 2 cores are the budget.

    .venv/bin/python -m benchmarks.memory_size [--sizes 1,4,16,36,64] [--kinds grey,rgb] \
        [--commands segment,oneshot] [--root /tmp/before --label before]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from roiprompt.evaluation.records import REQUIRED_KEYS, _strict, git_commit
from roiprompt.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
#: Runs the CLI of the checkout in the current directory (asserted: not the editable install of another one).
RUNNER = ("import os, sys, roiprompt; "
          "assert os.path.realpath(roiprompt.__file__).startswith(os.path.realpath(os.getcwd()) + os.sep), "
          "roiprompt.__file__; from roiprompt.cli import main; sys.exit(main(sys.argv[1:]))")


def _disc_image(side: int, kind: str, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(side x side [x 3] uint8 image, bool disc mask): smooth gradients plus a bright disc, built in row blocks."""
    rows = []
    mask_rows = []
    cx, cy = centre[0] * side, centre[1] * side
    radius = 0.2 * side
    x = np.arange(side, dtype=np.float32)[None, :]
    for y0 in range(0, side, 1024):
        y = np.arange(y0, min(side, y0 + 1024), dtype=np.float32)[:, None]
        disc = (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
        base = 30 + 120 * x / side + 40 * y / side
        if kind == "grey":
            px = base + 70 * disc
        else:
            px = np.stack([base + 70 * disc, 200 - 100 * x / side + 30 * disc, 60 + 80 * y / side + 50 * disc], -1)
        rows.append(np.clip(np.round(px), 0, 255).astype(np.uint8))
        mask_rows.append(disc)
    return np.concatenate(rows), np.concatenate(mask_rows)


def make_inputs(work: Path, mpx: int, kind: str) -> dict:
    """Synthetic target, reference and reference mask PNGs of ``mpx`` megapixels (made once, kept in ``work``)."""
    from PIL import Image

    side = round(math.sqrt(mpx * 1e6))
    folder = work / f"{kind}_{mpx}mpx"
    paths = {"target": folder / "target" / f"disc_{kind}_{side}.png", "reference": folder / "reference.png",
             "reference_mask": folder / "reference_mask.png"}
    if not all(p.exists() for p in paths.values()):
        paths["target"].parent.mkdir(parents=True, exist_ok=True)
        image, _ = _disc_image(side, kind, (0.45, 0.5))
        Image.fromarray(image).save(paths["target"])
        ref, ref_mask = _disc_image(side, kind, (0.55, 0.45))
        Image.fromarray(ref).save(paths["reference"])
        Image.fromarray(ref_mask.astype(np.uint8) * 255).save(paths["reference_mask"])
        del image, ref, ref_mask
    r = 0.2 * side + 0.05 * side  # box around the target's disc, 5 % padding
    box = [0.45 * side - r, 0.5 * side - r, 0.45 * side + r, 0.5 * side + r]
    return {**paths, "side": side, "box": [round(v) for v in box],
            "png_kb": round(paths["target"].stat().st_size / 1024, 1)}


def cli_args(command: str, inputs: dict, out: Path, threads: int, warp_iterations: int,
             runtime: str | None = None) -> list[str]:
    common = ["--threads", str(threads), *(["--runtime", runtime] if runtime else [])]
    if command == "segment":
        return [*common, "segment", str(inputs["target"]), "--box", *map(str, inputs["box"]),
                "--out", str(out)]
    return [*common, "oneshot", "--reference", str(inputs["reference"]), "--reference-mask",
            str(inputs["reference_mask"]), "--images", str(inputs["target"].parent), "--out", str(out),
            "--warp-iterations", str(warp_iterations)]


def measure(args: list[str], root: Path, log: Path) -> tuple[float, float, int]:
    """Run the CLI of ``root`` with ``args`` in a fresh process: (peak RSS MiB, wall seconds, exit status)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode


def fit_line(mpx: list[float], peak: list[float]) -> tuple[float, float]:
    """Least-squares (a, b) of peak ~= a + b * mpx."""
    b, a = np.polyfit(np.asarray(mpx, float), np.asarray(peak, float), 1)
    return float(a), float(b)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,4,16,36,64", help="megapixels, comma-separated (square images)")
    p.add_argument("--kinds", default="grey,rgb")
    p.add_argument("--commands", default="segment,oneshot")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtime", choices=("auto", "eager", "openvino", "compile"),
                   help="the CLI's --runtime (default: its own default)")
    p.add_argument("--warp-iterations", type=int, default=30, help="oneshot's warping fit (the default is 300)")
    p.add_argument("--root", default=str(ROOT), help="checkout whose code runs (default: this one)")
    p.add_argument("--label", default="after", help="name of this code state in the records (before / after)")
    p.add_argument("--work", default="/tmp/roiprompt-memory-size", help="synthetic images and run folders")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "memory_size.json"))
    args = p.parse_args()
    command = "python -m benchmarks.memory_size " + shlex.join(sys.argv[1:])
    root, work = Path(args.root).resolve(), Path(args.work)
    commit = git_commit(root)
    sizes = [int(s) for s in args.sizes.split(",")]
    records: list[dict] = []
    print(f"{args.label}: code {root} at {commit}")
    print(f"{'command':8s} {'kind':5s} {'Mpx':>4s} {'side':>5s} {'PNG KB':>7s} {'peak MiB':>9s} {'wall s':>7s}")
    for name in args.commands.split(","):
        for kind in args.kinds.split(","):
            rows = []
            for mpx in sizes:
                inputs = make_inputs(work, mpx, kind)
                out = work / "runs" / f"{args.label}_{name}_{kind}_{mpx}"
                shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing to resume
                cli = cli_args(name, inputs, out, args.threads, args.warp_iterations, args.runtime)
                peak, wall, rc = measure(cli, root, work / f"{args.label}_{name}_{kind}_{mpx}.log")
                if rc != 0:
                    tail = (work / f"{args.label}_{name}_{kind}_{mpx}.log").read_text(errors="replace")[-2000:]
                    print(f"{name} {kind} {mpx} Mpx failed (exit {rc}):\n{tail}", file=sys.stderr)
                    return 1
                print(f"{name:8s} {kind:5s} {mpx:4d} {inputs['side']:5d} {inputs['png_kb']:7.0f} {peak:9.0f} "
                      f"{wall:7.1f}", flush=True)
                rows.append((mpx, peak))
                setting = {"code": args.label, "mpx": mpx, "side": inputs["side"], "kind": kind,
                           "threads": args.threads, "runtime": args.runtime or "default", "png_kb": inputs["png_kb"]}
                if name == "oneshot":
                    setting["warp_iterations"] = args.warp_iterations
                records.append({
                    "method": "segment" if name == "segment" else "oneshot:med_persam_plus", "backbone": "litemedsam",
                    "dataset": f"synthetic_{kind}", "structure": "disc", "task": "memory_size", "setting": setting,
                    "metric": "peak_rss_mb", "mean": round(peak, 1), "ci95": [round(peak, 1), round(peak, 1)],
                    "n": 1, "seconds_per_image": round(wall, 2), "peak_rss_mb": round(peak, 1), "command": command,
                    "git_commit": commit,
                    "run_command": "roiprompt " + shlex.join(cli)})
            if len(rows) >= 2:
                a, b = fit_line(*zip(*rows))
                print(f"{name:8s} {kind:5s} fit: peak ~= {a:.0f} MiB + {b:.1f} MiB/Mpx "
                      f"({b * 1024 * 1024 / 1e6:.1f} bytes/pixel)")
                records.append({
                    "method": records[-1]["method"], "backbone": "litemedsam", "dataset": f"synthetic_{kind}",
                    "structure": "disc", "task": "memory_size",
                    "setting": {"code": args.label, "mpx": sizes, "kind": kind, "threads": args.threads},
                    "metric": "peak_rss_fit", "mean": round(b, 2), "ci95": [round(b, 2), round(b, 2)],
                    "n": len(rows), "seconds_per_image": float("nan"), "peak_rss_mb": round(max(r[1] for r in rows), 1),
                    "command": command, "git_commit": commit, "a_mib": round(a, 1), "b_mib_per_mpx": round(b, 2),
                    "bytes_per_pixel": round(b * 1024 * 1024 / 1e6, 2)})
    path = Path(args.json)
    kept = []
    if path.exists():  # keep the other code states' records (before / after)
        kept = [r for r in json.loads(path.read_text()) if r.get("setting", {}).get("code") != args.label]
    for r in records:
        assert all(k in r for k in REQUIRED_KEYS), r
    atomic_write_text(path, json.dumps(_strict(kept + records), indent=1, allow_nan=False) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
