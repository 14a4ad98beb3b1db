"""``seqserve tag``: tag a sentence, or ``--stream`` text word by word as it is typed or piped."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import sys
import termios
from collections.abc import Iterator

from seqserve.cli_options import connect
from seqserve.client import Client, StreamInfo, TaggedToken

_EOT = "\x04"  # Ctrl-D: in a terminal read key by key, the kernel no longer turns it into end of input


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tag",
        help="part-of-speech tag a sentence, or --stream stdin word by word",
        description="Tag a sentence (universal tags), or with --stream tag standard input word by word as it "
        "is typed or piped. Causal models (rnn, lstm, gru) tag each word as soon as white space ends it; "
        "bilstm and transformer wait for a few more words, as the first line says.",
    )
    p.add_argument("text", nargs="?", help="the sentence (omit with --stream)")
    p.add_argument("--stream", action="store_true", help="tag standard input as it arrives")
    p.add_argument("--arch", default="", help="rnn, lstm, gru, bilstm or transformer (default: server's)")
    p.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    p.add_argument("--all-archs", action="store_true", help="tag the sentence with every architecture")
    return p


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.stream:
            return _stream(client, args)
        if not args.text:
            print("seqserve tag: give a sentence, or --stream", file=sys.stderr)
            return 2
        archs = [args.arch]
        if args.all_archs:
            archs = list(dict.fromkeys(m.arch for m in client.list_models("tagging") if m.ready and m.version))
        for arch in archs:
            (tokens,), model = client.tag([args.text], arch, args.version)
            print(f"{model:<22} " + " ".join(f"{t.token}/{t.tag}" for t in tokens))
    return 0


def _describe(info: StreamInfo) -> str:
    if info.immediate:
        return f"{info.model}: causal, each word is tagged as soon as white space ends it"
    return (
        f"{info.model}: needs the future, so each word is tagged once {info.lookahead} more word(s)"
        " have arrived, and the last ones at the end of the input"
    )


def _stream(client: Client, args: argparse.Namespace) -> int:
    with _keys() as chunks:
        for reply in client.tag_stream(chunks, args.arch, args.version):
            if isinstance(reply, StreamInfo):
                print(f"# {_describe(reply)}", file=sys.stderr, flush=True)
            else:
                _print_tags(reply)
    return 0


def _print_tags(tokens: list[TaggedToken]) -> None:
    for t in tokens:
        print(f"{t.index:>6}  {t.token:<20} {t.tag:<5} {t.probability:.2f}", flush=True)


@contextlib.contextmanager
def _keys() -> Iterator[Iterator[str]]:
    """Standard input as chunks as soon as they exist: key by key in a terminal, else as read."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield _reads(fd)
        return
    saved = termios.tcgetattr(fd)
    raw = termios.tcgetattr(fd)
    raw[3] &= ~termios.ICANON  # keys as typed; echo stays on so the user sees the text
    raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, raw)
    try:
        yield _reads(fd, stop_at=_EOT)
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def _reads(fd: int, stop_at: str | None = None) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        data = os.read(fd, 4096)
        if not data:
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        text = decoder.decode(data)
        if stop_at is not None and stop_at in text:
            yield text.split(stop_at, 1)[0]
            return
        if text:
            yield text
