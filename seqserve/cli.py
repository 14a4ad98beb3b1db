"""The ``seqserve`` command.

Serving-side commands (serve, classify, models) need no torch; data, train and
export import the training code only when asked for.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import grpc

from seqserve import tag_cli, translate_cli
from seqserve.cli_options import add_client_options, connect

_DELEGATED = {
    "data": ("export.corpora.cli", "fetch the corpora (seqserve data fetch --help)"),
    "train": ("export.train", "train models (seqserve train --help)"),
    "export": ("export.onnx_export", "export checkpoints to the model repository (seqserve export --help)"),
}


# Tasks whose training and export live in their own package.
_TASK_MODULES = {
    ("train", "tagging"): "export.tagging.train",
    ("export", "tagging"): "export.tagging.onnx_export",
    ("train", "translation"): "export.translation.train",
    ("export", "translation"): "export.translation.onnx_export",
}


def _delegate_to(command: str, argv: list[str]) -> str:
    """The module behind ``seqserve <command>``: by ``--task`` where a task has its own."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--task", default="sentiment")
    task = peek.parse_known_args(argv)[0].task
    return _TASK_MODULES.get((command, task), _DELEGATED[command][0])


def _classify(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.wait:
            client.wait_ready(args.wait)
        if not args.all_archs:
            c = client.classify(args.text, args.arch, args.version)
            probs = "  ".join(f"{label}={p:.3f}" for label, p in c.probabilities.items())
            print(f"{c.label}  ({probs})  model={c.model}  {c.latency_ms:.1f} ms")
            return 0
        archs = [m.arch for m in client.list_models("sentiment") if m.ready and m.version]
        archs = list(dict.fromkeys(archs))
        print(f"{'model':<26}{'label':<10}{'probabilities':<36}{'p50 ms':>8}")
        for arch in archs:
            # Several calls so one cold call does not stand for the architecture.
            runs = [client.classify(args.text, arch) for _ in range(args.repeat)]
            c = runs[-1]
            probs = "  ".join(f"{label}={p:.3f}" for label, p in c.probabilities.items())
            p50 = statistics.median(r.latency_ms for r in runs)
            print(f"{c.model:<26}{c.label:<10}{probs:<36}{p50:>8.2f}")
    return 0


def _models(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = client.list_models(args.task)
    print(f"{'task':<12}{'arch':<13}{'ver':>4}  {'ready':<6}{'default':<8}{'test':>10}{'params':>10}  profile")
    for m in rows:
        acc, bleu = m.quality.get("test_accuracy"), m.quality.get("test_bleu_beam")
        quality = f"{acc:.3f}" if acc is not None else f"BLEU {bleu:.1f}" if bleu is not None else "-"
        print(f"{m.task:<12}{m.arch:<13}{m.version:>4}  {str(m.ready):<6}{str(m.is_default):<8}"
              f"{quality:>10}{m.parameters:>10}  {m.profile}{'  ' + m.error if m.error else ''}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.server import main as serve_main  # imported late: clients need no onnxruntime

    serve_main()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    sub.add_parser("serve", help="run the gRPC server (settings from SEQSERVE_* variables)")

    c = sub.add_parser("classify", help="classify a sentence's sentiment")
    c.add_argument("text")
    c.add_argument("--arch", default="", help="rnn, lstm, gru, bilstm or transformer (default: server's)")
    c.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    c.add_argument("--all-archs", action="store_true", help="ask every architecture, side by side")
    c.add_argument("--repeat", type=int, default=20, help="calls per architecture with --all-archs")
    c.add_argument("--wait", type=float, default=0, help="first wait up to this many seconds for SERVING")
    add_client_options(c)

    t = tag_cli.add_parser(sub)
    add_client_options(t)
    tr = translate_cli.add_parser(sub)
    add_client_options(tr)

    m = sub.add_parser("models", help="list the server's models")
    m.add_argument("--task", default="")
    add_client_options(m)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _DELEGATED:
        import importlib

        return importlib.import_module(_delegate_to(argv[0], argv[1:])).main(argv[1:])
    args = _parser().parse_args(argv)
    handlers = {
        "classify": _classify, "tag": tag_cli.run, "translate": translate_cli.run, "models": _models, "serve": _serve,
    }
    handler = handlers[args.command]
    try:
        return handler(args)
    except grpc.RpcError as err:
        print(f"seqserve: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C ends a stream: the channel closes and the server frees it
        return 130


if __name__ == "__main__":
    sys.exit(main())
