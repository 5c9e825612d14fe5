"""The year's cumulative cost, drawn like the book's Figure 5.1: for `switchboard cost --png` and the Home tab."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from reports.costs import DAILY_GROWTH, DAYS, CostSummary, project
from store.costs import usd

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def cumulative(daily: list[float]) -> list[float]:
    total, out = 0.0, []
    for cost in daily:
        total += cost
        out.append(total)
    return out


def plot_projection(ax: Axes, summary: CostSummary) -> None:
    """Cumulative dollars against days: a line for each router whose cost is known, its year in the legend."""
    projection, days = summary.projection, list(range(1, DAYS + 1))
    if projection.baseline_daily is not None and summary.baseline is not None:
        ax.plot(days, cumulative(projection.baseline_daily), linestyle="--",
                label=f"{summary.baseline.model} few-shot: {usd(projection.baseline_usd)} a year")
    if projection.router_daily is not None:
        ax.plot(days, cumulative(projection.router_daily),
                label=f"fine-tuned router: {usd(projection.router_usd)} a year")
    ax.set_title(f"{projection.volume_per_day:,.0f} queries a day, +{DAILY_GROWTH:.0%} a day", fontsize=9)
    ax.set_xlabel("day")
    ax.set_ylabel("cumulative cost")
    ax.yaxis.set_major_formatter("${x:,.0f}")
    ax.legend(loc="upper left", fontsize=8)


def projection_png(summary: CostSummary) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    plot_projection(ax, summary)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def coarse(summary: CostSummary) -> CostSummary:
    """The projection from the volume and the router's throughput to two significant digits, the price to three.

    The Home tab uploads a chart once per distinct content: from exact inputs, every new message
    (the volume) and every routed query (the median latency) would make a new chart.
    """
    baseline, router = summary.baseline, summary.router
    projection = project(_significant(summary.projection.volume_per_day, 2) or 0.0,
                         baseline_per_1000=_significant(baseline.per_1000_usd if baseline else None, 3),
                         host_usd_per_hour=router.host_usd_per_hour,
                         queries_per_hour=_significant(router.queries_per_hour, 2))
    return replace(summary, projection=projection)


def _significant(value: float | None, digits: int) -> float | None:
    if not value:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))
