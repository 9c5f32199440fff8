"""Benchmark scripts, run as modules from the repository root: ``python -m benchmarks.<name> --help``."""


def finish_classification_bench(records: list[dict], name: str) -> int:
    """Write classification ``records`` to benchmarks/results/<name>.json, print their table; exit code 0 when
    every accuracy is finite."""
    from pathlib import Path

    import numpy as np

    from roiprompt.evaluation.classification import format_table
    from roiprompt.evaluation.records import write_records

    out = write_records(Path(__file__).resolve().parent / "results" / f"{name}.json", records)
    print("\n" + format_table(records))
    print(f"wrote {out}")
    return 0 if np.isfinite([r["mean"] for r in records if r["metric"] == "accuracy"]).all() else 1
