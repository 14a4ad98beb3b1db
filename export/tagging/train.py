"""``seqserve train --task tagging``: part-of-speech taggers for the five architectures.

    python -m export.tagging.train --arch all --profile quick

For each architecture: read the CoNLL splits and turn them into exactly the
tokens, ids and features the server produces (``export.tagging.data``),
train with early stopping on dev token accuracy, keep the best-on-dev
weights, score dev and test (overall, on tokens unseen in training, and per
corpus word), and for the bidirectional models measure how accuracy depends
on the lookahead a stream can afford. Writes
``<out>/tagging/<arch>/{checkpoint.pt,metrics.json}`` and prints a table.

Lookahead (bilstm, transformer): in a stream, token i is tagged once tokens
up to i + k have arrived, by running the full-sentence model on that prefix
(padding invariance makes a prefix exactly a shorter sentence). One pass
over all prefixes of a sentence gives every k at once: the prefix ending at
token j tags token j - k. The recommended k is the smallest whose dev
accuracy is within ``LOOKAHEAD_TOLERANCE`` of the whole sentence's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from export import paths
from export.models import ARCHS, count_parameters, save_checkpoint
from export.tagging.data import (
    IGNORE,
    SPLITS,
    TagBatch,
    TaggingData,
    TagSentence,
    collate,
    concatenate,
    eval_batches,
    load_tagging,
    train_batches,
)
from export.tagging.model import CAUSAL_ARCHS, TASK, Tagger, TaggerConfig
from export.train import (
    TrainSettings,
    apply_overrides,
    apply_word_dropout,
    available_cores,
    fit,
    make_optimizer,
    resolve_archs,
    seed_everything,
    split_files,
    train_parser,
)
from export.vocab import PAD_ID, UNK_ID
from seqserve.features import FEATURES_NAME, N_FEATURES

LOOKAHEADS = (0, 1, 2, 3, 4)  # plus the whole sentence ("inf")
LOOKAHEAD_TOLERANCE = 0.003  # 0.3 points of accuracy
STREAM_SENTENCES = 5  # test_accuracy_stream: this many consecutive test sentences (one document) as one sequence


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TagSettings(TrainSettings):
    # Frequency-aware word dropout: a training token of a word seen c times becomes <unk> with
    # probability a / (a + c) (Kiperwasser & Goldberg 2016), so rare words — the ones most like
    # unseen words — teach the model to tag from the features; frequent words keep their ids.
    rare_word_dropout: float = 0.0
    max_train_sentences: int | None = None  # a seeded sample of the training split (quick)
    lookahead_sentences: int | None = None  # dev/test sentences for the lookahead table (None: all)


# Word dropout, measured on the quick LSTM (test accuracy / on unseen words): uniform p=0.05
# 94.17 / 85.26; frequency-aware a=0.25 94.37 / 87.97; a=1.0 94.30 / 88.28; a=0.25 plus
# uniform 0.05 94.26 / 86.38. The features, same quick settings with and without them:
# LSTM 94.37 / 87.97 vs 90.61 / 70.72, BiLSTM 96.44 / 90.09 vs 92.83 / 73.36.

# quick: all five in ~3-4 minutes on 2 cores (CI, the demo): a seeded 20k-sentence sample
# of the ~46k, 2 epochs, narrow one-layer models, the lookahead table on 1000 sentences.
# Measured: 141 s of CPU for all five (one thread, data loading and lookahead included);
# test accuracy rnn 93.9, lstm 94.4, gru 94.4, bilstm 96.4, transformer 92.9. A two-layer
# Transformer reached 93.0 at twice the cost.
_QUICK = TagSettings(
    max_epochs=2,
    patience=1,
    batch_size=32,
    lr=4e-3,
    word_dropout=0.0,
    rare_word_dropout=0.25,
    min_count=1,
    max_train_sentences=20000,
    lookahead_sentences=1000,
    model=dict(
        word_dim=48,
        feature_dim=16,
        feature_buckets=4096,
        hidden_dim=64,
        n_layers=1,
        dropout=0.2,
        embed_dropout=0.1,
        n_heads=4,
        ff_dim=128,
    ),
)

# full: all of the training split. The causal taggers are the wide ones: with no right
# context, depth and width are what they have. The BiLSTM is narrower per direction
# (it sees both sides) and the Transformer takes a lower learning rate.
_FULL = TagSettings(
    max_epochs=8,
    patience=2,
    batch_size=32,
    lr=2e-3,
    weight_decay=1e-2,
    word_dropout=0.0,
    rare_word_dropout=0.25,
    min_count=1,
    model=dict(
        word_dim=128, feature_dim=32, feature_buckets=8192, hidden_dim=256, n_layers=2, dropout=0.3, embed_dropout=0.1
    ),
)
_FULL_BILSTM = replace(_FULL, model={**_FULL.model, "hidden_dim": 128})
_FULL_TRANSFORMER = replace(
    _FULL,
    lr=1e-3,
    model=dict(
        word_dim=128,
        feature_dim=32,
        feature_buckets=8192,
        hidden_dim=256,
        n_layers=3,
        n_heads=4,
        ff_dim=512,
        dropout=0.1,
        embed_dropout=0.1,
    ),
)

PROFILES: dict[str, dict[str, TagSettings]] = {
    "quick": {arch: _QUICK for arch in ARCHS},
    "full": {**{arch: _FULL for arch in ARCHS}, "bilstm": _FULL_BILSTM, "transformer": _FULL_TRANSFORMER},
}


# ----------------------------------------------------------------------------- scoring


@dataclass
class Counts:
    correct: int = 0
    total: int = 0

    def add(self, hits: torch.Tensor) -> None:
        self.correct += int(hits.sum())
        self.total += hits.numel()

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@torch.no_grad()
def evaluate(model: Tagger, sentences: list[TagSentence]) -> dict[str, float]:
    """Token accuracy overall, on tokens unseen in training (id <unk>), and per corpus word."""
    model.eval()
    overall, unseen, words = Counts(), Counts(), Counts()
    for b in eval_batches(sentences):
        pred = model(b.tokens, b.features, b.lengths).argmax(-1)  # (B, T)
        real = b.targets != IGNORE  # (B, T)
        hits = pred == b.targets  # (B, T)
        overall.add(hits[real])
        unseen.add(hits[real & (b.tokens == UNK_ID)])
        words.add(hits[b.primary])
    return {
        "accuracy": overall.accuracy,
        "accuracy_unseen": unseen.accuracy,
        "accuracy_words": words.accuracy,
        "tokens": overall.total,
        "unseen_tokens": unseen.total,
    }


@torch.no_grad()
def lookahead_accuracy(
    model: Tagger, sentences: list[TagSentence], ks: tuple[int, ...] = LOOKAHEADS, batch_tokens: int = 8192
) -> dict[str, float]:
    """Accuracy when token i is tagged from the prefix ending at token i + k (k = ks, then "inf")."""
    model.eval()
    # Every prefix of every sentence, as (sentence index, prefix length) rows.
    rows = [(s, j) for s, sent in enumerate(sentences) for j in range(1, len(sent) + 1)]
    rows.sort(key=lambda r: r[1])
    preds: dict[tuple[int, int], list[int]] = {}  # (sentence, prefix length) -> its j predicted tags
    start = 0
    while start < len(rows):
        T = rows[start][1]
        end = min(len(rows), start + max(1, batch_tokens // T))
        chunk = rows[start:end]
        b = collate([TagSentence(sentences[s].x[:j], sentences[s].y[:j], sentences[s].primary[:j]) for s, j in chunk])
        out = model(b.tokens, b.features, b.lengths).argmax(-1).tolist()  # (B, T)
        for r, (s, j) in enumerate(chunk):
            preds[(s, j)] = out[r][:j]
        start = end
    table: dict[str, float] = {}
    for k in (*ks, None):
        correct = total = 0
        for s, sent in enumerate(sentences):
            n = len(sent)
            gold = sent.y.tolist()
            correct += sum(preds[(s, n if k is None else min(n, i + k + 1))][i] == gold[i] for i in range(n))
            total += n
        table["inf" if k is None else str(k)] = correct / max(1, total)
    return table


def choose_lookahead(table: dict[str, float], tolerance: float = LOOKAHEAD_TOLERANCE) -> int:
    """The smallest k whose accuracy is within ``tolerance`` of the whole sentence's."""
    full = table["inf"]
    for k in sorted(int(key) for key in table if key != "inf"):
        if table[str(k)] >= full - tolerance:
            return k
    return max(int(key) for key in table if key != "inf")  # none close enough: the longest measured


# ----------------------------------------------------------------------------- training


@dataclass
class RunResult:
    arch: str
    dev: dict[str, float]
    test: dict[str, float]
    parameters: int
    seconds: float
    epochs: int
    best_epoch: int
    checkpoint: Path
    lookahead: dict[str, Any] | None = None


def tagging_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    # logits (B, T, n_tags), targets (B, T) with IGNORE at padding
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, label_smoothing=label_smoothing
    )


def train_one(
    data: TaggingData, arch: str, settings: TagSettings, *, profile: str, seed: int, out_dir: Path, progress: bool
) -> RunResult:
    seed_everything(seed)  # per architecture: a result never depends on which others ran first
    cfg = TaggerConfig(
        arch=arch,
        vocab_size=len(data.vocab),
        n_labels=len(data.labels),
        pad_id=PAD_ID,
        max_len=settings.max_train_len,
        **settings.model,
    )
    model = Tagger(cfg)
    n_params = count_parameters(model)
    train = data.splits["train"]
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    # fused: one kernel for all parameters, 4-5x faster steps than the default on CPU (measured)
    optimizer, scheduler = make_optimizer(model, settings, steps_per_epoch, fused=True)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor(data.counts, dtype=torch.float32)  # (V,)
    a = settings.rare_word_dropout
    drop_prob = a / (a + counts.clamp(min=1)) if a > 0 else None  # (V,)

    def batch_loss(b: TagBatch) -> tuple[torch.Tensor, int]:
        # Word dropout turns ids into <unk> but keeps the features: that is how the
        # model learns to tag a word it never saw from its suffix and shape.
        tokens = apply_word_dropout(b.tokens, b.lengths, settings.word_dropout, gen)  # (B, T)
        if drop_prob is not None:
            rare = torch.rand(tokens.shape, generator=gen) < drop_prob[tokens]  # (B, T); pads: count 0 -> any
            tokens = tokens.masked_fill(rare & (tokens != PAD_ID), UNK_ID)
        logits = model(tokens, b.features, b.lengths)  # (B, T, n_tags)
        return tagging_loss(logits, b.targets, settings.label_smoothing), int(b.lengths.sum())

    def dev_scores() -> dict[str, float]:
        dev = evaluate(model, data.splits["dev"])
        return {"dev": dev["accuracy"], "dev_unseen": dev["accuracy_unseen"]}

    fitted = fit(
        model,
        settings,
        optimizer,
        scheduler,
        arch=arch,
        epoch_batches=lambda: train_batches(train, settings.batch_size, rng, settings.max_train_len),
        steps_per_epoch=steps_per_epoch,
        batch_loss=batch_loss,
        evaluate=dev_scores,
        progress=progress,
    )
    train_seconds, history, best_epoch = fitted.seconds, fitted.history, fitted.best_epoch

    dev = evaluate(model, data.splits["dev"])
    test = evaluate(model, data.splits["test"])
    # A stream is one sequence: consecutive sentences of a document back to back, the state carried
    # across sentence ends (what the step graph does for a causal stream left open). Trained on
    # single sentences, the quick models lose 0.2-0.7 points here; training on randomly chained
    # sentences (p=0.3) did not recover it in the quick profile (lstm 93.90 vs 94.06 streamed).
    tst = data.splits["test"]
    streamed = [concatenate(tst[i : i + STREAM_SENTENCES]) for i in range(0, len(tst), STREAM_SENTENCES)]
    test["accuracy_stream"] = evaluate(model, streamed)["accuracy"]
    lookahead = None
    if arch not in CAUSAL_ARCHS:
        t0 = time.perf_counter()
        n = settings.lookahead_sentences
        dev_table = lookahead_accuracy(model, data.splits["dev"][:n] if n else data.splits["dev"])
        test_table = lookahead_accuracy(model, data.splits["test"][:n] if n else data.splits["test"])
        lookahead = {
            "recommended": choose_lookahead(dev_table),  # chosen on dev, reported on test
            "tolerance": LOOKAHEAD_TOLERANCE,
            "dev": dev_table,
            "test": test_table,
            "sentences": n or len(data.splits["test"]),
        }
        print(
            f"  {arch:<11} lookahead (test) {_fmt_table(test_table)}; k={lookahead['recommended']}"
            f"  {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    metrics: dict[str, Any] = {
        "dev_accuracy": dev["accuracy"],
        "dev_accuracy_unseen": dev["accuracy_unseen"],
        "test_accuracy": test["accuracy"],
        "test_accuracy_unseen": test["accuracy_unseen"],
        "test_accuracy_words": test["accuracy_words"],
        "test_accuracy_stream": test["accuracy_stream"],
        "dev_size": dev["tokens"],
        "test_size": test["tokens"],
        "test_unseen_tokens": test["unseen_tokens"],
        "parameters": n_params,
        "train_seconds": round(train_seconds, 2),
    }
    if lookahead:
        metrics["lookahead"] = lookahead
    training = {
        "task": TASK,
        "arch": arch,
        "profile": profile,
        "seed": seed,
        "epochs": len(history),
        "best_epoch": best_epoch,
        "train_size": len(train),
        "dev_size": len(data.splits["dev"]),
        "test_size": len(data.splits["test"]),
        **data.stats,
        "vocab_size": len(data.vocab),
        "features": {"name": cfg.features_name, "buckets": cfg.feature_buckets, "n_features": cfg.n_features},
        "data_files": data.files,
        "settings": asdict(settings),
        "history": history,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    arch_dir = out_dir / TASK / arch
    ckpt = save_checkpoint(
        arch_dir / "checkpoint.pt",
        task=TASK,
        model=model,
        cfg=cfg,
        vocab=data.vocab.tokens,
        labels=data.labels,
        metrics=metrics,
        training=training,
    )
    (arch_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "training": training, "model_config": cfg.to_dict()}, indent=2) + "\n",
        encoding="utf-8",
    )
    return RunResult(arch, dev, test, n_params, train_seconds, len(history), best_epoch, ckpt, lookahead)


def _fmt_table(table: dict[str, float]) -> str:
    return "  ".join(f"k={k} {v:.4f}" for k, v in table.items())


def format_table(results: list[RunResult]) -> str:
    lines = [
        f"{'arch':<12} {'dev acc':>8} {'test acc':>9} {'unseen':>8} {'per word':>9} {'streamed':>9} {'params':>10}"
        f" {'epochs':>7} {'train s':>8}  lookahead"
    ]
    for r in results:
        la = f"k={r.lookahead['recommended']}" if r.lookahead else "causal"
        lines.append(
            f"{r.arch:<12} {r.dev['accuracy']:>8.4f} {r.test['accuracy']:>9.4f} {r.test['accuracy_unseen']:>8.4f}"
            f" {r.test['accuracy_words']:>9.4f} {r.test['accuracy_stream']:>9.4f} {r.parameters:>10,}"
            f" {f'{r.best_epoch}/{r.epochs}':>7}"
            f" {r.seconds:>8.1f}  {la}"
        )
    lines.append(
        f"unseen: tokens whose lowercased form is not in the vocabulary; per word: corpus words, not tokens;"
        f" streamed: {STREAM_SENTENCES} test sentences back to back as one sequence"
    )
    for r in results:
        if r.lookahead:
            lines.append(f"{r.arch} test accuracy by lookahead: {_fmt_table(r.lookahead['test'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    # Threads default 1, unlike sentiment: these narrow models gain little from a second thread,
    # and on cores shared with other jobs 2 spinning threads made training ~10x slower (measured).
    p = train_parser(
        TASK, "Train part-of-speech taggers (rnn, lstm, gru, bilstm, transformer) and write checkpoints.",
        PROFILES, ".conll", threads=1,
    )
    p.add_argument("--task", choices=[TASK], default=TASK, help=argparse.SUPPRESS)  # accepted when routed
    p.add_argument("--max-train-sentences", type=int, default=None, help="override the profile's training sample")
    p.add_argument(
        "--no-features",
        action="store_true",
        help="ids only, no suffix/shape features (ablation; such checkpoints cannot be exported)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = split_files(args, TASK, ".conll")
    if files is None:
        return 2
    out_dir = args.out or paths.runs_dir()
    torch.set_num_threads(args.threads or available_cores())  # --threads 0: all cores
    progress = not args.no_progress and sys.stderr.isatty()

    results: list[RunResult] = []
    data_cache: dict[tuple[Any, ...], TaggingData] = {}
    total_start, cpu_start = time.perf_counter(), time.process_time()
    for arch in resolve_archs(args.arch):
        settings = PROFILES[args.profile][arch]
        if args.max_epochs:
            settings = replace(settings, max_epochs=args.max_epochs)
        if args.max_train_sentences:
            settings = replace(settings, max_train_sentences=args.max_train_sentences)
        if args.no_features:
            settings = replace(settings, model={**settings.model, "n_features": 0})
        settings = apply_overrides(settings, args.set)
        buckets = settings.model.get("feature_buckets", TaggerConfig.feature_buckets)
        key = (settings.min_count, settings.max_vocab, buckets, settings.max_train_sentences)
        if key not in data_cache:  # archs with the same data settings share the encoded data
            try:
                data_cache[key] = load_tagging(
                    files,
                    buckets=buckets,
                    min_count=settings.min_count,
                    max_vocab=settings.max_vocab,
                    max_train_sentences=settings.max_train_sentences,
                    seed=args.seed,
                )
            except (OSError, ValueError) as exc:  # unreadable file, malformed line, unknown tag
                print(f"seqserve train: {exc}", file=sys.stderr)
                return 2
        data = data_cache[key]
        n_feat = settings.model.get("n_features", N_FEATURES)
        print(
            f"[{TASK}/{arch}] profile {args.profile}: "
            + ", ".join(
                f"{name} {len(data.splits[name])} sentences / {data.stats[f'{name}_tokens']} tokens" for name in SPLITS
            )
            + f", vocab {len(data.vocab)}, features {FEATURES_NAME if n_feat else 'none'}",
            file=sys.stderr,
            flush=True,
        )
        result = train_one(
            data, arch, settings, profile=args.profile, seed=args.seed, out_dir=out_dir, progress=progress
        )
        print(
            f"[{TASK}/{arch}] dev {result.dev['accuracy']:.4f} test {result.test['accuracy']:.4f}"
            f" (unseen {result.test['accuracy_unseen']:.4f}) -> {result.checkpoint}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print(format_table(results))
    print(
        f"total {time.perf_counter() - total_start:.1f}s wall, {time.process_time() - cpu_start:.1f}s CPU;"
        f" checkpoints under {out_dir / TASK}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
