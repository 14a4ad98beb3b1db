"""The model zoo: shapes, padding invariance, checkpoint round trips (tiny random-init models)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from export.models import (  # noqa: E402
    ARCHS,
    ModelConfig,
    SentimentClassifier,
    build_encoder,
    length_mask,
    load_checkpoint,
    reverse_within_length,
    save_checkpoint,
)

VOCAB = 40
SHAPES = [(1, 1), (4, 7), (7, 33), (3, 64)]


def tiny_config(arch: str, **overrides) -> ModelConfig:
    base = dict(arch=arch, vocab_size=VOCAB, n_labels=3, embed_dim=12, hidden_dim=16, n_layers=2, n_heads=2, ff_dim=24)
    base.update(overrides)
    return ModelConfig(**base)


def poolings(arch: str) -> list[str]:
    return ["max", "mean"] if arch == "transformer" else ["max", "mean", "last"]


def random_batch(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)  # (B,)
    lengths[0] = T
    tokens = torch.randint(1, VOCAB, (B, T), generator=g)  # (B, T)
    tokens[~length_mask(lengths, T)] = 0
    return tokens, lengths


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(arch)
    model = SentimentClassifier(cfg).eval()
    tokens, lengths = random_batch(5, 9)
    with torch.no_grad():
        logits = model(tokens, lengths)
        states = model.encoder(tokens, lengths)
    assert logits.shape == (5, 3) and logits.dtype == torch.float32
    out_dim = 2 * cfg.hidden_dim if arch == "bilstm" else cfg.hidden_dim
    assert states.shape == (5, 9, out_dim)
    # padded positions are zero, so per-token heads can never read them
    assert torch.all(states[~length_mask(lengths, 9)] == 0)
    assert build_encoder(cfg).out_dim == out_dim


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_never_changes_logits(arch: str) -> None:
    for pooling in poolings(arch):
        torch.manual_seed(1)
        model = SentimentClassifier(tiny_config(arch, pooling=pooling)).eval()
        for B, T in SHAPES:
            tokens, lengths = random_batch(B, T, seed=B * 100 + T)
            # extra trailing padding beyond the longest row must not matter either
            padded = torch.cat([tokens, torch.zeros(B, 5, dtype=torch.long)], dim=1)
            with torch.no_grad():
                batch_logits = model(tokens, lengths)
                extra_logits = model(padded, lengths)
                alone = torch.cat([model(tokens[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(B)])
            assert torch.allclose(batch_logits, alone, atol=1e-5), (arch, pooling, B, T)
            assert torch.allclose(extra_logits, alone, atol=1e-5), (arch, pooling, B, T)


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_states_match_unpadded(arch: str) -> None:
    """Per-token states (reused by tagging/translation) are padding-invariant too."""
    torch.manual_seed(2)
    encoder = build_encoder(tiny_config(arch)).eval()
    tokens, lengths = random_batch(6, 17, seed=3)
    with torch.no_grad():
        states = encoder(tokens, lengths)
        for i in range(6):
            n = int(lengths[i])
            alone = encoder(tokens[i : i + 1, :n], lengths[i : i + 1])
            assert torch.allclose(states[i : i + 1, :n], alone, atol=1e-5)


def test_bilstm_matches_packed_sequences() -> None:
    """The reversal trick equals PyTorch's packed bidirectional LSTM with the same weights."""
    torch.manual_seed(3)
    cfg = tiny_config("bilstm", n_layers=1)
    encoder = build_encoder(cfg).eval()
    ref = torch.nn.LSTM(cfg.embed_dim, cfg.hidden_dim, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, name).copy_(getattr(encoder.fwd[0], name))
            getattr(ref, name + "_reverse").copy_(getattr(encoder.bwd[0], name))
        tokens, lengths = random_batch(5, 12, seed=4)
        x = encoder.embed(tokens)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = ref(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=12)
        assert torch.allclose(encoder(tokens, lengths), out, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 4))
def test_reverse_within_length(lengths: list[int], extra: int) -> None:
    T = max(lengths) + extra
    x = torch.arange(len(lengths) * T, dtype=torch.float32).view(len(lengths), T, 1)  # (B, T, 1)
    n = torch.tensor(lengths)
    y = reverse_within_length(x, n)
    for b, L in enumerate(lengths):
        assert torch.equal(y[b, :L], x[b, :L].flip(0))
        assert torch.equal(y[b, L:], x[b, L:])
    assert torch.equal(reverse_within_length(y, n), x)


def test_empty_row_is_defined() -> None:
    model = SentimentClassifier(tiny_config("transformer")).eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 2]))
    assert torch.isfinite(logits).all()


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError):
        ModelConfig(arch="cnn")
    with pytest.raises(ValueError):
        ModelConfig(arch="transformer", pooling="last")
    cfg = tiny_config("gru", pooling="last")
    assert ModelConfig.from_dict({**cfg.to_dict(), "from_the_future": 1}) == cfg


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip(arch: str, tmp_path) -> None:
    torch.manual_seed(4)
    cfg = tiny_config(arch)
    model = SentimentClassifier(cfg).eval()
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]
    path = save_checkpoint(
        tmp_path / "ckpt" / "checkpoint.pt",
        task="sentiment",
        model=model,
        cfg=cfg,
        vocab=vocab,
        labels=["a", "b", "c"],
        metrics={"test_accuracy": 0.5},
        training={"profile": "quick", "data": tmp_path},  # a Path is stored as text
    )
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    assert ckpt["vocab"] == vocab and ckpt["labels"] == ["a", "b", "c"]
    assert ckpt["metrics"] == {"test_accuracy": 0.5} and ckpt["training"]["data"] == str(tmp_path)
    assert ModelConfig.from_dict(ckpt["config"]) == cfg
    tokens, lengths = random_batch(7, 33)
    with torch.no_grad():
        assert torch.equal(model(tokens, lengths), loaded(tokens, lengths))
