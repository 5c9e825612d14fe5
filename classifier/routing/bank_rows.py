"""Forgetting inside an adapter folder: a sibling folder without some queries in its bank and snapshot.

An adapter folder is never edited. Forgetting writes a new folder beside it (`<name>-f1`, `-f2`, …)
holding the LoRA weights, head and settings as they were, and the bank (`scope_bank.safetensors`)
and `snapshot.json` without the forgotten queries; it is published whole, as a new adapter is, and
the caller points the registry at it and deletes the old one (bot/model_forgetting.py). Nothing
copied into the new folder ever held a forgotten row: the bank and the snapshot are written anew.

Which bank row is which query: banks written since `BANK_IDS` carry each row's query id. An older
bank is mapped from its snapshot when that is exact (every in-scope trained-on example has a row,
in snapshot order, and the labels agree); otherwise, when a forgotten query trained the adapter,
the whole bank goes: the model then serves without the neighbour vote and the distance signal.
Only numpy and safetensors are used, so the bot forgets without loading torch.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.routing.adapters import BANK_FILE, BANK_IDS, META_FILE, move_whole
from core.vocabulary import OUT_OF_SCOPE

SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_PARTS = ("train", "trained_on", "holdout")
OLD_BANK_LIMIT = 10_000  # trainer/calibrate.py's MAX_BANK when banks carried no ids: past it rows were sampled
_REVISION = re.compile(r"-f(\d+)$")


@dataclass(frozen=True)
class Pruned:
    """A folder written without the forgotten queries, and what was taken out."""

    folder: Path
    snapshot_rows: int  # examples taken out of snapshot.json (a query named in two parts counts twice)
    bank_rows: int  # rows taken out of the bank
    bank_dropped: bool  # an older bank whose rows could not be told apart: all of it went


def named_queries(folder: Path) -> set[int]:
    """Every query id the folder's snapshot or bank names (nothing for a folder without them)."""
    snapshot = _snapshot(folder)
    named = {int(row[0]) for part in SNAPSHOT_PARTS for row in snapshot.get(part, [])}
    ids = _bank(folder).get(BANK_IDS)
    return named | ({int(i) for i in ids.tolist()} if ids is not None else set())


def bank_rows(folder: Path) -> int:
    hidden = _bank(folder).get("hidden")
    return 0 if hidden is None else int(hidden.shape[0])


def prune(folder: Path, gone: set[int]) -> Pruned | None:
    """A new sibling of `folder`, published, without the `gone` queries; None when it names none of them."""
    if not named_queries(folder) & gone:
        return None
    snapshot, bank = _snapshot(folder), _bank(folder)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for item in folder.iterdir():
            if item.name in (BANK_FILE, SNAPSHOT_FILE):
                continue
            if item.is_dir():
                shutil.copytree(item, scratch / item.name)
            else:
                shutil.copy2(item, scratch / item.name)
        removed = 0
        if snapshot:
            kept = {part: [row for row in snapshot.get(part, []) if int(row[0]) not in gone]
                    for part in SNAPSHOT_PARTS if part in snapshot}
            removed = sum(len(snapshot[part]) - len(rows) for part, rows in kept.items())
            forgotten = dict(snapshot.get("forgotten", {}))
            forgotten["examples"] = int(forgotten.get("examples", 0)) + removed
            (scratch / SNAPSHOT_FILE).write_text(json.dumps({**snapshot, **kept, "forgotten": forgotten}))
        rows, dropped = _write_bank_without(scratch, folder, snapshot, bank, gone)
        final = _next_name(folder)
        move_whole(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Pruned(final, removed, rows, dropped)


def _write_bank_without(scratch: Path, folder: Path, snapshot: dict[str, Any], bank: dict[str, Any],
                        gone: set[int]) -> tuple[int, bool]:
    """Writes the bank less the `gone` rows into `scratch`: (rows taken out, whether all of it went)."""
    import numpy as np
    from safetensors.numpy import save_file

    hidden = bank.get("hidden")
    if hidden is None:
        return 0, False
    ids = bank.get(BANK_IDS)
    if ids is None:
        ids = _ids_from_snapshot(folder, snapshot, bank)
    if ids is None:
        trained = {int(row[0]) for row in snapshot.get("trained_on", snapshot.get("train", []))}
        if trained & gone:
            return int(hidden.shape[0]), True  # rows that cannot be told apart: none is kept
        shutil.copy2(folder / BANK_FILE, scratch / BANK_FILE)  # none of its rows is a forgotten query's
        return 0, False
    keep = np.array([int(i) not in gone for i in ids], dtype=bool)
    tensors = {name: np.ascontiguousarray(value[keep]) for name, value in bank.items() if name != BANK_IDS}
    tensors[BANK_IDS] = np.ascontiguousarray(np.asarray(ids, dtype=np.int64)[keep])
    save_file(tensors, str(scratch / BANK_FILE))
    return int(hidden.shape[0]) - int(tensors["hidden"].shape[0]), False


def _ids_from_snapshot(folder: Path, snapshot: dict[str, Any], bank: dict[str, Any]) -> list[int] | None:
    """An older bank's query ids: its rows are the in-scope trained-on examples in snapshot order, unless
    they were sampled (past `OLD_BANK_LIMIT`); None when that cannot be shown to hold."""
    trained = snapshot.get("trained_on")
    if trained is None or len(trained) > OLD_BANK_LIMIT:
        return None
    in_scope = [row for row in trained if row[1] != OUT_OF_SCOPE]
    if len(in_scope) != int(bank["hidden"].shape[0]):
        return None
    labels = bank.get("labels")
    if labels is not None:
        try:
            names = json.loads((folder / META_FILE).read_text())["labels"]
            if [names[int(i)] for i in labels.tolist()] != [row[1] for row in in_scope]:
                return None
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None
    return [int(row[0]) for row in in_scope]


def _snapshot(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SNAPSHOT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _bank(folder: Path) -> dict[str, Any]:
    """The bank's arrays by name; empty without one. A damaged bank reads as one with no way to tell its
    rows apart (no ids, no snapshot match), so forgetting drops it."""
    from safetensors.numpy import load_file

    file = folder / BANK_FILE
    if not file.is_file():
        return {}
    try:
        return dict(load_file(str(file)))
    except Exception:  # safetensors raises its own error types for a damaged file
        import numpy as np

        return {"hidden": np.zeros((0, 0), dtype=np.float16)}


def _next_name(folder: Path) -> Path:
    found = _REVISION.search(folder.name)
    stem, n = (folder.name[:found.start()], int(found.group(1))) if found else (folder.name, 0)
    while (candidate := folder.parent / f"{stem}-f{n + 1}").exists():
        n += 1
    return candidate

