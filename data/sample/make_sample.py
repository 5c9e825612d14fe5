"""Rebuilds the bundled sample from the Bitext customer-support set (run once; the output is committed).

    python data/sample/make_sample.py \
        ../shared/data/bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv
"""

import csv
import random
import sys
from pathlib import Path

DEPARTMENTS = {
    "ORDER": "Orders", "CANCELLATION_FEE": "Orders",
    "SHIPPING_ADDRESS": "Shipping", "DELIVERY": "Shipping",
    "PAYMENT": "Billing", "INVOICE": "Billing",
    "REFUND": "Refunds",
    "ACCOUNT": "Accounts", "NEWSLETTER": "Accounts",
    "CONTACT": "Customer Care", "FEEDBACK": "Customer Care",
}
TRAIN_PER_DEPARTMENT, EVAL_PER_DEPARTMENT = 30, 15


def main(source: Path) -> None:
    by_department: dict[str, list[str]] = {}
    with source.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = " ".join(row["instruction"].split())
            if "{{" not in text:  # placeholders like {{Order Number}} read oddly in a demo
                by_department.setdefault(DEPARTMENTS[row["category"]], []).append(text)
    rng = random.Random(7)
    out = Path(__file__).parent
    train, held = [], []
    for department, texts in sorted(by_department.items()):
        unique = sorted(set(texts))
        picked = rng.sample(unique, TRAIN_PER_DEPARTMENT + EVAL_PER_DEPARTMENT)
        train += [(t, department) for t in picked[:TRAIN_PER_DEPARTMENT]]
        held += [(t, department) for t in picked[TRAIN_PER_DEPARTMENT:]]
    for name, rows in (("train.csv", train), ("eval.csv", held)):
        rng.shuffle(rows)
        with (out / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
