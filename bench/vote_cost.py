"""What the neighbour vote adds to a query's routing, beside the k-NN distance already served with it.

    python -m bench.vote_cost --bank 9015 --labels 8

The vote (`classifier/routing/neighbours.py`) and the out-of-scope signal's distance
(`classifier/routing/calibration.py:knn_distances`) each compare a query's final state with every
bank row, so the distance, served for every message already, is the baseline in the same run. The
states are random: the cost depends on the shapes (the bank's rows, the embedded model's 576
numbers a state), not on the values. One query at a time, as the bot routes a message, and in
batches of `--batch`, as the trainer and the bench score. Prints and saves JSON to
bench/results/vote-cost.json; the forward pass it rides on costs 30 ms or more a query
(docs/quality.md, "The few-shot race").
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import save


def timings(run: Callable[[Any], object], states: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(states)
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary_ms(times: list[float], per: int = 1) -> dict[str, float]:
    ordered = sorted(t / per for t in times)
    return {"median": round(statistics.median(ordered), 4), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bank", type=int, default=9015, help="bank rows (trained-on messages, at most 10,000)")
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--width", type=int, default=576, help="numbers a state (SmolLM2-135M: 576)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import torch

    from classifier.routing.calibration import knn_distances
    from classifier.routing.neighbours import neighbour_vote

    torch.manual_seed(0)
    bank, labels = torch.randn(args.bank, args.width), torch.randint(0, args.labels, (args.bank,))
    one, batch = torch.randn(1, args.width), torch.randn(args.batch, args.width)
    result: dict[str, Any] = {"bank": args.bank, "labels": args.labels, "width": args.width, "batch": args.batch}
    for name, run in (("vote", lambda x: neighbour_vote(x, bank, labels, args.labels)),
                      ("knn_distance", lambda x: knn_distances(x, bank))):
        run(one)
        result[name] = {"one_query_ms": summary_ms(timings(run, one, args.repeats)),
                        "batched_ms_a_query": summary_ms(timings(run, batch, args.repeats), args.batch)}
    save("vote-cost", result, args)


if __name__ == "__main__":
    main()
