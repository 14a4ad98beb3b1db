"""Encoder-decoder translation models for the five architectures, with one step interface.

    logits = Seq2Seq(cfg)(src, src_lengths, tgt_in)          # teacher forcing (training, scoring)
      src         (B, S) int64  source piece ids, PAD_ID past each row's length
      src_lengths (B,)   int64
      tgt_in      (B, T) int64  <bos> y1 .. y_{T-1}   (targets are y1 .. y_T <eos>)
      logits      (B, T, V_tgt)

    memory, state = model.encode(src, src_lengths)   # memory: a list of tensors, shaped as model.memory_specs
    logits, state = model.step(prev, state, memory, src_lengths, position)   # one token per row
      prev     (B,)  int64   the previous target token (<bos> first)
      state    list of tensors, each with the batch on the axis ``state_specs`` gives
      position (B,)  int64   how many tokens each row has fed so far (the Transformer's position)
      logits   (B, V_tgt)

Encoders are export.models' own (padding-invariant, per-token states zeroed at
padding); the BiLSTM's encoder states are 2 x hidden wide. ``encode`` hands the
decoder its memory already read: whatever the attention computes from a source
position alone (the keys, and the Transformer's values, for every layer) is
computed once per sentence there, not again at every step, where it was most of
a step's arithmetic (the Transformer's cross-attention keys and values: three
quarters of it at 32 rows and 54 source pieces). The memory is a list of tensors
in the layouts a step reads without a copy: the Transformer's keys and values, a
pair per layer, laid out per head; they were one (B, S, layers x 2C) tensor that
every step split (14% of a step's kernel time at 32 rows) and read through a head
mask (four times the arithmetic of per-head products). The parameters are the
same either way. Decoders:

* rnn / lstm / gru / bilstm: a unidirectional stack of the same cell (the
  BiLSTM gets an LSTM decoder) with **Luong "general" attention** (Luong et al.
  2015): score(h_t, m_s) = h_t . W_a m_s, read *after* the recurrent update,
  then h~_t = tanh(W_c [context; h_t]) -> logits. Luong rather than Bahdanau
  because the attention sits on top of the recurrence instead of feeding into
  it: with teacher forcing the whole target runs through one recurrent call
  plus one batched attention (fast on CPU), and a step is exactly the same
  computation for one position. No input feeding, for the same reason. The
  state is h (and c), (layers, B, hidden), initialised from the mean of the
  memory through a tanh bridge.
* transformer: pre-LN decoder blocks (causal self-attention, cross-attention,
  MLP). The step carries a key and a value cache per layer, the keys
  transposed (B, heads, head_dim, past), the values (B, heads, past, head_dim):
  the layouts its matrix products read without a copy. Each row's history is
  *right-aligned* in the cache: a row that has fed ``position`` tokens owns the
  last ``position`` slots and the slots before them are masked out, so rows at
  different positions (sequences that joined a running batch later) share one
  cache tensor; a scheduler that merges caches of different past lengths
  left-pads the shorter with zeros.

Teacher forcing ratio < 1 (scheduled sampling): two passes (Mihaylova & Liu
2019) — a gradient-free teacher-forced pass predicts every position, then each
input token after <bos> is replaced by the model's prediction for it with
probability 1 - ratio, and the loss is taken on a second pass over the mixed
inputs. It keeps the parallel training path of every architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from export.models import CHECKPOINT_FORMAT, ModelConfig, build_encoder, length_mask
from seqserve.manifest import ARCHS
from seqserve.subword import BOS_ID, EOS_ID, PAD_ID

TASK = "translation"
RECURRENT = ("rnn", "lstm", "gru", "bilstm")


@dataclass
class Seq2SeqConfig:
    arch: str = "lstm"  # one of ARCHS
    src_vocab_size: int = 1000
    tgt_vocab_size: int = 1000
    embed_dim: int = 64
    hidden_dim: int = 64  # encoder per direction (BiLSTM) and decoder; d_model for the Transformer
    n_layers: int = 1  # encoder layers
    dec_layers: int = 1
    dropout: float = 0.0
    embed_dropout: float = 0.0
    n_heads: int = 4  # Transformer only
    ff_dim: int = 128  # Transformer only
    max_len: int = 512
    teacher_forcing: float = 1.0  # chance a training input token is the gold one (1: plain teacher forcing)
    attention: str = "luong-general"  # recurrent decoders; recorded for readers of the manifest
    tie_embeddings: bool = True  # target embedding = output projection (when the widths agree)
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.arch == "transformer" and self.hidden_dim % self.n_heads:
            raise ValueError("hidden_dim must be divisible by n_heads")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError("teacher_forcing must be in [0, 1]")

    def encoder_config(self) -> ModelConfig:
        return ModelConfig(
            arch=self.arch,
            vocab_size=self.src_vocab_size,
            embed_dim=self.embed_dim,
            hidden_dim=self.hidden_dim,
            n_layers=self.n_layers,
            dropout=self.dropout,
            embed_dropout=self.embed_dropout,
            n_heads=self.n_heads,
            ff_dim=self.ff_dim,
            max_len=self.max_len,
            pad_id=self.pad_id,
            pooling="mean",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Seq2SeqConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def sinusoidal_at(position: Tensor, dim: int) -> Tensor:
    """(...,) integer positions -> (..., dim) codes, the same as export.models.sinusoidal_positions rows."""
    freq = torch.exp(
        torch.arange(0, dim, 2, device=position.device, dtype=torch.float32) * (-torch.log(torch.tensor(10000.0)) / dim)
    )  # (dim/2,)
    angles = position.to(torch.float32).unsqueeze(-1) * freq  # (..., dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[..., :dim]  # (..., dim)


def tie(embed: nn.Embedding, out: nn.Linear, small_init: bool) -> None:
    """Share the target embedding with the output projection (Press & Wolf 2017): fewer parameters,
    better on small corpora. ``small_init``: start the table at N(0, 1/d) instead of N(0, 1). The
    Transformer needs it (its N(0, 1)-tied logits are ~sqrt(d) wide: first-epoch loss 13.9 vs 6.7,
    quick profile); the recurrent decoders do not (their output reads a tanh-bounded vector) and
    learned worse with it (quick lstm test BLEU 1.97 -> 0.07: small inputs slow the cells)."""
    if small_init:
        nn.init.normal_(embed.weight, std=embed.embedding_dim**-0.5)
        with torch.no_grad():
            embed.weight[embed.padding_idx].zero_()
    out.weight = embed.weight


# ----------------------------------------------------------------------------- recurrent decoder


class RecurrentDecoder(nn.Module):
    """Stacked RNN/LSTM/GRU cells + Luong general attention over the encoder memory."""

    def __init__(self, cfg: Seq2SeqConfig, mem_dim: int) -> None:
        super().__init__()
        self.kind = "lstm" if cfg.arch in ("lstm", "bilstm") else cfg.arch
        self.n_layers, self.hidden, self.mem_dim = cfg.dec_layers, cfg.hidden_dim, mem_dim
        # The encoder states, then their attention keys.
        self.memory_specs = [("memory", ["batch", "src_len", mem_dim + cfg.hidden_dim])]
        self.state_names = ["h", "c"] if self.kind == "lstm" else ["h"]
        H = cfg.hidden_dim
        self.embed = nn.Embedding(cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.embed_drop = nn.Dropout(cfg.embed_dropout)
        self.drop = nn.Dropout(cfg.dropout)

        def cell(in_dim: int) -> nn.Module:
            if self.kind == "rnn":
                return nn.RNN(in_dim, H, nonlinearity="tanh", batch_first=True)
            if self.kind == "gru":
                return nn.GRU(in_dim, H, batch_first=True)
            return nn.LSTM(in_dim, H, batch_first=True)

        self.cells = nn.ModuleList(cell(cfg.embed_dim if i == 0 else H) for i in range(cfg.dec_layers))
        # The final encoder state of a padded batch would need a gather per direction; the
        # masked mean of the memory is padding-invariant and summarizes both directions.
        self.bridge = nn.Linear(mem_dim, len(self.state_names) * cfg.dec_layers * H)
        self.attn_key = nn.Linear(mem_dim, H, bias=False)  # W_a of score = h . W_a m
        self.combine = nn.Linear(mem_dim + H, H)
        self.out = nn.Linear(H, cfg.tgt_vocab_size)
        if cfg.tie_embeddings and cfg.embed_dim == H:
            tie(self.embed, self.out, small_init=False)

    def init_state(self, memory: Tensor, src_lengths: Tensor) -> list[Tensor]:
        mask = length_mask(src_lengths, memory.size(1)).unsqueeze(-1)  # (B, S, 1)
        mean = (memory * mask).sum(1) / src_lengths.clamp(min=1).unsqueeze(1).to(memory.dtype)  # (B, M)
        s = torch.tanh(self.bridge(mean))  # (B, n_states * L * H)
        s = s.reshape(-1, len(self.state_names), self.n_layers, self.hidden).permute(1, 2, 0, 3)  # (n, L, B, H)
        return [s[i].contiguous() for i in range(len(self.state_names))]  # n x (L, B, H)

    def prepare_memory(self, memory: Tensor, src_lengths: Tensor) -> list[Tensor]:
        """(B, S, M) encoder states -> [(B, S, M + H)]: each followed by its attention key."""
        return [torch.cat((memory, self.attn_key(memory)), dim=-1)]  # no bias: zero past each length stays zero

    def run(self, tokens: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """(B, T) tokens from ``state`` -> top-layer outputs (B, T, H) and the final state."""
        x = self.embed_drop(self.embed(tokens))  # (B, T, E)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            if i > 0:
                x = self.drop(x)
            if self.kind == "lstm":
                x, (h, c) = cell(x, (state[0][i : i + 1], state[1][i : i + 1]))  # (B, T, H), 2 x (1, B, H)
                cs.append(c)
            else:
                x, h = cell(x, state[0][i : i + 1])  # (B, T, H), (1, B, H)
            hs.append(h)
        new = [torch.cat(hs, 0)] + ([torch.cat(cs, 0)] if cs else [])  # (L, B, H) each
        return x, new

    def attend(self, query: Tensor, memory: Tensor, src_lengths: Tensor) -> Tensor:
        """(B, T, H) decoder outputs -> (B, T, H) attentional states, over the prepared memory.
        The memory is read whole, never split into values and keys (a copy of it every step):
        the query meets zeros against the values, and the context keeps the values' share."""
        query_keys = F.pad(query, (self.mem_dim, 0))  # (B, T, M + H)
        scores = query_keys @ memory.transpose(1, 2)  # (B, T, S): h . W_a m
        mask = length_mask(src_lengths.clamp(min=1), memory.size(1)).unsqueeze(1)  # (B, 1, S)
        # finfo.min rather than -inf: stays finite through ONNX (a fully padded row cannot occur: length >= 1)
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)  # (B, T, S)
        context = (weights @ memory)[..., : self.mem_dim]  # (B, T, M)
        return torch.tanh(self.combine(torch.cat((context, query), dim=-1)))  # (B, T, H)

    def forward(self, tgt_in: Tensor, state: list[Tensor], memory: list[Tensor], src_lengths: Tensor) -> Tensor:
        x, _ = self.run(tgt_in, state)  # (B, T, H)
        return self.out(self.drop(self.attend(x, memory[0], src_lengths)))  # (B, T, V)

    def step(
        self, prev: Tensor, state: list[Tensor], memory: list[Tensor], src_lengths: Tensor, position: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        x, new = self.run(prev.unsqueeze(1), state)  # (B, 1, H)
        attentional = self.attend(x, memory[0], src_lengths).squeeze(1)  # (B, H)
        return self.out(self.drop(attentional)), new  # (B, V): a 2-D projection, its bias fused (ORT's Gemm)


# ----------------------------------------------------------------------------- transformer decoder


def _heads(x: Tensor, n_heads: int) -> Tensor:
    B, _, C = x.shape
    return x.reshape(B, -1, n_heads, C // n_heads).transpose(1, 2)  # (B, nh, T, hd)


class DecoderBlock(nn.Module):
    """Pre-LN: causal self-attention, cross-attention over the memory, MLP.

    ``forward`` (a whole target, for training) attends through SDPA. ``step`` (one token)
    spells the same attention out for layouts that spare a step most copies: keys
    stored transposed, (B, nh, hd, P) in the cache and (B, nh, hd, S) in the memory,
    so the scores need no transpose, values (B, nh, P or S, hd). What copying is
    left: the caches' growth.
    """

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        C = cfg.hidden_dim
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(C), nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.self_proj = nn.Linear(C, C)
        self.q = nn.Linear(C, C)
        self.kv = nn.Linear(C, 2 * C)
        self.cross_proj = nn.Linear(C, C)
        self.mlp = nn.Sequential(nn.Linear(C, cfg.ff_dim), nn.GELU(), nn.Linear(cfg.ff_dim, C))
        self.drop = nn.Dropout(cfg.dropout)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hd)
        B, _, _, hd = y.shape
        return y.transpose(1, 2).reshape(B, -1, self.n_heads * hd)  # (B, T, C)

    def _mlp(self, x: Tensor) -> Tensor:
        return x + self.drop(self.mlp(self.ln3(x)))

    def forward(self, x: Tensor, self_mask: Tensor, k_mem: Tensor, v_mem: Tensor, mem_mask: Tensor) -> Tensor:
        """x (B, T, C), memory keys (B, nh, hd, S) and values (B, nh, S, hd) -> (B, T, C)."""
        C, nh = x.size(-1), self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)  # 3 x (B, T, C)
        x = x + self.drop(self.self_proj(self._sdpa(_heads(q, nh), _heads(k, nh), _heads(v, nh), self_mask)))
        y = self._sdpa(_heads(self.q(self.ln2(x)), nh), k_mem.transpose(2, 3), v_mem, mem_mask)
        return self._mlp(x + self.drop(self.cross_proj(y)))  # (B, T, C)

    def step(
        self, x: Tensor, k_cache: Tensor, v_cache: Tensor, self_bias: Tensor, k_mem: Tensor, v_mem: Tensor,
        mem_bias: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C), k_cache (B, nh, hd, P), v_cache (B, nh, P, hd), self_bias (B, 1, 1, P + 1),
        memory keys (B, nh, hd, S) and values (B, nh, S, hd), mem_bias (B, 1, 1, S) -> x, the
        caches one slot longer."""
        B, C = x.shape
        nh, hd = self.n_heads, C // self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)  # 3 x (B, C)
        k_all = torch.cat((k_cache, k.reshape(B, nh, hd, 1)), dim=3)  # (B, nh, hd, P + 1)
        v_all = torch.cat((v_cache, v.reshape(B, nh, 1, hd)), dim=2)  # (B, nh, P + 1, hd)
        att = q.reshape(B, nh, 1, hd) @ k_all * hd**-0.5 + self_bias  # (B, nh, 1, P + 1)
        y = (att.softmax(-1) @ v_all).reshape(B, C)  # (B, nh, 1, hd) -> (B, C)
        x = x + self.drop(self.self_proj(y))
        q = self.q(self.ln2(x)).reshape(B, nh, 1, hd) * hd**-0.5  # (B, nh, 1, hd)
        att = q @ k_mem + mem_bias  # (B, nh, 1, S)
        y = (att.softmax(-1) @ v_mem).reshape(B, C)  # (B, nh, 1, hd) -> (B, C)
        return self._mlp(x + self.drop(self.cross_proj(y))), k_all, v_all


class TransformerDecoder(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        C = cfg.hidden_dim
        self.n_layers, self.n_heads, self.head_dim = cfg.dec_layers, cfg.n_heads, C // cfg.n_heads
        # Each layer's cross-attention keys and values, per head, as a step reads them.
        nh, hd = self.n_heads, self.head_dim
        shapes = {"k": ["batch", nh, hd, "src_len"], "v": ["batch", nh, "src_len", hd]}
        self.memory_specs = [(f"memory_{kv}_{i}", shapes[kv]) for i in range(cfg.dec_layers) for kv in "kv"]
        # One tensor per layer, as a step reads and writes them: a stacked cache was split
        # and stacked again every step, two more copies of it.
        self.state_names = [f"{kv}_cache_{i}" for i in range(cfg.dec_layers) for kv in "kv"]
        self.embed = nn.Embedding(cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.in_proj = nn.Linear(cfg.embed_dim, C) if cfg.embed_dim != C else nn.Identity()
        self.embed_drop = nn.Dropout(cfg.embed_dropout)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.dec_layers))
        self.ln_f = nn.LayerNorm(C)
        self.out = nn.Linear(C, cfg.tgt_vocab_size)
        # Tied, the table is initialised small (as an output layer must be), so the input is
        # scaled back up by sqrt(d) (Vaswani et al.) to stand beside the position codes.
        self.tied = cfg.tie_embeddings and cfg.embed_dim == C
        if self.tied:
            tie(self.embed, self.out, small_init=True)
        self.embed_scale = float(cfg.embed_dim) ** 0.5 if self.tied else 1.0

    def _embed(self, tokens: Tensor, position: Tensor) -> Tensor:
        x = self.in_proj(self.embed_drop(self.embed(tokens) * self.embed_scale))  # (B, T, C)
        return x + sinusoidal_at(position, x.size(-1))  # (B, T, C)

    def prepare_memory(self, memory: Tensor, src_lengths: Tensor) -> list[Tensor]:
        """(B, S, C) encoder states -> every layer's cross-attention keys (B, nh, hd, S), then
        values (B, nh, S, hd), zero past each length (as the encoder states are)."""
        B, S, _ = memory.shape
        keep = length_mask(src_lengths, S).unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
        out: list[Tensor] = []
        for block in self.blocks:
            k, v = (t * keep for t in block.kv(memory).chunk(2, dim=-1))  # 2 x (B, S, C)
            k = k.reshape(B, S, self.n_heads, self.head_dim).permute(0, 2, 3, 1)  # (B, nh, hd, S)
            v = v.reshape(B, S, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, S, hd)
            out += [k.contiguous(), v.contiguous()]
        return out

    def _layers(self, memory: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return list(zip(memory[0::2], memory[1::2]))  # L x (keys, values)

    def init_state(self, memory: Tensor, src_lengths: Tensor) -> list[Tensor]:
        B, nh, hd = memory.size(0), self.n_heads, self.head_dim  # memory: the encoder states
        k, v = memory.new_zeros(B, nh, hd, 0), memory.new_zeros(B, nh, 0, hd)  # no past yet
        return [t.clone() for _ in range(self.n_layers) for t in (k, v)]

    def forward(self, tgt_in: Tensor, state: list[Tensor], memory: list[Tensor], src_lengths: Tensor) -> Tensor:
        T = tgt_in.size(1)
        x = self._embed(tgt_in, torch.arange(T, device=tgt_in.device).unsqueeze(0))  # (B, T, C)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T): row t sees 0..t
        mem_mask = length_mask(src_lengths.clamp(min=1), memory[0].size(-1))[:, None, None, :]  # (B, 1, 1, S)
        for block, (k_mem, v_mem) in zip(self.blocks, self._layers(memory)):
            x = block(x, causal, k_mem, v_mem, mem_mask)
        return self.out(self.ln_f(x))  # (B, T, V)

    def step(
        self, prev: Tensor, state: list[Tensor], memory: list[Tensor], src_lengths: Tensor, position: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        P = state[1].size(2)  # v_cache_0 (B, nh, P, hd)
        x = self._embed(prev.unsqueeze(1), position.unsqueeze(1)).squeeze(1)  # (B, C)
        # Right-aligned histories: row b's tokens sit in the last position[b] slots, then the new one.
        slot = torch.arange(P + 1, device=prev.device).unsqueeze(0)  # (1, P + 1)
        self_bias = _bias(slot >= (P - position).unsqueeze(1))[:, None, None, :]  # (B, 1, 1, P + 1)
        mem_bias = _bias(length_mask(src_lengths.clamp(min=1), memory[0].size(-1)))[:, None, None, :]  # (B, 1, 1, S)
        new: list[Tensor] = []
        for i, (block, (k_mem, v_mem)) in enumerate(zip(self.blocks, self._layers(memory))):
            x, k, v = block.step(x, state[2 * i], state[2 * i + 1], self_bias, k_mem, v_mem, mem_bias)
            new += [k, v]
        return self.out(self.ln_f(x)), new  # (B, V): a 2-D projection, its bias fused (ORT's Gemm)


def _bias(keep: Tensor) -> Tensor:
    """bool -> 0 where kept, -inf where masked (added to attention scores)."""
    return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))


# ----------------------------------------------------------------------------- the model


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.encoder_config())
        if cfg.arch == "transformer":
            self.decoder: RecurrentDecoder | TransformerDecoder = TransformerDecoder(cfg)
        else:
            self.decoder = RecurrentDecoder(cfg, self.encoder.out_dim)

    @property
    def state_names(self) -> list[str]:
        return list(self.decoder.state_names)

    @property
    def memory_specs(self) -> list[tuple[str, list[str | int]]]:
        """Name and shape of each memory tensor ``encode`` returns (the decoder's prepared memory;
        symbolic "batch", always first, and "src_len")."""
        return list(self.decoder.memory_specs)

    @property
    def memory_axes(self) -> tuple[int, ...]:
        """Each memory tensor's source axis, as ``seqserve.decoding.RunningBatch`` takes them."""
        return tuple(shape.index("src_len") for _, shape in self.memory_specs)

    def state_specs(self) -> list[dict[str, Any]]:
        """Per state tensor: name, shape (symbolic "batch" / "past"), batch axis, how a sequence starts it."""
        cfg = self.cfg
        if cfg.arch == "transformer":
            nh, hd = cfg.n_heads, cfg.hidden_dim // cfg.n_heads
            shapes = {"k": ["batch", nh, hd, "past"], "v": ["batch", nh, "past", hd]}  # keys stored transposed
            return [
                {"name": n, "dtype": "float32", "shape": shapes[n[0]], "batch_axis": 0,
                 "grow_axis": shapes[n[0]].index("past"), "init": "empty"}
                for n in self.state_names
            ]
        shape = [cfg.dec_layers, "batch", cfg.hidden_dim]
        return [
            {"name": n, "dtype": "float32", "shape": shape, "batch_axis": 1, "init": "encoder"}
            for n in self.state_names
        ]

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """-> memory, a list of tensors as ``memory_specs`` names and shapes them, zero past each
        length, and the decoder's initial state."""
        src_lengths = src_lengths.clamp(min=1)  # an empty source reads one <pad>: defined, if uninformative
        states = self.encoder(src, src_lengths)  # (B, S, M)
        return self.decoder.prepare_memory(states, src_lengths), self.decoder.init_state(states, src_lengths)

    def step(
        self, prev: Tensor, state: list[Tensor], memory: list[Tensor], src_lengths: Tensor, position: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """One target token per row: (B,) -> logits (B, V) and the new state."""
        return self.decoder.step(prev, state, memory, src_lengths, position)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        memory, state = self.encode(src, src_lengths)
        ratio = self.cfg.teacher_forcing
        if self.training and ratio < 1.0:
            with torch.no_grad():
                guess = self.decoder(tgt_in, state, memory, src_lengths).argmax(-1)  # (B, T): guess for input t+1
            prev_guess = torch.cat((tgt_in[:, :1], guess[:, :-1]), dim=1)  # (B, T): the model's input t
            sample = torch.rand(tgt_in.shape, device=tgt_in.device) >= ratio  # (B, T)
            sample[:, 0] = False  # <bos> stays
            tgt_in = torch.where(sample & (tgt_in != self.cfg.pad_id), prev_guess, tgt_in)
        return self.decoder(tgt_in, state, memory, src_lengths.clamp(min=1))  # (B, T, V)


def load_seq2seq(path: Path) -> tuple[Seq2Seq, dict[str, Any]]:
    """Rebuild a translation model (eval mode) from a checkpoint written with export.models.save_checkpoint."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("task") != TASK:
        raise ValueError(f"{path}: not a seqserve translation checkpoint")
    model = Seq2Seq(Seq2SeqConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
