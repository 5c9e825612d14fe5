"""The documentation's tables, rendered from bench/results/ so that no figure is copied by hand.

    python -m bench.tables                  # rewrite every table in place
    python -m bench.tables --check          # exit 1, naming each table whose text differs from its results
    python -m bench.tables --files /tmp/README.md

A table is a region of README.md, docs/*.md or bench/*.md:

    <!-- table: NAME -->
    | ... |
    <!-- /table -->

whose body is replaced by what the renderer registered as NAME gives (bench/tables_results.py,
bench/tables_loop.py). The text around the regions is never touched.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from bench.harness import ROOT
from bench.tables_loop import TABLES as LOOP_TABLES
from bench.tables_results import TABLES as RESULT_TABLES

TABLES: dict[str, Callable[[], str]] = {**RESULT_TABLES, **LOOP_TABLES}
REGION = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.DOTALL)


def documents() -> list[Path]:
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
    return [path for path in candidates if path.exists()]


def rendered(text: str, path: Path) -> tuple[str, list[str]]:
    """`text` with each region's body rendered, and the names of the regions that changed."""
    changed: list[str] = []

    def body(region: re.Match[str]) -> str:
        name = region[2]
        if name not in TABLES:
            raise SystemExit(f"error: {path}: no table named {name!r} (known: {', '.join(sorted(TABLES))})")
        table = TABLES[name]() + "\n"
        if table != region[3]:
            changed.append(name)
        return region[1] + table + region[4]

    return REGION.sub(body, text), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    parser.add_argument("--files", type=Path, nargs="+", help="these markdown files (default: README.md, "
                        "docs/*.md, bench/*.md)")
    args = parser.parse_args()
    stale = []
    for path in args.files or documents():
        text = path.read_text()
        new, changed = rendered(text, path)
        stale += [f"{path}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    for line in stale:
        print(f"{'stale' if args.check else 'rendered'}: {line}")
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
