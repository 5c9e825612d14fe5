"""The gate's rules, the replay sample and the bootstrap, on hand-made predictions: no model needed."""

from datetime import UTC, datetime, timedelta

import pytest

from router.metrics import classification_metrics
from store.examples import Example
from store.tables import LabelSource, Split
from trainer.bootstrap import paired_bootstrap
from trainer.gate import Contender, GateRules, Scores, decide
from trainer.replay import select_training_set

TRUTH = ["A"] * 10 + ["B"] * 10 + ["C"] * 10
LABELS = ["A", "B", "C"]


def contender(predictions):
    return Contender(classification_metrics(TRUTH, predictions, labels=LABELS), predictions)


def with_errors(**wrong_per_label):
    """The truth with the first n examples of each named label answered as another label."""
    out, seen = [], dict.fromkeys(LABELS, 0)
    for label in TRUTH:
        seen[label] += 1
        out.append(("B" if label == "A" else "A") if seen[label] <= wrong_per_label.get(label, 0) else label)
    return out


def test_a_first_model_is_promoted_and_says_the_baseline_is_not_configured():
    decision = decide(Scores(y_true=TRUTH, candidate=contender(with_errors(A=3))))
    assert decision.promote and "baseline: not configured" in decision.reason


def test_the_candidate_must_beat_the_active_model():
    scores = Scores(y_true=TRUTH, candidate=contender(with_errors(A=2)), current=contender(with_errors(A=1)))
    decision = decide(scores)
    assert not decision.promote and "does not beat the active model" in decision.reason


def test_the_candidate_must_beat_a_configured_baseline():
    scores = Scores(y_true=TRUTH, candidate=contender(with_errors(A=1)), current=contender(with_errors(A=3)),
                    baseline=contender(TRUTH), baseline_configured=True, baseline_note="baseline: gpt-4o")
    decision = decide(scores)
    assert not decision.promote and "does not beat the baseline" in decision.reason
    assert "beats the active model" in decision.checks[0]


def test_a_configured_baseline_that_could_not_be_scored_blocks_promotion():
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=3)),
                    baseline=None, baseline_configured=True, baseline_note="baseline unavailable: HTTP 503")
    decision = decide(scores)
    assert not decision.promote and "baseline unavailable: HTTP 503" in decision.reason


def test_one_department_falling_too_far_blocks_an_overall_better_candidate():
    current = contender(with_errors(A=3, B=3))  # macro-F1 about 0.79
    candidate = contender(with_errors(C=2))  # better overall, but C falls from 1.0 to about 0.89
    scores = Scores(y_true=TRUTH, candidate=candidate, current=current)
    assert candidate.metrics["macro_f1"] > current.metrics["macro_f1"]
    decision = decide(scores, GateRules(max_department_drop=0.05))
    assert not decision.promote and "C F1 falls" in decision.reason
    assert decide(scores, GateRules(max_department_drop=0.2)).promote


def test_a_holdout_too_thin_for_a_department_blocks_replacing_a_model():
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=3)))
    decision = decide(scores, GateRules(min_holdout_per_department=11))
    assert not decision.promote and "holdout too small" in decision.reason


def test_the_report_carries_paired_bootstrap_intervals():
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=4, B=4)))
    interval = scores.report()["bootstrap_macro_f1_difference"]["candidate_vs_current"]
    assert interval["ci95_low"] <= interval["difference"] <= interval["ci95_high"]
    assert interval["difference"] > 0


def test_the_bootstrap_matches_scikit_learn_and_is_zero_for_identical_models():
    from sklearn.metrics import f1_score

    a, b = with_errors(A=1), with_errors(A=4, C=2)
    result = paired_bootstrap(TRUTH, a, b, rounds=200)
    expected = f1_score(TRUTH, a, average="macro") - f1_score(TRUTH, b, average="macro")
    assert result["difference"] == pytest.approx(expected, abs=1e-4)
    assert paired_bootstrap(TRUTH, a, a, rounds=50) == {"difference": 0.0, "ci95_low": 0.0, "ci95_high": 0.0,
                                                          "rounds": 50}
    with pytest.raises(ValueError):
        paired_bootstrap(TRUTH, a[:-1], b)


def example(i, label, age_days):
    when = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=age_days)
    return Example(i, f"text {i}", label, Split.TRAIN, LabelSource.AGENT, when)


def test_a_warm_start_trains_on_new_labels_plus_an_even_replay_of_every_old_department():
    old = [example(i, label, 0) for i, label in enumerate(["A"] * 30 + ["B"] * 30 + ["C"] * 30)]
    new = [example(100 + i, "A", 10) for i in range(6)]
    chosen = select_training_set(old + new, trained_until=datetime(2026, 11, 5, tzinfo=UTC),
                                 known_labels=["A", "B", "C"], replay_min_per_department=4, replay_ratio=1.0)
    assert chosen.new == 6 and chosen.replay == 12 and chosen.new_departments == []
    replayed = [e.label for e in chosen.examples if e.query_id < 100]
    assert sorted(set(replayed)) == ["A", "B", "C"] and all(replayed.count(d) == 4 for d in "ABC")
    assert {e.query_id for e in new} <= {e.query_id for e in chosen.examples}


def test_a_department_new_to_the_adapter_trains_with_all_its_examples():
    old = [example(i, "A", 0) for i in range(20)] + [example(50 + i, "D", 0) for i in range(7)]
    chosen = select_training_set(old, trained_until=datetime(2026, 11, 5, tzinfo=UTC), known_labels=["A"],
                                 replay_min_per_department=3)
    assert chosen.new_departments == ["D"] and chosen.new == 7
    assert sum(e.label == "D" for e in chosen.examples) == 7 and sum(e.label == "A" for e in chosen.examples) == 7


def test_without_an_active_adapter_everything_trains():
    old = [example(i, "A", 0) for i in range(5)]
    chosen = select_training_set(old, trained_until=None, known_labels=None)
    assert chosen.examples == old and chosen.replay == 0
