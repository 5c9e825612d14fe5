"""What `SWITCHBOARD_REDACT=baseline+store` changes in real support data, and what its detectors catch.

    python -m bench.redaction --shared ../shared/data

For BANKING77 (train and test), the Bitext sample and CLINC150: how many texts redaction changes,
the placeholders by kind, and the time per text. A text redaction leaves unchanged trains and is
classified exactly as before, so where no text changes, `baseline+store` costs no accuracy at all;
where some do, the router's accuracy has to be measured on them (`python -m bench.quality` on the
redacted files). Then a recall check: each kind of detail, in several written forms, planted into
200 real queries, and the share of them found, beside the plain texts' false positives. Saves
bench/results/redaction.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.datasets import SHARED
from bench.harness import RESULTS, save
from core.redact import Redactor

PLANTS = {
    "<EMAIL>": ["jane.doe@example.com", "j_smith+bank@mail.example.co.uk", "<mailto:ann@example.org|ann@example.org>"],
    "<PHONE>": ["+1 415-555-2671", "(415) 555-2671", "+44 20 7946 0958", "+49 30 901820", "415.555.2671"],
    "<CARD>": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
    "<IBAN>": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"],
    "<URL>": ["https://bank.example/reset?token=abc", "www.example.com/orders/17", "<https://x.example|x.example>"],
}
TEMPLATES = ["{q} My details: {d}.", "{d} - {q}", "{q} (reach me on {d})"]


def datasets(shared: Path) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    banking = shared / "banking77"
    if banking.exists():
        sets["banking77"] = [row["text"] for name in ("train.csv", "test.csv")
                             for row in csv.DictReader((banking / name).open(newline=""))]
    bitext = next((shared / "bitext_customer_support").glob("*.csv"), None)
    if bitext:
        sets["bitext_sample"] = [row["instruction"] for row in csv.DictReader(bitext.open(newline=""))]
    clinc = shared / "clinc150" / "data_full.json"
    if clinc.exists():
        sets["clinc150"] = [text for rows in json.loads(clinc.read_text()).values() for text, _ in rows]
    return sets


def changes(redactor: Redactor, texts: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    redacted = redactor.texts(texts)
    seconds = time.perf_counter() - started
    kinds: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    for before, after in zip(texts, redacted, strict=True):
        if before != after:
            kinds.update(re.findall(r"<[A-Z]+>", after))
            if len(examples) < 5:
                examples.append({"before": before, "after": after})
    return {"texts": len(texts), "changed": sum(a != b for a, b in zip(texts, redacted, strict=True)),
            "placeholders": dict(kinds), "ms_per_text": round(seconds / max(1, len(texts)) * 1000, 4),
            "examples": examples}


def recall(redactor: Redactor, queries: list[str], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    found: dict[str, dict[str, int]] = {}
    for placeholder, details in PLANTS.items():
        tally = found.setdefault(placeholder, {"planted": 0, "found": 0})
        for detail in details:
            for query in rng.sample(queries, 40):
                text = rng.choice(TEMPLATES).format(q=query, d=detail)
                tally["planted"] += 1
                after = redactor.text(text)
                tally["found"] += placeholder in after and detail not in after
    return {k: {**v, "recall": round(v["found"] / v["planted"], 4)} for k, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=RESULTS / "redaction.json")
    args = parser.parse_args()
    redactor = Redactor()
    sets = datasets(args.shared)
    if not sets:
        sys.exit(f"error: no data sets under {args.shared}")
    regions = ",".join(redactor.regions)
    result: dict[str, Any] = {"redaction": f"built-in detectors, regions {regions}, no admin patterns",
              "datasets": {name: changes(redactor, texts) for name, texts in sets.items()},
              "planted_recall": recall(redactor, sets.get("banking77") or next(iter(sets.values())), seed=0)}
    save(args.out, result, args, show=False)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in result["datasets"].items()},
                     indent=2))
    print(json.dumps(result["planted_recall"], indent=2))


if __name__ == "__main__":
    main()
