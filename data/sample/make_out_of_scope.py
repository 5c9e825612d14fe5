"""Rebuilds the sample's out-of-scope rows from CLINC150 (run once; the output is committed).

    python data/sample/make_out_of_scope.py ../shared/data/clinc150/data_full.json

`out_of_scope.csv`: 30 of CLINC150's out-of-scope training queries, labelled `none`, for
`switchboard import data/sample/out_of_scope.csv --out-of-scope-label none`.
`eval_mixed.csv`: `eval.csv` plus 15 of its out-of-scope validation queries, for
`switchboard eval data/sample/eval_mixed.csv --out-of-scope-label none`.
"""

import csv
import json
import random
import sys
from pathlib import Path

TRAIN, EVAL = 30, 15


def main(source: Path) -> None:
    data = json.loads(source.read_text())
    rng = random.Random(7)
    out = Path(__file__).parent
    train = rng.sample(sorted({text for text, _ in data["oos_train"]}), TRAIN)
    held = rng.sample(sorted({text for text, _ in data["oos_val"]}), EVAL)
    with (out / "eval.csv").open(newline="", encoding="utf-8") as handle:
        mixed = [(row["text"], row["label"]) for row in csv.DictReader(handle)] + [(t, "none") for t in held]
    rng.shuffle(mixed)
    for name, rows in (("out_of_scope.csv", [(t, "none") for t in train]), ("eval_mixed.csv", mixed)):
        with (out / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
