"""Throughput and memory of a whole-cohort ``roiprompt oneshot`` run: here, and on a local Ray cluster (issue 21).

The cohort is the three shared datasets together (default 1,000 images: 330 Kvasir-SEG, 424 BUS-BRA, 246 JSRT),
one ``oneshot`` command per dataset with the one-shot default (``med_persam_plus``) and one reference from its
train split (JSRT: the heart). Each configuration runs the three commands, each in a fresh process:

* ``local``: the streaming run in this machine's process (``--threads 2``);
* ``ray-1``: ``--ray auto --workers 1`` with 2 threads per worker, on a cluster ``ray start --head --num-cpus 2``
  started by the benchmark (the Ray overhead against ``local``);
* ``ray-2``: ``--ray auto --workers 2``, 1 thread per worker (two models, two images at a time);
* ``resume``: ``local`` again over its finished folders: the cost of checking what is done.

Recorded per configuration: images/s (images over the wall time of the three commands, start-up included), peak
RSS of the driver (``wait4``), peak RSS summed over the driver and Ray's worker processes (sampled every 0.25 s
from /proc), and the per-image stage times each run prints (read, predict, write). The outputs of every
configuration are compared file by file with ``local``'s: ``ray-1`` runs the same threads per process and must
match byte for byte; ``ray-2``'s 1-thread workers sum floats in another order than 2 threads do, which moves
some anatomy masks (the warping path), so its share of identical files is reported. From the measured per-image cost it projects a
50,000-image cohort on N machines. Records go to ``benchmarks/results/batch.json`` (task ``batch``; the exact
commands in ``run_command``). Run it alone: the 2 cores are the budget.

    .venv/bin/python -m benchmarks.batch [--images 1000] [--configs local,ray-1,ray-2,resume]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from roiprompt.evaluation.records import REQUIRED_KEYS, _strict, git_commit
from roiprompt.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Images per dataset in a cohort of 1,000 (JSRT has 247: all but the reference).
SHARES = {"kvasir_seg": 330, "busbra": 424, "jsrt": 246}
STRUCTURE = {"jsrt": "heart"}
CONFIGS = {"local": dict(ray=False, workers=None, threads=2), "ray-1": dict(ray=True, workers=1, threads=2),
           "ray-2": dict(ray=True, workers=2, threads=1), "resume": dict(ray=False, workers=None, threads=2)}


def cohort(work: Path, n: int) -> list[dict]:
    """Per dataset: a folder of symlinks to ``share`` target images, and its train reference (image, mask)."""
    from roiprompt.data import load_dataset

    jobs = []
    total = sum(SHARES.values())
    for name, share in SHARES.items():
        data = load_dataset(name)
        structure = STRUCTURE.get(name, data.structures[0])
        reference = next(r for r in data.split("train").records if structure in r.masks)
        count = max(1, round(share * n / total))
        targets = [r for r in data.records if r.id != reference.id][:count]
        folder = work / "cohort" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for record in targets:
            (folder / record.image.name).symlink_to(record.image)
        jobs.append({"dataset": name, "images": folder, "n": len(targets), "reference": reference.image,
                     "mask": reference.masks[structure], "structure": structure,
                     "threshold": reference.mask_threshold})
    return jobs


def command(job: dict, out: Path, config: dict) -> list[str]:
    args = ["--threads", str(config["threads"]), "oneshot", "--reference", str(job["reference"]),
            "--reference-mask", f"{job['structure']}={job['mask']}", "--images", str(job["images"]),
            "--out", str(out)]
    if job["threshold"] is not None:
        args += ["--mask-threshold", str(job["threshold"])]
    if config["ray"]:
        args += ["--ray", "auto", "--workers", str(config["workers"])]
    return args


class TreeMemory(threading.Thread):
    """Peak of the summed RSS of ``pid``'s process tree plus every Ray worker (``ray::`` processes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mib, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak_mib = max(self.peak_mib, self.sample())

    def sample(self) -> float:
        children: dict[int, list[int]] = {}
        rss, workers = {}, set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry}/status").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            pid = int(entry)
            ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))
            children.setdefault(ppid, []).append(pid)
            found = re.search(r"VmRSS:\s+(\d+) kB", status)
            rss[pid] = int(found.group(1)) / 1024 if found else 0.0
            if cmdline.startswith(b"ray::"):
                workers.add(pid)
        tree, stack = set(), [self.pid]
        while stack:
            pid = stack.pop()
            tree.add(pid)
            stack.extend(children.get(pid, []))
        return sum(rss.get(pid, 0.0) for pid in tree | workers)


def run(args: list[str], log: Path) -> dict:
    """One CLI run in a fresh process: wall seconds, peak RSS (driver; driver + Ray workers), stage times."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "roiprompt"), *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = TreeMemory(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.stop.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    stages = {k: float(v) for k, v in re.findall(r"(read|predict|write) ([0-9.]+) s", text.split("time per image:")[-1])
              } if "time per image:" in text else {}
    return {"seconds": time.perf_counter() - start, "driver_rss_mib": usage.ru_maxrss / 1024,
            "total_rss_mib": max(sampler.peak_mib, usage.ru_maxrss / 1024), "status": proc.returncode,
            "stages": stages}


def same_outputs(a: Path, b: Path) -> float:
    """Fraction of ``a``'s files (masks, overlays, predictions.csv, manifest.jsonl) that ``b`` holds byte for byte."""
    files = lambda d: {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}  # noqa
    left, right = files(a), files(b)
    return sum(right.get(k) == v for k, v in left.items()) / max(1, len(left))


def project(results: dict[str, dict], cohort_size: int = 50_000, machines: tuple[int, ...] = (1, 4, 16, 64)) -> str:
    """A cohort of ``cohort_size`` images on N 2-core machines like this one, each running the best measured
    configuration at its measured images/s (the once-per-run costs are in that rate already: an overestimate)."""
    runs = {k: v for k, v in results.items() if k != "resume"}
    if not runs:
        return ""
    best = max(runs, key=lambda k: runs[k]["images_per_s"])
    rate = runs[best]["images_per_s"]
    stages = runs[best]["stages"]
    share = {k: v / max(1e-9, sum(stages.values())) for k, v in stages.items()}
    lines = [f"Projection: {cohort_size:,} images at {rate:.3f} images/s per 2-core machine ({best}):"]
    lines += [f"  {n} machine(s): {cohort_size / (rate * n) / 3600:.1f} h" for n in machines]
    largest = max(share, key=share.get)
    lines.append("  time per image: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in share.items())
                 + f" of the worker's time: {largest} bounds the scaling (workers scale it out; the driver only "
                   "appends one manifest line per image)")
    return "\n".join(lines)


def ray_cluster(start: bool) -> None:
    if start:
        subprocess.run([str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--include-dashboard", "false",
                        "--disable-usage-stats"], check=True, capture_output=True)
    else:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], check=False, capture_output=True)


def _write(json_path: str, results: dict[str, dict], n: int) -> None:
    """The records of the configurations measured so far (task ``batch``), written atomically."""
    records = []
    commit = git_commit()
    for name, r in results.items():
        for metric, value in (("images_per_s", r["images_per_s"]), ("peak_rss_driver_mib", r["driver_rss_mib"]),
                              ("peak_rss_total_mib", r["total_rss_mib"])):
            records.append({"method": "med_persam_plus", "backbone": "litemedsam", "dataset": "kvasir_seg+busbra+jsrt",
                            "structure": "polyp/lesion/heart", "task": "batch",
                            "setting": {"config": name, **CONFIGS[name], "images": n,
                                        "stages_s_per_image": r["stages"], "seconds": r["seconds"],
                                        "identical_to_local": r["identical_to_local"], "exit": r["status"]},
                            "metric": metric, "mean": value, "ci95": [None, None], "n": n,
                            "seconds_per_image": r["seconds"] / n, "peak_rss_mb": r["total_rss_mib"],
                            "command": "python -m benchmarks.batch " + shlex.join(sys.argv[1:]),
                            "run_command": r["commands"], "git_commit": commit})
    for r in records:
        assert all(k in r for k in REQUIRED_KEYS), r
    atomic_write_text(Path(json_path), json.dumps(_strict(records), indent=1, allow_nan=False) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000, help="cohort size, split over the datasets as 330/424/246")
    p.add_argument("--configs", default="local,ray-1,ray-2,resume")
    p.add_argument("--work", default="/tmp/roiprompt-batch")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "batch.json"))
    args = p.parse_args()
    work = Path(args.work)
    jobs = cohort(work, args.images)
    n = sum(j["n"] for j in jobs)
    configs = args.configs.split(",")
    results: dict[str, dict] = {}
    for name in configs:
        config = CONFIGS[name]
        folder = work / ("local" if name == "resume" else name)
        if name != "resume":
            shutil.rmtree(folder, ignore_errors=True)
        if config["ray"]:
            ray_cluster(True)
        try:
            runs = [run(command(j, folder / j["dataset"], config), work / f"{name}-{j['dataset']}.log") for j in jobs]
        finally:
            if config["ray"]:
                ray_cluster(False)
        seconds = sum(r["seconds"] for r in runs)
        stages = {k: sum(r["stages"].get(k, 0.0) * j["n"] for r, j in zip(runs, jobs)) / n
                  for k in ("read", "predict", "write")}
        results[name] = {"seconds": seconds, "images_per_s": n / seconds,
                         "driver_rss_mib": max(r["driver_rss_mib"] for r in runs),
                         "total_rss_mib": max(r["total_rss_mib"] for r in runs), "stages": stages,
                         "status": [r["status"] for r in runs],
                         "identical_to_local": 1.0 if name == "local" else same_outputs(work / "local", folder),
                         "commands": ["roiprompt " + shlex.join(command(j, folder / j["dataset"], config))
                                      for j in jobs]}
        print(f"{name}: {n} images in {seconds:.0f} s", flush=True)
        _write(args.json, results, n)  # after every configuration: a stopped run keeps what it measured
    print(f"\n{n} images (" + ", ".join(f"{j['dataset']} {j['n']}" for j in jobs) + "), oneshot med_persam_plus\n")
    print("| run | images/s | s/image | peak RSS driver (MiB) | peak RSS all (MiB) | read | predict | write | "
          "files identical to local's |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        s = r["stages"]
        print(f"| {name} | {r['images_per_s']:.3f} | {1 / r['images_per_s']:.2f} | {r['driver_rss_mib']:.0f} | "
              f"{r['total_rss_mib']:.0f} | {s['read']:.3f} | {s['predict']:.3f} | {s['write']:.3f} | "
              f"{100 * r['identical_to_local']:.1f} % |")
    projection = project(results)
    if projection:
        print("\n" + projection)
    _write(args.json, results, n)
    print(f"\nrecords: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
