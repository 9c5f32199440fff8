"""Fuzzing ``read_image`` / ``read_mask``, long run (issue 20): the reader contract on --n mutated inputs.

The contract: for any file, a reader returns a valid array (image HxW or HxWx3 uint8, mask HxW bool) or raises
``InputError`` -- never another exception, never a hang (--timeout), never more than 2 GB of resident memory.
Inputs are the seeds of ``tests/data/fuzz_corpus.py`` (every format, mask-like rasters, files declaring
121-134 Mpx) mutated by 1-3 byte-level or format-aware ops drawn from a numpy RNG seeded with --seed, so a run is
reproducible and any input is rebuilt from its seed name and ops (both recorded with each failure). Both readers
run on each input in a child process (``tests/data/fuzz_sandbox.py``): per-call peak RSS, a timeout, a kill at
+2 GB RSS; the child is replaced every --chunk inputs. The huge-size seeds are also read once unmutated.

Prints a table per format (inputs; per reader accepted / InputError / violations; the largest per-call peak RSS
above the worker's idle footprint; the slowest call) and every distinct violation (reader, exception type,
innermost frame) with a count and a reproducer: the smallest input saved under --failures when it is at most
--max-repro-kb, else its seed and ops. Writes records of the common format (task ``fuzz``, one per reader and
format, ``mean`` = violations, the counts in ``counts``) to --json. Run it alone: it keeps one core busy.

    .venv/bin/python -m benchmarks.fuzz_readers [--n 100000] [--seed 0] [--chunk 5000] \
        [--json benchmarks/results/fuzz_readers.json] [--failures benchmarks/results/fuzz_readers/failures]
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from roiprompt.evaluation.records import make_record, write_records
from tests.data.fuzz_corpus import (FORMATS, HEAVY_NAMES, MASK_EXTS, MASK_KINDS, Op, Seed, mask_like_file,
                                    mutate, random_ops, seeds)
from tests.data.fuzz_sandbox import READERS, Outcome, Sandbox

ROOT = Path(__file__).resolve().parents[1]
STATUSES = ("accepted", "input_error", "other", "bad_output", "memory", "hang", "crash")
VIOLATIONS = STATUSES[2:]
#: seeds too slow to mutate at random (the 2.3 GB deflate bomb: ~10 s a read while it is inflated whole)
SLOW = ("dcm_deflate_bomb_small_image",)
MASK_FORMAT = {".png": "png", ".bmp": "bmp", ".tif": "tiff", ".gif": "gif", ".jpg": "jpeg", ".dcm": "dicom",
               ".nii": "nifti", ".nii.gz": "nifti_gz"}


class Tally:
    """Counts per (reader, format), and every distinct violation with its smallest reproducer."""

    def __init__(self, failures_dir: Path, max_repro_bytes: int):
        self.inputs: Counter[str] = Counter()
        self.status: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.max_extra_mb: dict[tuple[str, str], float] = defaultdict(float)
        self.max_peak_mb: dict[tuple[str, str], float] = defaultdict(float)
        self.max_seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.failures: dict[str, dict[str, Any]] = {}
        self.failures_dir, self.max_repro_bytes = failures_dir, max_repro_bytes

    def add(self, fmt: str, source: str, ops: list[Op], data: bytes, ext: str, outcomes: list[Outcome]) -> None:
        self.inputs[fmt] += 1
        for o in outcomes:
            key = (o.reader, fmt)
            self.status[key][o.status] += 1
            self.max_extra_mb[key] = max(self.max_extra_mb[key], o.extra_mb)
            self.max_peak_mb[key] = max(self.max_peak_mb[key], o.peak_mb)
            self.max_seconds[key] = max(self.max_seconds[key], o.seconds)
            self.seconds[key] += o.seconds
            if o.status in VIOLATIONS:
                self._failure(fmt, source, ops, data, ext, o)

    def _failure(self, fmt: str, source: str, ops: list[Op], data: bytes, ext: str, o: Outcome) -> None:
        sig = f"{fmt} {o.signature}"
        entry = self.failures.setdefault(sig, {
            "format": fmt, "reader": o.reader, "status": o.status, "error": o.error, "message": o.message,
            "frames": o.frames, "count": 0, "examples": [], "reproducer": None, "reproducer_bytes": None})
        entry["count"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append({"seed": source, "ops": [list(op) for op in ops], "bytes": len(data)})
        best = entry["reproducer_bytes"]
        if len(data) <= self.max_repro_bytes and (best is None or len(data) < best):
            # the smallest input per violation: the easiest to read in a hex dump and to debug
            name = f"{hashlib.sha1(sig.encode()).hexdigest()[:8]}_{fmt}_{o.reader}_{source}{ext}"
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            if entry["reproducer"]:
                Path(entry["reproducer"]).unlink(missing_ok=True)
            path = self.failures_dir / name
            path.write_bytes(data)
            entry.update(reproducer=str(path), reproducer_bytes=len(data), reproducer_seed=source,
                         reproducer_ops=[list(op) for op in ops], message=o.message, frames=o.frames)


def draw_input(rng: np.random.Generator, by_format: dict[str, list[Seed]], heavy: list[Seed], heavy_rate: float,
               mask_rate: float) -> tuple[str, str, list[Op], bytes, str]:
    """(format, source, ops, bytes, extension) of one fuzz input."""
    u = rng.random()
    if u < mask_rate:  # a mask-like raster drawn afresh (grey 0..255, label maps, soft / float / 16-bit masks...)
        kind, ext = MASK_KINDS[rng.integers(len(MASK_KINDS))], MASK_EXTS[rng.integers(len(MASK_EXTS))]
        h, w = (int(v) for v in rng.integers(1, 49, 2))
        s = int(rng.integers(1 << 16))
        return MASK_FORMAT[ext], f"mask_{kind}_{h}x{w}_s{s}", [], mask_like_file(kind, ext, h, w, s), ext
    if u < mask_rate + heavy_rate and heavy:
        seed = heavy[rng.integers(len(heavy))]
    else:
        group = by_format[FORMATS[rng.integers(len(FORMATS))]]
        seed = group[rng.integers(len(group))]
    ops = random_ops(rng, seed)
    return seed.fmt, seed.name, ops, mutate(seed, ops), seed.ext


def print_table(tally: Tally) -> None:
    short = {"read_image": "img", "read_mask": "mask"}
    cells = "".join(f"{short[r] + ' ' + c:>11s}" for r in READERS for c in ("ok", "InErr", "VIOL"))
    print(f"\n{'format':10s}{'inputs':>8s}{cells}{'peak MB':>9s}{'max s':>7s}")
    for fmt in [*FORMATS, "all"]:
        fmts = FORMATS if fmt == "all" else (fmt,)
        n = sum(tally.inputs[f] for f in fmts)
        if not n:
            continue
        row = f"{fmt:10s}{n:8d}"
        for r in READERS:
            c = sum((tally.status[(r, f)] for f in fmts), Counter())
            row += f"{c['accepted']:11d}{c['input_error']:11d}{sum(c[v] for v in VIOLATIONS):11d}"
        peak = max(tally.max_extra_mb[(r, f)] for r in READERS for f in fmts)
        slow = max(tally.max_seconds[(r, f)] for r in READERS for f in fmts)
        print(row + f"{peak:9.0f}{slow:7.2f}")
    print("peak MB: the largest per-call peak RSS above the worker's idle footprint; VIOL: other exception, bad "
          "output, > 2 GB, hang or crash")


def print_failures(tally: Tally) -> None:
    if not tally.failures:
        print("\nno contract violation")
        return
    print(f"\n{len(tally.failures)} distinct violation(s):")
    for sig, f in sorted(tally.failures.items(), key=lambda kv: -kv[1]["count"]):
        where = f["reproducer"] or f"seed {f['examples'][0]['seed']} ops {f['examples'][0]['ops']} (too big to save)"
        message = f"\n    {f['message'][:200]}" if f["message"] else ""
        print(f"- [{f['count']}x] {sig}{message}\n    reproducer: {where}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="mutated inputs (each read by both readers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=5000, help="inputs per worker process")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per reader call before it counts as a hang")
    p.add_argument("--memory-limit-mb", type=int, default=2048, help="RSS a call may add before it is killed")
    p.add_argument("--heavy-rate", type=float, default=0.002, help="share of inputs mutated from the huge seeds")
    p.add_argument("--mask-rate", type=float, default=0.05, help="share of inputs that are fresh mask-like rasters")
    p.add_argument("--max-repro-kb", type=int, default=100, help="reproducers larger than this are not saved")
    p.add_argument("--failures", default=str(ROOT / "benchmarks" / "results" / "fuzz_readers" / "failures"))
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "fuzz_readers.json"))
    args = p.parse_args()
    command = "python -m benchmarks.fuzz_readers " + shlex.join(sys.argv[1:])
    rng = np.random.default_rng(args.seed)
    all_seeds = seeds(heavy=args.heavy_rate > 0)
    by_format = {f: [s for s in all_seeds.values() if s.fmt == f and not s.heavy] for f in FORMATS}
    heavy = [s for s in all_seeds.values() if s.heavy and s.name not in SLOW]
    tally = Tally(Path(args.failures), args.max_repro_kb * 1024)
    start = time.perf_counter()
    with Sandbox(timeout=args.timeout, memory_limit_mb=args.memory_limit_mb) as box:
        print(f"{args.n} inputs, seed {args.seed}; worker idle RSS {box.info['idle_rss_mb']:.0f} MB, per-call peak "
              f"{'exact (clear_refs)' if box.info['exact_peak'] else 'cumulative (ru_maxrss)'}", flush=True)
        if args.heavy_rate > 0:  # every huge-size seed once as it is, the slow ones included
            for name in HEAVY_NAMES:
                s = all_seeds[name]
                tally.add(s.fmt, s.name, [], s.data, s.ext, box.run(s.data, s.ext))
        loop_start = time.perf_counter()
        for i in range(args.n):
            if i and i % args.chunk == 0:
                box.restart()  # a fresh process per chunk: no state or leak carried across thousands of inputs
                done = time.perf_counter() - loop_start
                print(f"  {i} inputs, {done:.0f} s, {len(tally.failures)} distinct violation(s), "
                      f"~{done / i * (args.n - i) / 60:.0f} min left", flush=True)
            fmt, source, ops, data, ext = draw_input(rng, by_format, heavy, args.heavy_rate, args.mask_rate)
            tally.add(fmt, source, ops, data, ext, box.run(data, ext))
        restarts = box.restarts
    wall, loop = time.perf_counter() - start, time.perf_counter() - loop_start
    print_table(tally)
    print_failures(tally)
    per_input = loop / max(1, args.n)
    print(f"\n{wall:.0f} s in all; {args.n} mutated inputs in {loop:.0f} s ({1e3 * per_input:.1f} ms per input, both "
          f"readers; worker restarts {restarts}): 100,000 would take ~{per_input * 1e5 / 60:.0f} min")

    records = []
    setting = {"n": args.n, "seed": args.seed, "chunk": args.chunk, "timeout_s": args.timeout,
               "memory_limit_mb": args.memory_limit_mb, "heavy_rate": args.heavy_rate, "mask_rate": args.mask_rate,
               "max_ops": 3, "structured_share": 0.5, "reader_args": "minimal: read_image(path), read_mask(path)"}
    for r in READERS:
        for fmt in FORMATS:
            key = (r, fmt)
            n, counts = tally.inputs[fmt], tally.status[key]
            if not n:
                continue
            failures = [{"signature": sig, **f} for sig, f in tally.failures.items()
                        if f["reader"] == r and f["format"] == fmt]
            extra = {"counts": {s: counts[s] for s in STATUSES}, "peak_rss_mb": round(tally.max_peak_mb[key], 1),
                     "max_extra_rss_mb": round(tally.max_extra_mb[key], 1),
                     "max_seconds": round(tally.max_seconds[key], 3), "failures": failures,
                     "wall_seconds": round(wall, 1), "ms_per_input": round(1e3 * per_input, 2),
                     "worker_restarts": restarts}
            records.append(make_record(
                method=r, backbone="none", dataset=fmt, structure=None, task="fuzz", setting=setting,
                metric="contract_violations", summary={"mean": sum(counts[v] for v in VIOLATIONS),
                                                       "ci95": [float("nan")] * 2, "n": n},
                seconds_per_image=tally.seconds[key] / n, command=command, extra=extra))
    print(f"wrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
