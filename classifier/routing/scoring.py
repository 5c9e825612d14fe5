"""Scores every label for a batch of prompts: the model can only ever answer a known label.

The labels' token sequences form a trie. At each node with more than one way on, the model's
next-token distribution is restricted to those ways and renormalised; a label's probability is
the product along its path. That is exactly constrained decoding, with a probability for every
label, and it needs one model pass per branching node (one in all when the first tokens differ).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class LabelTrie:
    def __init__(self, label_token_ids: dict[str, list[int]]) -> None:
        if not label_token_ids:
            raise ValueError("no labels to score")
        sequences = {tuple(ids) for ids in label_token_ids.values()}
        if len(sequences) != len(label_token_ids):
            raise ValueError("two labels share the same token sequence")
        self.labels = list(label_token_ids)
        self.paths = {label: tuple(ids) for label, ids in label_token_ids.items()}
        children: dict[tuple[int, ...], set[int]] = defaultdict(set)
        for ids in sequences:
            for depth in range(len(ids)):
                children[ids[:depth]].add(ids[depth])
        self.branches = {prefix: sorted(nxt) for prefix, nxt in children.items() if len(nxt) > 1}
        self.branch_order = sorted(self.branches, key=lambda p: (len(p), p))


@dataclass(frozen=True)
class SharedPrefix:
    """The key/value cache of the tokens every prompt starts with, computed once for fixed weights."""

    ids: tuple[int, ...]
    cache: Any  # a batch-of-one DynamicCache, copied for each use


def shared_prefix(model: PreTrainedModel, ids: list[int]) -> SharedPrefix | None:
    import torch

    if not ids:
        return None
    head = model.get_output_embeddings().weight
    with torch.inference_mode():
        out = model.get_decoder()(input_ids=torch.tensor([ids], device=head.device), use_cache=True)
    return SharedPrefix(tuple(ids), out.past_key_values)


@dataclass(frozen=True)
class LabelScores:
    """What one pass over the prompts yields.

    `probs`: (n, labels), rows summing to one. `hidden`: (n, width), the final hidden state of each
    prompt, the model's own view of the message (its distance to the training messages' states
    says how unusual a message is). `energy`: (n,), minus the log-sum-exp of the raw logits of the
    labels' first tokens (Liu et al. 2020): high when no label fits. `pooled`: (n, width) when asked
    for, else None: the final hidden states averaged over the prompt's tokens (after the shared prefix,
    when one is reused), another read of the message that `bench/few_shot.py` measures against `hidden`;
    nothing served reads it, so serving never computes it.
    """

    probs: torch.Tensor
    hidden: torch.Tensor
    energy: torch.Tensor
    pooled: torch.Tensor | None = None


def score_labels(
    model: PreTrainedModel,
    trie: LabelTrie,
    prompts: list[list[int]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    prefix: SharedPrefix | None = None,
) -> torch.Tensor:
    """Probabilities, shape (len(prompts), len(trie.labels)), each row summing to one."""
    return score_labels_detailed(model, trie, prompts, pad_token_id=pad_token_id, batch_size=batch_size,
                                 prefix=prefix).probs


def score_labels_detailed(
    model: PreTrainedModel,
    trie: LabelTrie,
    prompts: list[list[int]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    prefix: SharedPrefix | None = None,
    pool: bool = False,
) -> LabelScores:
    """The labels' probabilities with each prompt's hidden state and energy (with `pool`, its pooled state too).

    Each prompt is read once. Prompts are batched by length, so little is padding; when a
    branch lies deeper than the first label token, the prompts' key/value cache is reused and
    only the labels' own tokens are run, all deeper branches of a prompt in one batch.
    With `prefix`, the tokens every prompt starts with are not run again: their cache is reused.
    `score_labels_plain` is the same computation without these shortcuts, kept as the reference.
    """
    import torch

    deeper = [prefix for prefix in trie.branch_order if prefix]
    per_batch = max(1, batch_size // (1 + len(deeper)))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    decoder = model.get_decoder()
    head = model.get_output_embeddings().weight
    log_branch: dict[tuple[int, tuple[int, ...]], dict[int, float]] = {}
    hidden = torch.zeros(len(prompts), head.shape[1])
    pooled = torch.zeros(len(prompts), head.shape[1]) if pool else None
    energy = torch.zeros(len(prompts))
    first_tokens = sorted({path[0] for path in trie.paths.values()})
    with torch.inference_mode():
        for start in range(0, len(order), per_batch):
            chunk = order[start : start + per_batch]
            out, attention, lengths = _run_prompts(decoder, [prompts[i] for i in chunk], prefix, pad_token_id,
                                                   head.device, use_cache=bool(deeper))
            last = out.last_hidden_state[torch.arange(len(chunk), device=head.device), lengths - 1]
            hidden[chunk] = last.float().cpu()
            if pooled is not None:
                own = (torch.arange(out.last_hidden_state.shape[1], device=head.device) < lengths.unsqueeze(1))
                pooled[chunk] = ((out.last_hidden_state * own.unsqueeze(2)).sum(1) / lengths.unsqueeze(1)).float().cpu()
            energy[chunk] = -torch.logsumexp((last @ head[first_tokens].T).float(), dim=-1).cpu()
            if () in trie.branches:  # else every label starts with the same token
                _record(log_branch, trie, head, [(i, ()) for i in chunk], last)
            if deeper:
                _score_deeper(decoder, trie, head, deeper, chunk, out.past_key_values, attention, log_branch,
                              pad_token_id)
    probs = _combine(trie, len(prompts), log_branch) if trie.branches else torch.ones(len(prompts), 1)
    return LabelScores(probs, hidden, energy, pooled)


def _run_prompts(decoder, prompts, prefix, pad_token_id, device, *, use_cache):  # type: ignore[no-untyped-def]
    """One forward over a batch of prompts, on top of the shared prefix's cache when there is one.

    Returns the output, the attention mask over everything in the cache, and each prompt's
    length in the output (which holds only the tokens run now).
    """
    import torch

    n = len(prefix.ids) if prefix is not None and all(tuple(p[: len(prefix.ids)]) == prefix.ids for p in prompts) else 0
    input_ids, attention = _right_padded([p[n:] for p in prompts], pad_token_id, device)
    lengths = attention.sum(1)
    if n == 0:
        return decoder(input_ids=input_ids, attention_mask=attention, use_cache=use_cache), attention, lengths
    cache = _repeated(prefix.cache, len(prompts))  # type: ignore[union-attr]
    full = torch.cat([torch.ones((len(prompts), n), dtype=attention.dtype, device=device), attention], dim=1)
    positions = n + torch.arange(input_ids.shape[1], device=device).unsqueeze(0).expand(len(prompts), -1)
    out = decoder(input_ids=input_ids, attention_mask=full, position_ids=positions, past_key_values=cache,
                  use_cache=use_cache)
    return out, full, lengths


def _score_deeper(decoder, trie, head, deeper, chunk, cache, attention, log_branch, pad_token_id):  # type: ignore[no-untyped-def]
    """Hidden states after each deeper branch prefix, on top of the prompts' cache (one row per pair)."""
    import torch

    k, depth = len(deeper), max(map(len, deeper))
    cache = _repeated(cache, k, copy_first=False)
    rows = [(i, prefix) for i in chunk for prefix in deeper]
    lengths = attention.sum(1).repeat_interleave(k)
    ids = torch.full((len(rows), depth), pad_token_id, dtype=torch.long)
    new_mask = torch.zeros((len(rows), depth), dtype=torch.long)
    for row, (_, prefix) in enumerate(rows):
        ids[row, : len(prefix)] = torch.tensor(prefix)
        new_mask[row, : len(prefix)] = 1
    device = head.device
    mask = torch.cat([attention.repeat_interleave(k, dim=0), new_mask.to(device)], dim=1)
    positions = lengths.unsqueeze(1) + torch.arange(depth, device=device).unsqueeze(0)
    out = decoder(input_ids=ids.to(device), attention_mask=mask, position_ids=positions, past_key_values=cache,
                  use_cache=False)
    ends = torch.tensor([len(prefix) - 1 for _, prefix in rows], device=device)
    _record(log_branch, trie, head, rows, out.last_hidden_state[torch.arange(len(rows), device=device), ends])


def _repeated(cache: Any, n: int, *, copy_first: bool = True) -> Any:
    """The cache with each row repeated n times. The lean model's cache does this without copying
    first; transformers' `DynamicCache` repeats in place, so a shared one is copied before."""
    if hasattr(cache, "repeated"):
        return cache.repeated(n)
    cache = copy.deepcopy(cache) if copy_first else cache
    cache.batch_repeat_interleave(n)
    return cache


def _right_padded(sequences: list[list[int]], pad_token_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    import torch

    length = max(map(len, sequences))
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
    return input_ids.to(device), attention.to(device)


def _record(log_branch, trie, head, rows, hidden) -> None:  # type: ignore[no-untyped-def]
    """Log-probabilities of each allowed next token, only the head rows of those tokens computed."""
    import torch

    for row, (i, prefix) in enumerate(rows):
        allowed = trie.branches[prefix]
        logp = torch.log_softmax((hidden[row] @ head[allowed].T).float(), dim=-1).tolist()
        log_branch[(i, prefix)] = dict(zip(allowed, logp, strict=True))


def _combine(trie: LabelTrie, n: int, log_branch: dict[tuple[int, tuple[int, ...]], dict[int, float]]) -> torch.Tensor:
    import torch

    scores = torch.zeros(n, len(trie.labels))
    for i in range(n):
        for j, label in enumerate(trie.labels):
            path = trie.paths[label]
            scores[i, j] = sum(
                log_branch[(i, path[:d])][path[d]] for d in range(len(path)) if path[:d] in trie.branches
            )
    return torch.softmax(scores, dim=-1)


def score_labels_plain(
    model: PreTrainedModel, trie: LabelTrie, prompts: list[list[int]], *, pad_token_id: int
) -> torch.Tensor:
    """The reference: every (prompt, branch) pair run from scratch, one at a time, no cache, no padding."""
    import torch

    if not trie.branches:
        return torch.ones(len(prompts), 1)
    decoder = model.get_decoder()
    head = model.get_output_embeddings().weight
    log_branch: dict[tuple[int, tuple[int, ...]], dict[int, float]] = {}
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):
            for prefix in trie.branch_order:
                ids = torch.tensor([prompt + list(prefix)], device=head.device)
                hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state[:, -1]
                _record(log_branch, trie, head, [(i, prefix)], hidden)
    return _combine(trie, len(prompts), log_branch)
