"""``python -m export.translation.train``: train English -> Spanish encoder-decoders and write checkpoints.

    python -m export.translation.train --arch all --profile quick --threads 1

For each architecture: train subword models on the training split
(``seqserve.subword``, what the server will run), train with teacher forcing
(``teacher_forcing`` < 1: scheduled sampling) and early stopping on dev BLEU
(greedy, on the first ``dev_sentences`` dev pairs), keep the best-on-dev weights,
score the test split with sacrebleu, greedy and beam, and write
``<out>/translation/<arch>/{checkpoint.pt,metrics.json}``. The checkpoint keeps
the subword models (``training["subwords"]``) so export needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F

from export import paths
from export.corpora.formats import read_parallel
from export.models import ARCHS, count_parameters, save_checkpoint
from export.train import (
    TrainSettings,
    apply_overrides,
    fit,
    make_optimizer,
    resolve_archs,
    seed_everything,
    split_files,
    train_parser,
)
from export.translation.decode import translate
from export.translation.model import TASK, Seq2Seq, Seq2SeqConfig
from export.translation.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabularies, build_vocabularies
from seqserve.subword import SubwordModel

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class MTSettings(TrainSettings):
    subwords: str = "bpe"  # bpe | words (the measured alternative)
    source_vocab: int = 8000
    target_vocab: int = 8000
    max_train_pairs: int | None = None  # a seeded sample of the training split (quick runs)
    max_train_len: int = 80  # longer training pairs (in pieces, either side) are left out
    dev_sentences: int = 500  # dev BLEU for early stopping: greedy on the first N dev pairs
    test_sentences: int | None = None  # None: the whole test split
    beam_size: int = 4
    length_penalty: float = 1.0
    # Wall-clock budget for training (evaluation excluded from the check): once spent, epochs yield
    # no more batches, so the run ends within `patience` cheap evaluations with its best-on-dev weights.
    max_minutes: float | None = None
    model: dict[str, Any] = field(default_factory=dict)


# quick: all five in ~5 CPU minutes on one thread (CI): a 3,000-pair sample of short verses,
# narrow one-layer models, 3 epochs; BLEU is low, the point is the whole path end to end.
_QUICK = MTSettings(
    max_epochs=3,
    patience=3,
    batch_size=32,
    lr=3e-3,
    subwords="bpe",
    source_vocab=4000,
    target_vocab=4000,
    max_train_pairs=3000,
    max_train_len=40,
    dev_sentences=100,
    test_sentences=200,
    label_smoothing=0.1,
    model=dict(embed_dim=64, hidden_dim=64, n_layers=1, dec_layers=1, dropout=0.1, n_heads=4, ff_dim=128),
)

# full: ~1 hour per arch on this kind of machine. Every training pair up to 80 pieces, BPE 8000
# per side (best dev and greedy BLEU of BPE 4000 / 8000 / words at 10k pairs, see vocab.py),
# dropout, weight decay and label smoothing (24k pairs is small for MT), early stopping on 500
# dev sentences, and a 55-minute training budget (max_minutes) so a slow machine still ends on
# time with its best-on-dev weights. Sized by measurement, for epochs rather than width: the
# 128-wide GRU on 10k pairs was still climbing fast after 4 epochs (dev 8.5 -> 10.0; test greedy
# 10.9 / beam 14.1). One epoch of 3,000 pairs with these settings, one thread: GRU 30 s,
# Transformer (128 wide, 3+3 layers) 50 s, i.e. ~4 and ~6.5 min per full-data epoch: 12 and ~8
# epochs an hour. A 256-wide two-layer GRU with scheduled sampling took > 5 CPU-minutes for
# those 3,000 pairs (1-2 full epochs an hour). Scheduled sampling costs an extra forward pass
# per batch, so it is off here; --set model.teacher_forcing=0.9 turns it on. Use --threads 1 on
# cores shared with other jobs: with 2 threads the same 192-wide epoch took 415 s instead of ~40.
# Measured (README): the Transformer reached 21.59 test BLEU with beam 4 in 8 epochs of its budget.
_FULL = MTSettings(
    max_epochs=12,
    max_minutes=55,
    patience=3,
    batch_size=48,
    lr=2e-3,
    weight_decay=1e-2,
    label_smoothing=0.1,
    subwords="bpe",
    source_vocab=8000,
    target_vocab=8000,
    max_train_len=80,
    dev_sentences=500,
    model=dict(embed_dim=128, hidden_dim=128, n_layers=1, dec_layers=1, dropout=0.2, embed_dropout=0.1),
)
_FULL_TRANSFORMER = replace(
    _FULL,
    lr=1e-3,
    model=dict(embed_dim=128, hidden_dim=128, n_layers=3, dec_layers=3, n_heads=4, ff_dim=512, dropout=0.1),
)

PROFILES: dict[str, dict[str, MTSettings]] = {
    "quick": {arch: _QUICK for arch in ARCHS},
    "full": {**{arch: _FULL for arch in ARCHS}, "transformer": _FULL_TRANSFORMER},
}


# ----------------------------------------------------------------------------- data


@dataclass
class Pair:
    src: list[int]
    tgt: list[int]  # y1 .. yn <eos>
    ref: str  # the reference text


@dataclass
class MTData:
    vocabs: Vocabularies
    splits: dict[str, list[Pair]]
    files: dict[str, str]


def load_translation(files: dict[str, Path], settings: MTSettings, seed: int) -> MTData:
    raw = {name: read_parallel(path) for name, path in files.items()}
    vocabs = build_vocabularies(raw["train"], settings.subwords, settings.source_vocab, settings.target_vocab)
    splits: dict[str, list[Pair]] = {}
    for name, rows in raw.items():
        pairs = [Pair(vocabs.source.encode(s), vocabs.target.encode(t) + [EOS_ID], t) for s, t in rows]
        if name == "train":
            limit = settings.max_train_len
            pairs = [p for p in pairs if p.src and 1 < len(p.tgt) <= limit and len(p.src) <= limit]
            if settings.max_train_pairs and settings.max_train_pairs < len(pairs):
                pairs = random.Random(seed).sample(pairs, settings.max_train_pairs)
        splits[name] = pairs
    return MTData(vocabs, splits, {k: str(v) for k, v in files.items()})


@dataclass
class MTBatch:
    src: torch.Tensor  # (B, S) int64
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T): <bos> y1 .. yn
    tgt_out: torch.Tensor  # (B, T): y1 .. yn <eos>, PAD_ID (ignored) past the end


def collate(pairs: Sequence[Pair]) -> MTBatch:
    B, S, T = len(pairs), max(len(p.src) for p in pairs), max(len(p.tgt) for p in pairs)
    src = torch.full((B, S), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((B, T), PAD_ID, dtype=torch.long)
    for i, p in enumerate(pairs):
        src[i, : len(p.src)] = torch.tensor(p.src)
        tgt_out[i, : len(p.tgt)] = torch.tensor(p.tgt)
        tgt_in[i, : len(p.tgt)] = torch.tensor([BOS_ID] + p.tgt[:-1])
    return MTBatch(src, torch.tensor([len(p.src) for p in pairs]), tgt_in, tgt_out)


def train_batches(pairs: list[Pair], batch_size: int, rng: random.Random) -> Iterator[MTBatch]:
    """Shuffled batches of similar target length (little padding), in random order."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    chunk, batches = batch_size * 50, []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: (len(pairs[i].tgt), len(pairs[i].src)))
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    for b in batches:
        yield collate([pairs[i] for i in b])


# ----------------------------------------------------------------------------- evaluation


def bleu(model: Seq2Seq, pairs: list[Pair], target: SubwordModel, beam_size: int = 1, **kw: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = translate(model, [p.src for p in pairs], beam_size=beam_size, **kw)
    hyps = [target.decode(t.tokens) for t in out]
    score = sacrebleu.corpus_bleu(hyps, [[p.ref for p in pairs]])
    return {"bleu": round(score.score, 2), "signature": str(score.format(signature=True)), "hyps": hyps,
            "seconds": round(time.perf_counter() - t0, 1)}


# ----------------------------------------------------------------------------- training


@dataclass
class RunResult:
    arch: str
    dev_bleu: float
    test_greedy: float
    test_beam: float
    parameters: int
    seconds: float
    epochs: int
    best_epoch: int
    checkpoint: Path


def train_one(
    data: MTData, arch: str, settings: MTSettings, *, profile: str, seed: int, out_dir: Path, progress: bool
) -> RunResult:
    seed_everything(seed)  # per architecture: a result never depends on which others ran first
    cfg = Seq2SeqConfig(
        arch=arch,
        src_vocab_size=len(data.vocabs.source),
        tgt_vocab_size=len(data.vocabs.target),
        max_len=settings.max_train_len,
        **settings.model,
    )
    model = Seq2Seq(cfg)
    n_params = count_parameters(model)
    train = data.splits["train"]
    dev = data.splits["dev"][: settings.dev_sentences]
    test = data.splits["test"][: settings.test_sentences] if settings.test_sentences else data.splits["test"]
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    optimizer, scheduler = make_optimizer(model, settings, steps_per_epoch, fused=True)
    rng = random.Random(seed)

    deadline = time.perf_counter() + 60 * settings.max_minutes if settings.max_minutes else None

    def epoch_batches() -> Iterator[MTBatch]:
        for b in train_batches(train, settings.batch_size, rng):
            if deadline is not None and time.perf_counter() > deadline:
                return
            yield b

    def batch_loss(b: MTBatch) -> tuple[torch.Tensor, int]:
        logits = model(b.src, b.src_lengths, b.tgt_in)  # (B, T, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=settings.label_smoothing
        )
        return loss, int((b.tgt_out != PAD_ID).sum())

    fitted = fit(
        model,
        settings,
        optimizer,
        scheduler,
        arch=arch,
        epoch_batches=epoch_batches,
        steps_per_epoch=steps_per_epoch,
        batch_loss=batch_loss,
        evaluate=lambda: {"dev": bleu(model, dev, data.vocabs.target)["bleu"]},
        progress=progress,
    )
    model.eval()
    greedy = bleu(model, test, data.vocabs.target)
    beam = bleu(model, test, data.vocabs.target, beam_size=settings.beam_size, length_penalty=settings.length_penalty)
    best_dev = max(h["dev"] for h in fitted.history)
    print(
        f"  {arch:<11} test BLEU greedy {greedy['bleu']:.2f} ({greedy['seconds']}s)  beam{settings.beam_size} "
        f"{beam['bleu']:.2f} ({beam['seconds']}s)",
        file=sys.stderr,
        flush=True,
    )
    metrics: dict[str, Any] = {
        "dev_bleu": best_dev,
        "test_bleu_greedy": greedy["bleu"],
        "test_bleu_beam": beam["bleu"],
        "beam_size": settings.beam_size,
        "length_penalty": settings.length_penalty,
        "bleu_signature": greedy["signature"],
        "dev_size": len(dev),
        "test_size": len(test),
        "parameters": n_params,
        "train_seconds": round(fitted.seconds, 2),
        "test_decode_seconds": {"greedy": greedy["seconds"], "beam": beam["seconds"]},
        "test_examples": [
            {"source": s, "reference": p.ref, "greedy": g, "beam": b}
            for s, p, g, b in zip(
                [r[0] for r in read_parallel(data.files["test"])[:5]], test[:5], greedy["hyps"][:5], beam["hyps"][:5]
            )
        ],
    }
    training = {
        "task": TASK,
        "arch": arch,
        "profile": profile,
        "seed": seed,
        "epochs": len(fitted.history),
        "best_epoch": fitted.best_epoch,
        "train_size": len(train),
        "dev_size": len(dev),
        "test_size": len(test),
        "train_tokens": sum(len(p.tgt) for p in train),
        "vocab_size": {"source": len(data.vocabs.source), "target": len(data.vocabs.target)},
        "subwords": {"source": data.vocabs.source.to_dict(), "target": data.vocabs.target.to_dict()},
        "data_files": data.files,
        "settings": asdict(settings),
        "history": fitted.history,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    arch_dir = out_dir / TASK / arch
    ckpt = save_checkpoint(
        arch_dir / "checkpoint.pt",
        task=TASK,
        model=model,
        cfg=cfg,  # type: ignore[arg-type]  (only its to_dict() is used)
        vocab=data.vocabs.target.pieces,
        labels=[],
        metrics=metrics,
        training=training,
    )
    shown = {k: v for k, v in training.items() if k != "subwords"}
    (arch_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "training": shown, "model_config": cfg.to_dict()}, indent=2, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    return RunResult(
        arch, best_dev, greedy["bleu"], beam["bleu"], n_params, fitted.seconds, len(fitted.history),
        fitted.best_epoch, ckpt,
    )


def format_table(results: list[RunResult], beam_size: int) -> str:
    beam = f"beam{beam_size}"
    lines = [f"{'arch':<12} {'dev BLEU':>8} {'greedy':>7} {beam:>7} {'params':>10} {'epochs':>7} {'train s':>8}"]
    for r in results:
        lines.append(
            f"{r.arch:<12} {r.dev_bleu:>8.2f} {r.test_greedy:>7.2f} {r.test_beam:>7.2f} {r.parameters:>10,}"
            f" {f'{r.best_epoch}/{r.epochs}':>7} {r.seconds:>8.1f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = train_parser(
        TASK, "Train English->Spanish encoder-decoders (rnn, lstm, gru, bilstm, transformer).", PROFILES, ".tsv",
        threads=1,
    )
    p.add_argument("--task", choices=[TASK], default=TASK, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = split_files(args, TASK, ".tsv")
    if files is None:
        return 2
    out_dir = args.out or paths.runs_dir()
    torch.set_num_threads(max(1, args.threads))
    progress = not args.no_progress and sys.stderr.isatty()
    results: list[RunResult] = []
    cache: dict[tuple, MTData] = {}
    total_start = time.perf_counter()
    beam_size = 4
    for arch in resolve_archs(args.arch):
        settings = PROFILES[args.profile][arch]
        if args.max_epochs:
            settings = replace(settings, max_epochs=args.max_epochs)
        settings = apply_overrides(settings, args.set)
        beam_size = settings.beam_size
        key = (settings.subwords, settings.source_vocab, settings.target_vocab, settings.max_train_pairs,
               settings.max_train_len)
        if key not in cache:
            try:
                cache[key] = load_translation(files, settings, args.seed)
            except (OSError, ValueError) as exc:
                print(f"seqserve train: {exc}", file=sys.stderr)
                return 2
        data = cache[key]
        print(
            f"[{TASK}/{arch}] profile {args.profile}: train {len(data.splits['train'])} pairs, "
            f"subwords {settings.subwords} {len(data.vocabs.source)}/{len(data.vocabs.target)}",
            file=sys.stderr,
            flush=True,
        )
        result = train_one(data, arch, settings, profile=args.profile, seed=args.seed, out_dir=out_dir,
                           progress=progress)
        results.append(result)
    print(format_table(results, beam_size))
    print(f"total {time.perf_counter() - total_start:.1f}s; checkpoints under {out_dir / TASK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
