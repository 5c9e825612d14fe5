"""The vote of the nearest trained-on messages: its arithmetic, its file, its share chosen on the fold, and
its place in the router's answer."""

from __future__ import annotations

from datetime import UTC, datetime

import torch

from classifier.model.base_model import load_base_model
from classifier.routing.adapters import read_bank, read_bank_labels, write_bank
from classifier.routing.calibration import Calibration
from classifier.routing.head import blend, mixed
from classifier.routing.neighbours import neighbour_vote
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import LoraRouter
from store.examples import Example
from store.tables import LabelSource, Split
from tests.test_head import LABELS, clusters
from trainer.calibrate import calibrate, choose_share


def test_each_message_is_voted_to_its_neighbours_label_and_a_label_with_no_neighbour_gets_nothing():
    bank, owners = clusters(6, [0, 1, 3])
    fresh, truth = clusters(2, [0, 1, 3], seed=0)
    votes = neighbour_vote(fresh + 0.1, bank, torch.tensor(owners), len(LABELS))
    assert votes.shape == (6, 4) and torch.allclose(votes.sum(dim=1), torch.ones(6))
    assert votes.argmax(dim=1).tolist() == truth
    assert votes[:, 2].max() == 0.0
    near = neighbour_vote(bank[:1], bank, torch.tensor(owners), len(LABELS), k=len(owners))
    assert near[0, 0] > 0.99  # the far clusters' votes weigh next to nothing
    empty = neighbour_vote(fresh, bank[:0], torch.tensor([], dtype=torch.long), len(LABELS))
    assert torch.allclose(empty, torch.full((6, 4), 0.25))


def test_the_banks_labels_are_kept_beside_its_states_and_an_older_bank_has_none(tmp_path):
    bank, owners = clusters(3, [0, 2])
    write_bank(tmp_path, bank)
    assert read_bank_labels(tmp_path) is None and read_bank(tmp_path) is not None
    write_bank(tmp_path, bank, torch.tensor(owners))
    labels = read_bank_labels(tmp_path)
    assert labels is not None and labels.tolist() == owners
    assert torch.allclose(read_bank(tmp_path), bank.half().float())  # type: ignore[arg-type]
    assert Calibration.from_dict(Calibration(vote_weight=0.3).to_dict()).vote_weight == 0.3
    assert Calibration.from_dict({"temperature": 1.3}).vote_weight == 0.0  # an older adapter: no vote


def test_a_tie_on_the_fold_goes_to_the_share_asked_for():
    truth = [0, 1, 2, 3]
    right = torch.full((4, 4), 0.1).index_put_((torch.arange(4), torch.tensor(truth)), torch.tensor(0.7))
    assert choose_share(right, right, truth, ties_towards=0.0) == 0.0
    assert choose_share(right, right, truth, ties_towards=0.5) == 0.5
    assert choose_share(right.roll(1, dims=1), right, truth, ties_towards=0.0) == 1.0


def test_the_router_mixes_in_the_vote_at_the_calibrations_share(tiny_model_dir, tmp_path):
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = LoraRouter(model=model, tokenizer=tokenizer, labels=LABELS, prompt=PromptFormat(), name="tiny")
    texts = ["where is my parcel", "refund my money please", "my card was charged twice"]
    plain = router.score(texts)
    router.bank, router.bank_labels = plain.hidden, torch.tensor([1, 3, 0])
    assert torch.allclose(router.score(texts).probs, plain.probs)  # a share of 0: the vote is not read
    router.calibration = Calibration(head_weight=0.0, vote_weight=0.4)
    vote = neighbour_vote(plain.hidden, plain.hidden, torch.tensor([1, 3, 0]), len(LABELS))
    assert torch.allclose(router.score(texts).probs, blend(plain.probs, vote, 0.4))
    router.bank_labels = None  # an adapter whose bank predates the labels serves without the vote
    assert torch.allclose(router.score(texts).probs, mixed(plain.probs, None, plain.hidden, 0.0))


def test_a_fold_large_enough_chooses_the_votes_share_and_a_small_one_leaves_it_out(tiny_model_dir, tmp_path):
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = LoraRouter(model=model, tokenizer=tokenizer, labels=LABELS, prompt=PromptFormat(), name="tiny")
    now = datetime.now(UTC)
    trained = [Example(i, f"{w} question {i}", LABELS[i % 4], Split.TRAIN, LabelSource.IMPORT, now)
               for i, w in enumerate(["alpha", "beta", "gamma", "delta"] * 3)]
    fold = [Example(20 + i, e.text, e.label, Split.TRAIN, LabelSource.IMPORT, now) for i, e in enumerate(trained)]
    small = calibrate(router, fold[:4], trained, min_fold=3, vote_min_fold=5)  # large enough for the head's share
    assert small.calibration.vote_weight == 0.0 and small.bank_labels is not None
    assert small.bank_labels.tolist() == [LABELS.index(e.label) for e in trained]
    fitted = calibrate(router, fold, trained, with_head=False, min_fold=3, vote_min_fold=5)  # the fold repeats the bank
    assert fitted.calibration.vote_weight > 0.5  # the vote knows the fold; an untrained model's label scores don't
