"""The EGA-V2 generator: an encoder over the user's history, a decoder that emits the next
item's POI semantic ID, and a multi-token-prediction (MTP) module that emits its creative's ID
conditioned on that POI (EGA-V2 section 3.2), nanoGPT-style and small.

Tokens: an item is its POI semantic ID (Lp codes: C levels and a disambiguation code) and, for
an ad, its creative's ID (Lc codes); an organic item's creative ID is the tokenizers' reserved
"no creative" ID (the last index of every level). Each item is one decoder position; the codes
of the next item are predicted level by level with heads that are linear in the decoder state h:

    logit_l(c | h, prefix) = (h + sum_{l' < l} U_l'[code_l']) . E_l[c]

so the prefix term (U . E) is a per-item constant that constrained decoding computes once per
request, and one decoder step per item serves every code level: beam search runs K decoder
steps with a KV cache (`DecoderCache`), never re-encoding the prefix.

"No MTP" ablation (`mtp = False`): the creative head reads h alone, not the chosen POI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GeneratorConfig:
    poi_levels: int  # Lp: C POI code levels + 1 disambiguation level
    poi_vocab: int  # codes per POI level (max of W and the largest disambiguation rank + 1)
    creative_levels: int  # Lc
    creative_vocab: int  # codes per creative level, the "no creative" code included
    feature_dim: int  # observed POI embedding size (tokenizer.poi_embeddings)
    user_dim: int  # observed user interest size
    max_items: int  # K, the list length
    d_model: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    mtp: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over the decoded items; a cache holds past keys and values."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, heads, T, d / heads]
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """x [B, T, d]; with a cache, x holds only the new positions (T = 1 when decoding)."""
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        causal = cache is None or "k" not in cache
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and q.shape[2] > 1)
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class CrossAttention(nn.Module):
    """Attention from the decoded items to the encoded history. The history's keys and values
    are projected once per request and shared by its rows: by broadcasting when rows are
    request-major with as many per request (teacher forcing), else by the request of each row
    (`request_of`, beam search, whose rows are partial lists of varying count per request)."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_key_value(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [B, T, d] -> keys and values [B, heads, T, d / heads]."""
        b, t, d = memory.shape
        k, v = self.key_value(memory).view(b, t, 2, self.heads, d // self.heads).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        key_value: tuple[torch.Tensor, torch.Tensor],
        request_of: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [rows, L, d] -> [rows, L, d]: rows request-major, as many per request (B * S for
        S beams), or each row's request given by request_of [rows] (non-decreasing: a request's
        rows contiguous, as beam search keeps them)."""
        k, v = key_value  # [B, h, T, dh]
        batch, heads, _, head_dim = k.shape
        rows, length, d = x.shape
        q = self.query(x)
        if request_of is None:
            q = q.view(batch, rows // batch, length, heads, head_dim)
        else:  # rows of a request are contiguous: lay them out [B, most rows, ...], padded
            count = torch.bincount(request_of, minlength=batch)
            place = torch.arange(rows, device=x.device) - (count.cumsum(0) - count)[request_of]
            padded = q.new_zeros((batch, int(count.max()), length, d))
            q = padded.index_put((request_of, place), q).view(batch, -1, length, heads, head_dim)
        weights = torch.einsum("bslhd,bhtd->bslht", q, k) / math.sqrt(head_dim)
        y = torch.einsum("bslht,bhtd->bslhd", weights.softmax(dim=-1), v)
        if request_of is not None:
            y = y.reshape(batch, -1, length, d)[request_of, place]
        return self.out(y.reshape(rows, length, d))


class DecoderBlock(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the history, MLP."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attention = CausalSelfAttention(d_model, heads)
        self.cross_attention = CrossAttention(d_model, heads)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple,
        cache: dict | None = None,
        request_of: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attention(self.norm1(x), cache)
        x = x + self.cross_attention(self.norm2(x), memory_kv, request_of)
        return x + self.mlp(self.norm3(x))


@dataclass
class DecoderCache:
    """Per-layer keys and values of the decoded prefix (per row) and of the encoded history
    (per request, shared by the request's rows, `request_of` [rows])."""

    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]
    layers: list[dict]
    request_of: torch.Tensor
    position: int = 0

    def reorder(self, index: torch.Tensor) -> DecoderCache:
        """Rows `index` [rows'] of the cache (beam search's parents; repeats allowed)."""
        layers = [{k: v[index] for k, v in layer.items()} for layer in self.layers]
        return DecoderCache(self.memory_kv, layers, self.request_of[index], self.position)


def level_lookup(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """table [L, V, d] at codes [..., L] (code of level l read from table[l]) -> [..., L, d].

    An embedding lookup on the flattened table: its backward is a fast dense scatter, where
    advanced indexing's is a slow sort-based accumulate on the CPU."""
    levels, vocab, _ = table.shape
    offsets = torch.arange(levels, device=codes.device) * vocab
    return F.embedding(codes + offsets, table.reshape(levels * vocab, -1))


class CodeHeads(nn.Module):
    """Level-by-level code logits, linear in the state: (h + prefix) . E_l[c]."""

    def __init__(self, levels: int, vocab: int, d_model: int):
        super().__init__()
        self.code_embedding = nn.Parameter(torch.randn(levels, vocab, d_model) / math.sqrt(d_model))
        self.prefix_embedding = nn.Parameter(torch.zeros(levels, vocab, d_model))

    def prefix_state(self, codes: torch.Tensor) -> torch.Tensor:
        """sum_{l' < l} U_l'[code_l'] for every level l: codes [..., L] -> [..., L, d]."""
        per_level = level_lookup(self.prefix_embedding, codes)  # [..., L, d]
        return torch.cumsum(per_level, dim=-2) - per_level

    def code_bias(self, codes: torch.Tensor) -> torch.Tensor:
        """prefix . E_l[code_l]: the per-item constant of its own codes [..., L]."""
        own = level_lookup(self.code_embedding, codes)  # [..., L, d]
        return (self.prefix_state(codes) * own).sum(-1)

    def own_logits(
        self, state: torch.Tensor, codes: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """The logit of each code of `codes` [E, ..., L] at its level, for states [E, d]: the
        state's logits of every code of every level, gathered, plus bias = code_bias(codes)
        (computed once per item by the caller; cheaper than a dot product per item)."""
        every = torch.einsum("ed,lvd->elv", state, self.code_embedding)  # [E, L, V]
        flat = codes.reshape(codes.shape[0], -1, codes.shape[-1])  # [E, n, L]
        own = every.gather(2, flat.transpose(1, 2)).transpose(1, 2)  # [E, n, L]
        return own.reshape(codes.shape) + bias

    def logits(self, state: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Full logits [..., L, V] under teacher forcing: state [..., d], true codes [..., L]."""
        query = state.unsqueeze(-2) + self.prefix_state(codes)  # [..., L, d]
        return torch.einsum("...ld,lvd->...lv", query, self.code_embedding)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.poi_tokens = nn.Parameter(torch.randn(config.poi_levels, config.poi_vocab, d) * 0.02)
        self.creative_tokens = nn.Parameter(
            torch.randn(config.creative_levels, config.creative_vocab, d) * 0.02
        )
        self.feature_projection = nn.Linear(config.feature_dim, d)
        self.user_projection = nn.Linear(config.user_dim, d)
        self.position = nn.Parameter(torch.zeros(config.max_items + 1, d))
        self.start = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, config.encoder_layers, enable_nested_tensor=False
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(d, config.heads) for _ in range(config.decoder_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        self.poi_heads = CodeHeads(config.poi_levels, config.poi_vocab, d)
        self.creative_heads = CodeHeads(config.creative_levels, config.creative_vocab, d)
        self.mtp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    # -- embeddings -------------------------------------------------------------------------
    def poi_embedding(self, poi_codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[..., Lp] codes and [..., F] observed features -> [..., d]."""
        return level_lookup(self.poi_tokens, poi_codes).sum(-2) + self.feature_projection(features)

    def item_embedding(self, poi_codes, features, creative_codes) -> torch.Tensor:
        """An item token: its POI embedding plus its creative's codes (organic: reserved)."""
        creative = level_lookup(self.creative_tokens, creative_codes).sum(-2)
        return self.poi_embedding(poi_codes, features) + creative

    # -- encoder / decoder --------------------------------------------------------------------
    def encode(self, history_codes, history_features, user_features) -> torch.Tensor:
        """History [B, H, Lp] codes and [B, H, F] features, user [B, U] -> memory [B, H + 1, d]."""
        tokens = torch.cat(
            [
                self.user_projection(user_features).unsqueeze(1),
                self.poi_embedding(history_codes, history_features),
            ],
            dim=1,
        )
        return self.encoder(tokens)

    def decode(self, items: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: item tokens [B, T, d] -> states [B, T + 1, d] (state t predicts
        item t + 1; state 0 reads only the start token)."""
        x = torch.cat([self.start.expand(items.shape[0], 1, -1), items], dim=1)
        x = x + self.position[: x.shape[1]]
        for block in self.decoder:
            x = block(x, block.cross_attention.memory_key_value(memory))
        return self.final_norm(x)

    def start_cache(
        self, memory: torch.Tensor, beams: int = 1
    ) -> tuple[torch.Tensor, DecoderCache]:
        """The first decoding state [B * beams, d] and the cache after the start token; memory
        [B, T, d] is per request, rows are request-major (b * beams + s)."""
        memory_kv = [block.cross_attention.memory_key_value(memory) for block in self.decoder]
        request_of = torch.arange(memory.shape[0], device=memory.device)
        cache = DecoderCache(
            memory_kv, [{} for _ in self.decoder], request_of.repeat_interleave(beams)
        )
        return self.step(self.start.expand(memory.shape[0] * beams, -1), cache)

    def step(self, token: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Append one item token [rows, d]; returns the new state [rows, d] (cache updated)."""
        x = (token + self.position[cache.position]).unsqueeze(1)
        for block, layer_cache, memory_kv in zip(
            self.decoder, cache.layers, cache.memory_kv, strict=True
        ):
            x = block(x, memory_kv, layer_cache, cache.request_of)
        cache.position += 1
        return self.final_norm(x[:, 0]), cache

    def creative_state(self, state: torch.Tensor, poi_embedding: torch.Tensor) -> torch.Tensor:
        """The MTP module: the creative head's input, conditioned on the chosen POI."""
        return self.mtp(state + poi_embedding) if self.config.mtp else self.mtp(state)

    # -- training -----------------------------------------------------------------------------
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Next-POI + next-creative cross-entropy on logged lists (teacher forcing).

        batch: history_codes [B, H, Lp], history_features [B, H, F], user [B, U],
        poi_codes [B, K, Lp], features [B, K, F], creative_codes [B, K, Lc] (organic: reserved).
        """
        memory = self.encode(batch["history_codes"], batch["history_features"], batch["user"])
        items = self.item_embedding(batch["poi_codes"], batch["features"], batch["creative_codes"])
        states = self.decode(items[:, :-1], memory)  # [B, K, d]: state k predicts item k
        poi_logits = self.poi_heads.logits(states, batch["poi_codes"])  # [B, K, Lp, V]
        poi_loss = F.cross_entropy(poi_logits.flatten(0, 2), batch["poi_codes"].flatten())
        poi_embedding = self.poi_embedding(batch["poi_codes"], batch["features"])
        creative_state = self.creative_state(states, poi_embedding)
        creative_logits = self.creative_heads.logits(creative_state, batch["creative_codes"])
        creative_loss = F.cross_entropy(
            creative_logits.flatten(0, 2), batch["creative_codes"].flatten()
        )
        parts = {"poi_loss": poi_loss.item(), "creative_loss": creative_loss.item()}
        return poi_loss + creative_loss, parts
