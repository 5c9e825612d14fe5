"""The router a long-running process serves: always the registry's active model, swapped in place.

A background thread polls the registry pointer. When a promotion or rollback moves it, the old
adapter's update is taken out of the base weights and the new one's added (the base is never
loaded twice; see `classifier/model/lora_merge.py`). Requests and swaps run on the same single model
thread, so a swap happens between requests: none is dropped, none sees half a model.

A swap is all or nothing. The new adapter is checked against the base (files, module names,
factor shapes, finite values) before any weight is touched, and any exception half-way is undone.
A model that failed is not tried again while the registry still points at it: the current model
keeps serving, and `/healthz` and `/metrics` say "degraded: serving model N, registry says M:
reason" until the pointer moves (a rollback, or another promotion). The reason names no file path
(`/healthz` may be public); the log has the full text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.model.lora_merge import AdapterError, LoraDeltas, check_fits, read_lora, release_checkpoint, swap
from classifier.model.shadow_deltas import LowRankDifference
from classifier.routing.adapters import AdapterMeta, check_adapter_dir, read_bank, read_bank_labels
from classifier.routing.head import read_head
from classifier.routing.router import Classification, LoraRouter
from classifier.serving.public_text import without_paths
from core.errors import SwitchboardError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ActiveAdapter = tuple[int, str, str]  # model id, adapter folder, base model name
ActiveLookup = Callable[[], ActiveAdapter | None]


CLASSIFY_TIMEOUT_S = 30.0  # a caller waits this long for the model thread, then gets ModelTimeout
STALLED_AFTER_S = 30.0  # one request on the model thread this long: /healthz says degraded
MAX_BACKLOG = 64  # requests waiting for the model thread past which /healthz says degraded


class NoActiveModel(SwitchboardError):
    """Nothing is promoted yet: train a first model."""


class ModelTimeout(SwitchboardError):
    """The model thread did not answer in time (it hangs, or the backlog is too long)."""


SwapFailure = str  # why a model could not be loaded, as people read it
LOAD_GRACE_S = 30.0  # the registry ahead of the served model this long, with no failure known: degraded too


class RegistryWatcher:
    """Follows the registry's active pointer for a serving process, in-process or through an engine.

    `refresh` calls `load(model_id, folder)` when the pointer has moved to a model trained on the
    base this process serves; `load` returns None when it switched, or why it could not (the current
    model keeps serving). A model that failed is not tried again until the pointer moves. A daemon
    thread calls `refresh` every `poll_seconds`. With `follow_folder`, the served model's folder
    moving counts as a move too: forgetting rewrites a model's bank into a new folder
    (bot/model_forgetting.py), swapped in whole like any other.
    """

    def __init__(self, lookup: ActiveLookup, *, base_model_name: str, serving: Callable[[], int | None],
                 load: Callable[[int, str], SwapFailure | None], poll_seconds: float, where: str,
                 follow_folder: bool = False) -> None:
        self._lookup, self._base_model_name = lookup, base_model_name
        self._serving, self._load, self._where = serving, load, where
        self._poll_seconds = poll_seconds
        self._follow_folder = follow_folder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.registry_model: int | None = None  # what the registry pointed at when last read
        self._behind_since: float | None = None
        self._failed: dict[tuple[int, str], SwapFailure] = {}
        self._folder: str | None = None  # the folder of the model loaded last

    def refresh(self) -> bool:
        active, current = self._lookup(), self._serving()
        self.registry_model = active[0] if active else None
        if active is None or (active[0] == current and (not self._follow_folder or active[1] == self._folder)):
            self._behind_since = None
            self._failed.clear()
            return False
        model_id, folder, base_model = active
        key = (model_id, folder)
        self._failed = {key: self._failed[key]} if key in self._failed else {}
        if key in self._failed:
            return False
        self._behind_since = self._behind_since or time.monotonic()
        if base_model != self._base_model_name:
            failure: SwapFailure | None = f"it was trained on {base_model}, but {self._where} serves " \
                                          f"{self._base_model_name}"
        else:
            failure = self._load(model_id, folder)
        if failure is not None:
            self._failed[key] = without_paths(failure, folders=(folder,))  # the log below keeps the paths
            log.error("cannot serve model %s: %s; keeping model %s until the registry moves", model_id, failure,
                      current)
            return False
        self._behind_since, self._folder = None, folder
        return True

    def problem(self) -> str | None:
        """Why the served model is not the registry's, when it is not and should be by now."""
        current, wanted = self._serving(), self.registry_model
        failed = next((reason for (model_id, _), reason in self._failed.items() if model_id == wanted), None)
        if wanted is not None and wanted == current and failed is not None:
            return f"serving model {current} as it was before its files were rewritten: {failed}"
        if wanted is None or wanted == current:
            return None
        serving = "no model" if current is None else f"model {current}"
        if failed is not None:
            return f"serving {serving}, registry says {wanted}: {failed}"
        if self._behind_since is not None and time.monotonic() - self._behind_since > LOAD_GRACE_S:
            return f"serving {serving}, registry says {wanted}: not loaded after {LOAD_GRACE_S:.0f} s"
        return None

    def start(self) -> None:
        """Loads the active model now, then watches the registry in a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._watch, name="switchboard-hot-swap", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.refresh()
            except Exception:  # a locked database must not kill the watcher
                log.exception("hot swap check failed; still serving model %s", self._serving())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ActiveModelRouter:
    def __init__(
        self,
        *,
        base: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        base_model_name: str,
        lookup: ActiveLookup,
        poll_seconds: float = 2.0,
        timeout_s: float = CLASSIFY_TIMEOUT_S,
        stalled_after_s: float = STALLED_AFTER_S,
    ) -> None:
        self._base = base
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        # Every forward pass runs on this one thread. Called from a web server's many threads,
        # torch's OpenMP pool would be rebuilt for each caller and the idle teams spin against
        # the working one, which made a query half as slow again on 2 cores.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-model")
        self._deltas: LoraDeltas | None = None
        self._router: LoraRouter | None = None
        self._model_id: int | None = None
        self._watcher = RegistryWatcher(lookup, base_model_name=base_model_name, serving=lambda: self._model_id,
                                        load=self._load, poll_seconds=poll_seconds, where="this process",
                                        follow_folder=True)
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._running_since: float | None = None
        self.timeout_s, self._stalled_after_s = timeout_s, stalled_after_s
        self.swaps = 0
        self._shadow: tuple[tuple[int, str, int | None], LowRankDifference, LoraRouter] | None = None

    @property
    def model_id(self) -> int | None:
        return self._model_id

    def refresh(self) -> bool:
        """Loads the active adapter if it changed; True when a swap happened."""
        return self._watcher.refresh()

    def _load(self, model_id: int, folder: str) -> SwapFailure | None:
        try:
            meta = check_adapter_dir(Path(folder))
            extras = read_bank(Path(folder)), read_head(Path(folder)), read_bank_labels(Path(folder))
            deltas = read_lora(Path(folder))
            check_fits(self._base, deltas, source=folder)
        except AdapterError as exc:
            return str(exc)
        try:
            self._submit(self._locked_swap, model_id, deltas, meta, extras).result()
        except Exception as exc:
            log.exception("the swap to model %s failed and was undone", model_id)
            return f"the swap failed and was undone ({type(exc).__name__}: {exc})"
        log.info("now serving model %s", model_id)
        return None

    def _locked_swap(self, model_id: int, deltas: LoraDeltas, meta: AdapterMeta, extras: tuple[Any, Any, Any]) -> None:
        with self._lock:
            # Served merged into the base weights (one matmul per layer, not three) and taken out
            # again before the next swap, so the base never has to be loaded again.
            swap(self._base, old=self._deltas, new=deltas)
            try:
                router = LoraRouter(model=self._base, tokenizer=self._tokenizer, labels=meta.labels,
                                    prompt=meta.prompt, name=f"model {model_id}", model_id=model_id,
                                    cache_prefix=True, calibration=meta.calibration, bank=extras[0],
                                    head=extras[1], bank_labels=extras[2])
            except BaseException:
                swap(self._base, old=deltas, new=self._deltas)
                raise
            if self._deltas is None:
                release_checkpoint(self._base, deltas)
            self._deltas, self._router, self._model_id = deltas, router, model_id
            self.swaps += 1

    def classify(self, text: str) -> Classification:
        return self.classify_batch([text])[0]

    def classify_batch(self, texts: Sequence[str], *, batch_size: int = 32) -> list[Classification]:
        future = self._submit(self._locked_classify, texts, batch_size)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ModelTimeout(f"the model did not answer within {self.timeout_s:.0f} s "
                               f"({self._pending} requests waiting)") from None

    def classify_shadow(self, texts: Sequence[str], model_id: int, folder: str) -> list[Classification]:
        """The candidate `model_id` (adapter `folder`) classifies `texts` on the same base and model thread,
        its difference from the active adapter added by hooks (classifier/model/shadow_deltas.py)."""
        future = self._submit(self._locked_shadow, texts, model_id, folder)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ModelTimeout(f"the model did not answer within {self.timeout_s:.0f} s") from None

    def _locked_shadow(self, texts: Sequence[str], model_id: int, folder: str) -> list[Classification]:
        with self._lock:
            key = (model_id, folder, self._model_id)  # rebuilt when the active model (what the hooks undo) changes
            if self._shadow is None or self._shadow[0] != key:
                meta = check_adapter_dir(Path(folder))
                deltas = read_lora(Path(folder))
                check_fits(self._base, deltas, source=folder)
                difference = LowRankDifference(self._base, merged=self._deltas, candidate=deltas)
                with difference.applied():
                    router = LoraRouter(model=self._base, tokenizer=self._tokenizer, labels=meta.labels,
                                        prompt=meta.prompt, name=f"candidate {model_id}", model_id=model_id,
                                        cache_prefix=True, calibration=meta.calibration,
                                        bank=read_bank(Path(folder)), head=read_head(Path(folder)),
                                        bank_labels=read_bank_labels(Path(folder)))
                self._shadow = (key, difference, router)
            _, difference, router = self._shadow
            with difference.applied():
                return router.classify_batch(texts)

    def _submit(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queues `work` on the model thread, counted while it waits and timed while it runs."""
        def timed() -> Any:
            self._running_since = time.monotonic()
            try:
                return work(*args)
            finally:
                self._running_since = None
                self._count(-1)

        self._count(+1)
        future = self._model_thread.submit(timed)
        future.add_done_callback(lambda f: self._count(-1) if f.cancelled() else None)
        return future

    def _count(self, change: int) -> None:
        with self._pending_lock:
            self._pending += change

    def health(self) -> dict[str, Any]:
        """"ok", or "degraded" with the reasons: the model thread stuck on one request, a backlog, or the
        registry's model not served (it failed to load)."""
        reasons = []
        running = self._running_since
        if running is not None and time.monotonic() - running > self._stalled_after_s:
            reasons.append(f"the model thread has been on one request for {time.monotonic() - running:.0f} s")
        if self._pending > MAX_BACKLOG:
            reasons.append(f"{self._pending} requests wait for the model")
        if problem := self._watcher.problem():
            reasons.append(problem)
        return {"status": "degraded" if reasons else "ok", "reasons": reasons, "backlog": self._pending,
                "active_model": self._model_id, "registry_model": self._watcher.registry_model}

    def _locked_classify(self, texts: Sequence[str], batch_size: int) -> list[Classification]:
        with self._lock:
            if self._router is None:
                raise NoActiveModel("no model is active yet: run `switchboard train` first")
            return self._router.classify_batch(texts, batch_size=batch_size)

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return self._router.labels if self._router else []

    def start(self) -> None:
        """Loads the active model now, then watches the registry in a daemon thread."""
        self._watcher.start()

    def stop(self) -> None:
        self._watcher.stop()
        self._model_thread.shutdown(wait=True)
