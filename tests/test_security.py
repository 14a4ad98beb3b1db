"""TLS, mutual TLS and bearer tokens against real servers; names that try to leave the repository."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.client import Client
from seqserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc
from tests.fakes import write_fake_sentiment
from tests.servers import ROOT, ServerProcess, error_of, metric, scrape

TOKEN = "s3cret-token-for-tests"


# ----------------------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1, a client it signed, and a client from another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _cert("seqserve test CA", ca_key, "seqserve test CA", ca_key, ca=True)
    rogue_ca = _cert("someone else", rogue_key, "someone else", rogue_key, ca=True)
    files = {"ca": _write(d / "ca", ca, ca_key)[0]}
    server_key, client_key, stranger_key = _key(), _key(), _key()
    files["server_crt"], files["server_key"] = _write(
        d / "server", _cert("localhost", server_key, "seqserve test CA", ca_key, ca=False, server=True), server_key
    )
    files["client_crt"], files["client_key"] = _write(
        d / "client", _cert("a client", client_key, "seqserve test CA", ca_key, ca=False), client_key
    )
    files["stranger_crt"], files["stranger_key"] = _write(
        d / "stranger", _cert("a stranger", stranger_key, "someone else", rogue_key, ca=False), stranger_key
    )
    del rogue_ca
    tokens = d / "tokens"
    tokens.write_text(f"# one per line\n{TOKEN}\n\nanother-valid-token\n")
    files["tokens"] = tokens
    return files


@pytest.fixture(scope="module")
def repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("secured-models")
    write_fake_sentiment(root, "lstm", accuracy=0.8)
    for task in ("tagging", "translation"):
        (root / task).symlink_to(model_repository / task)
    return root


def start(repository: Path, tmp: Path, **settings: str) -> ServerProcess:
    return ServerProcess(repository, tmp / "server.log", **settings).start(expect_serving=False)


def classify(client: Client) -> str:
    return client.classify("a good great film", arch="lstm").label


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(repository, pki, tmp_path_factory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tls")
    credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
    with ServerProcess(repository, tmp / "server.log", credentials, tls_cert_file=str(pki["server_crt"]),
                       tls_key_file=str(pki["server_key"])) as proc:
        yield proc


def test_tls_server_answers_tls_clients_only(tls_server, pki):
    with Client(tls_server.target, tls_ca=pki["ca"]) as client:
        assert classify(client) == "positive"
        assert client.translate("Jesus wept.", "gru", beam_size=2).text
    with Client(tls_server.target, timeout=3) as plain:
        code, _ = error_of(lambda: classify(plain))
        assert code == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def mtls_server(repository, pki, tmp_path_factory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("mtls")
    credentials = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client_crt"].read_bytes()
    )
    with ServerProcess(repository, tmp / "server.log", credentials, tls_cert_file=str(pki["server_crt"]),
                       tls_key_file=str(pki["server_key"]), tls_client_ca_file=str(pki["ca"])) as proc:
        yield proc


def test_mutual_tls_wants_a_client_certificate_its_ca_signed(mtls_server, pki):
    with Client(mtls_server.target, tls_ca=pki["ca"], tls_cert=pki["client_crt"], tls_key=pki["client_key"]) as c:
        assert classify(c) == "positive"
    for cert, key in ((None, None), (pki["stranger_crt"], pki["stranger_key"])):
        with Client(mtls_server.target, timeout=3, tls_ca=pki["ca"], tls_cert=cert, tls_key=key) as c:
            code, _ = error_of(lambda: classify(c))
            assert code == grpc.StatusCode.UNAVAILABLE


def test_the_container_healthcheck_speaks_tls_and_mutual_tls(tls_server, mtls_server, pki):
    from deploy.healthcheck import check

    tls = {"SEQSERVE_TLS_CERT_FILE": str(pki["server_crt"]), "SEQSERVE_HEALTHCHECK_CA_FILE": str(pki["ca"])}
    assert check(tls_server.target, env=tls) == "SERVING"
    assert check(tls_server.target, env={}, timeout=2) != "SERVING"  # plaintext cannot ask a TLS port
    mutual = tls | {"SEQSERVE_TLS_CLIENT_CA_FILE": str(pki["ca"]),
                    "SEQSERVE_HEALTHCHECK_CERT_FILE": str(pki["client_crt"]),
                    "SEQSERVE_HEALTHCHECK_KEY_FILE": str(pki["client_key"])}
    assert check(mtls_server.target, env=mutual) == "SERVING"


# ----------------------------------------------------------------------------- bearer tokens


@pytest.fixture(scope="module")
def token_server(repository, pki, tmp_path_factory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tokens")
    with ServerProcess(repository, tmp / "server.log", auth_tokens_file=str(pki["tokens"])) as proc:
        yield proc


def test_every_rpc_but_health_needs_a_valid_token(token_server):
    with Client(token_server.target) as anonymous:
        for call in (
            lambda: classify(anonymous),
            lambda: anonymous.translate("Jesus wept.", "gru"),
            lambda: list(anonymous.translate_stream("Jesus wept.", "gru")),
            lambda: list(anonymous.tag_stream(["The jury said it."], "lstm")),
            lambda: anonymous.list_models(),
        ):
            code, details = error_of(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in details
    with Client(token_server.target, token="guess") as wrong:
        code, details = error_of(lambda: classify(wrong))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "not valid" in details
    with grpc.insecure_channel(token_server.target) as channel:  # health stays open to probes
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = sentiment_pb2_grpc.SentimentStub(channel)
        code, _ = error_of(lambda: stub.Classify(sentiment_pb2.ClassifyRequest(text="good"), timeout=5,
                                                 metadata=(("authorization", "Basic abc"),)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    for token in (TOKEN, "another-valid-token"):
        with Client(token_server.target, token=token) as client:
            assert classify(client) == "positive"
            *pieces, result = client.translate_stream("Jesus wept.", "gru", beam_size=1)
            assert "".join(pieces) == result.text
            replies = list(client.tag_stream(["The jury said it."], "lstm"))
            assert [t.token for r in replies[1:] for t in r] == ["The", "jury", "said", "it", "."]
    text = scrape(token_server)
    assert metric(text, "seqserve_requests_total", code="UNAUTHENTICATED") >= 6


def test_the_command_line_reads_the_token_from_a_file_or_the_environment(token_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cli = [sys.executable, "-m", "seqserve.cli", "classify", "good film", "--target", token_server.target]
    ok = subprocess.run([*cli, "--token-file", str(token_file)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "positive" in ok.stdout, ok.stderr
    env = dict(os.environ) | {"SEQSERVE_TOKEN": TOKEN}
    assert subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, env=env).returncode == 0
    refused = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT,
                             env={k: v for k, v in env.items() if k != "SEQSERVE_TOKEN"})
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr


# ----------------------------------------------------------------------------- settings that cannot work


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"tls_cert_file": "/nonexistent/server.crt", "tls_key_file": "/nonexistent/server.key"},
         "SEQSERVE_TLS_KEY_FILE /nonexistent/server.key"),
        ({"tls_cert_file": "CERT"}, "set both or neither"),
        ({"auth_tokens_file": "/nonexistent/tokens"}, "SEQSERVE_AUTH_TOKENS_FILE /nonexistent/tokens"),
    ],
)
def test_a_server_refuses_to_start_on_unusable_security_settings(repository, pki, tmp_path, settings, says):
    settings = {k: str(pki["server_crt"]) if v == "CERT" else v for k, v in settings.items()}
    proc = start(repository, tmp_path, **settings)
    assert proc.proc is not None
    assert proc.proc.wait(timeout=60) != 0
    assert says in proc.logs()


# ----------------------------------------------------------------------------- names


def test_names_never_reach_outside_the_repository(channel):
    stub = sentiment_pb2_grpc.SentimentStub(channel)
    for arch in ("../../etc/passwd", "lstm/../../x", "/", "lstm\x00", "%2e%2e"):
        request = sentiment_pb2.ClassifyRequest(text="good", model=common_pb2.ModelSelector(arch=arch))
        code, details = error_of(lambda: stub.Classify(request, timeout=5))
        assert code == grpc.StatusCode.NOT_FOUND and "available" in details
    kserve = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    for name in ("sentiment-../../etc", "../sentiment-lstm", "sentiment-lstm/../../x"):
        code, _ = error_of(lambda: kserve.ModelMetadata(grpc_predict_v2_pb2.ModelMetadataRequest(name=name), timeout=5))
        assert code == grpc.StatusCode.NOT_FOUND
    code, _ = error_of(lambda: kserve.ModelMetadata(
        grpc_predict_v2_pb2.ModelMetadataRequest(name="sentiment-lstm", version="../1"), timeout=5))
    assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
