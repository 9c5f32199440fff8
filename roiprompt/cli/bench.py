"""``roiprompt bench``: benchmark a method on a dataset and write JSON records."""

from __future__ import annotations

import argparse
import shlex

from ..errors import RoiPromptError
from ..methods.config import ConfigError
from ._common import _console, _parse_config, _progress, backbone_option


def cmd_bench(args: argparse.Namespace) -> int:
    """Route the method to the runner of its task (``method_info(method).task``), print and write the records."""
    from ..evaluation import run_benchmark
    from ..methods import method_info

    variant = _parse_config(args.config or [])
    task = method_info(args.method).task
    options = dict(
        root=args.root, backbone=args.backbone, structures=args.structure, limit=args.limit, seeds=args.seeds,
        split=args.split, split_file=args.split_file, cache_dir=args.cache_dir, config=variant,
        command="roiprompt " + shlex.join(args.argv), label=args.label, shots=_shots(args.shots),
        mask_sources=args.masks.split(",") if args.masks else None,
        fractions=[float(f) for f in args.fractions.split(",")] if args.fractions else None)
    with _progress() as bar:
        progress_task = bar.add_task(f"{args.method} ({task}) on {args.dataset}", total=None)

        def log(message: str) -> None:
            bar.console.print(message, markup=False, highlight=False)

        try:
            records = run_benchmark(args.method, args.dataset, log=log,
                                    progress=lambda done, total: bar.update(progress_task, completed=done,
                                                                            total=total),
                                    **options)
        except ConfigError as err:  # a method setting: the user gave it as --config KEY=VALUE
            raise RoiPromptError(f"--config {err.field}={err.value!r}: {err.owner or args.method} allows "
                                 f"{err.expected}") from None
    return _report_records(args, records, variant)


def _shots(text: str | None) -> list[int | str] | None:
    if not text:
        return None
    try:
        return [k if k == "all" or k.endswith("%") else int(k) for k in text.split(",")]
    except ValueError:
        raise RoiPromptError(f"--shots expects comma-separated integers, percentages (5%) or 'all', "
                             f"got {text!r}") from None


def _report_records(args: argparse.Namespace, records: list[dict], variant: dict) -> int:
    """Label ablation rows with their config overrides, print the records and write them to ``--json``."""
    from ..evaluation.records import write_records

    if variant:  # ablation rows are told apart from the defaults by this label
        label = ",".join(f"{k}={v}" for k, v in variant.items())
        records = [{**r, "variant": label} for r in records]
    _print_records(records)
    if args.json:
        path = write_records(args.json, records)
        _console().print(f"wrote {len(records)} records to {path}")
    return 0


def _print_records(records: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("method", "dataset", "structure / K, masks", "metric", "mean", "95% CI", "n", "s/image",
                "peak RSS MB"):
        table.add_column(col)
    for r in records:
        where = (f"K={r['setting']['shots']}, {r['mask_source']}" if r["task"] == "classification"
                 else str(r["structure"]))
        table.add_row(r["method"], r["dataset"], where, r["metric"], f"{r['mean']:.4f}",
                      escape(f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"), str(r["n"]), f"{r['seconds_per_image']:.3f}",
                      f"{r['peak_rss_mb']:.0f}")
    _console().print(table)
    for name in sorted({str(r.get("split", "")) for r in records} - {""}):
        sizes = next(r.get("split_sizes") for r in records if r.get("split") == name)
        _console().print(f"split: {name}" + (f" (train {sizes['train']}, test {sizes['test']})" if sizes else ""),
                         markup=False)


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    from ..evaluation.tasks import MASK_SOURCES
    from ..methods import list_methods

    p = sub.add_parser(
        "bench", parents=parents, help="benchmark a method on a dataset and write JSON records",
        description="Benchmark a method with the runner of its task (roiprompt methods lists each method's task). "
                    "Options marked with a task apply to that task only.")
    p.add_argument("method", choices=list_methods())
    p.add_argument("--dataset", required=True, help="kvasir_seg, busbra, jsrt, or folder (your own, with --root)")
    p.add_argument("--structure", action="append", help="structure(s) to evaluate (default: all)")
    p.add_argument("--limit", type=int, help="first N images only (with a train/test split: first N test images)")
    p.add_argument("--seeds", type=int, default=1,
                   help="number of seeds (oneshot: references drawn from train; classification: support sets)")
    p.add_argument("--root", help="data root (folder: the folder holding images/, masks/, labels.csv)")
    p.add_argument("--split", metavar="SPEC",
                   help="train/test split: 'official' (default where the dataset has one), 'seed:N' (seeded 70/30 "
                        "train/test, stratified by label, grouped by labels.csv's group column; the default "
                        "seed:0 elsewhere), 'seed:N,test=F' (test fraction F). segmentation: default every image")
    p.add_argument("--split-file", metavar="CSV", help="train/test split from a CSV with columns id,split")
    p.add_argument("--backbone", **backbone_option())
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--json", help="write records to this JSON file")
    p.add_argument("--label", help="classification: label column (busbra: pathology, birads)")
    p.add_argument("--shots", help="classification: images per class or percentages of each class (5%%), "
                   "comma-separated (default 8,16,32,64,all)")
    p.add_argument("--masks", help=f"classification: test-time mask sources, comma-separated (default gt; "
                                   f"{', '.join(MASK_SOURCES)})")
    p.add_argument("--fractions", help="text_free_segmentation: label budgets, fractions of the train split "
                                       "(default 1.0)")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="method config override, e.g. refine_rounds=3 or warp_iterations=50 (repeatable; recorded "
                        "as the row's variant)")
    p.set_defaults(func=cmd_bench)
