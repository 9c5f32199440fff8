"""``roiprompt report OUT_DIR``: one self-contained HTML page of a ``segment``, ``oneshot`` or ``classify predict``
output folder (:mod:`roiprompt.evaluation.report` builds it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RoiPromptError, shown
from ..batch.runs import escape
from ._common import _console


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if not 16 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"must be between 16 and 2048 pixels, got {value}")
    return value


def cmd_report(args: argparse.Namespace) -> int:
    from ..evaluation.report import collect_report
    from ..evaluation.report_html import render_html
    from ..files import atomic_write_text

    out = Path(args.out_dir)
    html = Path(args.html) if args.html is not None else out / "report.html"
    if args.truth is not None and not Path(args.truth).is_dir():
        raise RoiPromptError(f"--truth {shown(args.truth)}: no such folder")
    report = collect_report(out, args.truth, truth_threshold=args.truth_threshold, thumb_size=args.thumb_size,
                            html_path=html)
    atomic_write_text(html, render_html(report))
    console = _console()
    console.print(f"wrote {escape(shown(html))}: {len(report.tiles)} image(s)"
                  + (f", {len(report.no_truth)} mask(s) without a truth mask" if report.no_truth else ""))
    if not report.problems:
        return 0
    console.print(f"[red]{len(report.problems)} problem(s) in {escape(shown(out))} (also listed in the report):[/red]")
    for problem in report.problems:
        console.print(f"  {escape(problem)}")
    return 1


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``report``."""
    p = sub.add_parser(
        "report", parents=parents, help="an HTML report of a segment, oneshot or classify predict output folder",
        description="Build one self-contained HTML page (no external file, script or font: thumbnails are embedded "
                    "as JPEG data) from the --out folder of a segment, oneshot or classify predict run: the run's "
                    "settings, the overlays sorted by the quality flag, worst first (the reference first for "
                    "oneshot), the quality histogram and mask areas per structure, Dice against --truth, and the "
                    "problems found (outputs listed in manifest.jsonl but missing, changed or unreadable). For a "
                    "classify predict folder: the class table, probability histograms and images. Exit status 1 "
                    "when problems were found (the report is written anyway).")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of the run (holds manifest.jsonl)")
    p.add_argument("--truth", metavar="DIR",
                   help="ground-truth masks: DIR/<stem>.<ext> (one structure), DIR/<stem>_<structure>.png, or "
                        "DIR/<structure>/<stem>.<ext>; <stem> is the output stem or the image's name without its "
                        "extension. Adds the Dice of each mask and the mean Dice per structure")
    p.add_argument("--truth-threshold", type=float, metavar="T",
                   help="read soft or JPEG truth masks (Kvasir-SEG's) as value >= T, e.g. 128")
    p.add_argument("--html", metavar="PATH", help="where to write the page (default: OUT_DIR/report.html)")
    p.add_argument("--thumb-size", type=_positive_int, default=200, metavar="PX",
                   help="longest side of the embedded thumbnails in pixels (default 200: about 7 kB an image)")
    p.set_defaults(func=cmd_report)
