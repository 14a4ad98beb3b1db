"""The comparison table and the latency-throughput plot, from a sweep's JSON and the model repository.

    .venv/bin/python -m bench.report [--sweep runs/bench/sweep-....json] [--repository models]

Per task and architecture: test quality (accuracy, or BLEU with beam for
translation), p50 latency at concurrency 1, the best throughput of the sweep,
parameters and ONNX size on disk; printed as a Markdown table and written to
runs/bench/comparison.md. With matplotlib (``pip install -e .[bench]``), also
runs/bench/latency-throughput.png: p50 and p99 against throughput, one line per
architecture, one panel per task.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import RESULTS
from service import repository as repo


def latest(prefix: str) -> Path:
    found = sorted(RESULTS.glob(f"{prefix}-*.json"))
    if not found:
        raise SystemExit(f"no {prefix}-*.json in {RESULTS}: run python -m bench.{prefix} first")
    return found[-1]


def points(sweep: dict) -> dict[str, dict[str, list[dict]]]:
    """task -> arch -> the sweep's points in concurrency order."""
    out: dict[str, dict[str, list[dict]]] = {}
    for task, runs in sweep["tasks"].items():
        for key, run in runs.items():
            arch, concurrency = key.split("/")
            out.setdefault(task, {}).setdefault(arch, []).append({"concurrency": int(concurrency), **run["service"]})
    for archs in out.values():
        for series in archs.values():
            series.sort(key=lambda p: p["concurrency"])
    return out


def comparison(series: dict[str, dict[str, list[dict]]], repository: Path) -> str:
    lines = ["| task | architecture | test quality | p50 ms (1 in flight) | best req/s | parameters | ONNX MB |",
             "|---|---|---|---|---|---|---|"]
    for task, archs in series.items():
        entries = {e.arch: e for e in repo.scan(repository, [task]) if e.manifest}
        for arch, pts in archs.items():
            entry = entries.get(arch)
            quality, params, size = "-", "-", "-"
            if entry and entry.manifest:
                q = entry.manifest.quality
                quality = f"{q['test_accuracy'] * 100:.2f}%" if "test_accuracy" in q else f"BLEU {q.get('test_bleu_beam', 0):.1f}"
                params = f"{entry.manifest.parameters / 1e6:.2f}M"
                size = f"{sum(f.stat().st_size for f in entry.path.glob('*.onnx')) / 1e6:.1f}"
            one = next((p for p in pts if p["concurrency"] == 1), pts[0])
            best = max(p["per_second"] for p in pts)
            lines.append(f"| {task} | {arch} | {quality} | {one['p50_ms']:.2f} | {best:.0f} | {params} | {size} |")
    return "\n".join(lines)


def plot(series: dict[str, dict[str, list[dict]]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.5), squeeze=False)
    for ax, (task, archs) in zip(axes[0], series.items()):
        for arch, pts in archs.items():
            x = [p["per_second"] for p in pts]
            line, = ax.plot(x, [p["p50_ms"] for p in pts], marker="o", label=f"{arch} p50")
            ax.plot(x, [p["p99_ms"] for p in pts], marker="x", linestyle="--", color=line.get_color(),
                    label=f"{arch} p99")
        ax.set(title=task, xlabel="requests/s", ylabel="latency ms", yscale="log")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", type=Path, default=None, help="a sweep JSON (default: the newest)")
    p.add_argument("--repository", type=Path, default=Path("models"))
    args = p.parse_args()
    sweep_path = args.sweep or latest("sweep")
    series = points(json.loads(sweep_path.read_text()))
    table = comparison(series, args.repository)
    print(f"from {sweep_path}\n\n{table}")
    (RESULTS / "comparison.md").write_text(table + "\n")
    png = RESULTS / "latency-throughput.png"
    print(f"\nwrote {RESULTS / 'comparison.md'}" + (f" and {png}" if plot(series, png) else
                                                   " (no matplotlib: pip install -e '.[bench]' for the plot)"))


if __name__ == "__main__":
    main()
