"""The loop's tables (`python -m bench.loop`), one row per retrain, rendered from bench/results/loop-*.json.

The decision cell is the gate's reason, shortened by one rule for every row: "not promoted" reads
"refused", "the active model" is named (the model routing before the run), and the departments that
fall are summed up (one or two by name, more by count and range). Bold marks a promotion, and the
candidate it made.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from bench.harness import load_result
from bench.table_cells import bold, counted, fixed, markdown, percent

RUN_HEADER = ["run", "streamed", "trained on", "holdout (audited)", "decision", "candidate's test accuracy"]
SABOTAGE_ROWS = (("shuffled_labels", "shuffled labels"), ("two_departments_swapped", "two largest departments swapped"),
                 ("biased_baseline", "biased baseline, half its mistakes corrected"))
EVIDENCE = re.compile(r"not enough evidence yet \((\d+) ([a-z ]+), (\d+) needed\): a gain of ([+-][\d.]+) holds in "
                      r"(\d+)% of bootstrap rounds, under \d+%")
BEATS = re.compile(r"beats (.+) \(([\d.]+) > ([\d.]+)\)")
NOT_BEATEN = re.compile(r"macro-F1 ([\d.]+) does not beat (.+)'s ([\d.]+)")
FALLS = re.compile(r"(.+) F1 falls ([\d.]+) points \(limit (\d+)\)")


def routing_before(curve: list[dict[str, Any]]) -> list[str]:
    """The model that routed while each run trained: the baseline first, then what the run before left."""
    return ["baseline"] + [point["routing_model"] for point in curve[:-1]]


def falls(parts: list[str], *, limit: bool) -> str:
    """The departments whose F1 falls past the gate's limit, in a few words."""
    fallen = [m for part in parts if (m := FALLS.fullmatch(part))]
    if not fallen:
        return ""
    if len(fallen) == 1:
        text = f"{fallen[0][1]} falls {fallen[0][2]} F1 points"
    elif len(fallen) == 2:
        text = f"{fallen[0][1]} falls {fallen[0][2]} and {fallen[1][1]} {fallen[1][2]} F1 points"
    else:
        points = sorted((m[2] for m in fallen), key=float)
        text = f"{counted(len(fallen), 'departments')} fall {points[0]} to {points[-1]} F1 points"
    return text + (f" (limit {fallen[0][3]})" if limit else "")


def decision(point: dict[str, Any], before: str) -> str:
    """The gate's reason in short; a reason of another shape than these, as the gate gave it."""
    verdict, _, reason = point["reason"].partition(": ")
    parts = reason.split("; ")
    named = {"the active model": before}
    if verdict == "promoted":
        beaten = next((m for part in parts if (m := BEATS.fullmatch(part))), None)  # the active model first
        if beaten is None:
            return f"**promoted**: {reason}"
        who = named.get(beaten[1], beaten[1])
        rival = "current" if beaten[1] == "the active model" else "baseline"
        gain = (point.get("bootstrap") or {}).get(f"candidate_vs_{rival}")
        interval = (f" ({gain['difference']:+.3f}, 95% interval {gain['ci95_low']:+.3f} to {gain['ci95_high']:+.3f})"
                    if gain else "")
        return f"**promoted**: {beaten[2]} > {who}'s {beaten[3]}{interval}"
    if evidence := EVIDENCE.fullmatch(reason):
        over = f" over {before}" if point["macro_f1"]["current"] is not None else ""
        return (f"refused: not enough evidence yet ({int(evidence[1]):,} {evidence[2]}, {int(evidence[3]):,} needed): "
                f"{evidence[4]}{over} holds in {evidence[5]}% of rounds")
    beats = [f"{m[1]} does not beat {named.get(m[2], m[2])}'s {m[3]}"
             for part in parts if (m := NOT_BEATEN.fullmatch(part))]
    summary = "; ".join(filter(None, [*beats, falls(parts, limit=True)]))
    return f"refused: {summary or reason}" if verdict == "not promoted" else point["reason"]


def trained_on(point: dict[str, Any], before: str, *, detail: bool) -> str:
    """How many examples the candidate trained on; with `detail`, the implicit labels among them, or the
    new and replayed ones of a run warm-started from the routing model."""
    sources, training = point["train_sources"], point["training"]
    if set(sources) == {"import"}:
        return f"{sources['import']:,} imported"
    if detail and training.get("replay"):
        return (f"{training['examples']:,} ({training['new']:,} new + {training['replay']:,} replayed, "
                f"warm from {before})")
    if detail and sources.get("implicit"):
        return f"{training['examples']:,} ({sources['implicit']:,} implicit)"
    return f"{training['examples']:,}"


def holdout(point: dict[str, Any]) -> str:
    return f"{point['holdout']['n']:,} ({point['holdout']['sources'].get('audit', 0):,})"


def candidate(point: dict[str, Any], *, last_promotion: bool, whole_stream: bool) -> str:
    accuracy = f"{percent(point['candidate_test_accuracy'])}%"
    if not point["promoted"]:
        return accuracy
    return f"**{accuracy}**, routing {'to the end' if last_promotion and whole_stream else 'from here'}"


def run_rows(result: dict[str, Any], *, detail: bool = False) -> list[list[str]]:
    curve = result["curve"]
    last = max((i for i, p in enumerate(curve) if p["promoted"]), default=None)
    return [[str(p["run_id"]), f"{p['streamed']:,}", trained_on(p, before, detail=detail), holdout(p),
             decision(p, before), candidate(p, last_promotion=i == last, whole_stream="cut_short" not in result)]
            for i, (p, before) in enumerate(zip(curve, routing_before(curve), strict=True))]


def cold_start_audits() -> str:
    return markdown(RUN_HEADER, run_rows(load_result("loop-cold-start-audits")))


def start50() -> str:
    return markdown(RUN_HEADER, run_rows(load_result("loop-start50")))


def defaults() -> str:
    """loop-defaults.json beside the earlier loop (loop-defaults-earlier.json), retrain by retrain: the earlier
    loop's candidate of the same rank, with the point it was trained at and its fate where that point differs.
    A refused candidate is bold where it beat the earlier loop's at the same point."""
    result = load_result("loop-defaults")
    earlier = load_result("loop-defaults-earlier")["curve"]
    rows = run_rows(result, detail=True)
    for row, point, then in itertools.zip_longest(rows, result["curve"], earlier[:len(rows)]):
        if then is None:
            row.append("")
            continue
        accuracy = f"{percent(then['candidate_test_accuracy'])}%"
        if then["streamed"] != point["streamed"]:
            fate = "promoted" if then["promoted"] else "refused"
            row.append(f"({accuracy} at {then['streamed']:,}, {fate})")
            continue
        if not point["promoted"] and point["candidate_test_accuracy"] > then["candidate_test_accuracy"]:
            row[-1] = bold(row[-1])
        row.append(accuracy)
    return markdown([*RUN_HEADER, "earlier loop's candidate"], rows)


def earlier() -> str:
    """The earlier loop (loop-defaults-earlier.json: before implicit labels, questions and the best checkpoint)."""
    curve = load_result("loop-defaults-earlier")["curve"]
    return markdown(["run", "streamed", "holdout (audited)", "decision", "routing model after it, test accuracy",
                     "candidate's test accuracy"], [
        [str(p["run_id"]), f"{p['streamed']:,}", holdout(p), decision(p, before),
         bold(f"{p['routing_model']}, {percent(p['routing_test_accuracy'])}%", p["promoted"]),
         f"{percent(p['candidate_test_accuracy'])}%"]
        for p, before in zip(curve, routing_before(curve), strict=True)])


def sabotage() -> str:
    """The sabotaged candidates of loop-defaults.json, judged against its final routing model."""
    result = load_result("loop-defaults")
    runs = result["sabotaged_candidates"]
    baseline = next(m[3] for run in runs.values() for part in run["reason"].partition(": ")[2].split("; ")
                    if (m := NOT_BEATEN.fullmatch(part)) and m[2] == "the baseline")
    routing = next(iter(runs.values()))["routing_model_macro_f1"]
    judge = f"{result['summary']['final_routing_model']}: {fixed(routing, 3)}, baseline {baseline}"
    header = ["sabotage", "training labels changed", f"candidate macro-F1 ({judge})",
              "candidate's test accuracy", "the gate's reason", "wall time"]

    def reason(run: dict[str, Any]) -> str:
        parts = run["reason"].partition(": ")[2].split("; ")
        beaten = [m for part in parts if (m := NOT_BEATEN.fullmatch(part))]
        beats = "beats neither" if len(beaten) == 2 else "; ".join(f"does not beat {m[2]}" for m in beaten)
        return "; ".join(filter(None, [beats, falls(parts, limit=False)]))

    return markdown(header, [
        [label, f"{run['training_labels_changed']:,}", fixed(run["candidate_macro_f1"], 3),
         f"{percent(run['candidate_test_accuracy'])}%", reason(run), f"{fixed(run['wall_seconds'])} s"]
        for kind, label in SABOTAGE_ROWS if (run := runs.get(kind))])


TABLES: dict[str, Callable[[], str]] = {"loop-cold-start-audits": cold_start_audits, "loop-start50": start50,
                                         "loop-defaults": defaults, "loop-sabotage": sabotage, "loop-earlier": earlier}
