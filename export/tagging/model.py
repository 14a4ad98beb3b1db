"""Part-of-speech taggers: the zoo's encoders with a per-token head, fed ids *and* features.

    logits = Tagger(cfg)(tokens, features, lengths)
      tokens   (B, T)    int64  lowercased-word ids, PAD_ID past each row's length
      features (B, T, F) int64  seqserve.features.token_features per token, 0 past the length
      lengths  (B,)      int64
      logits   (B, T, n_tags)   (past a row's length: the head's bias; never read)

The encoders are export.models' own, unchanged: padding-invariant, per-token
states (B, T, H). Only their input embedding is swapped for one that also
embeds the features: the encoder calls ``self.embed(tokens)`` on whatever it
was given and reads nothing else from it but the batch and length sizes, so
it is handed ids and features stacked as one (B, T, 1 + F) tensor.

The causal ones (rnn, lstm, gru) also run *incrementally*: ``Tagger.step``
takes k new tokens and the recurrent state (h, and c for the LSTM; each
(layers, B, hidden)) and returns their logits and the new state. It runs the
very cells the full forward runs, started from the carried state instead of
zeros, so any chunking of a sentence gives the full forward's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from export.models import CHECKPOINT_FORMAT, ModelConfig, build_encoder
from seqserve.features import FEATURES_NAME, N_FEATURES

CAUSAL_ARCHS = ("rnn", "lstm", "gru")
TASK = "tagging"


@dataclass
class TaggerConfig(ModelConfig):
    """ModelConfig plus the feature embeddings; ``embed_dim`` is derived (the encoder's input width)."""

    word_dim: int = 64  # lowercased-word embedding
    n_features: int = N_FEATURES  # 0: ids only (the ablation that measures what the features buy)
    feature_buckets: int = 4096  # every feature value lies in [0, feature_buckets)
    feature_dim: int = 16  # per feature; concatenated after the word embedding
    features_name: str = FEATURES_NAME

    def __post_init__(self) -> None:
        self.embed_dim = self.word_dim + self.n_features * self.feature_dim
        super().__post_init__()
        if self.n_features not in (0, N_FEATURES):
            raise ValueError(f"n_features must be 0 or {N_FEATURES} ({FEATURES_NAME})")


class TokenFeatureEmbedding(nn.Module):
    """(B, T, 1 + F) ids and features -> (B, T, word_dim + F * feature_dim)."""

    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.n_features = cfg.n_features
        self.word = nn.Embedding(cfg.vocab_size, cfg.word_dim, padding_idx=cfg.pad_id)
        # One table per feature: a suffix-1 bucket and a suffix-3 bucket mean different things.
        self.features = nn.ModuleList(
            nn.Embedding(cfg.feature_buckets, cfg.feature_dim, padding_idx=0) for _ in range(cfg.n_features)
        )

    def forward(self, x: Tensor) -> Tensor:
        parts = [self.word(x[..., 0])]  # (B, T, word_dim)
        parts += [table(x[..., 1 + j]) for j, table in enumerate(self.features)]  # F x (B, T, feature_dim)
        return torch.cat(parts, dim=-1)  # (B, T, embed_dim)


class Tagger(nn.Module):
    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.encoder.embed = TokenFeatureEmbedding(cfg)  # replaces the ids-only table
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.out_dim, cfg.n_labels)

    @property
    def causal(self) -> bool:
        return self.cfg.arch in CAUSAL_ARCHS

    def _stack(self, tokens: Tensor, features: Tensor) -> Tensor:
        # (B, T) + (B, T, F) -> (B, T, 1 + F); features beyond n_features (the ablation) are dropped
        return torch.cat((tokens.unsqueeze(-1), features[..., : self.cfg.n_features]), dim=-1)

    def forward(self, tokens: Tensor, features: Tensor, lengths: Tensor) -> Tensor:
        states = self.encoder(self._stack(tokens, features), lengths)  # (B, T, H)
        return self.head(self.drop(states))  # (B, T, n_tags)

    def initial_state(self, batch: int) -> list[Tensor]:
        """Zeros: h (and c for the LSTM), each (layers, batch, hidden) — what the full forward starts from."""
        if not self.causal:
            raise ValueError(f"{self.cfg.arch} is not causal: it has no step state")
        zeros = torch.zeros(self.cfg.n_layers, batch, self.cfg.hidden_dim)
        return [zeros, zeros.clone()] if self.cfg.arch == "lstm" else [zeros]

    def step(self, tokens: Tensor, features: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """k new tokens, all real: (B, k), (B, k, F), state -> logits (B, k, n_tags), new state."""
        if not self.causal:
            raise ValueError(f"{self.cfg.arch} is not causal: it needs the future, so it has no step")
        enc = self.encoder
        x = enc.embed_drop(enc.embed(self._stack(tokens, features)))  # (B, k, E)
        lstm = self.cfg.arch == "lstm"
        h_out, c_out = [], []
        for i, cell in enumerate(enc.fwd):
            if i > 0:
                x = enc.drop(x)
            if lstm:
                x, (h, c) = cell(x, (state[0][i : i + 1], state[1][i : i + 1]))  # (B, k, H), 2 x (1, B, H)
                c_out.append(c)
            else:
                x, h = cell(x, state[0][i : i + 1])  # (B, k, H), (1, B, H)
            h_out.append(h)
        logits = self.head(self.drop(x))  # (B, k, n_tags)
        new_state = [torch.cat(h_out, dim=0)] + ([torch.cat(c_out, dim=0)] if lstm else [])  # (L, B, H) each
        return logits, new_state


class StepGraph(nn.Module):
    """The step as an exportable module: (tokens, features, h) -> (logits, h_out) for rnn and gru."""

    def __init__(self, tagger: Tagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, tokens: Tensor, features: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        logits, (h_out,) = self.tagger.step(tokens, features, [h])
        return logits, h_out


class LSTMStepGraph(StepGraph):
    """(tokens, features, h, c) -> (logits, h_out, c_out)."""

    def forward(self, tokens: Tensor, features: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        logits, (h_out, c_out) = self.tagger.step(tokens, features, [h, c])
        return logits, h_out, c_out


def step_graph(tagger: Tagger) -> StepGraph:
    # eval() on the wrapper too: the legacy exporter restores the wrapper's training flag
    # recursively after export, and a fresh module's is True (dropout back on).
    graph = LSTMStepGraph(tagger) if tagger.cfg.arch == "lstm" else StepGraph(tagger)
    return graph.eval()


def state_names(arch: str) -> list[str]:
    return ["h", "c"] if arch == "lstm" else ["h"]


def load_tagger(path: Path) -> tuple[Tagger, dict[str, Any]]:
    """Rebuild a tagger (eval mode) from a checkpoint written with export.models.save_checkpoint."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("task") != TASK:
        raise ValueError(f"{path}: not a seqserve tagging checkpoint")
    model = Tagger(TaggerConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
