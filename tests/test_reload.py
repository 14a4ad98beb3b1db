"""Hot reload against a real server: versions added and removed under continuous load,
a stream kept on its version, SIGHUP, a broken new version, the repository polled."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from seqserve.client import Client
from tests.fakes import write_fake_sentiment
from tests.servers import ServerProcess, error_of


def publish(root: Path, arch: str, version: int) -> None:
    """Write a version the way export does: in a hidden folder, then one rename."""
    staging = root / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    write_fake_sentiment(staging, arch, version=version)
    target = root / "sentiment" / arch / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    (staging / "sentiment" / arch / str(version)).rename(target)


def unpublish(root: Path, task: str, arch: str, version: int) -> None:
    gone = root / task / arch / f".removed-{version}"
    (root / task / arch / str(version)).rename(gone)
    shutil.rmtree(gone)


def copy_version(arch_dir: Path, old: int, new: int) -> None:
    """The same model published again as a new version (its manifest says which)."""
    staging = arch_dir / f".copy-{new}"
    shutil.copytree(arch_dir / str(old), staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    (staging / "manifest.json").write_text(json.dumps({**manifest, "version": new}))
    staging.rename(arch_dir / str(new))


def versions(client: Client, task: str = "sentiment") -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in client.list_models(task):
        if m.ready:
            out.setdefault(m.arch, []).append(m.version)
    return {a: sorted(v) for a, v in out.items()}


def wait_until(what: str, probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if seen:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f}s")
        time.sleep(0.1)


class Load:
    """Calls that never stop while the test changes the repository; records every answer."""

    def __init__(self, target: str, threads: int = 4) -> None:
        self.failures: list[str] = []
        self.seen: set[str] = set()
        self.calls = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target,)) for _ in range(threads)]

    def _run(self, target: str) -> None:
        with Client(target) as client:
            while not self._stop.is_set():
                try:
                    self.seen.add(client.classify("a good great film", arch="lstm").model)
                    self.calls += 1
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


@pytest.fixture
def repo(tmp_path: Path, model_repository: Path) -> Path:
    root = tmp_path / "models"
    publish(root, "lstm", 1)
    # bilstm: its streams re-encode through the version's batcher, which closing would stop.
    shutil.copytree(model_repository / "tagging" / "bilstm", root / "tagging" / "bilstm")
    return root


@pytest.fixture
def polled(repo: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, tmp_path / "server.log", tasks='["sentiment", "tagging"]',
                       reload_interval_s="0.3") as proc:
        yield proc


def test_versions_swap_under_load_without_a_failed_call(polled: ServerProcess, repo: Path) -> None:
    with Client(polled.target) as client, Load(polled.target) as load:
        wait_until("calls flowing", lambda: load.calls > 50)
        publish(repo, "lstm", 2)
        wait_until("v2 answers", lambda: "sentiment/lstm/2" in load.seen)
        assert versions(client)["lstm"] == [1, 2]  # the old one still serves requests that name it
        assert client.classify("good", arch="lstm", version=1).model == "sentiment/lstm/1"
        unpublish(repo, "sentiment", "lstm", 1)
        wait_until("v1 retired", lambda: versions(client)["lstm"] == [2])
        calls = load.calls
        wait_until("calls still flowing", lambda: load.calls > calls + 50)
        code, details = error_of(lambda: client.classify("good", arch="lstm", version=1))
        assert code == grpc.StatusCode.NOT_FOUND and "available: 2" in details
    assert load.failures == []
    assert load.calls > 100


def test_a_stream_finishes_on_the_version_it_started_on(polled: ServerProcess, repo: Path) -> None:
    with Client(polled.target) as client:
        ready, go_on = threading.Event(), threading.Event()

        def text():
            yield "The jury "
            ready.set()
            go_on.wait(30)
            yield "said it."

        replies: list = []
        reader = threading.Thread(target=lambda: replies.extend(client.tag_stream(text(), "bilstm")))
        reader.start()
        ready.wait(30)
        copy_version(repo / "tagging" / "bilstm", 1, 2)
        unpublish(repo, "tagging", "bilstm", 1)
        wait_until("v1 gone from the table", lambda: versions(client, "tagging") == {"bilstm": [2]})
        time.sleep(1.5)  # past the retire settle time: only the open stream keeps v1 alive
        go_on.set()
        reader.join(30)
    info, *tags = replies
    assert info.model == "tagging/bilstm/1"
    assert [t.token for batch in tags for t in batch] == ["The", "jury", "said", "it", "."]
    assert [t.tag for batch in tags for t in batch][:3] == ["DET", "NOUN", "VERB"]


def test_sighup_reloads_and_a_broken_version_is_reported_not_served(repo: Path, tmp_path: Path) -> None:
    with ServerProcess(repo, tmp_path / "server.log", tasks='["sentiment"]') as server, Client(server.target) as c:
        publish(repo, "lstm", 2)
        time.sleep(0.5)
        assert versions(c) == {"lstm": [1]}  # no polling: nothing changes by itself
        broken = repo / "sentiment" / "lstm" / "3"
        copy_version(repo / "sentiment" / "lstm", 2, 3)
        (broken / "model.onnx").write_bytes(b"not an onnx file")
        server.signal(signal.SIGHUP)
        server._signalled = False  # SIGHUP is not a shutdown
        wait_until("v2 loaded", lambda: versions(c) == {"lstm": [1, 2]})
        errors = {m.version: m.error for m in c.list_models("sentiment") if not m.ready}
        assert 3 in errors and "model.onnx" in errors[3]
        assert c.classify("good", arch="lstm").model == "sentiment/lstm/2"  # the newest that loads
