"""Soak: mixed load from the load tests for a long while; errors and the server's memory over time.

    .venv/bin/python -m bench.soak [--minutes 10] [--users 20] [--repository models]

Starts a server on ``--repository`` (every task), runs locust headless with
deploy/locustfile.py (sentiment, tagging and translation users, every
architecture) against it, samples the server's memory every ``--every`` seconds,
and prints the memory timeline, the growth from the first minute to the last, and
locust's request and failure counts. Writes runs/bench/soak-*.json (and locust's
CSV next to it). The last sample, taken after locust exits, reads a few MB higher:
PSS splits shared libraries' pages among the processes mapping them, locust's
included, so the server's share grows when locust is gone (its RSS does not).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, ROOT, save, seqserve_server, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--every", type=float, default=10.0, help="seconds between memory samples")
    p.add_argument("--repository", type=Path, default=Path("models"))
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = RESULTS / f"soak-locust-{time.strftime('%Y%m%d-%H%M%S')}"
    seconds = int(args.minutes * 60)
    samples: list[tuple[float, float]] = []
    with seqserve_server(args.repository) as server:
        load = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "deploy" / "locustfile.py"), "--headless",
             "--users", str(args.users), "--spawn-rate", str(args.users), "--run-time", f"{seconds}s",
             "--host", server.target, "--csv", str(prefix), "--only-summary"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        start = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - start, server.memory_mb()))
            time.sleep(args.every)
        samples.append((time.monotonic() - start, server.memory_mb()))
    with open(f"{prefix}_stats.csv", newline="") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    first_minute = [mb for t, mb in samples if t <= 60] or [samples[0][1]]
    last_minute = [mb for t, mb in samples if t >= samples[-1][0] - 60]
    growth = max(last_minute) - max(first_minute)
    print(table(["minute", "memory MB"], [[f"{t / 60:.1f}", mb] for t, mb in samples]))
    print(f"requests {total['Request Count']}, failures {total['Failure Count']}, "
          f"{float(total['Requests/s']):.0f}/s; memory max in the first minute {max(first_minute):.0f} MB, "
          f"in the last {max(last_minute):.0f} MB (growth {growth:+.0f} MB)")
    payload = {"args": vars(args) | {"repository": str(args.repository)}, "memory_mb": samples,
               "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
               "growth_mb": growth, "locust_csv": str(prefix)}
    print(f"wrote {save('soak', payload)}")


if __name__ == "__main__":
    main()
