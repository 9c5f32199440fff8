"""Benchmark result records: one JSON format for every benchmark (README "Benchmarks").

A results file is a JSON list of records, one per method x dataset x structure x setting x metric::

    {"method", "backbone", "dataset", "structure", "task", "setting", "metric", "mean", "ci95": [lo, hi], "n",
     "seconds_per_image", "peak_rss_mb", "command", "git_commit"}

The files are strict JSON: a value that is not a number (an undefined CI, a flag AUROC without failures) is
written as null and read back as NaN by :func:`load_records`.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..files import atomic_write_text

REQUIRED_KEYS = ("method", "backbone", "dataset", "structure", "task", "setting", "metric", "mean", "ci95", "n",
                 "seconds_per_image", "peak_rss_mb", "command", "git_commit")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1024 if platform.system() == "Linux" else 1024 * 1024), 1)


def git_commit(cwd: str | Path | None = None) -> str:
    """Current commit hash (with ``-dirty`` when the work tree has changes), or "unknown"."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_record(*, method: str, backbone: str, dataset: str, structure: str | None, task: str,
                setting: Mapping[str, Any], metric: str, summary: Mapping[str, Any], seconds_per_image: float,
                command: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One record; ``summary`` is ``metrics.summarize`` output (mean, ci95, n)."""
    record = {
        "method": method, "backbone": backbone, "dataset": dataset, "structure": structure, "task": task,
        "setting": dict(setting), "metric": metric, "mean": float(summary["mean"]),
        "ci95": [float(summary["ci95"][0]), float(summary["ci95"][1])], "n": int(summary["n"]),
        "seconds_per_image": round(float(seconds_per_image), 4), "peak_rss_mb": peak_rss_mb(),
        "command": command, "git_commit": git_commit(),
    }
    if extra:
        record.update(extra)
    return record


def _strict(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None (JSON has no NaN; strict parsers refuse it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records as a strict JSON list (NaN as null; parent folders created; written to a temporary file in
    the same folder and renamed, so a reader never sees half a file); returns the path."""
    path = Path(path)
    records = list(records)
    for r in records:
        if missing := [k for k in REQUIRED_KEYS if k not in r]:
            raise ValueError(f"benchmark record lacks {missing}: {r}")
    return atomic_write_text(path, json.dumps(_strict(records), indent=1, allow_nan=False) + "\n")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of one results file, with null ``mean`` / ``ci95`` / ``seconds_per_image`` read back as NaN."""
    records = json.loads(Path(path).read_text())
    for r in records:
        for key in ("mean", "seconds_per_image"):
            if key in r and r[key] is None:
                r[key] = float("nan")
        if "ci95" in r:
            r["ci95"] = [float("nan") if v is None else v for v in r["ci95"]]
    return records


def read_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Concatenate the records of several results files (see :func:`load_records`)."""
    out: list[dict[str, Any]] = []
    for p in paths:
        out.extend(load_records(p))
    return out
