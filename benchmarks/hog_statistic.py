"""Which per-block statistic keeps a speed-up steady while another process holds a core?

    .venv/bin/python benchmarks/hog_statistic.py [--runs 4] [--rounds 12] [--threads N]

ResNet-18 trained on the bundled digits at 64x64 (`reference_model`, cached) is compressed for ONNX
Runtime at 2x (no distillation); the original and the student ONNX are then timed as compress times
them (alternating 0.5 s blocks, every call kept), `--runs` times on a quiet machine and `--runs`
times with a busy loop pinned to core 0. Each run's ratio is printed under each block statistic
(median, 10th and 25th percentile of the block's calls, its minimum, its mean), then each
statistic's spread over the runs and how far its loaded ratios sit from its quiet ones.
Results: benchmarks/results/hog_statistic.md and .json, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from strongest_baseline import cpu_hog, machine, write_report

STATISTICS = {
    "median": np.median,
    "p10": lambda t: np.percentile(t, 10),
    "p25": lambda t: np.percentile(t, 25),
    "min": np.min,
    "mean": np.mean,
}


def timed_blocks(runners, x, rounds: int, block_s: float = 0.5) -> list[list[np.ndarray]]:
    """Every call's seconds, per model and block, the models alternating block by block."""
    for r in runners:  # a fresh session's first calls run slow
        t = time.perf_counter()
        while time.perf_counter() - t < block_s:
            r.run(x)
    blocks: list[list[np.ndarray]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, r in enumerate(runners):
            times, start = [], time.perf_counter()
            while len(times) < 10 or time.perf_counter() - start < block_s:
                t0 = time.perf_counter()
                r.run(x)
                times.append(time.perf_counter() - t0)
            blocks[i].append(np.asarray(times))
    return blocks


def ratios(blocks) -> dict[str, float]:
    """Original over student under each statistic: the median over blocks of the block statistic."""
    return {
        name: float(np.median([f(t) for t in blocks[0]]) / np.median([f(t) for t in blocks[1]]))
        for name, f in STATISTICS.items()
    }


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. Command: `{report['command']}`.", ""]
    lines += [
        f"ResNet-18 (digits, 64x64) over its `compress -r onnxruntime --speedup 2` student, ONNX Runtime "
        f"threads {report['threads'] or 'default'}, {report['rounds']} rounds of 0.5 s blocks per run; "
        "each cell is the median over blocks of that block statistic:",
        "",
        "| run | load | " + " | ".join(STATISTICS) + " |",
        "|---|---|" + "---|" * len(STATISTICS),
    ]
    for r in report["runs"]:
        cells = " | ".join(f"{r['ratios'][s]:.2f}x" for s in STATISTICS)
        lines.append(f"| {r['run']} | {r['load']} | {cells} |")
    lines += [
        "",
        "| statistic | quiet range | hog range | hog spread | hog vs quiet median |",
        "|---|---|---|---|---|",
    ]
    for s in STATISTICS:
        q = [r["ratios"][s] for r in report["runs"] if r["load"] == "quiet"]
        h = [r["ratios"][s] for r in report["runs"] if r["load"] == "hog"]
        lines.append(
            f"| {s} | {min(q):.2f}-{max(q):.2f}x | {min(h):.2f}-{max(h):.2f}x | "
            f"{(max(h) - min(h)) / max(h):.1%} | {np.median(h) / np.median(q) - 1:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/hog_statistic")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edgecnn.compress import CompressOptions, compress
    from edgecnn.runtime import get_runner
    from edgecnn.train.api import reference_model

    report = {"machine": machine(), "command": " ".join(["benchmarks/hog_statistic.py", *sys.argv[1:]])}
    report.update(threads=args.threads, rounds=args.rounds, runs=[])
    print(report["machine"], flush=True)
    ref, _ = reference_model("resnet18", "digits", input_size=(64, 64), epochs=5, lr=0.02)
    with tempfile.TemporaryDirectory(prefix="edgecnn-hog-statistic-") as tmp:
        opts = CompressOptions(
            runtime="onnxruntime", speedup=2.0, data="digits", input_size=(64, 64), distill_epochs=0,
            out_dir=Path(tmp), cache_dir=Path(tmp) / "cache", threads=args.threads,
        )  # fmt: skip
        r = compress("resnet18", opts, loaded=ref)
        runners = [
            get_runner("onnxruntime", r.artifacts[k], threads=args.threads) for k in ("original", "student")
        ]
        x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        for load in ("quiet", "hog"):
            for i in range(args.runs):
                if load == "hog":
                    with cpu_hog():
                        blocks = timed_blocks(runners, x, args.rounds)
                else:
                    blocks = timed_blocks(runners, x, args.rounds)
                row = {"run": i + 1, "load": load, "ratios": ratios(blocks)}
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
    print(write_report(report, Path(args.out), markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
