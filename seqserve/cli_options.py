"""The options every client command shares, and the client they describe."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from seqserve.client import DEFAULT_TARGET, Client


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    p.add_argument("--tls-ca", type=Path, help="PEM CA of the server's certificate: connect with TLS")
    p.add_argument("--tls-cert", type=Path, help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM key of --tls-cert")
    p.add_argument(
        "--token-file", type=Path,
        help="file holding the bearer token (else $SEQSERVE_TOKEN; a token on the command line would show in ps)",
    )


def connect(args: argparse.Namespace) -> Client:
    token = args.token_file.read_text().strip() if args.token_file else os.environ.get("SEQSERVE_TOKEN")
    return Client(
        args.target, timeout=args.timeout, token=token or None, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
