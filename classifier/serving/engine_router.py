"""Classifying through an OpenAI-compatible vLLM server on the GPU host, instead of a model in this process.

With SWITCHBOARD_INFERENCE_URL set, the bot and the gate send token ids to `vllm serve BASE --enable-lora`
(VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) and never load the model: the GPU batches every caller's
requests, and a promotion is `POST /v1/load_lora_adapter` under a new name, a first answer from it,
then an unload of the old name. The engine reads adapter folders at the registry's paths, so it must
see SWITCHBOARD_HOME at the same path. Shapes: vLLM `VLLM_VERSION` (vllm/entrypoints/serve/lora/,
openai/completion/protocol.py and serving.py, openai/models/serving.py).

Scoring is the in-process scorer's term for term (`classifier/routing/scoring.py`): one prompt per label (prompt
then label tokens, tokenised by `classifier/routing/prompt.py`), a request's texts in one `/v1/completions` call;
`prompt_logprobs: 0` gives each prompt token's full-vocabulary log-probability. At each branching
node of the labels' trie the children's are renormalised among themselves (constrained decoding),
summed along each path and softmaxed by `scoring._combine`; then the adapter's temperature.

The engine gives no hidden states, so there is no linear head (`classifier/routing/head.py`: the label scores
alone are served, and judged by the gate) and no k-NN bank. "None of these" is the learned
out-of-scope class when the adapter has one, else the calibrated doubt alone (1 - top probability)
placed among the calibration fold's doubts: at the 95th percentile or past it, none of these.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from classifier.model.lora_merge import AdapterError
from classifier.routing.adapters import AdapterMeta, check_adapter_dir
from classifier.routing.calibration import UNFAMILIAR_QUANTILE, with_temperature
from classifier.routing.prompt import label_ids, prompt_ids
from classifier.routing.router import Classification
from classifier.routing.scoring import LabelTrie, _combine
from classifier.serving.active_router import ActiveLookup, NoActiveModel, RegistryWatcher, SwapFailure
from core.errors import SwitchboardError
from core.vocabulary import OUT_OF_SCOPE

log = logging.getLogger(__name__)

VLLM_VERSION = "0.34.0"  # the vLLM whose source these requests and responses follow
MAX_PROMPTS = 1024  # vLLM's VLLM_MAX_COMPLETION_PROMPTS default: prompts in one completions request
SERVED_PREFIX = "switchboard-model-"  # + the registry's model id: one name, one never-edited folder
SHADOW_PREFIX = "switchboard-shadow-"  # + the candidate's model id, while it scores in shadow


class EngineError(SwitchboardError):
    """The engine refused (`status`: its HTTP status) or could not be reached (`status` None)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"inference engine: {message}" + (f" (HTTP {status})" if status else ""))
        self.status, self.message = status, message


class EngineClient:
    """The vLLM endpoints Switchboard uses, over plain HTTP (urllib: no extra dependency)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url, self.timeout_s = url.rstrip("/").removesuffix("/v1"), timeout_s

    def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read().decode()  # load/unload answer plain text, with no Content-Type
                return json.loads(text) if response.headers.get_content_type() == "application/json" else text
        except urllib.error.HTTPError as exc:
            raise EngineError(exc.code, _message(exc.read().decode(errors="replace"))) from None
        except OSError as exc:  # refused, reset, timed out
            raise EngineError(None, f"cannot reach {self.base_url}: {exc}") from None

    def load(self, name: str, folder: str) -> None:
        """Loads an adapter; a name loaded already is kept (a name always means the same folder)."""
        try:
            self.call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": folder})
        except EngineError as exc:
            if exc.status == 404 and exc.message == "Not Found":  # the route exists only with the variable set
                raise EngineError(404, "no /v1/load_lora_adapter: start vLLM with "
                                       "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True") from None
            if not (exc.status == 400 and "has already been loaded" in exc.message):
                raise

    def unload(self, name: str) -> None:
        try:
            self.call("/v1/unload_lora_adapter", {"lora_name": name})
        except EngineError as exc:
            log.warning("could not unload %s: %s", name, exc)


def _message(text: str) -> str:
    """The message of vLLM's ErrorResponse: {"error": {...}} since 0.10, {"object": "error", ...} before."""
    try:
        data = json.loads(text)
        return str(data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("message", text))
    except (ValueError, AttributeError):
        return text


class EngineScorer:
    """One adapter loaded in the engine under `lora_name`: a `Router` (classify, classify_batch)."""

    def __init__(self, client: EngineClient, tokenizer: Any, meta: AdapterMeta, *, lora_name: str, name: str,
                 folder: str, model_id: int | None = None) -> None:
        self.client, self.tokenizer, self.meta, self.lora_name, self.name = client, tokenizer, meta, lora_name, name
        self.folder, self.model_id = folder, model_id
        self.trie = LabelTrie({label: label_ids(tokenizer, meta.prompt, label) for label in meta.labels})

    def classify(self, text: str) -> Classification:
        return self.classify_batch([text])[0]

    def classify_batch(self, texts: Sequence[str]) -> list[Classification]:
        started = time.perf_counter()
        probs = with_temperature(self.score(texts), self.meta.calibration.temperature).tolist()
        latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(texts))
        labels, fold = self.trie.labels, self.meta.calibration.reference_doubts
        departments = [j for j, label in enumerate(labels) if label != OUT_OF_SCOPE]
        answers = []
        for row in probs:
            best = max(departments, key=row.__getitem__)
            if OUT_OF_SCOPE in labels:  # learned: the class's own probability, as in-process
                none = row[labels.index(OUT_OF_SCOPE)]
                verdict = none > row[best]
            else:  # the doubt's place among the fold's (no hidden states, so no k-NN distance)
                none = bisect.bisect_left(fold, 1 - row[best]) / len(fold) if fold else 0.0
                verdict = bool(fold) and none >= UNFAMILIAR_QUANTILE
            answers.append(Classification(department=labels[best], confidence=float(row[best]),
                                          scores={labels[j]: float(row[j]) for j in departments},
                                          model_name=self.name, model_id=self.model_id, latency_ms=latency_ms,
                                          out_of_scope=float(none), none_of_these=verdict))
        return answers

    def score(self, texts: Sequence[str]) -> Any:
        """The label probabilities before temperature, (len(texts), labels), as `score_labels` gives them."""
        import torch

        if not self.trie.branches:
            return torch.ones(len(texts), 1)
        paths = [self.trie.paths[label] for label in self.trie.labels]
        per_call = max(1, MAX_PROMPTS // len(paths))
        seen: dict[tuple[int, tuple[int, ...]], dict[int, float]] = {}
        for start in range(0, len(texts), per_call):
            prompts = [prompt_ids(self.tokenizer, self.meta.prompt, t) for t in texts[start:start + per_call]]
            body = {"model": self.lora_name, "prompt": [p + list(path) for p in prompts for path in paths],
                    "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
            choices = sorted(self.client.call("/v1/completions", body)["choices"], key=lambda c: c["index"])
            for k, choice in enumerate(choices):
                i, path, n = start + k // len(paths), paths[k % len(paths)], len(prompts[k // len(paths)])
                for d in range(len(path)):  # entry n + d: log p(label token d | prompt, label tokens before it)
                    if path[:d] in self.trie.branches:
                        entry = choice["prompt_logprobs"][n + d][str(path[d])]
                        seen.setdefault((i, path[:d]), {})[path[d]] = entry["logprob"]
        log_branch = {}
        for key, logp in seen.items():  # restricted to the branch's children and renormalised, as `_record` does
            top = max(logp.values())
            norm = top + math.log(sum(math.exp(v - top) for v in logp.values()))
            log_branch[key] = {token: v - norm for token, v in logp.items()}
        return _combine(self.trie, len(texts), log_branch)


@contextmanager
def engine_candidate(client: EngineClient, tokenizer: Any, folder: Path, *, name: str,
                     model_id: int | None = None) -> Iterator[EngineScorer]:
    """For the gate: an adapter folder scored by the engine that would serve it, under a name of its own."""
    scorer = EngineScorer(client, tokenizer, check_adapter_dir(folder), name=name, folder=str(folder),
                          model_id=model_id, lora_name=f"switchboard-gate-{uuid.uuid4().hex[:8]}")
    client.load(scorer.lora_name, str(folder))
    try:
        yield scorer
    finally:
        client.unload(scorer.lora_name)


class EngineRouter:
    """`ActiveModelRouter`'s surface, served by the engine: polls the registry and switches adapters there."""

    def __init__(self, *, client: EngineClient, tokenizer: Any, base_model_name: str, lookup: ActiveLookup,
                 poll_seconds: float = 2.0) -> None:
        self._client, self._tokenizer = client, tokenizer
        self._served: EngineScorer | None = None
        self._model_id: int | None = None
        self._last_error: str | None = None
        self._shadow: EngineScorer | None = None
        self._watcher = RegistryWatcher(lookup, base_model_name=base_model_name, serving=lambda: self._model_id,
                                        load=self._load, poll_seconds=poll_seconds, where="the engine",
                                        follow_folder=True)  # a forget's new folder: reloaded from there
        self.swaps = 0

    @property
    def model_id(self) -> int | None:
        return self._model_id

    @property
    def labels(self) -> list[str]:
        return list(self._served.trie.labels) if self._served else []

    def refresh(self) -> bool:
        """Loads the active adapter into the engine if it changed; True when the switch happened."""
        return self._watcher.refresh()

    def _load(self, model_id: int, folder: str) -> SwapFailure | None:
        try:
            scorer = EngineScorer(self._client, self._tokenizer, check_adapter_dir(Path(folder)),
                                  lora_name=f"{SERVED_PREFIX}{model_id}", name=f"model {model_id}",
                                  model_id=model_id, folder=folder)
            self._client.load(scorer.lora_name, folder)
            scorer.classify("Is this adapter answering?")  # switch only once it answers
        except AdapterError as exc:
            return str(exc)
        except EngineError as exc:
            log.error("the inference engine refused model %s: %s", model_id, exc)
            return f"the inference engine refused it ({_public(exc)})"
        old, self._served, self._model_id = self._served, scorer, model_id
        self.swaps += 1
        log.info("the inference engine now serves model %s as %s", model_id, scorer.lora_name)
        if old is not None and old.lora_name != scorer.lora_name:  # the same model in a new folder keeps its name
            self._client.unload(old.lora_name)
        return None

    def classify(self, text: str) -> Classification:
        return self.classify_batch([text])[0]

    def classify_batch(self, texts: Sequence[str]) -> list[Classification]:
        scorer = self._served
        if scorer is None:
            raise NoActiveModel("no model is active yet: run `switchboard train` first")
        try:
            answers = scorer.classify_batch(texts)
        except EngineError as exc:
            self._last_error = _public(exc)
            if exc.status != 404:
                raise
            if scorer is self._served:  # the engine lost it (restarted): load it again
                self._client.load(scorer.lora_name, scorer.folder)
            answers = (self._served or scorer).classify_batch(texts)  # else it was swapped out meanwhile
        self._last_error = None
        return answers

    def classify_shadow(self, texts: Sequence[str], model_id: int, folder: str) -> list[Classification]:
        """The candidate in shadow, loaded into the engine under its own name beside the active adapter."""
        scorer = self._shadow
        if scorer is None or scorer.model_id != model_id:
            scorer = EngineScorer(self._client, self._tokenizer, check_adapter_dir(Path(folder)),
                                  lora_name=f"{SHADOW_PREFIX}{model_id}", name=f"candidate {model_id}",
                                  model_id=model_id, folder=folder)
            self._client.load(scorer.lora_name, folder)
            old, self._shadow = self._shadow, scorer
            if old is not None:
                self._client.unload(old.lora_name)
        try:
            return scorer.classify_batch(texts)
        except EngineError as exc:
            if exc.status != 404:
                raise
            self._client.load(scorer.lora_name, folder)  # the engine restarted and lost it
            return scorer.classify_batch(texts)

    def health(self) -> dict[str, Any]:
        """No address of the engine here: /healthz may be reachable from outside (Slack calls this port)."""
        reasons = [self._last_error] if self._last_error else []
        if problem := self._watcher.problem():
            reasons.append(problem)
        return {"status": "degraded" if reasons else "ok", "reasons": reasons, "backlog": 0,
                "active_model": self._model_id, "registry_model": self._watcher.registry_model}

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        self._watcher.stop()


def _public(error: EngineError) -> str:
    """What an engine failure is, without the engine's address (the log has that)."""
    return "the inference engine cannot be reached" if error.status is None else \
        f"the inference engine answered HTTP {error.status}"


def make_engine_router(inference_url: str, lookup: ActiveLookup, *, base_model: str, cache_dir: Path,
                       poll_seconds: float = 2.0) -> EngineRouter:
    """The bot's router when SWITCHBOARD_INFERENCE_URL is set: only the base model's tokenizer loads here."""
    from classifier.model.base_model import model_source
    from classifier.model.serving_model import LeanTokenizer

    source = Path(model_source(base_model, cache_dir))
    if (source / "tokenizer.json").is_file() and (source / "tokenizer_config.json").is_file():
        tokenizer: Any = LeanTokenizer(source)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source))
    return EngineRouter(client=EngineClient(inference_url), tokenizer=tokenizer,
                        base_model_name=base_model, lookup=lookup, poll_seconds=poll_seconds)
