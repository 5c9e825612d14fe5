"""Models forget too: a forget rewrites every registered model's bank and snapshot into a new folder without the
forgotten rows, the served model swaps it in hot, and `status` names the models trained on forgotten rows until
one trained without them is active; on SQLite and, with --store=postgres, PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from sqlmodel import select

from bot.forgetting import forget_user
from classifier.model.base_model import load_base_model
from classifier.routing.adapters import BANK_FILE, BANK_IDS
from classifier.routing.bank_rows import prune
from classifier.serving.active_router import ActiveModelRouter
from store.db import transaction
from store.overview import status, status_lines
from store.registry import get_model, promote, register_model, registry_lookup
from store.tables import ModelStatus, Query
from tests.support import FAST, seed, trainer_deps
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training

LABELS = ["Billing", "Orders", "None of these"]
TRAINED_ON = [[1, "Billing"], [2, "Orders"], [3, "None of these"], [4, "Billing"]]


def adapter(folder: Path, *, ids: bool, labels: list[int] | None = None) -> Path:
    """A folder as the trainer writes it: the bank holds the in-scope trained-on messages (1, 2, 4), 5 is
    held out, 6 is in the calibration fold."""
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "switchboard.json").write_text(json.dumps({"labels": LABELS}))
    (folder / "snapshot.json").write_text(json.dumps({"digest": "d", "train": [*TRAINED_ON, [6, "Orders"]],
                                                      "trained_on": TRAINED_ON, "holdout": [[5, "Orders"]]}))
    bank = {"hidden": np.arange(9, dtype=np.float16).reshape(3, 3),
            "labels": np.array(labels if labels is not None else [0, 1, 0], dtype=np.int64)}
    if ids:
        bank[BANK_IDS] = np.array([1, 2, 4], dtype=np.int64)
    save_file(bank, str(folder / BANK_FILE))
    return folder


def snapshot_ids(folder: Path) -> dict[str, list[int]]:
    data = json.loads((folder / "snapshot.json").read_text())
    return {part: [row[0] for row in data[part]] for part in ("train", "trained_on", "holdout")}


@pytest.mark.parametrize("ids", [True, False], ids=["bank with ids", "older bank mapped by its snapshot"])
def test_a_pruned_folder_is_a_new_sibling_without_the_rows_and_the_old_one_is_untouched(tmp_path, ids):
    old = adapter(tmp_path / "run0001", ids=ids)
    pruned = prune(old, {2, 5})
    assert pruned is not None and pruned.folder == tmp_path / "run0001-f1"
    assert (pruned.snapshot_rows, pruned.bank_rows, pruned.bank_dropped) == (3, 1, False)
    bank = load_file(str(pruned.folder / BANK_FILE))
    assert bank[BANK_IDS].tolist() == [1, 4] and bank["labels"].tolist() == [0, 0]
    assert bank["hidden"].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert snapshot_ids(pruned.folder) == {"train": [1, 3, 4, 6], "trained_on": [1, 3, 4], "holdout": []}
    assert (pruned.folder / "adapter_model.safetensors").read_bytes() == b"weights"
    assert snapshot_ids(old)["holdout"] == [5] and load_file(str(old / BANK_FILE))["hidden"].shape == (3, 3)
    again = prune(pruned.folder, {4})
    assert again is not None and again.folder.name == "run0001-f2" and prune(again.folder, {2, 99}) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch folder left


def test_an_older_bank_that_cannot_be_mapped_goes_whole_unless_no_forgotten_row_trained_it(tmp_path):
    mismatched = adapter(tmp_path / "a", ids=False, labels=[1, 1, 0])  # its labels disagree with the snapshot
    dropped = prune(mismatched, {2})
    assert dropped is not None and dropped.bank_dropped and dropped.bank_rows == 3
    assert not (dropped.folder / BANK_FILE).exists()
    held_out = prune(adapter(tmp_path / "b", ids=False, labels=[1, 1, 0]), {5})  # only the holdout named it
    assert held_out is not None and not held_out.bank_dropped
    assert load_file(str(held_out.folder / BANK_FILE))["hidden"].shape == (3, 3)


@pytest.fixture
def served(settings, sessions, tiny_model_dir):
    """Model 1 trained and served hot; model 2, a copy of it, retired (a rollback target)."""
    seed(sessions)
    assert run_training(trainer_deps(settings, sessions),
                        RunOptions(config=FAST, progress=False, alternatives=AlternativeSet.NONE)).promoted
    with transaction(sessions) as session:
        first = get_model(session, model_id=1)
        copy = Path(first.adapter_path).parent / "copy"
        shutil.copytree(first.adapter_path, copy)
        second = register_model(session, adapter_path=str(copy), base_model=first.base_model, labels=first.labels,
                                hyperparameters={}, metrics={}, parent_id=None)
        second.status = ModelStatus.RETIRED
    base, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=settings.cache_dir)
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=str(tiny_model_dir),
                               lookup=registry_lookup(sessions), poll_seconds=3600)
    assert router.refresh() and router.model_id == 1
    yield router
    router.stop()


def served_bank(router: ActiveModelRouter, state: torch.Tensor) -> tuple[int, int]:
    """(rows in the served bank, rows equal to `state`: the tiny model gives look-alike texts one state)."""
    served = router._router
    assert served is not None and served.bank is not None
    return served.bank.shape[0], int((served.bank == state).all(dim=1).sum())


def test_a_forget_takes_the_rows_out_of_every_models_bank_and_the_served_one_swaps_it_in_hot(served, sessions):
    router = served
    with sessions() as session:
        folders = {m: get_model(session, model_id=m).adapter_path for m in (1, 2)}
    bank = load_file(str(Path(folders[1]) / BANK_FILE))
    forgotten, state = int(bank[BANK_IDS][0]), torch.from_numpy(bank["hidden"][0]).float()
    with transaction(sessions) as session:
        query = session.get(Query, forgotten)
        assert query is not None
        query.slack_user = "UGONE"  # the customer who sent it asks to be forgotten
    rows, same = served_bank(router, state)
    assert same >= 1  # its own state is served

    outcome = forget_user(sessions, None, "UGONE", requested_by="test")
    assert outcome.rows["queries"] == 1 and outcome.trained_models == [1, 2]
    assert router.refresh() and router.model_id == 1  # the same model, its new folder swapped in whole
    assert served_bank(router, state) == (rows - 1, same - 1)
    for model_id, old in folders.items():
        with sessions() as session:
            new = Path(get_model(session, model_id=model_id).adapter_path)
        assert new.name == Path(old).name + "-f1" and not Path(old).exists()
        assert forgotten not in load_file(str(new / BANK_FILE))[BANK_IDS].tolist()
        assert all(forgotten not in ids for ids in snapshot_ids(new).values())
    assert not router.refresh()  # nothing moved since

    with sessions() as session:
        said = status(session, pricing=None)
    assert said["forgotten_data_in_active_model"] and said["models_trained_on_forgotten_data"] == [1, 2]
    assert any("models trained on data since forgotten: 1, 2" in line for line in status_lines(said))
    with transaction(sessions) as session:  # a model trained without the rows becomes active
        clean = register_model(session, adapter_path=str(new), base_model="b", labels=[], hyperparameters={},
                               metrics={}, parent_id=None)
        promote(session, model_id=clean.id)
    with sessions() as session:
        said = status(session, pricing=None)
        assert not session.exec(select(Query).where(Query.id == forgotten)).first()
    assert not said["forgotten_data_in_active_model"] and said["models_trained_on_forgotten_data"] == [1, 2]
    assert not any("since forgotten" in line for line in status_lines(said))
