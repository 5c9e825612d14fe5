"""A Llama forward pass for serving, without transformers: what `classify` and `serve` run.

Serving needs only the decoder's hidden states, with and without a key/value cache. Importing
transformers' Llama took about half of a serving process's start, and its generic forward spends a
sizeable share of a single query in small ops around the matrix multiplies (docs/speed.md). This module holds the same
weights under the same names (so a LoRA merge finds them) and computes the same function: the
scoring test checks its probabilities against transformers' on the BANKING77 test queries.

It covers what Llama-family checkpoints use: grouped-query attention, RMSNorm, SiLU MLP, tied or
untied head, and default or llama3 rotary scaling. `unsupported_reason` names anything else, and
the loader then falls back to transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ROPE_TYPES = ("default", "llama3")
KeyValues = tuple[torch.Tensor, torch.Tensor]


def unsupported_reason(config: dict[str, Any]) -> str | None:
    """Why this config cannot run here, or None when it can."""
    rope = _rope_parameters(config)
    checks = {
        "model_type is not llama": config.get("model_type") != "llama",
        "attention or MLP bias": bool(config.get("attention_bias") or config.get("mlp_bias")),
        "activation is not SiLU": config.get("hidden_act", "silu") != "silu",
        f"rotary type {rope.get('rope_type')!r}": rope.get("rope_type", "default") not in _ROPE_TYPES,
        "partial rotary": rope.get("partial_rotary_factor", 1.0) != 1.0,
        "tensor-parallel pretraining": config.get("pretraining_tp", 1) != 1,
    }
    return next((reason for reason, failed in checks.items() if failed), None)


@dataclass(frozen=True)
class KVCache:
    """Per layer, keys and values of shape (batch, kv heads, tokens, head dim). Never changed in place."""

    layers: tuple[KeyValues, ...]

    def repeated(self, n: int) -> KVCache:
        return KVCache(tuple((k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.layers))

    def get_seq_length(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0


@dataclass(frozen=True)
class DecoderOutput:
    last_hidden_state: torch.Tensor
    past_key_values: KVCache | None


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                past: KeyValues | None) -> tuple[torch.Tensor, KeyValues]:
        b, s, _ = x.shape
        q = _rotate(self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = _rotate(self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5,
                                             enable_gqa=self.heads != self.kv_heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: dict[str, Any], head_dim: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], head_dim)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c["hidden_size"], c["intermediate_size"])

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                past: KeyValues | None) -> tuple[torch.Tensor, KeyValues]:
        attended, kv = self.self_attn(self.input_layernorm(h), cos, sin, mask, past)
        h = h + attended
        return h + self.mlp(self.post_attention_layernorm(h)), kv


class Decoder(nn.Module):
    """The subset of transformers' `LlamaModel.forward` that scoring calls, with the same arguments."""

    inv_freq: torch.Tensor

    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c, head_dim) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.register_buffer("inv_freq", _inv_freq(c, head_dim), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool = False) -> DecoderOutput:
        b, s = input_ids.shape
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        device = input_ids.device
        if position_ids is None:
            position_ids = (past_len + torch.arange(s, device=device)).unsqueeze(0).expand(b, -1)
        h = self.embed_tokens(input_ids)
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(h.dtype).unsqueeze(1), emb.sin().to(h.dtype).unsqueeze(1)
        mask = _mask(attention_mask, b, s, past_len, device)
        cache = []
        for i, layer in enumerate(self.layers):
            h, kv = layer(h, cos, sin, mask, past_key_values.layers[i] if past_key_values is not None else None)
            cache.append(kv)
        return DecoderOutput(self.norm(h), KVCache(tuple(cache)) if use_cache else None)


class LeanLlama(nn.Module):
    """Parameter names match `LlamaForCausalLM`'s, so its safetensors load as they are."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        if reason := unsupported_reason(config):
            raise ValueError(f"lean Llama cannot run this model: {reason}")
        self.config = config
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config["hidden_size"], config["vocab_size"], bias=False)
        if config.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    @classmethod
    def from_weights(cls, config: dict[str, Any], weights: dict[str, torch.Tensor]) -> LeanLlama:
        """Built on the meta device and given the checkpoint's tensors: no time spent on random init."""
        with torch.device("meta"):
            model = cls(config)
        if config.get("tie_word_embeddings", False):
            weights = {**weights, "lm_head.weight": weights["model.embed_tokens.weight"]}
        model.load_state_dict(weights, strict=True, assign=True)
        if config.get("tie_word_embeddings", False):
            model.lm_head.weight = model.model.embed_tokens.weight
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        model.model.register_buffer("inv_freq", _inv_freq(config, head_dim), persistent=False)
        return model

    def placed(self, device: str | torch.device, dtype: torch.dtype) -> LeanLlama:
        """Moved and cast for serving; the rotary frequencies stay float32, as transformers keeps them."""
        inv_freq = self.model.inv_freq.float()
        self.to(device=device, dtype=dtype)
        self.model.inv_freq = inv_freq.to(device)
        return self.eval()

    def get_decoder(self) -> Decoder:
        return self.model

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _mask(attention_mask: torch.Tensor | None, b: int, s: int, past_len: int, device: torch.device) -> torch.Tensor:
    """(batch, 1, new tokens, all tokens), True where a query may attend: causal by cache index,
    never to padding."""
    total = past_len + s
    causal = torch.arange(total, device=device)[None, :] <= (past_len + torch.arange(s, device=device))[:, None]
    if attention_mask is None:
        return causal[None, None].expand(b, 1, s, total)
    return causal[None, None] & attention_mask[:, None, None, :total].bool()


def _rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    rope.setdefault("rope_type", rope.get("type", "default"))
    return rope


def _inv_freq(config: dict[str, Any], head_dim: int) -> torch.Tensor:
    """Rotary inverse frequencies, as transformers computes them (llama3: Llama 3.1/3.2's long-context scaling)."""
    rope = _rope_parameters(config)
    inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if rope["rope_type"] != "llama3":
        return inv_freq
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_context = rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_context / high) * ~(wavelen > old_context / low)
    return torch.where(medium, smoothed, scaled)
