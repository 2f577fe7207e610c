"""Does edgecnn's harness agree with OpenVINO's own benchmark_app, and with itself?

    .venv/bin/python benchmarks/vs_benchmark_app.py [--model resnet50] [--seconds 15]

Exports the model to an fp32 IR, then in one run: benchmark_app -hint latency (fp32 pinned with
-infer_precision f32, as edgecnn pins fp32 rows), edgecnn's OpenVINO runner twice, and prints the
medians with their ratios. Acceptance: within 10% of benchmark_app, and within 5% of itself.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecnn.bench import BenchOptions, bench
from edgecnn.export import ExportOptions, export


def benchmark_app_median(xml: Path, seconds: int, precision: str) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [
        exe,
        "-m",
        str(xml),
        "-d",
        "CPU",
        "-hint",
        "latency",
        "-t",
        str(seconds),
        "-infer_precision",
        precision,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Latency:\s*\n.*?Median:\s*([\d.]+) ms", out, re.S)
    if not match:
        raise RuntimeError(f"could not find the median latency in benchmark_app's output:\n{out[-2000:]}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as work:
        result = export(args.model, ExportOptions(targets=("openvino",), out_dir=Path(work)))
        xml = Path(result.targets[0].path)
        ours = []
        opts = BenchOptions(runtimes=("openvino",), memory=False, min_seconds=args.seconds, min_iters=100)
        app = benchmark_app_median(xml, args.seconds, "f32")
        for _ in range(2):
            (row,) = bench([str(xml)], opts).rows
            ours.append(row.latency.median_ms)
    print(f"{args.model} batch 1, OpenVINO CPU, fp32, latency hint, {args.seconds} s each")
    print(f"benchmark_app median:        {app:.2f} ms")
    print(f"edgecnn median, run 1:       {ours[0]:.2f} ms  (ratio to benchmark_app {ours[0] / app:.3f})")
    print(f"edgecnn median, run 2:       {ours[1]:.2f} ms  (ratio to benchmark_app {ours[1] / app:.3f})")
    repeat = abs(ours[1] - ours[0]) / ours[0]
    agree = max(abs(o / app - 1) for o in ours)
    print(f"agreement with benchmark_app: {agree * 100:.1f}% (limit 10%)")
    print(f"repeatability: {repeat * 100:.1f}% (limit 5%)")
    return 0 if agree <= 0.10 and repeat <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
