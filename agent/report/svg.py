"""Small inline SVG charts: no scripts, no external assets, readable when printed.

A support visit may happen with no network; the report must render anywhere a browser
opens a file, so charts are plain SVG drawn here rather than a charting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#c0392b", "#2e86c1", "#d68910", "#7d3c98", "#17a589", "#566573", "#cb4335",
           "#2874a6", "#b9770e", "#6c3483")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _open_svg(width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}"'
            f' height="{height}" viewBox="0 0 {width} {height}" {_FONT}>')


def axis(value: float, integer: bool = False) -> tuple[float, int]:
    """A round axis top at or above ``value`` and its number of intervals (about 4).

    Steps are 1, 2, 2.5 or 5 x 10^n; counts (``integer``) never get a fractional step.
    """
    if value <= 0:
        return 1.0, 1 if integer else 4
    raw = value / 4
    exp = math.floor(math.log10(raw))
    step = 10.0 ** (exp + 1)
    for m in (1.0, 2.0, 2.5, 5.0):
        candidate = m * 10**exp
        if candidate >= raw and not (integer and candidate != int(candidate)):
            step = candidate
            break
    if integer:
        step = max(1.0, step)
    n = max(1, math.ceil(value / step - 1e-9))
    return step * n, n


def _fmt(value: float) -> str:
    """Axis steps of 0.25 and 2.5 keep their digits (0.25, not 0.2)."""
    if value >= 10 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def bar_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    unit: str = "",
    stacked: bool = True,
    integer: bool = False,
    width: int = 640,
    height: int = 220,
    empty: str = "none in this period",
) -> str:
    """Vertical bars per category, with a legend. Several series are stacked (parts of one
    whole) or, with ``stacked=False``, side by side (different measures)."""
    left, right, top, bottom = 50, 10, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(vals[i] for _, vals in series) for i in range(len(categories))]
    peak = max(totals if stacked else [v for _, vals in series for v in vals], default=0.0)
    top_value, intervals = axis(peak, integer)
    n = max(1, len(categories))
    slot = plot_w / n
    group_w = max(2.0, min(48.0 * (1 if stacked else len(series)), slot * 0.7))
    bar_w = group_w if stacked else group_w / max(1, len(series))
    parts = [
        _open_svg(width, height),
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="15" font-weight="bold" font-size="12">{escape(title)}</text>',
    ]
    for i in range(intervals + 1):  # grid and y axis labels
        v = top_value * i / intervals
        y = top + plot_h - plot_h * i / intervals
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"'
                     f' stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end"'
                     f' fill="#555">{_fmt(v)}{escape(unit)}</text>')
    every = max(1, math.ceil(n / 14))  # keep category labels legible for long periods
    for i, cat in enumerate(categories):
        x0 = left + slot * i + (slot - group_w) / 2
        y_base = float(top + plot_h)
        for k, (name, vals) in enumerate(series):
            v = vals[i]
            if v <= 0:
                continue
            h = plot_h * v / top_value
            if stacked:
                x, y_base = x0, y_base - h
            else:
                x, y_base = x0 + k * bar_w, float(top + plot_h) - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y_base:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                f' fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(cat)} {escape(name)}:'
                f" {_fmt(v)}{escape(unit)}</title></rect>"
            )
        if i % every == 0:
            parts.append(f'<text x="{x0 + group_w / 2:.1f}" y="{top + plot_h + 14}"'
                         f' text-anchor="middle" fill="#333">{escape(cat)}</text>')
    if len(series) > 1 or (series and series[0][0]):
        lx = left
        for k, (name, _) in enumerate(series):
            parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10"'
                         f' fill="{PALETTE[k % len(PALETTE)]}"/>')
            parts.append(f'<text x="{lx + 14}" y="{height - 5}">{escape(name)}</text>')
            lx += 24 + 7 * len(name)
    if not any(totals):
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}"'
                     f' text-anchor="middle" fill="#888">{escape(empty)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    rows: Sequence[tuple[str, float | None]],
    *,
    title: str,
    maximum: float = 100.0,
    unit: str = "%",
    warn_below: float | None = None,
    width: int = 640,
) -> str:
    """One horizontal bar per row (device uptime, battery); unknown values say so."""
    label_w, right, row_h, top = 150, 60, 20, 26
    height = top + row_h * max(1, len(rows)) + 8
    plot_w = width - label_w - right
    parts = [
        _open_svg(width, height),
        f"<title>{escape(title)}</title>",
        f'<text x="4" y="15" font-weight="bold" font-size="12">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        y = top + row_h * i
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
                     f"{escape(label)}</text>")
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 6}"'
                     ' fill="#eee"/>')
        if value is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 13}" fill="#888">unknown</text>')
            continue
        w = plot_w * max(0.0, min(value, maximum)) / maximum
        color = "#c0392b" if warn_below is not None and value < warn_below else "#27ae60"
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"'
                     f' fill="{color}"><title>{escape(label)}: {_fmt(value)}{escape(unit)}'
                     "</title></rect>")
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{y + 13}">'
                     f"{_fmt(value)}{escape(unit)}</text>")
    if not rows:
        parts.append(f'<text x="{label_w}" y="{top + 13}" fill="#888">no devices</text>')
    parts.append("</svg>")
    return "".join(parts)
