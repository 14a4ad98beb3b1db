"""``seqserve translate``: English to Spanish, whole or ``--stream``ed piece by piece as it is decoded."""

from __future__ import annotations

import argparse
import sys
import time

from seqserve.cli_options import connect
from seqserve.client import TranslationResult


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "translate",
        help="translate English text to Spanish",
        description="Translate English text to Spanish. With --stream the translation is printed as it is "
        "decoded (with beam search, each piece once every hypothesis still in the running agrees on it).",
    )
    p.add_argument("text", help="the English text")
    p.add_argument("--arch", default="", help="rnn, lstm, gru, bilstm or transformer (default: server's)")
    p.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    p.add_argument("--beam", type=int, default=0, help="beam width, 1 = greedy (default: server's, 4)")
    p.add_argument("--n-best", type=int, default=0, help="print this many hypotheses (default 1)")
    p.add_argument("--max-length", type=int, default=0, help="most output subword pieces (default: by source)")
    p.add_argument("--stream", action="store_true", help="print the translation as it is decoded")
    p.add_argument("--all-archs", action="store_true", help="translate with every architecture")
    return p


def run(args: argparse.Namespace) -> int:
    options = dict(beam_size=args.beam, max_length=args.max_length, n_best=args.n_best)
    with connect(args) as client:
        archs = [args.arch]
        if args.all_archs:
            archs = list(dict.fromkeys(m.arch for m in client.list_models("translation") if m.ready and m.version))
        for arch in archs:
            started = time.perf_counter()
            if args.stream:
                result = _stream(client.translate_stream(args.text, arch, args.version, **options))
            else:
                result = client.translate(args.text, arch, args.version, **options)
                _print_hypotheses(result)
            ms = (time.perf_counter() - started) * 1000
            print(f"# {result.model}, {result.source_length} source pieces, {ms:.0f} ms", file=sys.stderr)
    return 0


def _stream(replies) -> TranslationResult:
    for reply in replies:
        if isinstance(reply, TranslationResult):
            print(flush=True)
            if len(reply.hypotheses) > 1:
                _print_hypotheses(reply)
            return reply
        print(reply, end="", flush=True)
    raise RuntimeError("the stream ended without a result")


def _print_hypotheses(result: TranslationResult) -> None:
    if len(result.hypotheses) == 1:
        print(result.text)
        return
    for i, h in enumerate(result.hypotheses, 1):
        print(f"{i}. [{h.score:.3f}] {h.text}{'  (cut at max length)' if h.truncated else ''}")
