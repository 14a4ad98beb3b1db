"""Translation, model side: the pure-Python subword model, the encoder-decoders (padding invariance,
step-by-step decoding == teacher-forced forward, ragged Transformer caches), scheduled sampling, and
the numpy greedy / beam search (beam 1 == greedy, n-best order, early stopping, rows leaving)."""

from __future__ import annotations

import numpy as np
import pytest

from seqserve.subword import BOS_ID, EOS_ID, MARK, PAD_ID, UNK_ID, SubwordModel, split_words
from seqserve import decoding

TEXTS = [
    "In the beginning God created the heavens and the earth.",
    "The earth was formless and empty. Darkness was on the surface of the deep.",
    "God said, “Let there be light,” and there was light.",
    "God saw the light, and saw that it was good. God divided the light from the darkness.",
]


# ----------------------------------------------------------------------------- subwords (no torch)


def test_split_words_marks_spaces() -> None:
    assert split_words("Hola, mundo.") == [MARK + "Hola", ",", MARK + "mundo", "."]
    assert split_words("  a  b ") == [MARK + "a", MARK + "b"]


def test_bpe_round_trip_and_files(tmp_path) -> None:
    model = SubwordModel.train(TEXTS, vocab_size=120, min_count=1)
    assert model.pieces[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert len(model) <= 120
    for text in TEXTS:
        ids = model.encode(text)
        assert all(i >= 4 for i in ids)
        assert model.decode(ids) == " ".join(text.split())
        assert model.decode(ids + [EOS_ID, 7, 8]) == model.decode(ids)  # stops at <eos>
    # merges make frequent words single pieces
    assert model.encode_pieces("God") == [MARK + "God"]
    again = SubwordModel.load(model.save(tmp_path / "m.json"))
    assert again.pieces == model.pieces and again.encode(TEXTS[2]) == model.encode(TEXTS[2])


def test_unknown_characters_become_unk() -> None:
    model = SubwordModel.train(TEXTS, vocab_size=80)
    assert UNK_ID in model.encode("Zygote ψ")


def test_incremental_detokenization_matches_decode() -> None:
    model = SubwordModel.train(TEXTS, vocab_size=60, min_count=1)  # small: words split into several pieces
    for text in TEXTS:
        ids = model.encode(text)
        d = model.detokenizer()
        pieces = [d.push(i) for i in [BOS_ID, *ids, EOS_ID, 9]]
        assert "".join(pieces) + d.flush() == model.decode(ids)
        assert pieces[-1] == ""  # nothing after <eos>


def test_words_kind() -> None:
    model = SubwordModel.train(TEXTS, vocab_size=1000, kind="words")
    assert model.encode_pieces("God saw") == [MARK + "God", MARK + "saw"]  # "said" is seen once: <unk>
    assert model.encode("said") == [UNK_ID]
    assert model.encode("Unseen") == [UNK_ID]


def test_serving_modules_are_torch_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, seqserve.subword, seqserve.decoding; "
        "bad = [m for m in ('torch', 'onnxruntime', 'grpc', 'sentencepiece') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------- numpy search (no torch)


class ToyLM:
    """A fixed random bigram model as encode/step callables; state: (1, B, 4) running sums."""

    def __init__(self, vocab: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.table = rng.normal(scale=2.0, size=(vocab, vocab)).astype(np.float32)
        self.table[:, EOS_ID] -= 1.0

    def encode(self, src, lengths):
        B = src.shape[0]
        memory = src[:, :, None].astype(np.float32)  # (B, S, 1)
        return (memory,), {"h": np.zeros((1, B, 4), np.float32) + lengths[None, :, None]}

    def step(self, prev, state, memory, lengths, position):
        bias = state["h"][0, :, :1] * 0.1 + memory[0][:, :1, 0] * 0.01  # (B, 1): depends on the row's own data
        logits = self.table[prev] + bias
        return decoding.log_softmax_(logits), {"h": state["h"] + 1.0}


def test_beam_one_equals_greedy_and_nbest_sorted() -> None:
    lm = ToyLM()
    src = np.array([[5, 6, 7], [8, 9, 0], [4, 0, 0]], np.int64)
    lengths = np.array([3, 2, 1], np.int64)
    kw = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_len=9)
    g = decoding.greedy(lm.encode, lm.step, src, lengths, **kw)
    b1 = decoding.beam_search(lm.encode, lm.step, src, lengths, beam_size=1, **kw)
    assert [t.tokens for t in g] == [t.tokens for t in b1]
    b5 = decoding.beam_search(lm.encode, lm.step, src, lengths, beam_size=5, n_best=5, early_stopping=False, **kw)
    for t in b5:
        scores = [h.score for h in t.hypotheses]
        assert scores == sorted(scores, reverse=True) and len(scores) == 5
        for h in t.hypotheses:
            assert len(h.tokens) <= 9
    # beam search never scores worse than greedy on its own objective (same normalization)
    for gt, bt in zip(g, b5):
        assert bt.hypotheses[0].score >= gt.hypotheses[0].score - 1e-9


def test_batch_equals_one_by_one() -> None:
    lm = ToyLM(seed=3)
    src = np.array([[5, 6, 7], [8, 9, 0]], np.int64)
    lengths = np.array([3, 2], np.int64)
    kw = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_len=np.array([7, 11]))
    for fn in (decoding.greedy, lambda *a, **k: decoding.beam_search(*a, beam_size=3, n_best=2, **k)):
        together = fn(lm.encode, lm.step, src, lengths, **kw)
        for i in range(2):
            alone = fn(lm.encode, lm.step, src[i : i + 1], lengths[i : i + 1], bos_id=BOS_ID, eos_id=EOS_ID,
                       max_len=kw["max_len"][i])
            assert [h.tokens for h in alone[0].hypotheses] == [h.tokens for h in together[i].hypotheses]


def test_take_rows_and_initial_state() -> None:
    state = {"h": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    out = decoding.take_rows(state, np.array([2, 0, 0]))
    assert out["h"].shape == (2, 3, 4) and np.array_equal(out["h"][:, 0], state["h"][:, 2])
    specs = [{"name": "k", "shape": [2, "batch", 4, "past", 8], "batch_axis": 1, "init": "empty"},
             {"name": "h", "shape": [1, "batch", 4], "batch_axis": 1, "init": "encoder"}]
    init = decoding.initial_state(specs, 5, {"h": np.ones((1, 5, 4), np.float32)})
    assert init["k"].shape == (2, 5, 4, 0, 8) and init["h"].shape == (1, 5, 4)


# ----------------------------------------------------------------------------- the PyTorch models

torch = pytest.importorskip("torch")

from export.models import ARCHS  # noqa: E402
from export.translation.decode import translate  # noqa: E402
from export.translation.model import Seq2Seq, Seq2SeqConfig  # noqa: E402

SRC_V, TGT_V = 40, 30


def tiny(arch: str, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(arch=arch, src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, embed_dim=16, hidden_dim=16,
                        n_layers=2, dec_layers=2, n_heads=2, ff_dim=32, **kw)
    return Seq2Seq(cfg).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, SRC_V, (3, 7), generator=g)
    lengths = torch.tensor([7, 4, 1])
    src[torch.arange(7)[None, :] >= lengths[:, None]] = PAD_ID
    tgt = torch.randint(4, TGT_V, (3, 6), generator=g)
    tgt[:, 0] = BOS_ID
    return src, lengths, tgt


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_invariance(arch: str) -> None:
    model = tiny(arch)
    src, lengths, tgt = batch()
    with torch.no_grad():
        full = model(src, lengths, tgt)  # (3, 6, V)
        for i in range(3):
            alone = model(src[i : i + 1, : lengths[i]], lengths[i : i + 1], tgt[i : i + 1])
            assert torch.allclose(alone, full[i : i + 1], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_by_step_equals_teacher_forced_forward(arch: str) -> None:
    model = tiny(arch)
    src, lengths, tgt = batch()
    with torch.no_grad():
        full = model(src, lengths, tgt)
        memory, state = model.encode(src, lengths)
        steps = []
        for t in range(tgt.size(1)):
            logits, state = model.step(tgt[:, t], state, memory, lengths, torch.full((3,), t))
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    specs = model.state_specs()
    assert [s["name"] for s in specs] == model.state_names
    for s, tensor in zip(specs, state):
        assert tensor.size(s["batch_axis"]) == 3


def test_transformer_rows_at_different_positions_share_a_cache() -> None:
    """A sequence that joins a running batch later: its history right-aligned, left-padded with zeros."""
    model = tiny("transformer")
    src, lengths, tgt = batch()
    with torch.no_grad():
        memory, _ = model.encode(src, lengths)
        alone = []
        for r, n_steps in ((0, 4), (1, 2)):  # row 0 fed 4 tokens, row 1 only 2
            _, state = model.encode(src[r : r + 1], lengths[r : r + 1])
            for t in range(n_steps):
                own = [m[r : r + 1] for m in memory]
                logits, state = model.step(tgt[r : r + 1, t], state, own, lengths[r : r + 1], torch.tensor([t]))
            alone.append((state, logits))
        shared = []
        for spec, longer, shorter in zip(model.state_specs(), alone[0][0], alone[1][0]):
            grow, batch_axis = spec["grow_axis"], spec["batch_axis"]
            pad = torch.zeros_like(shorter.narrow(grow, 0, 2))  # row 1's cache 2 slots shorter
            shared.append(torch.cat((longer, torch.cat((pad, shorter), grow)), batch_axis))
        prev = torch.stack((tgt[0, 4], tgt[1, 2]))
        together, _ = model.step(prev, shared, [m[:2] for m in memory], lengths[:2], torch.tensor([4, 2]))
        for r, n in ((0, 4), (1, 2)):
            state = alone[r][0]
            own = [m[r : r + 1] for m in memory]
            expected, _ = model.step(prev[r : r + 1], state, own, lengths[r : r + 1], torch.tensor([n]))
            assert torch.allclose(together[r : r + 1], expected, atol=1e-5)


def test_scheduled_sampling_changes_inputs_only_in_training() -> None:
    model = tiny("gru", teacher_forcing=0.0)
    src, lengths, tgt = batch()
    with torch.no_grad():
        eval_out = model(src, lengths, tgt)
        model.train()
        model.decoder.drop.p = model.decoder.embed_drop.p = 0.0
        torch.manual_seed(0)
        sampled = model(src, lengths, tgt)
    model.eval()
    assert torch.allclose(sampled[:, 0], eval_out[:, 0], atol=1e-6)  # <bos> is always gold
    assert not torch.allclose(sampled, eval_out)


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_pytorch_decoders(arch: str) -> None:
    model = tiny(arch)
    sources = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
    greedy = translate(model, sources, beam_size=1, max_len=8)
    beam1 = translate(model, sources, beam_size=1, force_beam=True, max_len=8)
    assert [t.tokens for t in greedy] == [t.tokens for t in beam1]
    beam = translate(model, sources, beam_size=3, n_best=3, max_len=8)
    assert all(len(t.hypotheses) == 3 and len(t.tokens) <= 8 for t in beam)
