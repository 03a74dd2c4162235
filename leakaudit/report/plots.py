"""Inline SVG plots for the report: no external assets, no JS libraries, numbers from the caller.

Each function returns one ``<svg>`` string (a ``markupsafe.Markup``) with every data string
escaped, sized by ``viewBox`` so it scales to the page width on a phone. Colours are chosen to
be distinguishable in greyscale print too (dark/light pairs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from markupsafe import Markup
from markupsafe import escape as _escape

from leakaudit.textsafe import html_text


def escape(value: object) -> Markup:
    """Data text in an SVG: autoescaped, control characters shown as escapes (``\\x1b``)."""
    return _escape(html_text(value))


MODEL_COLOURS = ("#3b6ea8", "#c8553d", "#5b8c3a", "#8a5aa8", "#b08a1e", "#4a9a9a")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _num(v: float) -> str:
    return f"{v:.1f}"


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    head = (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{escape(label)}">'
    )
    return Markup(head + "".join(body) + "</svg>")


def _quantiles(values: np.ndarray) -> tuple[float, ...] | None:
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    return tuple(float(x) for x in np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95]))


def class_distribution_svg(
    groups: Sequence[str],
    series: Mapping[str, Sequence[np.ndarray]],
    title: str,
    chance: float | None = None,
) -> Markup:
    """Box plots of a [0, 1] score per group (class), one box per series (model) side by side.

    Boxes span the quartiles, whiskers the 5th–95th percentiles, the bar is the median; the
    dashed line is chance (the score an attribution spread evenly would get)."""
    names = list(series)
    left, top, plot_h, group_w = 40, 22, 150, max(44, 22 * len(names) + 16)
    width = left + group_w * max(1, len(groups)) + 10
    height = top + plot_h + 44
    body = [f'<text x="{left}" y="14" {FONT} font-weight="600">{escape(title)}</text>']

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), 1.0))

    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{_num(y(t))}" y2="{_num(y(t))}" '
            'stroke="#e3e6ec"/>'
        )
        body.append(
            f'<text x="{left - 4}" y="{_num(y(t) + 4)}" {FONT} text-anchor="end">{t:g}</text>'
        )
    if chance is not None and math.isfinite(chance):
        body.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{_num(y(chance))}" '
            f'y2="{_num(y(chance))}" stroke="#777" stroke-dasharray="4 3"/>'
        )
    box_w = 16
    for g, group in enumerate(groups):
        gx = left + g * group_w + (group_w - len(names) * (box_w + 6)) / 2
        for k, name in enumerate(names):
            colour = MODEL_COLOURS[k % len(MODEL_COLOURS)]
            q = _quantiles(np.asarray(series[name][g], dtype=float))
            x = gx + k * (box_w + 6)
            if q is None:
                body.append(
                    f'<text x="{_num(x + box_w / 2)}" y="{_num(y(0.5))}" {FONT} '
                    'text-anchor="middle">–</text>'
                )
                continue
            p5, p25, p50, p75, p95 = q
            cx = x + box_w / 2
            body.append(
                f'<line x1="{_num(cx)}" x2="{_num(cx)}" y1="{_num(y(p95))}" y2="{_num(y(p5))}" '
                f'stroke="{colour}"/>'
                f'<rect x="{_num(x)}" y="{_num(y(p75))}" width="{box_w}" '
                f'height="{_num(max(y(p25) - y(p75), 1))}" fill="{colour}" fill-opacity="0.35" '
                f'stroke="{colour}"><title>{escape(name)} · {escape(group)}: median {p50:.3f}, '
                f"quartiles {p25:.3f}–{p75:.3f}</title></rect>"
                f'<line x1="{_num(x)}" x2="{_num(x + box_w)}" y1="{_num(y(p50))}" '
                f'y2="{_num(y(p50))}" stroke="{colour}" stroke-width="2"/>'
            )
        label = str(group) if len(str(group)) <= 12 else str(group)[:11] + "…"
        body.append(
            f'<text x="{_num(left + g * group_w + group_w / 2)}" y="{top + plot_h + 16}" '
            f'{FONT} text-anchor="middle">{escape(label)}</text>'
        )
    lx = left
    for k, name in enumerate(names):
        colour = MODEL_COLOURS[k % len(MODEL_COLOURS)]
        body.append(
            f'<rect x="{lx}" y="{top + plot_h + 28}" width="10" height="10" '
            f'fill="{colour}"/><text x="{lx + 14}" y="{top + plot_h + 37}" {FONT}>'
            f"{escape(name)}</text>"
        )
        lx += 24 + 7 * len(str(name))
    return _svg(width, height, body, title)


def curves_svg(
    steps: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    threshold: float | None = None,
) -> Markup:
    """Line plot of one value per step (e.g. Spearman similarity after each randomised block),
    one line per series; the dashed line is the pass/fail threshold."""
    names = list(series)
    left, top, plot_w, plot_h = 40, 22, max(160, 46 * len(steps)), 140
    width, height = left + plot_w + 20, top + plot_h + 40 + 14 * len(names)
    body = [f'<text x="{left}" y="14" {FONT} font-weight="600">{escape(title)}</text>']
    lo_v = min([0.0] + [float(v) for s in series.values() for v in s if _finite(v)])

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo_v) / (1 - lo_v if lo_v < 1 else 1))

    def x(i: int) -> float:
        return left + (plot_w * i / (len(steps) - 1) if len(steps) > 1 else plot_w / 2)

    for t in sorted({lo_v, 0.0, 0.5, 1.0}):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y(t))}" y2="{_num(y(t))}" '
            'stroke="#e3e6ec"/>'
        )
        body.append(
            f'<text x="{left - 4}" y="{_num(y(t) + 4)}" {FONT} text-anchor="end">{t:.2g}</text>'
        )
    if threshold is not None:
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y(threshold))}" '
            f'y2="{_num(y(threshold))}" stroke="#777" stroke-dasharray="4 3"/>'
        )
    for i, step in enumerate(steps):
        body.append(
            f'<text x="{_num(x(i))}" y="{top + plot_h + 14}" {FONT} text-anchor="middle">'
            f"{escape(str(step)[:8])}<title>{escape(step)}</title></text>"
        )
    for k, name in enumerate(names):
        colour = MODEL_COLOURS[k % len(MODEL_COLOURS)]
        pts = [(x(i), y(float(v))) for i, v in enumerate(series[name]) if _finite(v)]
        if pts:
            path = " ".join(f"{_num(a)},{_num(b)}" for a, b in pts)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            body += [
                f'<circle cx="{_num(a)}" cy="{_num(b)}" r="3" fill="{colour}"/>' for a, b in pts
            ]
        ly = top + plot_h + 30 + 14 * k
        body.append(
            f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 14}" y="{ly}" {FONT}>{escape(name)}</text>'
        )
    return _svg(width, height, body, title)


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def heatmap_svg(
    rows: Sequence[str],
    cols: Sequence[str],
    values: Sequence[Sequence[float | None]],
    title: str,
    row_label: str = "",
    col_label: str = "",
) -> Markup:
    """A table of rates in [0, 1] as coloured cells with the value written in each."""
    left, top, cell = 70, 38, 46
    width, height = left + cell * len(cols) + 10, top + cell * len(rows) + 30
    body = [
        f'<text x="4" y="14" {FONT} font-weight="600">{escape(title)}</text>',
        f'<text x="{left}" y="30" {FONT}>{escape(col_label)}</text>',
    ]
    for j, c in enumerate(cols):
        body.append(
            f'<text x="{left + cell * j + cell / 2}" y="{top + cell * len(rows) + 14}" '
            f'{FONT} text-anchor="middle">{escape(c)}</text>'
        )
    for i, r in enumerate(rows):
        body.append(
            f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4}" {FONT} '
            f'text-anchor="end">{escape(r)}</text>'
        )
        for j in range(len(cols)):
            v = values[i][j]
            ok = _finite(v)
            shade = 255 - int(round(200 * min(max(float(v), 0), 1))) if ok else 240
            fill = f"rgb({shade},{shade},255)" if ok else "#f0f0f0"
            ink = "#fff" if ok and float(v) > 0.6 else "#1d2230"
            text = f"{float(v):.2f}" if ok else "–"
            body.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{fill}"/><text x="{left + cell * j + cell / 2 - 1}" '
                f'y="{top + cell * i + cell / 2 + 4}" {FONT} text-anchor="middle" fill="{ink}">'
                f"{text}</text>"
            )
    if row_label:
        body.append(
            f'<text x="4" y="{top + cell * len(rows) + 28}" {FONT}>rows: {escape(row_label)}</text>'
        )
    return _svg(width, height, body, title)


def power_heatmap_svg(cells: Sequence[Mapping], value: str = "detection_rate") -> Markup:
    """Detection-power heatmap for ``leakaudit power``: tell size (rows) × prevalence (columns).

    ``cells`` are ``PowerResult.table().to_dict(orient="records")`` rows (size, prevalence and
    the rate named by ``value``)."""
    sizes = sorted({int(c["size"]) for c in cells})
    prevs = sorted({float(c["prevalence"]) for c in cells})
    grid = {(int(c["size"]), float(c["prevalence"])): c.get(value) for c in cells}
    values = [[grid.get((s, p)) for p in prevs] for s in sizes]
    return heatmap_svg(
        [f"{s} px" for s in sizes],
        [f"{p:g}" for p in prevs],
        values,
        title=value.replace("_", " "),
        row_label="tell side",
        col_label="prevalence",
    )
