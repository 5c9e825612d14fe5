"""Whether the packaging differs between a commit and the working tree: exit 0 when it is the same, 1 when it
differs (or the commit is unknown). The packaging is what goes into the image: deploy/ (its prose aside)
and pyproject.toml's build tables ([build-system], [project], [tool.setuptools...]); the lint, type-check,
test and import-contract tables are not. scripts/smoke-if-changed.sh and deploy/smoke.py both ask this.

    python3 scripts/packaging_changed.py COMMIT
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGING_TOOLS = ("setuptools",)


def packaging_tables(pyproject: str) -> dict[str, Any]:
    data = tomllib.loads(pyproject)
    tools = {name: value for name, value in data.get("tool", {}).items() if name in PACKAGING_TOOLS}
    return {"build-system": data.get("build-system"), "project": data.get("project"), "tool": tools}


def same_packaging(commit: str) -> bool:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return False
    deploy = git("diff", "--quiet", commit, "--", "deploy", ":(exclude)deploy/*.md")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "deploy", ":(exclude)deploy/*.md")
    then = git("show", f"{commit}:pyproject.toml")
    if deploy.returncode != 0 or untracked.stdout.strip() or then.returncode != 0:
        return False
    return packaging_tables(then.stdout) == packaging_tables((ROOT / "pyproject.toml").read_text())


if __name__ == "__main__":
    sys.exit(0 if len(sys.argv) == 2 and same_packaging(sys.argv[1]) else 1)
