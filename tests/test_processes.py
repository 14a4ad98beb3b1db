"""Several server processes on one port (SEQSERVE_PROCESSES): all of them answer, all of them stop."""

from __future__ import annotations

import time

import grpc

from seqserve.client import Client
from tests.servers import ServerProcess, metric


def calls_served(url: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return metric(text, "seqserve_requests_total", task="sentiment")


def test_two_processes_share_the_port_and_stop_together(model_repository, tmp_path):
    server = ServerProcess(model_repository, tmp_path / "server.log", tasks='["sentiment"]', processes="2")
    with server:
        deadline = time.monotonic() + 60  # health answers once one is ready; wait for both
        while server.logs().count("seqserve: ready:") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # New connections are spread by the kernel: many channels reach both processes.
        for _ in range(24):
            with Client(server.target) as client:
                assert client.classify("a good great film", arch="gru").label == "positive"
        first = server.metrics_url
        second = first.replace(f":{server.metrics_port}/", f":{server.metrics_port + 1}/")
        served = [calls_served(first), calls_served(second)]
        assert sum(served) == 24 and min(served) > 0, served
        with grpc.insecure_channel(server.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
    assert server.proc is not None and server.proc.returncode == 0
    assert "started 2 server processes" in server.logs()
