"""The HTML page of a :class:`~roiprompt.evaluation.report.RunReport`: one file, styles and SVG charts inline, no
script, font or link to anything outside it (thumbnails are data URIs; tiles link to their overlays by relative
path)."""

from __future__ import annotations

import datetime as _dt
import json
from html import escape
from statistics import mean
from typing import TYPE_CHECKING, Sequence
from urllib.parse import quote

if TYPE_CHECKING:
    from .report import RunReport, Tile

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1d2330;
background:#f6f7f9}
h1{font-size:22px;margin:0 0 12px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d5d9e0;padding:4px 8px;text-align:left}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.meta th{width:170px}code{font-size:12px;word-break:break-all}
.problems li{color:#9b1c1c}.ok{color:#1d6b35}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid #d5d9e0;padding:8px}
.chart h3{font-size:13px;margin:0 0 4px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:6px;margin:0;overflow:hidden}
.tile.ref{border:2px solid #2b6cb0}
.tile .img{display:flex;align-items:center;justify-content:center;height:200px;background:#111;border-radius:4px}
.tile img{max-width:100%;max-height:200px}.tile .missing{color:#f4b4b4;font-size:12px;padding:8px;text-align:center}
.tile figcaption{font-size:12px;margin-top:4px}.tile .name{font-weight:600;white-space:nowrap;overflow:hidden;
text-overflow:ellipsis}
.tile table{width:100%;font-size:11.5px;margin-top:3px}.tile td,.tile th{padding:1px 4px}
.q{display:inline-block;min-width:44px;border-radius:3px;padding:0 4px;color:#fff;font-weight:600;text-align:center}
.q.bad{background:#c53030}.q.mid{background:#c77c02}.q.good{background:#2f855a}.q.none{background:#8a94a6}
.warn{color:#b45309}.muted{color:#6b7280}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _badge(value: float | None) -> str:
    """A quality value coloured by band: < 0.5 red, < 0.8 amber, else green."""
    if value is None:
        return '<span class="q none">—</span>'
    band = "bad" if value < 0.5 else "mid" if value < 0.8 else "good"
    return f'<span class="q {band}">{value:.4f}</span>'


def histogram_svg(values: Sequence[float], bins: int = 10, lo: float = 0.0, hi: float = 1.0, width: int = 320,
                  height: int = 150, colour: str = "#4a6fa5") -> str:
    """An inline SVG bar chart of ``values`` in ``bins`` equal bins over [lo, hi] (values outside are clamped to the
    first or last bin), with counts over the bars and ticks at lo, the middle and hi."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
    left, right, top, bottom = 28, 8, 14, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts) or 1
    bar_w = plot_w / bins
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'font-family="system-ui,sans-serif" font-size="10">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#555"/>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" fill="#555">{peak}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" fill="#555">0</text>']
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>[{lo + i * (hi - lo) / bins:.2f}, '
                     f'{lo + (i + 1) * (hi - lo) / bins:.2f}): {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 2:.1f}" text-anchor="middle" '
                         f'fill="#333">{count}</text>')
    for frac in (0.0, 0.5, 1.0):
        x = left + plot_w * frac
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">'
                     f'{lo + frac * (hi - lo):g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _chart(title: str, values: Sequence[float], colour: str = "#4a6fa5") -> str:
    return f'<div class="chart"><h3>{_e(title)}</h3>{histogram_svg(values, colour=colour)}</div>'


def _header(report: "RunReport") -> str:
    s = report.settings
    method = s.get("method") or ("prompted (" + ", ".join(
        k for k in ("box", "points", "negative_points") if s.get(k)) + ")" if s.get("command") == "segment" else "—")
    meta = [("command", s.get("command", "—")), ("method", method), ("backbone", s.get("backbone") or "—"),
            ("roiprompt version", s.get("roiprompt", "—")), ("images", len(report.tiles)),
            ("results written", f"{report.written} (manifest.jsonl last modified)"),
            ("report made", _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")),
            ("run folder", str(report.run_dir.resolve())), ("weights SHA-256", report.weights_sha256 or "—")]
    if report.truth_dir is not None:
        meta.append(("ground truth", str(report.truth_dir.resolve())))
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in meta)
    settings = _e(json.dumps(s, indent=2, sort_keys=True))
    return (f"<h1>roiprompt report: {_e(report.run_dir.name)}</h1><table class=\"meta\">{rows}</table>"
            f"<details><summary>all settings</summary><pre>{settings}</pre></details>")


def _problems(report: "RunReport") -> str:
    if not report.problems:
        return '<h2>Problems</h2><p class="ok" id="problems">none: every output listed in the manifest is on disk ' \
               'as recorded</p>'
    items = "".join(f"<li>{_e(p)}</li>" for p in report.problems)
    return f'<h2>Problems ({len(report.problems)})</h2><ul class="problems" id="problems">{items}</ul>'


def _structures(report: "RunReport") -> str:
    by: dict[str, list] = {}
    for tile in report.tiles:
        for row in tile.rows:
            by.setdefault(row.structure, []).append(row)
    truth = report.truth_dir is not None
    head = ("<tr><th>structure</th><th>images</th><th>mean quality</th><th>mean iou_pred</th><th>area count</th>"
            "<th>mean area px</th><th>min area px</th><th>max area px</th><th>empty</th>"
            + ("<th>mean Dice</th><th>with truth</th>" if truth else "") + "</tr>")
    body, charts = [], []
    for name, rows in by.items():
        areas = [r.area_px for r in rows if r.area_px is not None]
        quality = [r.quality for r in rows if r.quality is not None]
        ious = [r.iou_pred for r in rows if r.iou_pred is not None]
        dices = [r.dice for r in rows if r.dice is not None]
        cells = [len(rows), _num(mean(quality)) if quality else "—", _num(mean(ious)) if ious else "—", len(areas),
                 _num(mean(areas), 1) if areas else "—", min(areas, default="—"), max(areas, default="—"),
                 sum(a == 0 for a in areas)]
        if truth:
            cells += [_num(mean(dices)) if dices else "—", len(dices)]
        body.append(f'<tr data-structure="{_e(name)}"><td>{_e(name)}</td>'
                    + "".join(f'<td class="n">{_e(c)}</td>' for c in cells) + "</tr>")
        metric = report.sort_metric
        values = [getattr(r, metric) for r in rows if getattr(r, metric) is not None] if metric else []
        charts.append(_chart(f"{name}: {metric or 'quality'} (n={len(values)})", values))
        if dices:
            charts.append(_chart(f"{name}: Dice (n={len(dices)})", dices, colour="#2f855a"))
    note = "" if report.sort_metric == "quality" else (
        f'<p class="muted">The method gives no quality flag: {report.sort_metric} is shown instead.</p>'
        if report.sort_metric else '<p class="muted">The run gives no quality flag and no iou_pred.</p>')
    return (f"<h2>Structures</h2><table>{head}{''.join(body)}</table>{note}"
            f"<h2>Distributions</h2><div class=\"charts\">{''.join(charts)}</div>")


def _truth(report: "RunReport") -> str:
    if report.truth_dir is None:
        return ""
    if not report.no_truth:
        return '<h2>Ground truth</h2><p class="ok">every mask has a truth mask</p>'
    items = "".join(f"<li>{_e(n)}</li>" for n in report.no_truth)
    return (f'<h2>Ground truth</h2><p>{len(report.no_truth)} mask(s) without a truth mask in '
            f'<code>{_e(report.truth_dir.resolve())}</code> (no Dice):</p><ul id="no-truth">{items}</ul>')


def _image(thumb: str | None, link: str | None, alt: str) -> str:
    if thumb is None:
        return '<div class="img"><div class="missing">overlay missing or unreadable</div></div>'
    img = f'<img src="{thumb}" alt="{_e(alt)}" loading="lazy">'
    if link:
        img = f'<a href="{_e(quote(link))}">{img}</a>'
    return f'<div class="img">{img}</div>'


def _tile(report: "RunReport", tile: "Tile") -> str:
    truth = report.truth_dir is not None
    head = "<tr><th></th><th>quality</th><th>iou</th>" + ("<th>Dice</th>" if truth else "") + "</tr>"
    rows = []
    for r in tile.rows:
        dice = ("" if not truth else f'<td class="n dice">{_num(r.dice)}</td>' if r.dice is not None
                else f'<td class="muted">{"no mask" if not r.mask_ok else "no truth"}</td>')
        rows.append(f'<tr data-structure="{_e(r.structure)}"><td>{_e(r.structure)}</td>'
                    f'<td class="quality">{_badge(r.quality)}</td><td class="n">{_num(r.iou_pred, 3)}</td>{dice}</tr>')
        warnings = [w for w in r.warning.split(";") if w] + ([] if r.mask_ok else ["mask missing"])
        if warnings:
            rows.append(f'<tr><td colspan="4" class="warn">⚠ {_e(", ".join(warnings))}</td></tr>')
    score = tile.score(report.sort_metric)
    return (f'<figure class="tile" data-stem="{_e(tile.stem)}" data-score="{"" if score is None else score}">'
            f'{_image(tile.thumb, report.links.get(tile.overlay), tile.stem)}'
            f'<figcaption><div class="name" title="{_e(tile.input)}">{_e(tile.stem)}</div>'
            f'<table>{head}{"".join(rows)}</table></figcaption></figure>')


def _gallery(report: "RunReport") -> str:
    from .report import REFERENCE_OVERLAY

    tiles = []
    if report.has_reference:
        tiles.append(f'<figure class="tile ref" data-stem="reference">'
                     f'{_image(report.reference, report.links.get(REFERENCE_OVERLAY), "reference")}'
                     '<figcaption><div class="name" title="the one-shot example">reference</div>'
                     '</figcaption></figure>')
    tiles += [_tile(report, t) for t in report.tiles]
    order = f"worst {report.sort_metric} first" if report.sort_metric else "in input order"
    return (f"<h2>Overlays ({len(report.tiles)}, {order})</h2><p class=\"muted\">quality badge: red &lt; 0.5, "
            f"amber &lt; 0.8, green otherwise; click a thumbnail for the full-size overlay.</p>"
            f"<div class=\"gallery\">{''.join(tiles)}</div>")


def _classes(report: "RunReport") -> str:
    rows = [r for t in report.tiles for r in t.raw_rows[:1]]
    classes = list(dict.fromkeys(k[2:] for r in rows for k in r if k.startswith("p_")))
    labels = [str(r.get("label", "")) for r in rows]

    def prob(row: dict, c: str) -> float | None:
        try:
            return float(row.get(f"p_{c}"))
        except (TypeError, ValueError):
            return None

    body = []
    for c in classes:
        ps = [p for r in rows if (p := prob(r, c)) is not None]
        n = labels.count(c)
        body.append(f'<tr data-class="{_e(c)}"><td>{_e(c)}</td><td class="n">{n}</td>'
                    f'<td class="n">{_num(n / len(rows) if rows else None, 3)}</td>'
                    f'<td class="n">{_num(mean(ps) if ps else None)}</td></tr>')
    charts = [_chart(f"p_{c}", [p for r in rows if (p := prob(r, c)) is not None]) for c in classes]
    confidence = [max((p for c in classes if (p := prob(r, c)) is not None), default=None) for r in rows]
    charts.insert(0, _chart("confidence (highest p)", [v for v in confidence if v is not None], "#6b46c1"))
    listing = sorted(zip(report.tiles, rows, confidence), key=lambda x: (x[2] is None, x[2] or 0.0))
    items = "".join(f'<tr data-stem="{_e(t.stem)}"><td>{_e(t.stem)}</td><td>{_e(r.get("label", ""))}</td>'
                    + "".join(f'<td class="n">{_num(prob(r, c))}</td>' for c in classes)
                    + f'<td class="muted">{_e(r.get("roi", ""))}</td></tr>' for t, r, _ in listing)
    head = "".join(f"<th>p_{_e(c)}</th>" for c in classes)
    return (f"<h2>Classes</h2><table><tr><th>class</th><th>images</th><th>share</th><th>mean p</th></tr>"
            f"{''.join(body)}</table><h2>Probabilities</h2><div class=\"charts\">{''.join(charts)}</div>"
            f"<h2>Images ({len(rows)}, least confident first)</h2><table><tr><th>image</th><th>label</th>{head}"
            f"<th>ROI</th></tr>{items}</table>")


def render_html(report: "RunReport") -> str:
    """The page: header, problems, then per-structure tables, quality histograms, ground truth and the overlay
    gallery (a mask run), or the class table, probability histograms and image list (``classify predict``)."""
    parts = [_header(report), _problems(report)]
    if report.kind == "classes":
        parts.append(_classes(report))
    else:
        parts += [_structures(report), _truth(report), _gallery(report)]
    title = f"roiprompt report: {report.run_dir.name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
            f"<body>{''.join(parts)}</body></html>\n")
