"""Translation export: encoder.onnx / decoder.onnx contracts in ONNX Runtime, and greedy / beam search
driven by numpy over ORT sessions (only the manifest and the files) giving exactly the PyTorch decoders'
tokens, for all five architectures (tiny random-init models with real subword models)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402

from export.models import ARCHS, save_checkpoint  # noqa: E402
from export.onnx_export import ExportError, torch_inputs  # noqa: E402
from export.translation import onnx_export as mt_export  # noqa: E402
from export.translation.decode import pad_batch, translate  # noqa: E402
from export.translation.model import Seq2Seq, Seq2SeqConfig  # noqa: E402
from export.translation.onnx_export import export_checkpoint, main  # noqa: E402
from seqserve.subword import SubwordModel  # noqa: E402
from seqserve import decoding  # noqa: E402
from tests.offline import onnx_callables  # noqa: E402

pytestmark = pytest.mark.slow

EN = [
    "In the beginning God created the heavens and the earth.",
    "The earth was formless and empty.",
    "God said, let there be light, and there was light.",
    "God saw the light, and saw that it was good.",
]
ES = [
    "En el principio crió Dios los cielos y la tierra.",
    "Y la tierra estaba desordenada y vacía.",
    "Y dijo Dios: Sea la luz: y fué la luz.",
    "Y vió Dios que la luz era buena.",
]


def make_checkpoint(tmp_path: Path, arch: str) -> Path:
    source = SubwordModel.train(EN, vocab_size=60, min_count=1)
    target = SubwordModel.train(ES, vocab_size=50, min_count=1)
    torch.manual_seed(7)
    cfg = Seq2SeqConfig(arch=arch, src_vocab_size=len(source), tgt_vocab_size=len(target), embed_dim=16,
                        hidden_dim=16, n_layers=2, dec_layers=2, n_heads=2, ff_dim=32)
    model = Seq2Seq(cfg)
    with torch.no_grad():  # peakier than the init, so near-ties between tokens are unlikely
        model.decoder.out.weight.mul_(4.0)
    return save_checkpoint(
        tmp_path / "runs" / "translation" / arch / "checkpoint.pt",
        task="translation",
        model=model,
        cfg=cfg,  # type: ignore[arg-type]
        vocab=target.pieces,
        labels=[],
        metrics={"test_bleu_greedy": 1.5, "test_bleu_beam": 2.0, "dev_bleu": 1.0, "beam_size": 4, "test_size": 4},
        training={"profile": "test", "subwords": {"source": source.to_dict(), "target": target.to_dict()}},
    )


_EXPORTED: dict[str, tuple[Path, Path]] = {}


@pytest.fixture
def exported(tmp_path_factory: pytest.TempPathFactory):
    """arch -> (checkpoint, version folder), exported once per test session (the dynamo export takes ~30 s)."""

    def get(arch: str) -> tuple[Path, Path]:
        if arch not in _EXPORTED:
            root = tmp_path_factory.mktemp(f"mt-{arch}")
            ckpt = make_checkpoint(root, arch)
            _EXPORTED[arch] = (ckpt, export_checkpoint(ckpt, root / "repo"))
        return _EXPORTED[arch]

    return get


@pytest.mark.parametrize("arch", ARCHS)
def test_export_contract_and_decoding_parity(exported, arch: str) -> None:
    ckpt, out = exported(arch)
    assert out.parts[-3:] == ("translation", arch, "1")
    m, encode, step = onnx_callables(out)
    assert m.task == "translation" and m.arch == arch
    assert m.special_tokens == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert m.quality["test_bleu_beam"] == 2.0
    assert sorted(p.name for p in out.iterdir()) == sorted([*m.files.values(), "manifest.json"])
    assert [s.name for s in m.inputs] == ["src", "src_lengths"]
    names = [s["name"] for s in m.streaming["state"]]
    caches = ["k_cache_0", "v_cache_0", "k_cache_1", "v_cache_1"]  # the tiny model's two layers
    assert names == (caches if arch == "transformer" else ["h", "c"] if "lstm" in arch else ["h"])
    dec_in = [s["name"] for s in m.streaming["decoder_inputs"]]
    assert dec_in[0] == "prev_token" and dec_in[1 : 1 + len(names)] == names
    # The memory as the decoder reads it, each layer's keys and values apart for the Transformer.
    memory = ["memory_k_0", "memory_v_0", "memory_k_1", "memory_v_1"] if arch == "transformer" else ["memory"]
    axes = (3, 2, 3, 2) if arch == "transformer" else (1,)  # keys (B, heads, head_dim, S), values (B, heads, S, hd)
    assert [s["name"] for s in m.streaming["memory"]] == memory and decoding.memory_axes(m.streaming) == axes
    assert [s.name for s in m.outputs][: len(memory)] == memory
    assert dec_in[1 + len(names) : 1 + len(names) + len(memory)] == memory

    # The graph's declared I/O is the manifest's.
    for file, specs in ((m.files["encoder"], (m.inputs, m.outputs)),):
        sess = ort.InferenceSession(str(out / file), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [s.name for s in specs[0]]
        assert [o.name for o in sess.get_outputs()] == [s.name for s in specs[1]]

    # numpy search over ORT == numpy search over PyTorch, token for token, several sentences
    from export.translation.model import load_seq2seq

    model, _ = load_seq2seq(ckpt)
    source = SubwordModel.load(out / m.files["source_subwords"])
    target = SubwordModel.load(out / m.files["target_subwords"])
    sources = [source.encode(t) for t in [*EN, "God saw.", "light"]]
    src, lengths = pad_batch(sources)
    kw = dict(bos_id=m.special_tokens["bos"], eos_id=m.special_tokens["eos"], max_len=12,
              batch_axes=decoding.state_batch_axes(m.streaming), memory_axes=decoding.memory_axes(m.streaming))
    greedy_onnx = decoding.greedy(encode, step, src, lengths, **kw)
    beam_onnx = decoding.beam_search(encode, step, src, lengths, beam_size=4, n_best=3, **kw)
    beam1_onnx = decoding.beam_search(encode, step, src, lengths, beam_size=1, **kw)
    greedy_torch = translate(model, sources, beam_size=1, max_len=12)
    beam_torch = translate(model, sources, beam_size=4, n_best=3, max_len=12)
    assert [t.tokens for t in greedy_onnx] == [t.tokens for t in greedy_torch]
    nbest = lambda res: [[h.tokens for h in t.hypotheses] for t in res]  # noqa: E731
    assert nbest(beam_onnx) == nbest(beam_torch)
    assert [t.tokens for t in beam1_onnx] == [t.tokens for t in greedy_onnx]
    assert any(len(t.tokens) > 1 for t in greedy_onnx)  # decoding actually ran several steps
    for t in beam_onnx:
        assert isinstance(target.decode(t.tokens), str)


def test_decoder_dynamic_axes(exported) -> None:
    """Transformer decoder at past lengths never seen at export, with ragged positions."""
    ckpt, out = exported("transformer")
    from export.translation.model import load_seq2seq

    model, _ = load_seq2seq(ckpt)
    sess = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for B, S, past in ((2, 3, 0), (5, 40, 31), (1, 7, 2)):
        feeds = mt_export.decoder_inputs(model, B, S, past, seed=B)
        got = sess.run(None, feeds)
        with torch.no_grad():
            want = [t.numpy() for t in mt_export.step_graph(model)(*torch_inputs(feeds))]
        assert got[1].shape == (B, 2, 8, past + 1) and got[2].shape == (B, 2, past + 1, 8)  # k_cache_0, v_cache_0
        for g, w in zip(got, want):
            assert np.abs(g - w).max() < 1e-4


def test_refuses_a_mismatched_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = make_checkpoint(tmp_path, "gru")
    real = mt_export.export_decoder

    def broken(model: Seq2Seq, path: Path) -> str:
        with torch.no_grad():
            model.decoder.combine.bias.add_(0.5)  # the graph gets different weights from the model checked
        try:
            return real(model, path)
        finally:
            with torch.no_grad():
                model.decoder.combine.bias.sub_(0.5)

    monkeypatch.setattr(mt_export, "export_decoder", broken)
    with pytest.raises(ExportError):
        export_checkpoint(ckpt, tmp_path / "repo")
    assert not list((tmp_path / "repo" / "translation" / "gru").glob("[0-9]*"))  # nothing published


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_checkpoint(tmp_path, "rnn")
    assert main(["--runs", str(tmp_path / "runs"), "--repository", str(tmp_path / "repo")]) == 0
    assert "translation/rnn v1" in capsys.readouterr().out
    assert (tmp_path / "repo" / "translation" / "rnn" / "1" / "manifest.json").is_file()
