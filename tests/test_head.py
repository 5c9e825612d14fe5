"""The linear head on the final hidden state: its fit, its file, and its place in the router's answer."""

from __future__ import annotations

import pytest
import torch

from classifier.model.base_model import load_base_model
from classifier.model.lora_merge import AdapterError
from classifier.routing.calibration import Calibration
from classifier.routing.head import HEAD_FILE, fit_head, read_head, write_head
from classifier.routing.prompt import PromptFormat
from classifier.routing.router import LoraRouter
from trainer.calibrate import choose_head_weight

LABELS = ["Billing", "Orders", "Shipping", "Refunds"]


def clusters(n_per_label: int, labels: list[int], width: int = 16, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Points around one centre per label, far apart: a head that learns anything separates them."""
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(len(LABELS), width, generator=g)
    rows = [centres[j] + 0.3 * torch.randn(width, generator=g) for j in labels for _ in range(n_per_label)]
    return torch.stack(rows), [j for j in labels for _ in range(n_per_label)]


def test_the_head_separates_what_it_was_shown_and_gives_an_unseen_label_nothing():
    hidden, truth = clusters(6, [0, 1, 3])  # no example of Shipping
    head = fit_head(hidden, truth, len(LABELS))
    assert head is not None
    fresh, fresh_truth = clusters(2, [0, 1, 3], seed=0)
    probs = head.probabilities(fresh + 0.1)
    assert probs.shape == (6, 4) and torch.allclose(probs.sum(dim=1), torch.ones(6))
    assert probs.argmax(dim=1).tolist() == fresh_truth
    assert probs[:, 2].max() == 0.0


def test_two_labels_are_told_apart_and_one_label_gives_no_head():
    hidden, truth = clusters(5, [1, 2])
    head = fit_head(hidden, truth, len(LABELS))
    assert head is not None and head.probabilities(hidden).argmax(dim=1).tolist() == truth
    assert fit_head(*clusters(5, [1]), len(LABELS)) is None


def test_the_head_round_trips_through_the_adapter_folder_and_a_damaged_file_is_named(tmp_path):
    hidden, truth = clusters(4, [0, 1, 2, 3])
    head = fit_head(hidden, truth, len(LABELS))
    assert head is not None and read_head(tmp_path) is None  # an adapter from before the head
    write_head(tmp_path, head)
    again = read_head(tmp_path)
    assert again is not None and torch.equal(again.probabilities(hidden), head.probabilities(hidden))
    (tmp_path / HEAD_FILE).write_bytes(b"not a tensor file")
    with pytest.raises(AdapterError, match=r"label_head\.safetensors is corrupt"):
        read_head(tmp_path)


def test_the_router_mixes_its_label_scores_with_the_head_at_the_calibrations_share(tiny_model_dir, tmp_path):
    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = LoraRouter(model=model, tokenizer=tokenizer, labels=LABELS, prompt=PromptFormat(), name="tiny")
    texts = ["where is my parcel", "refund my money please", "my card was charged twice"]
    plain = router.score(texts)
    head = fit_head(plain.hidden, [0, 1, 3], len(LABELS))  # each text its own label: the head recites them
    assert head is not None
    router.head = head
    both = router.score(texts)
    assert torch.allclose(both.probs, (plain.probs + head.probabilities(plain.hidden)) / 2)  # no fold: even
    assert [c.department for c in router.classify_batch(texts)] == ["Billing", "Orders", "Refunds"]
    router.calibration = Calibration(head_weight=0.8)
    assert torch.allclose(router.score(texts).probs, 0.2 * plain.probs + 0.8 * head.probabilities(plain.hidden))
    router.calibration = Calibration(head_weight=0.0)
    assert torch.allclose(router.score(texts).probs, plain.probs)


def test_the_fold_chooses_the_heads_share_by_which_read_explains_it():
    truth = [0, 1, 2, 3, 0, 1]
    right = torch.full((6, 4), 0.1).index_put_((torch.arange(6), torch.tensor(truth)), torch.tensor(0.7))
    wrong = right.roll(1, dims=1)
    assert choose_head_weight(label_probs=right, head_probs=wrong, truth=truth) == 0.0
    assert choose_head_weight(label_probs=wrong, head_probs=right, truth=truth) == 1.0
    assert choose_head_weight(label_probs=right, head_probs=right, truth=truth) == 0.5  # a tie: an even mix
    half = torch.cat([right[:3], wrong[3:]])  # each read right on its own half: both keep a say
    assert 0.0 < choose_head_weight(label_probs=half, head_probs=torch.cat([wrong[:3], right[3:]]), truth=truth) < 1.0


def test_the_heads_share_is_kept_beside_the_adapter_and_an_older_one_reads_even():
    assert Calibration.from_dict(Calibration(temperature=1.3, head_weight=0.7).to_dict()).head_weight == 0.7
    assert Calibration.from_dict({"temperature": 1.3, "n": 9}).head_weight == 0.5


def test_the_head_is_fitted_again_with_the_calibration_fold_added(tiny_model_dir, tmp_path):
    from datetime import UTC, datetime

    from store.examples import Example
    from store.tables import LabelSource, Split
    from trainer.calibrate import calibrate

    model, tokenizer = load_base_model(str(tiny_model_dir), cache_dir=tmp_path)
    router = LoraRouter(model=model, tokenizer=tokenizer, labels=LABELS, prompt=PromptFormat(), name="tiny")
    now = datetime.now(UTC)
    trained = [Example(i, f"{w} question {i}", ["Billing", "Orders"][i % 2], Split.TRAIN, LabelSource.IMPORT, now)
               for i, w in enumerate(["alpha", "beta", "gamma", "delta"] * 2)]
    fold = [Example(10 + i, f"refund please {i}", "Refunds", Split.TRAIN, LabelSource.IMPORT, now) for i in range(3)]
    assert calibrate(router, fold, trained).calibration.head_weight == 0.5  # three examples decide nothing
    fitted = calibrate(router, fold, trained, min_fold=3)
    assert fitted.calibration.n == 3 and fitted.bank.shape[0] == len(trained)  # the fold never joins the bank
    assert fitted.head is router.head and fitted.head is not None
    assert fitted.head.seen.tolist() == [True, True, False, True]  # Refunds was only in the fold
    assert fitted.calibration.head_weight == 0.0  # the head fitted before the fold gave Refunds nothing
