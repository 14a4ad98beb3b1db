"""``seqserve train``: train the model zoo on a task and write checkpoints.

    seqserve train --task sentiment --arch all --profile quick

For each architecture: build the vocabulary from the training split (with
``seqserve.text.tokenize``, exactly as the server will), train with early
stopping on dev accuracy, keep the best-on-dev weights, score the test split,
and write ``<out>/<task>/<arch>/{checkpoint.pt,metrics.json}``.

Tasks plug in through ``TASKS``: a task knows how to read its splits, which
model head it uses, how to batch its examples and how to score them. Only
sentiment exists so far; tagging and translation add their own entries.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from export import paths
from export.corpora.formats import read_sentiment
from export.models import ARCHS, ModelConfig, build_model, count_parameters, save_checkpoint
from export.vocab import PAD_ID, UNK_ID, Vocab
from seqserve.text import tokenize

SPLITS = ("train", "dev", "test")


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainSettings:
    """Optimization and data settings; ``model`` overrides ModelConfig fields."""

    max_epochs: int = 10
    patience: int = 3  # epochs without a new best dev accuracy before stopping
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    word_dropout: float = 0.0  # chance a training token becomes <unk>: teaches the model to cope with unseen words
    grad_clip: float = 5.0  # vanilla tanh RNNs explode without it
    min_count: int = 1
    max_vocab: int | None = None
    lr_decay: bool = True  # linear decay to 10% over max_epochs: late epochs fine-tune instead of bouncing
    max_train_len: int = 256  # longer training sentences are cut (memory); evaluation never truncates
    model: dict[str, Any] = field(default_factory=dict)


# quick: all five in a few CPU minutes (CI, the demo). Small widths, 4 epochs,
# words seen once map to <unk>.
_QUICK = TrainSettings(
    max_epochs=4,
    patience=2,
    batch_size=32,
    lr=3e-3,
    word_dropout=0.1,
    min_count=2,
    model=dict(
        embed_dim=64, hidden_dim=64, n_layers=1, dropout=0.3, embed_dropout=0.2, n_heads=4, ff_dim=128, pooling="mean"
    ),
)

# full: best measured dev accuracy within ~45 minutes for all five on 2 cores.
# Sentences are short and the training set small (~10k), so regularization
# matters more than depth: one wide layer, dropout on words, embeddings and the
# pooled vector, weight decay and label smoothing.
_FULL = TrainSettings(
    max_epochs=12,
    patience=4,
    batch_size=32,
    lr=2e-3,
    weight_decay=1e-2,
    label_smoothing=0.1,
    word_dropout=0.2,
    min_count=1,
    model=dict(embed_dim=300, hidden_dim=256, n_layers=1, dropout=0.5, embed_dropout=0.3, pooling="max"),
)
# The Transformer learned poorly at the recurrent models' width and dropout
# (dev 0.69 after 8 epochs); narrower, two layers and light dropout reached 0.77.
_FULL_TRANSFORMER = replace(
    _FULL,
    lr=1e-3,
    word_dropout=0.1,
    model=dict(
        embed_dim=128, hidden_dim=128, n_layers=2, n_heads=4, ff_dim=256, dropout=0.1, embed_dropout=0.1, pooling="max"
    ),
)

PROFILES: dict[str, dict[str, TrainSettings]] = {
    "quick": {arch: _QUICK for arch in ARCHS},
    "full": {**{arch: _FULL for arch in ARCHS}, "transformer": _FULL_TRANSFORMER},
}


# ----------------------------------------------------------------------------- data


@dataclass
class Example:
    ids: list[int]
    target: int


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) int64, right-padded with PAD_ID
    lengths: torch.Tensor  # (B,) int64
    targets: torch.Tensor  # (B,) int64


def collate(examples: Sequence[Example], max_len: int | None = None) -> Batch:
    seqs = [e.ids[:max_len] if max_len else e.ids for e in examples]
    T = max(1, max(len(s) for s in seqs))
    tokens = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    targets = torch.tensor([e.target for e in examples], dtype=torch.long)  # (B,)
    return Batch(tokens, lengths, targets)


def train_batches(examples: list[Example], batch_size: int, rng: random.Random, max_len: int) -> Iterator[Batch]:
    """Shuffled batches of similar length: little padding (faster recurrent steps), still random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: len(examples[i].ids))
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    for b in batches:
        yield collate([examples[i] for i in b], max_len)


def eval_batches(examples: list[Example], batch_size: int = 256) -> Iterator[Batch]:
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for start in range(0, len(order), batch_size):
        yield collate([examples[i] for i in order[start : start + batch_size]])


def apply_word_dropout(tokens: torch.Tensor, lengths: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    if p <= 0:
        return tokens
    real = torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    drop = (torch.rand(tokens.shape, generator=gen) < p) & real  # (B, T)
    return tokens.masked_fill(drop, UNK_ID)


# ----------------------------------------------------------------------------- tasks


@dataclass
class TaskData:
    vocab: Vocab
    labels: list[str]
    splits: dict[str, list[Example]]
    files: dict[str, str]


def load_sentiment(files: dict[str, Path], settings: TrainSettings) -> TaskData:
    raw = {name: read_sentiment(path) for name, path in files.items()}
    tokenized = {name: [(label, tokenize(text, lowercase=True)) for label, text in rows] for name, rows in raw.items()}
    vocab = Vocab.build((toks for _, toks in tokenized["train"]), settings.min_count, settings.max_vocab)
    labels = sorted({label for label, _ in tokenized["train"]})
    label_id = {label: i for i, label in enumerate(labels)}
    splits: dict[str, list[Example]] = {}
    for name, rows in tokenized.items():
        unknown = {label for label, _ in rows} - set(label_id)
        if unknown:
            raise ValueError(f"{files[name]}: labels not in the training split: {sorted(unknown)}")
        examples = [Example(vocab.encode(toks), label_id[label]) for label, toks in rows]
        # An empty training sentence teaches nothing; dev/test keep every row so scores are honest.
        splits[name] = [e for e in examples if e.ids] if name == "train" else examples
    return TaskData(vocab, labels, splits, {k: str(v) for k, v in files.items()})


@torch.no_grad()
def accuracy(model: nn.Module, examples: list[Example]) -> float:
    model.eval()
    correct = 0
    for batch in eval_batches(examples):
        logits = model(batch.tokens, batch.lengths)  # (B, n_labels)
        correct += int((logits.argmax(-1) == batch.targets).sum())
    return correct / max(1, len(examples))


def sentence_loss(logits: torch.Tensor, batch: Batch, settings: TrainSettings) -> torch.Tensor:
    # logits (B, n_labels), targets (B,)
    return F.cross_entropy(logits, batch.targets, label_smoothing=settings.label_smoothing)


@dataclass(frozen=True)
class Task:
    name: str
    load: Callable[[dict[str, Path], TrainSettings], TaskData]
    loss: Callable[[torch.Tensor, Batch, TrainSettings], torch.Tensor]
    score: Callable[[nn.Module, list[Example]], float]  # higher is better (early stopping)
    metric: str


TASKS: dict[str, Task] = {
    "sentiment": Task("sentiment", load_sentiment, sentence_loss, accuracy, "accuracy"),
}


# ----------------------------------------------------------------------------- training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(
    model: nn.Module, settings: TrainSettings, steps_per_epoch: int, fused: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a linear decay to 10% over the run (when ``settings.lr_decay``)."""
    # Weight decay on weight matrices only: not on biases or LayerNorm gains, and not on
    # embeddings, where a rare word's vector would mostly shrink between its few updates.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        fused=True if fused else None,
    )
    total_steps = steps_per_epoch * settings.max_epochs
    schedule = (lambda step: 1.0 - 0.9 * min(1.0, step / total_steps)) if settings.lr_decay else (lambda step: 1.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


@dataclass
class Fitted:
    best_epoch: int
    epochs: int
    history: list[dict[str, float]]
    seconds: float


def fit(
    model: nn.Module,
    settings: TrainSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    *,
    arch: str,
    epoch_batches: Callable[[], Iterator[Any]],
    steps_per_epoch: int,
    batch_loss: Callable[[Any], tuple[torch.Tensor, int]],
    evaluate: Callable[[], dict[str, float]],
    progress: bool,
) -> Fitted:
    """Train with early stopping on ``evaluate()["dev"]`` (higher is better); the model
    ends with its best-on-dev weights. ``batch_loss`` returns a batch's mean loss and the
    number of items it averages over."""
    best_score, best_epoch, best_state, stale = -1.0, 0, None, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        total_loss, seen = 0.0, 0
        bar = tqdm(
            epoch_batches(),
            total=steps_per_epoch,
            desc=f"{arch} epoch {epoch}",
            leave=False,
            disable=not progress,
            dynamic_ncols=True,
        )
        for batch in bar:
            loss, n = batch_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * n
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", refresh=False)
        if not seen and history:  # epoch_batches gave nothing: a time budget ran out
            break
        scores = evaluate()
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "train_loss": total_loss / max(1, seen), **scores, "seconds": round(elapsed, 1)})
        improved = scores["dev"] > best_score
        if improved:
            best_score, best_epoch, stale = scores["dev"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        shown = "  ".join(f"{name} {value:.4f}" for name, value in scores.items())
        print(
            f"  {arch:<11} epoch {epoch:>2}  loss {total_loss / max(1, seen):.4f}  {shown}"
            f"{'  *' if improved else ''}  {elapsed:6.1f}s",
            file=sys.stderr,
            flush=True,
        )
        if stale >= settings.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    return Fitted(best_epoch, len(history), history, time.perf_counter() - start)


@dataclass
class RunResult:
    arch: str
    dev: float
    test: float
    parameters: int
    seconds: float
    epochs: int
    best_epoch: int
    checkpoint: Path


def train_one(
    task: Task,
    data: TaskData,
    arch: str,
    settings: TrainSettings,
    *,
    profile: str,
    seed: int,
    out_dir: Path,
    progress: bool,
) -> RunResult:
    # Seed per architecture, so one arch's result doesn't depend on which others ran before it.
    seed_everything(seed)
    cfg = ModelConfig(
        arch=arch,
        vocab_size=len(data.vocab),
        n_labels=len(data.labels),
        pad_id=PAD_ID,
        max_len=max(settings.max_train_len, 1),
        **settings.model,
    )
    model = build_model(task.name, cfg)
    n_params = count_parameters(model)
    train = data.splits["train"]
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    optimizer, scheduler = make_optimizer(model, settings, steps_per_epoch)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)

    def batch_loss(batch: Batch) -> tuple[torch.Tensor, int]:
        tokens = apply_word_dropout(batch.tokens, batch.lengths, settings.word_dropout, gen)
        logits = model(tokens, batch.lengths)  # (B, n_labels)
        return task.loss(logits, batch, settings), len(batch.targets)

    fitted = fit(
        model,
        settings,
        optimizer,
        scheduler,
        arch=arch,
        epoch_batches=lambda: train_batches(train, settings.batch_size, rng, settings.max_train_len),
        steps_per_epoch=steps_per_epoch,
        batch_loss=batch_loss,
        evaluate=lambda: {"dev": task.score(model, data.splits["dev"])},
        progress=progress,
    )
    best_score = max(h["dev"] for h in fitted.history)
    train_seconds, history, best_epoch = fitted.seconds, fitted.history, fitted.best_epoch
    test = task.score(model, data.splits["test"])
    sizes = {f"{name}_size": len(data.splits[name]) for name in SPLITS}
    metrics = {
        f"dev_{task.metric}": best_score,
        f"test_{task.metric}": test,
        **sizes,
        "parameters": n_params,
        "train_seconds": round(train_seconds, 2),
    }
    training = {
        "task": task.name,
        "arch": arch,
        "profile": profile,
        "seed": seed,
        "epochs": len(history),
        "best_epoch": best_epoch,
        **sizes,
        "vocab_size": len(data.vocab),
        "data_files": data.files,
        "settings": asdict(settings),
        "history": history,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    arch_dir = out_dir / task.name / arch
    ckpt = save_checkpoint(
        arch_dir / "checkpoint.pt",
        task=task.name,
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
    return RunResult(arch, best_score, test, n_params, train_seconds, len(history), best_epoch, ckpt)


def format_table(results: list[RunResult], metric: str) -> str:
    lines = [
        f"{'arch':<12} {'dev ' + metric[:3]:>8} {'test ' + metric[:3]:>9} {'params':>10} {'epochs':>7} {'train s':>8}",
    ]
    for r in results:
        epochs = f"{r.best_epoch}/{r.epochs}"
        lines.append(f"{r.arch:<12} {r.dev:>8.4f} {r.test:>9.4f} {r.parameters:>10,} {epochs:>7} {r.seconds:>8.1f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def train_parser(
    task: str, description: str, profiles: Sequence[str], suffix: str, threads: int | None
) -> argparse.ArgumentParser:
    """The options every ``seqserve train --task <task>`` command takes (``--set`` included)."""
    routed = task != "sentiment"
    p = argparse.ArgumentParser(prog="seqserve train" + (f" --task {task}" if routed else ""), description=description)
    p.add_argument("--arch", nargs="+", default=["all"], choices=[*ARCHS, "all"],
                   help="architectures to train (default: all)")
    p.add_argument("--profile", choices=sorted(profiles), default="quick",
                   help="quick: minutes on 2 CPU cores; full: best quality")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="corpora root (default: $SEQSERVE_DATA_DIR or ~/.cache/seqserve/data)")
    for split, what in (("train", "training file"), ("dev", "dev file for early stopping"), ("test", "test file")):
        p.add_argument(f"--{split}", type=Path, help=f"{what} (default: <data-dir>/{task}/{split}{suffix})")
    p.add_argument("--out", type=Path, default=None,
                   help="runs directory (default: $SEQSERVE_RUNS_DIR or ~/.cache/seqserve/runs)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=threads,
                   help=f"torch intra-op threads (default: {threads or 'all cores'})")
    p.add_argument("--max-epochs", type=int, default=None, help="override the profile's epoch limit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a profile setting, e.g. --set lr=1e-3 --set model.hidden_dim=128")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = train_parser(
        "sentiment", "Train sequence models (rnn, lstm, gru, bilstm, transformer) and write checkpoints.",
        PROFILES, ".tsv", threads=None,
    )
    p.add_argument(
        "--task", choices=sorted(TASKS), default="sentiment", help="tagging: see seqserve train --task tagging --help"
    )
    return p


def available_cores() -> int:
    # The cores this process may run on (a container's limit), not the host's count.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_archs(requested: Sequence[str]) -> list[str]:
    if "all" in requested:
        return list(ARCHS)
    return [a for a in ARCHS if a in requested]  # canonical order, no duplicates


def split_files(args: argparse.Namespace, task: str, suffix: str) -> dict[str, Path] | None:
    """The train/dev/test files: ``--train``/``--dev``/``--test``, else ``<data dir>/<task>/<split><suffix>``.
    None (and the reason on stderr) when one is missing."""
    data_dir = args.data_dir or paths.data_dir()
    files = {name: Path(getattr(args, name) or data_dir / task / f"{name}{suffix}") for name in SPLITS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        print(f"seqserve train: missing data file(s): {', '.join(missing)}", file=sys.stderr)
        return None
    return files


def apply_overrides(settings: Any, overrides: list[str]) -> Any:
    """``--set KEY=JSON`` on a settings dataclass: ``model.X`` sets a model field, other keys a setting."""
    for item in overrides:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string
        if key.startswith("model."):
            settings = replace(settings, model={**settings.model, key[len("model.") :]: value})
        elif key in settings.__dataclass_fields__:
            settings = replace(settings, **{key: value})
        else:
            raise SystemExit(f"seqserve train: unknown setting {key!r}")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    task = TASKS[args.task]
    files = split_files(args, task.name, ".tsv")
    if files is None:
        return 2
    out_dir = args.out or paths.runs_dir()
    torch.set_num_threads(args.threads or available_cores())
    progress = not args.no_progress and sys.stderr.isatty()
    archs = resolve_archs(args.arch)

    results: list[RunResult] = []
    data_cache: dict[tuple[int, int | None], TaskData] = {}
    total_start = time.perf_counter()
    for arch in archs:
        settings = PROFILES[args.profile][arch]
        if args.max_epochs:
            settings = replace(settings, max_epochs=args.max_epochs)
        settings = apply_overrides(settings, args.set)
        key = (settings.min_count, settings.max_vocab)  # archs sharing vocab settings share the encoded data
        if key not in data_cache:
            try:
                data_cache[key] = task.load(files, settings)
            except (OSError, ValueError) as exc:  # unreadable file, bad line, unknown label
                print(f"seqserve train: {exc}", file=sys.stderr)
                return 2
        data = data_cache[key]
        print(
            f"[{task.name}/{arch}] profile {args.profile}: "
            + ", ".join(f"{name} {len(data.splits[name])}" for name in SPLITS)
            + f", vocab {len(data.vocab)}",
            file=sys.stderr,
            flush=True,
        )
        result = train_one(
            task, data, arch, settings, profile=args.profile, seed=args.seed, out_dir=out_dir, progress=progress
        )
        print(
            f"[{task.name}/{arch}] dev {result.dev:.4f} test {result.test:.4f} -> {result.checkpoint}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print(format_table(results, task.metric))
    print(f"total {time.perf_counter() - total_start:.1f}s; checkpoints under {out_dir / task.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
