"""Every table of figures in the README and docs/ is what `python -m bench.tables` renders from bench/results:
a figure edited by hand, or a result saved without its table re-rendered, fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_table_of_figures_is_rendered_from_the_saved_results():
    done = subprocess.run([sys.executable, "-m", "bench.tables", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_table_edited_by_hand_is_caught(tmp_path):
    doc = next(p for p in sorted((ROOT / "docs").glob("*.md")) if "<!-- table: " in p.read_text())
    edited = tmp_path / doc.name
    table = doc.read_text().split("<!-- /table -->")[0]
    edited.write_text(table.replace("|", "| 1", 1) + "<!-- /table -->\n")
    done = subprocess.run([sys.executable, "-m", "bench.tables", "--check", "--files", str(edited)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "stale" in done.stdout + done.stderr
