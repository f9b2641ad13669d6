"""SVG charts for the monthly report, drawn with matplotlib's object API (Figure + the SVG canvas):
no pyplot, so no global figure state shared between concurrent renders and no GUI backend.

Each chart is an `<svg>` element to inline in the HTML (no XML prolog, no external references), so
the same markup shows in a browser and in the PDF. Text is drawn as paths: no font is needed where
the report is opened.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from controller.domain.reporting import BlockedDestination, DailyUsage, DayCount

INK = "#1f3b57"
ACCENT = "#c8553d"
GRID = "#d9dee4"
WIDTH_IN, HEIGHT_IN = 7.0, 2.6
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_ID_REF = re.compile(r'(\bid="|xlink:href="#|href="#|url\(#)')


def human_bytes(n: float) -> str:
    """Decimal units, as a storage bill names them: 2_100_000_000 -> '2.1 GB'."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _svg(fig: Figure, prefix: str) -> str:
    """The chart's `<svg>` element; its ids (glyphs, clip paths) get `prefix` so that several charts
    inlined in one page never define an id twice."""
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    text = _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1), count=1)
    return _ID_REF.sub(lambda m: m.group(1) + prefix + "-", text).strip()


def _axes(title: str, height: float = HEIGHT_IN) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(WIDTH_IN, height), dpi=96, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11, color=INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors="#44505c")
    return fig, ax


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, color="#6b7680", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _day_bars(title: str, days: Sequence[str], values: Sequence[int], *, as_bytes: bool,
              color: str, prefix: str) -> str:
    fig, ax = _axes(title)
    if not days or not any(values):
        _empty(ax, "nothing this month")
        return _svg(fig, prefix)
    x = list(range(len(days)))
    ax.bar(x, values, color=color, width=0.8)
    step = max(1, len(days) // 8)
    ax.set_xticks(x[::step], [d[5:] for d in days[::step]])
    ax.yaxis.grid(True, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    if as_bytes:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: human_bytes(v)))
    return _svg(fig, prefix)


def _horizontal(title: str, labels: Sequence[str], values: Sequence[int], *, as_bytes: bool,
                color: str, prefix: str) -> str:
    rows = len(labels)
    fig, ax = _axes(title, height=max(1.6, 0.6 + 0.28 * rows))
    if not rows:
        _empty(ax, "nothing this month")
        return _svg(fig, prefix)
    y = list(range(rows))[::-1]  # biggest on top
    ax.barh(y, values, color=color, height=0.6)
    ax.set_yticks(y, [label if len(label) <= 40 else label[:39] + "…" for label in labels])
    ax.xaxis.grid(True, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    if as_bytes:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: human_bytes(v)))
    return _svg(fig, prefix)


def egress_per_day(daily: Sequence[DailyUsage]) -> str:
    return _day_bars("Internet traffic per day", [d.day for d in daily], [d.egress_bytes for d in daily],
                     as_bytes=True, color=INK, prefix="egress")


def blocks_per_day(days: Sequence[DayCount]) -> str:
    return _day_bars("Blocked lookups per day", [d.day for d in days], [d.value for d in days],
                     as_bytes=False, color=ACCENT, prefix="blocks")


def uploads_per_category(totals: Sequence[tuple[str, int]]) -> str:
    """`totals`: (category label, bytes), biggest first."""
    return _horizontal("Uploads per category", [c for c, _ in totals], [n for _, n in totals],
                       as_bytes=True, color=INK, prefix="uploads")


def top_destinations(blocked: Sequence[BlockedDestination], limit: int = 10) -> str:
    shown = list(blocked)[:limit]
    return _horizontal("Most blocked destinations", [d.domain for d in shown], [d.blocked for d in shown],
                       as_bytes=False, color=ACCENT, prefix="destinations")
