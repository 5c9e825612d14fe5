"""Scores every label for a batch of prompts: the model can only ever answer a known label.

The labels' token sequences form a trie. At each node with more than one way on, the model's
next-token distribution is restricted to those ways and renormalised; a label's probability is
the product along its path. That is exactly constrained decoding, with a probability for every
label, and it needs one model pass per branching node (one in all when the first tokens differ).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

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


def score_labels(
    model: PreTrainedModel,
    trie: LabelTrie,
    prompts: list[list[int]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
) -> torch.Tensor:
    """Probabilities, shape (len(prompts), len(trie.labels)), each row summing to one."""
    import torch

    if not trie.branches:
        return torch.ones(len(prompts), 1)
    rows = [(i, prefix) for i in range(len(prompts)) for prefix in trie.branch_order]
    log_branch: dict[tuple[int, tuple[int, ...]], dict[int, float]] = {}
    decoder = model.get_decoder()
    head = model.get_output_embeddings().weight
    device = head.device
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            sequences = [prompts[i] + list(prefix) for i, prefix in chunk]
            length = max(map(len, sequences))
            input_ids = torch.full((len(chunk), length), pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), length), dtype=torch.long)
            for row, seq in enumerate(sequences):
                input_ids[row, : len(seq)] = torch.tensor(seq)
                attention[row, : len(seq)] = 1
            hidden = decoder(input_ids=input_ids.to(device), attention_mask=attention.to(device)).last_hidden_state
            last = hidden[torch.arange(len(chunk)), attention.sum(1).to(device) - 1]
            for row, (i, prefix) in enumerate(chunk):
                allowed = trie.branches[prefix]
                logits = last[row] @ head[allowed].T
                logp = torch.log_softmax(logits.float(), dim=-1).tolist()
                log_branch[(i, prefix)] = dict(zip(allowed, logp, strict=True))
    scores = torch.zeros(len(prompts), len(trie.labels))
    for i in range(len(prompts)):
        for j, label in enumerate(trie.labels):
            path = trie.paths[label]
            scores[i, j] = sum(
                log_branch[(i, path[:d])][path[d]] for d in range(len(path)) if path[:d] in trie.branches
            )
    return torch.softmax(scores, dim=-1)
