"""The benches' common ending: the result printed as JSON and saved under bench/results/."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save(result: dict[str, Any], name: str) -> Path:
    out = RESULTS / name
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"saved {out}", file=sys.stderr)
    return out
