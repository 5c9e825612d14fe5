"""`switchboard cost`: what the baseline and the fine-tuned router cost per 1,000 queries, and over a year."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.compose import open_context
from cli.output import UserError, emit


def register(sub: Any) -> None:
    p = sub.add_parser("cost", help="cost per 1,000 queries of the baseline and the router, and a year's projection")
    p.add_argument("--png", type=Path, help="write the year's cumulative cost chart (PNG) here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cost)


def cost(args: argparse.Namespace) -> int:
    from reports.cost_chart import projection_png
    from reports.costs import Pricing
    from store.costs import cost_measures

    ctx = open_context()
    with ctx.sessions() as session:
        measures = cost_measures(session)
    summary = Pricing.of(ctx.settings).summarize(measures)
    payload = summary.to_json()
    if args.png:
        if not summary.chartable:
            raise UserError("nothing to chart yet: no baseline cost and no router latency measured")
        try:
            args.png.write_bytes(projection_png(summary))
        except OSError as exc:
            raise UserError(f"cannot write {args.png}: {exc.strerror or exc}") from exc
        payload["png"] = str(args.png)
    emit(args.json, payload, "\n".join(cost_lines(payload)))
    return 0


def cost_lines(payload: dict[str, Any]) -> list[str]:
    from store.costs import usd

    baseline, router, projection = payload["baseline"], payload["router"], payload["projection"]
    lines = []
    if baseline is None:
        lines.append("baseline: not configured (set OPENAI_API_KEY or OPENAI_BASE_URL)")
    elif baseline["cost_per_1000_usd"] is None:
        lines.append(f"baseline {baseline['model']}: cost unknown ({baseline['note']})")
    else:
        lines.append(f"baseline {baseline['model']}: {usd(baseline['cost_per_1000_usd'])} per 1,000 queries "
                     f"({baseline['prompt_tokens_per_query']:,.0f} prompt + "
                     f"{baseline['completion_tokens_per_query']:,.0f} completion tokens a query, "
                     f"measured on {baseline['measured_requests']:,} requests)")
    if router["cost_per_1000_usd"] is None:
        lines.append(f"fine-tuned router: cost unknown ({router['note']})")
    else:
        lines.append(f"fine-tuned router: {usd(router['cost_per_1000_usd'])} per 1,000 queries "
                     f"(host {usd(router['host_usd_per_hour'])}/hour, median {router['median_latency_ms']:,.1f} ms "
                     f"a query, {router['queries_per_hour']:,.0f} queries/hour one at a time)")
    lines.append(f"volume: {payload['volume_per_day']:,.1f} customer messages a day (last 7 days)")
    totals = [f"{name} {usd(projection[f'{name}_usd'])}" for name in ("baseline", "router")
              if projection[f"{name}_usd"] is not None]
    lines.append(f"over {projection['days']} days at +{projection['daily_growth']:.0%} a day: "
                 + (", ".join(totals) or "nothing measured to project"))
    if projection["note"]:
        lines.append(projection["note"])
    if "png" in payload:
        lines.append(f"chart: {payload['png']}")
    return lines
