"""A loopback vLLM OpenAI-compatible server: the endpoints Switchboard's inference engine uses, nothing more.

It answers as `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve BASE --enable-lora` does in vLLM 0.34.0
(classifier/serving/engine_router.py's VLLM_VERSION), with shapes read from vLLM's source:

* `POST /v1/load_lora_adapter` {lora_name, lora_path, load_inplace}: plain text 200 "Success: LoRA adapter
  'NAME' added successfully." (no Content-Type: a bare starlette Response); 400 InvalidUserInput for an
  empty field, a base model's name or a name loaded already; 404 NotFoundError "Loading lora NAME failed:
  No adapter found for PATH" when the folder has no adapter_config.json; 500 InternalServerError for a rank
  above --max-lora-rank (vllm/entrypoints/openai/models/serving.py, vllm/lora/worker_manager.py,
  vllm/lora/peft_helper.py). Absent (404 "Not Found") without runtime LoRA updating.
* `POST /v1/unload_lora_adapter` {lora_name}: "Success: LoRA adapter 'NAME' removed successfully."; 404
  NotFoundError "The lora adapter 'NAME' cannot be found.".
* `GET /v1/models`: a ModelList, the base model's card then one per loaded adapter (root: its path,
  parent: the base).
* `POST /v1/completions` (vllm/entrypoints/openai/completion/): `prompt` as text, token ids or lists of
  either, one choice per prompt; greedy `max_tokens` tokens; `prompt_logprobs` k: a list per choice, None
  first, then for each prompt token {token id: {logprob, rank, decoded_token}} holding that token and the
  top k; `logprobs` k: OpenAI's {text_offset, token_logprobs, tokens, top_logprobs} for the output;
  `echo`. An unknown `model` is a 404 NotFoundError with param "model".

Errors are vLLM's ErrorResponse: {"error": {"message", "type", "param", "code"}}, status = code.
Log-probabilities are real: the base model and each adapter (PEFT, merged into a copy of the base) run
in transformers, independently of Switchboard's own scorer. Every request is kept in `calls`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VLLM_VERSION = "0.34.0"


def error(code: int, message: str, kind: str, param: str | None = None) -> tuple[int, Any]:
    return code, {"error": {"message": message, "type": kind, "param": param, "code": code}}


class FakeVLLM:
    """`with FakeVLLM(base_model_folder) as engine:` then point Switchboard at `engine.url`."""

    def __init__(self, base_model: str | Path, *, served_model_name: str | None = None, max_lora_rank: int = 16,
                 runtime_lora_updating: bool = True, max_model_len: int = 256, port: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_path = str(base_model)
        self.name = served_model_name or self.base_path
        self.max_lora_rank, self.runtime_lora_updating, self.max_model_len = max_lora_rank, runtime_lora_updating, \
            max_model_len
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_path)
        self.base = AutoModelForCausalLM.from_pretrained(self.base_path, dtype=torch.float32).eval()
        self.loras: dict[str, tuple[str, Any]] = {}  # name -> (path, merged model)
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, body)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeVLLM:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def restart(self) -> None:
        """What a vLLM restart does to runtime-loaded adapters: forgets them."""
        with self._lock:
            self.loras.clear()

    def posted(self, path: str) -> list[Any]:
        return [body for method, p, body in self.calls if method == "POST" and p == path]

    # --- endpoints -------------------------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        def card(name: str, root: str, parent: str | None, max_len: int | None) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": root,
                    "parent": parent, "max_model_len": max_len,
                    "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                                    "created": int(time.time()), "allow_create_engine": False,
                                    "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": False,
                                    "allow_view": True, "allow_fine_tuning": False, "organization": "*",
                                    "group": None, "is_blocking": False}]}

        with self._lock:
            loras = [card(name, path, self.name, None) for name, (path, _) in self.loras.items()]
        return {"object": "list", "data": [card(self.name, self.base_path, None, self.max_model_len), *loras]}

    def load_lora(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name == self.name:
            return error(400, f"The lora adapter '{name}' conflicts with a served base model.", "InvalidUserInput")
        with self._lock:
            if not body.get("load_inplace") and name in self.loras:
                return error(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                                  "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        config_file = Path(path) / "adapter_config.json"
        if not config_file.is_file():
            return error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        try:
            rank = int(json.loads(config_file.read_text())["r"])
            if rank > self.max_lora_rank:
                raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")
            from peft import PeftModel

            merged = PeftModel.from_pretrained(copy.deepcopy(self.base), path).merge_and_unload().eval()
        except Exception as exc:
            return error(500, str(exc), "InternalServerError")
        with self._lock:
            self.loras[name] = (path, merged)
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload_lora(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("lora_name")
        if not name:
            return error(400, "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        with self._lock:
            if name not in self.loras:
                return error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
            del self.loras[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def completions(self, body: dict[str, Any]) -> tuple[int, Any]:
        model_name = body.get("model")
        with self._lock:
            lora = self.loras.get(model_name) if model_name else None
        if model_name and model_name != self.name and lora is None:
            return error(404, f"The model `{model_name}` does not exist. Valid aliases: {self.name}.",
                         "NotFoundError", "model")
        model = lora[1] if lora else self.base
        prompts = body.get("prompt")
        if prompts is None or prompts == "" or prompts == []:
            return error(400, "Either prompt or prompt_embeds must be provided and non-empty.", "BadRequestError",
                         "prompt")
        if isinstance(prompts, str) or (isinstance(prompts, list) and isinstance(prompts[0], int)):
            prompts = [prompts]
        for key in ("prompt_logprobs", "logprobs"):
            if body.get(key) is not None and body[key] < 0 and body[key] != -1:
                return error(400, f"`{key}` must be a positive value or -1. (parameter={key}, value={body[key]})",
                             "BadRequestError", key)
        max_tokens = 16 if body.get("max_tokens") is None else body["max_tokens"]
        if max_tokens == 0 and not body.get("echo"):
            return error(400, "max_tokens must be at least 1, got 0.", "BadRequestError")
        all_ids = [self.tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
        if any(len(ids) + max_tokens > self.max_model_len for ids in all_ids):
            return error(400, f"This model's maximum context length is {self.max_model_len} tokens.",
                         "BadRequestError")
        choices: list[dict[str, Any]] = []
        for start in range(0, len(all_ids), 8):  # a few prompts a forward: logits are (prompts, tokens, vocab)
            for ids, sequence, logp in self._generate(model, all_ids[start:start + 8], max_tokens):
                text = prompts[len(choices)] if isinstance(prompts[len(choices)], str) else None
                choices.append(self._choice(ids, sequence, logp, body, len(choices), text))
        prompt_tokens = sum(map(len, all_ids))
        completion_tokens = sum(len(c.pop("_generated")) for c in choices)
        return 200, {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                     "model": model_name or self.name, "choices": choices, "service_tier": None,
                     "system_fingerprint": None, "kv_transfer_params": None, "ec_transfer_params": None,
                     "metrics": None,
                     "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                               "completion_tokens": completion_tokens, "prompt_tokens_details": None}}

    def _generate(self, model: Any, prompts: list[list[int]], max_tokens: int) -> list[tuple[list[int], Any, Any]]:
        """Greedy steps over right-padded prompts; each prompt with its sequence and per-position log-probs."""
        import torch

        sequences = [list(ids) for ids in prompts]
        with self._lock, torch.inference_mode():
            for _ in range(max(1, max_tokens)):  # vLLM runs one step even for echo with max_tokens 0
                lengths = [len(seq) for seq in sequences]
                width = max(lengths)
                ids = torch.tensor([seq + [0] * (width - len(seq)) for seq in sequences])
                mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
                logits = model(input_ids=ids, attention_mask=mask).logits
                for row, seq in enumerate(sequences):
                    seq.append(int(logits[row, lengths[row] - 1].argmax()))
        if max_tokens == 0:
            for seq in sequences:
                seq.pop()
        return [(list(ids), seq, torch.log_softmax(logits[row, : lengths[row]].float(), dim=-1))
                for row, (ids, seq) in enumerate(zip(prompts, sequences, strict=True))]

    def _choice(self, ids: list[int], sequence: list[int], logp: Any, body: dict[str, Any], index: int,
                prompt_text: str | None) -> dict[str, Any]:
        generated = sequence[len(ids):]
        entries = [None, *(self._entry(logp[t - 1], sequence[t], body.get("prompt_logprobs") or 0)
                           for t in range(1, len(ids)))] if body.get("prompt_logprobs") is not None else None
        text = self._decode(generated)
        logprobs: dict[str, list[Any]] | None = None
        if body.get("logprobs") is not None:
            shown = range(0 if body.get("echo") else len(ids), len(sequence))
            logprobs = {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
            offset = 0
            for t in shown:
                entry = self._entry(logp[t - 1], sequence[t], body["logprobs"]) if t > 0 else None
                token = self._decode([sequence[t]])
                logprobs["text_offset"].append(offset)
                logprobs["tokens"].append(token)
                logprobs["token_logprobs"].append(None if entry is None else entry[str(sequence[t])]["logprob"])
                logprobs["top_logprobs"].append(None if entry is None else
                                                {e["decoded_token"]: e["logprob"] for e in entry.values()})
                offset += len(token)
        if body.get("echo"):
            text = (self._decode(ids) if prompt_text is None else prompt_text) + text
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": "length", "stop_reason": None,
                "token_ids": None, "prompt_logprobs": entries, "prompt_token_ids": None, "routed_experts": None,
                "weight_versions": None, "_generated": generated}

    def _entry(self, logp: Any, token: int, k: int) -> dict[str, Any]:
        """The token's own log-probability and rank, then the top k (all with -1), as vLLM's Logprob dicts."""
        def item(t: int, rank: int) -> tuple[str, dict[str, Any]]:
            return str(t), {"logprob": max(float(logp[t]), -9999.0), "rank": rank,
                            "decoded_token": self._decode([t])}

        top = logp.argsort(descending=True)[: len(logp) if k == -1 else k].tolist()
        return dict([item(token, int((logp > logp[token]).sum()) + 1), *(item(t, r + 1) for r, t in enumerate(top))])

    def _decode(self, ids: list[int]) -> str:
        """One sequence's text (transformers types `decode` for a batch of sequences too)."""
        text = self.tokenizer.decode(ids)
        assert isinstance(text, str)
        return text

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.calls.append(("GET", self.path, None))
                if self.path == "/v1/models":
                    self._send(200, fake.models())
                else:
                    self._send(*error(404, "Not Found", "Not Found"))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                routes = {"/v1/completions": fake.completions}
                if fake.runtime_lora_updating:
                    routes |= {"/v1/load_lora_adapter": fake.load_lora, "/v1/unload_lora_adapter": fake.unload_lora}
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake.calls.append(("POST", self.path, body))
                if self.path not in routes:
                    self._send(*error(404, "Not Found", "Not Found"))
                elif self.headers.get_content_type() != "application/json":
                    self._send(*error(400, "Unsupported Media Type: Only 'application/json' is allowed",
                                      "BadRequestError"))
                elif not isinstance(body, dict):
                    self._send(*error(400, "JSON decode error", "BadRequestError"))
                else:
                    self._send(*routes[self.path](body))

            def _send(self, status: int, payload: Any) -> None:
                text = isinstance(payload, str)  # vLLM's Response(content=str): no Content-Type header
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(status)
                if not text:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


def main() -> None:
    """`python fakes/vllm_api.py [serve] BASE --port N [vllm's other flags]`: the fake as a process, taking
    the command line `vllm serve` takes, so a test written for the real server runs against it too."""
    import argparse
    import os

    parser = argparse.ArgumentParser()
    parser.add_argument("base", nargs="+")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-lora-rank", type=int, default=16)
    args, _ = parser.parse_known_args()
    runtime = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0").strip().lower() in ("1", "true")
    fake = FakeVLLM(args.base[-1], max_lora_rank=args.max_lora_rank, runtime_lora_updating=runtime, port=args.port)
    fake._server.serve_forever(0.05)


if __name__ == "__main__":
    main()
