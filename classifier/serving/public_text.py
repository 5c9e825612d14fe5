"""Why a model is not served, told without file paths: `/healthz` may answer on a public port.

The reasons come from adapter checks written for the log and the terminal ("adapter folder
/srv/.switchboard/adapters/0002 is missing"). Here the adapter's own folder becomes "the adapter
folder" (a file in it keeps its name), and any other path keeps only its last part; the full
text stays in the log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# A run of characters with at least one slash or backslash in it, up to a space, quote, bracket or punctuation.
_PATH = re.compile(r"""(?:[A-Za-z]:)?[^\s'"()\[\]{}<>,;]*[/\\][^\s'"()\[\]{}<>,;:]*""")


def without_paths(text: str, *, folders: Iterable[str] = ()) -> str:
    """`text` with each of `folders` named as "the adapter folder" and every other path cut to its last part."""
    spellings: set[str] = set()
    for folder in folders:
        if folder:
            spellings |= {folder.rstrip("/\\"), str(Path(folder)), os.path.abspath(folder),
                          str(Path(folder).resolve())}
    for folder in sorted(spellings - {"", "."}, key=len, reverse=True):
        for sep in {"/", os.sep}:
            text = text.replace(folder + sep, "")
        text = text.replace(f"adapter folder {folder}", "adapter folder").replace(folder, "the adapter folder")
    return _PATH.sub(_last_part, text)


def _last_part(match: re.Match[str]) -> str:
    parts = [p for p in re.split(r"[/\\]", match.group(0)) if p and not re.fullmatch(r"[A-Za-z]:", p)]
    return parts[-1] if parts else "a path"
