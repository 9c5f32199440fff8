"""The browser app against its targets (issue 22), driven over its HTTP API like the page drives it, on 2 cores:

* box -> mask preview once the image is encoded (target <= 1 s): the server's decode time and the client's round
  trip, over ``--repeats`` boxes around the reference's heart (JSRT train image);
* propagation throughput against the CLI's (target within 10 %): the app's per-image time while propagating
  (the fit excluded, as the CLI's "model loading" is) and with its export added, against ``roiprompt oneshot`` on
  the same images and reference in a fresh process (read + predict + write per image, from its own timing line);
* the page stays responsive during propagation: latency of what the open page requests while the model runs
  (``/api/state`` every 0.4 s, and each new result's review tile).

Records go to ``benchmarks/results/app.json`` (task ``app``; the CLI command in ``run_command``). Run it alone.

    .venv/bin/python -m benchmarks.app [--images 24] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from roiprompt.evaluation.records import git_commit, peak_rss_mb, write_records

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _call(url: str, method: str = "GET", body: dict | None = None) -> tuple[float, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        payload = r.read()
    return time.perf_counter() - start, payload


def study(work: Path, n: int) -> tuple[Path, Path, Path, list]:
    """(study folder with the reference and ``n`` JSRT test images, targets-only folder for the CLI, the
    reference's mask file, the reference sample)."""
    from PIL import Image

    from roiprompt.data import load_dataset, write_mask_png

    data = load_dataset("jsrt")
    reference = next(s for s in data.split("train") if "heart" in s.masks)
    folder, targets = work / "study", work / "targets"
    for f in (folder, targets):
        shutil.rmtree(f, ignore_errors=True)
        f.mkdir(parents=True)
    Image.fromarray(reference.image).save(folder / "0_reference.png")
    test = data.split("test")
    for k in range(n):
        Image.fromarray(test[k].image).save(folder / f"{test[k].id}.png")
        (targets / f"{test[k].id}.png").symlink_to(folder / f"{test[k].id}.png")
    mask = work / "reference_heart.png"
    write_mask_png(mask, reference.masks["heart"])
    return folder, targets, mask, reference


class Poller(threading.Thread):
    """What the open page requests while propagation runs: ``/api/state`` every ``period`` seconds (app.js polls
    every 0.4 s) and, for each image whose masks changed, its review tile (``overlay.jpg``); every latency is
    recorded."""

    def __init__(self, url: str, period: float = 0.4) -> None:
        super().__init__(daemon=True)
        self.url, self.period, self.stop, self.latency = url, period, threading.Event(), {"state": [], "tile": []}
        self.seen: dict[int, int] = {}

    def run(self) -> None:
        while not self.stop.wait(self.period):
            seconds, payload = _call(f"{self.url}/api/state")
            self.latency["state"].append(seconds)
            for img in json.loads(payload)["images"]:
                if img["v"] and self.seen.get(img["id"]) != img["v"]:
                    self.seen[img["id"]] = img["v"]
                    self.latency["tile"].append(_call(f"{self.url}/api/images/{img['id']}/overlay.jpg")[0])


def measure_app(work: Path, repeats: int) -> dict:
    """The app's figures, in this (fresh) process: the same footing as the CLI's own process."""
    import torch

    from roiprompt.app import Served, Session, Study
    from roiprompt.data import read_mask

    torch.set_num_threads(2)
    truth = read_mask(work / "reference_heart.png")
    ys, xs = np.nonzero(truth)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    session = Session(Study(work / "study"), work / "out")
    session.load_study()
    session.wait()
    rng = np.random.default_rng(0)
    with Served(session) as url:
        encode_s = json.loads(_call(f"{url}/api/images/0/encode", "POST")[1])["seconds"]
        decode, roundtrip = [], []
        for _ in range(repeats):
            jitter = (rng.normal(0, 8, 4)).tolist()
            seconds, payload = _call(f"{url}/api/images/0/segment", "POST",
                                     {"structure": "heart", "box": [b + j for b, j in zip(box, jitter)]})
            roundtrip.append(seconds)
            decode.append(json.loads(payload)["seconds"])
            _call(f"{url}/api/images/0/masks/heart.png")  # what the page fetches next
        session.set_mask(0, "heart", truth)  # the reference as annotated (the benchmark measures speed, not Dice)
        _call(f"{url}/api/images/0/accept", "POST")
        poller = Poller(url)
        _call(f"{url}/api/propagate", "POST")
        poller.start()
        job = session.wait()
        poller.stop.set()
        poller.join()
        assert job["state"] == "done", job
        export_s, _ = _call(f"{url}/api/export", "POST")
    return {"encode_s": encode_s, "decode": decode, "roundtrip": roundtrip, "job": job, "export_s": export_s,
            "state": poller.latency["state"], "tile": poller.latency["tile"], "method": session.method_name,
            "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--work", default="/tmp/roiprompt-app-bench")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "app.json"))
    p.add_argument("--app-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    work = Path(args.work)
    if args.app_only:
        print(json.dumps(measure_app(work, args.repeats), default=str))
        return 0
    folder, targets, mask_file, _ = study(work, args.images)
    # the app and the CLI each in a fresh process (a long-lived benchmark process would measure its own heap)
    child = subprocess.run([sys.executable, "-m", "benchmarks.app", "--app-only", "--work", str(work),
                            "--repeats", str(args.repeats)], capture_output=True, text=True, cwd=ROOT)
    if child.returncode != 0:
        print(child.stdout[-2000:], child.stderr[-3000:])
        return 1
    app = json.loads(child.stdout.strip().splitlines()[-1])
    job, decode, roundtrip, export_s = app["job"], app["decode"], app["roundtrip"], app["export_s"]
    encode_s = app["encode_s"]
    n = job["total"]
    app_s = (job["seconds"] - job["fit_seconds"]) / n
    app_export_s = app_s + export_s / (n + 1)

    cli_out = work / "cli"
    shutil.rmtree(cli_out, ignore_errors=True)
    cli_args = ["--threads", "2", "oneshot", "--reference", str(folder / "0_reference.png"), "--reference-mask",
                f"heart={mask_file}", "--images", str(targets), "--out", str(cli_out)]
    done = subprocess.run([str(BIN / "roiprompt"), *cli_args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        return 1
    stages = dict((k, float(v)) for k, v in re.findall(r"(read|predict|write) ([0-9.]+) s",
                                                       done.stdout.split("time per image:")[-1]))
    cli_s = sum(stages.values())
    state_lat, tile_lat = sorted(app["state"]), sorted(app["tile"])

    def q(values: list[float], f: float) -> float:
        return values[min(len(values) - 1, int(f * len(values)))] if values else float("nan")

    rows = [
        ("encode_s", encode_s, "the reference, the first encode of the process (runtime set-up included)"),
        ("preview_decode_s_median", statistics.median(decode), f"server, {args.repeats} boxes (target <= 1 s)"),
        ("preview_decode_s_max", max(decode), ""),
        ("preview_roundtrip_s_median", statistics.median(roundtrip), "client: request to reply"),
        ("app_s_per_image", app_s, f"propagation, {n} images, fit excluded ({job['fit_seconds']:.1f} s)"),
        ("app_with_export_s_per_image", app_export_s, f"plus the export ({export_s:.1f} s)"),
        ("cli_s_per_image", cli_s, "oneshot: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items())),
        ("app_over_cli", app_s / cli_s, "target <= 1.10"),
        ("app_with_export_over_cli", app_export_s / cli_s, "target <= 1.10"),
        ("state_latency_s_median", statistics.median(state_lat), f"{len(state_lat)} polls while propagating"),
        ("state_latency_s_p95", q(state_lat, 0.95), ""),
        ("state_latency_s_max", state_lat[-1], ""),
        ("tile_latency_s_p95", q(tile_lat, 0.95), f"{len(tile_lat)} review tiles fetched as results arrived"),
    ]
    print(f"{'metric':32s} {'value':>9s}  note")
    for name, value, note in rows:
        print(f"{name:32s} {value:9.3f}  {note}")
    commit = git_commit()
    records = [{"method": app["method"], "backbone": "litemedsam", "dataset": "jsrt", "structure": "heart",
                "task": "app", "setting": {"images": n, "repeats": args.repeats, "threads": 2, "note": note},
                "metric": name, "mean": value, "ci95": [None, None], "n": n, "seconds_per_image": app_s,
                "peak_rss_mb": app["peak_rss_mb"], "command": "python -m benchmarks.app " + shlex.join(sys.argv[1:]),
                "run_command": "roiprompt " + shlex.join(cli_args), "git_commit": commit}
               for name, value, note in rows]
    write_records(args.json, records)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
