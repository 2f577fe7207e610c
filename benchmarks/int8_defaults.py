"""Is the default INT8 artifact faster than fp32 on each runtime?

    .venv/bin/python benchmarks/int8_defaults.py [--models resnet18,resnet50,mobilenet_v2,efficientnet_b0]
        [--runtimes onnxruntime,openvino] [--size 224] [--duration 3]

`edgecnn.bench` with `--precision fp32,int8 --calib digits` and the default `--int8-activations auto`
(each runtime's fast scheme: u8 for ONNX Runtime, s8 for OpenVINO), batch 1, random weights (speed
only), every row in one run. Prints the bench table, its notes (rows slower than fp32 are flagged
there) and one line per model and runtime: fp32 ms, int8 ms, speed-up. Results:
benchmarks/results/int8_defaults.md and .json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,efficientnet_b0")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--out", default="benchmarks/results/int8_defaults")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from edgecnn.bench import BenchOptions, bench
    from edgecnn.report.tables import markdown

    lines = []
    with tempfile.TemporaryDirectory() as work:
        opts = BenchOptions(
            runtimes=tuple(args.runtimes.split(",")),
            precisions=("fp32", "int8"),
            calib="digits",
            input_size=(args.size, args.size),
            export_dir=work,
            memory=False,
            verify=False,  # random weights: int8 agreement is moot (checked on trained models in tests)
            min_seconds=args.duration,
            warmup_s=1.0,
        )
        run = bench(args.models.split(","), opts, on_step=lambda m: print(f"  {m}", file=sys.stderr))
    table = markdown(run)
    print(table)
    by = {(r.model, r.runtime, r.precision): r for r in run.rows if r.latency}
    summary = []
    for model in args.models.split(","):
        for runtime in opts.runtimes:
            fp32, int8 = by.get((model, runtime, "fp32")), by.get((model, runtime, "int8"))
            if not (fp32 and int8):
                line = f"{model:16s} {runtime:12s} missing a row"
            else:
                a, b = fp32.latency.median_ms, int8.latency.median_ms
                verdict = "int8 faster" if b < a else "INT8 SLOWER"
                line = (
                    f"{model:16s} {runtime:12s} {int8.variant:7s} fp32 {a:7.2f} ms  "
                    f"int8 {b:7.2f} ms  {a / b:5.2f}x  {verdict}"
                )
                summary.append(
                    {
                        "model": model,
                        "runtime": runtime,
                        "variant": int8.variant,
                        "fp32_ms": a,
                        "int8_ms": b,
                        "speedup": a / b,
                    }
                )
            print(line)
            lines.append(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = run.machine.get("cpu")
    out.with_suffix(".md").write_text(
        f"# Default INT8 vs fp32 ({machine}, {run.machine.get('logical_cores')} cores, "
        f"{args.size}x{args.size}, batch 1)\n\n`{' '.join(sys.argv)}`\n\n{table}\n```\n"
        + "\n".join(lines)
        + "\n```\n"
    )
    out.with_suffix(".json").write_text(
        json.dumps({"machine": run.machine, "rows": summary}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
