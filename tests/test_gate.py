"""The gate's rules, the replay sample and the bootstrap, on hand-made predictions: no model needed."""

from datetime import UTC, datetime, timedelta

import pytest

from classifier.routing.metrics import classification_metrics
from store.examples import Example
from store.tables import LabelSource, Split
from trainer.bootstrap import paired_bootstrap
from trainer.gate import Contender, GateRules, Scores, decide
from trainer.replay import select_training_set

TRUTH = ["A"] * 20 + ["B"] * 20 + ["C"] * 20
LABELS = ["A", "B", "C"]


def contender(predictions, truth=TRUTH):
    return Contender(classification_metrics(truth, predictions, labels=LABELS), predictions)


def with_errors(truth=TRUTH, **wrong_per_label):
    """The truth with the first n examples of each named label answered as another label."""
    out, seen = [], dict.fromkeys(LABELS, 0)
    for label in truth:
        seen[label] += 1
        out.append(("B" if label == "A" else "A") if seen[label] <= wrong_per_label.get(label, 0) else label)
    return out


def test_a_first_model_is_promoted_and_says_the_baseline_is_not_configured():
    decision = decide(Scores(y_true=TRUTH, candidate=contender(with_errors(A=3))))
    assert decision.promote and "baseline: not configured" in decision.reason


def test_no_holdout_means_no_decision_and_says_where_one_comes_from():
    decision = decide(Scores(y_true=[], candidate=None))
    assert not decision.promote and "audit" in decision.reason


def test_the_candidate_must_beat_the_active_model():
    scores = Scores(y_true=TRUTH, candidate=contender(with_errors(A=2)), current=contender(with_errors(A=1)))
    decision = decide(scores)
    assert not decision.promote and "does not beat the active model" in decision.reason


def test_a_clear_gain_over_the_active_model_is_promoted_with_its_evidence():
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=6, B=6)))
    decision = decide(scores)
    assert decision.promote, decision.reason
    assert any("not noise" in check for check in decision.checks)
    assert decision.intervals["candidate_vs_current"]["p_not_better"] <= 0.1


def test_a_gain_the_holdout_cannot_tell_from_noise_waits_for_more_audits():
    truth = ["A"] * 4 + ["B"] * 4 + ["C"] * 4
    scores = Scores(y_true=truth, candidate=contender(truth, truth), current=contender(with_errors(truth, A=1), truth))
    decision = decide(scores)
    assert not decision.promote
    assert "not enough evidence yet (12 held out," in decision.reason
    needed = int(decision.reason.split("held out, ")[1].split(" needed")[0])
    assert needed > 12


def test_the_evidence_rule_judges_the_model_that_routes_and_only_beating_the_other():
    # A fine-tuned model routes: a small win over the baseline suffices, the gain over the active model must hold.
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=6, B=6)),
                    baseline=contender(with_errors(A=1)), baseline_configured=True, baseline_note="baseline: gpt-4o")
    assert decide(scores).promote
    # Cold start: the baseline routes, so the same small win over it is not enough evidence.
    cold = Scores(y_true=TRUTH, candidate=contender(TRUTH), baseline=contender(with_errors(A=1)),
                  baseline_configured=True, baseline_note="baseline: gpt-4o")
    decision = decide(cold)
    assert not decision.promote and "not enough evidence yet" in decision.reason
    clear = Scores(y_true=TRUTH, candidate=contender(TRUTH), baseline=contender(with_errors(A=6, B=6)),
                   baseline_configured=True, baseline_note="baseline: gpt-4o")
    assert decide(clear).promote


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
    current = contender(with_errors(A=8, B=8))
    candidate = contender(with_errors(C=3))  # better overall, but C falls from 1.0
    scores = Scores(y_true=TRUTH, candidate=candidate, current=current)
    assert candidate.metrics["macro_f1"] > current.metrics["macro_f1"]
    decision = decide(scores, GateRules(max_department_drop=0.05))
    assert not decision.promote and "C F1 falls" in decision.reason
    assert decide(scores, GateRules(max_department_drop=0.2)).promote


def test_a_department_too_thin_to_measure_a_drop_is_reported_not_judged():
    truth = ["A"] * 30 + ["B"] * 30 + ["C"] * 5
    current = contender(with_errors(truth, A=10, B=10), truth)
    candidate = contender(with_errors(truth, C=1), truth)  # C falls 11 points on one example of five
    decision = decide(Scores(y_true=truth, candidate=candidate, current=current))
    assert decision.promote, decision.reason
    assert decision.not_judged == ["C"] and "1 not judged: C" in " ".join(decision.checks)
    assert GateRules(max_department_drop=0.05).department_min_examples == 20


def test_the_report_carries_paired_bootstrap_intervals():
    scores = Scores(y_true=TRUTH, candidate=contender(TRUTH), current=contender(with_errors(A=4, B=4)))
    interval = scores.intervals()["candidate_vs_current"]
    assert interval["ci95_low"] <= interval["difference"] <= interval["ci95_high"]
    assert interval["difference"] > 0 and 0 <= interval["p_not_better"] < 0.5 and interval["std_error"] > 0


def test_the_bootstrap_matches_scikit_learn_and_is_zero_for_identical_models():
    from sklearn.metrics import f1_score

    a, b = with_errors(A=1), with_errors(A=4, C=2)
    result = paired_bootstrap(TRUTH, a, b, rounds=200)
    expected = f1_score(TRUTH, a, average="macro") - f1_score(TRUTH, b, average="macro")
    assert result["difference"] == pytest.approx(expected, abs=1e-4)
    same = paired_bootstrap(TRUTH, a, a, rounds=50)
    assert same["difference"] == same["ci95_low"] == same["ci95_high"] == 0.0 and same["p_not_better"] == 1.0
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


def test_the_reports_first_line_says_the_verdict_once():
    from datetime import datetime

    from bot.home import _run_lines
    from store.overview import status_lines
    from store.run_report import RunReport
    from store.tables import RunStatus, TrainingRun
    from trainer.report_text import report_lines

    refused = RunReport(run_id=2, promoted=False,
                        reason="not promoted: not enough evidence yet (62 held out, 112 needed)")
    promoted = RunReport(run_id=3, promoted=True, reason="promoted: macro-F1 0.902; beats the baseline")
    assert report_lines(refused)[0] == "run 2: not promoted: not enough evidence yet (62 held out, 112 needed)"
    assert report_lines(promoted)[0] == "run 3: PROMOTED: macro-F1 0.902; beats the baseline"
    payload = {"active_model": None, "training": False, "routing": {"kind": "triage"},
               "examples": {"train": 0, "holdout": 0, "pending": 0, "inferred": {"implicit": 0, "baseline": 0}},
               "last_run": {"run_id": 2, "status": "not_promoted", "reason": refused.reason}}
    assert "last run: 2 not promoted: not enough evidence yet (62 held out, 112 needed)" in status_lines(payload)
    run = TrainingRun(id=2, trigger="manual", status=RunStatus.NOT_PROMOTED, reason=refused.reason,
                      started_at=datetime(2026, 12, 4), finished_at=datetime(2026, 12, 4))
    assert _run_lines([run]).endswith("UTC): not promoted: not enough evidence yet (62 held out, 112 needed)")
