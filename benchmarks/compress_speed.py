"""Does `compress` deliver the speed-up it is asked for, on the runtime it planned for?

    .venv/bin/python benchmarks/compress_speed.py [--model resnet50] [--size 224]
        [--speedups 1.5,2.0,int8:4] [--runtimes onnxruntime,openvino] [--threads 2] [--no-cache]
        [--rounds 8]

For each runtime and requested speed-up, `edgecnn.compress` plans on the runtime (in-context latency
table, error scores, knapsack), builds the student, exports both models for that runtime and times
the original and the student in the same run (`--rounds` rounds of 3 s, in interleaved 0.5 s
blocks, the median block of each). The prediction is the planner's: the chosen model re-timed
whole, as long, interleaved with the original, while planning: a predicted speed-up. "pred ms"
applies it to the original as timed here, beside the student (the prediction error criterion);
"planned" compares the plan's own ms, measured minutes earlier on a machine whose speed drifts.
`--no-cache` measures the whole latency table in this run too.
Printed per row: original and student ms, measured speed-up / requested, predicted vs measured
latency of the student. "int8:S" plans precision per layer too (`--int8`): the student is a mixed
int8/fp32 artifact timed against the fp32 original. Criteria: fp32 plans reach >= 0.95x the
request with the prediction within 10%; int8 plans reach the request. Random weights (speed only:
the accuracy figures are meaningless, only 64 test images are scored, and artifacts are not
verified). "again" times the same exported pair once more, the same way, right after: how far two
measurements of one pair a minute apart differ on this machine (a compact student has fast phases
the original does not share), the floor under any prediction error. Results:
benchmarks/results/compress_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--speedups", default="1.5,2.0,int8:4")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true", help="re-measure the latency table in this run")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds of both models")
    parser.add_argument("--out", default="benchmarks/results/compress_speed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from edgecnn.bench.fingerprint import machine_fingerprint
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.compress.measure import time_both
    from edgecnn.runtime import available

    rows = []
    print(f"{args.model} {args.size}x{args.size} batch {args.batch}, threads {args.threads or 'default'}")
    cols = [("runtime", 12), ("asked", 6), ("orig ms", 8), ("new ms", 8), ("measured", 9), ("ratio", 6)]
    cols += [("pred x", 7), ("pred ms", 8), ("pred err", 9), ("planned", 8), ("again", 6), ("layers", 7)]
    cols += [("s", 5)]
    print(" ".join(f"{name:{'<' if name == 'runtime' else '>'}{width}s}" for name, width in cols))
    with tempfile.TemporaryDirectory() as work:
        for runtime in args.runtimes.split(","):
            if not available(runtime):
                print(f"{runtime:12s} not installed: skipped")
                continue
            for request in args.speedups.split(","):
                int8 = request.startswith("int8:")
                speedup = float(request.removeprefix("int8:"))
                t0 = time.time()
                opts = CompressOptions(
                    runtime=runtime,
                    speedup=speedup,
                    int8=int8,
                    calib_size=32,
                    verify=False,
                    use_cache=not args.no_cache,
                    measure_rounds=args.rounds,
                    input_size=(args.size, args.size),
                    threads=args.threads,
                    batch=args.batch,
                    distill_epochs=0,
                    bn_batches=1,
                    test_images=64,
                    calib_images=16,
                    out_dir=Path(work) / f"{runtime}-{speedup}",
                )
                r = compress(args.model, opts)
                swapped = sum(layer.kind != "keep" for layer in r.plan.layers)
                again = time_both(None, None, r.artifacts, (3, args.size, args.size), opts)
                row = {
                    "runtime": runtime,
                    "precision": "int8" if int8 else "fp32",
                    "requested": speedup,
                    "original_ms": r.original_ms,
                    "student_ms": r.student_ms,
                    "measured_speedup": r.measured_speedup,
                    "measured_over_requested": r.measured_speedup / speedup,
                    "predicted_ms": r.plan.predicted_ms,
                    "predicted_speedup": r.plan.predicted_speedup,
                    "prediction_error_when_planned": r.prediction_error,
                    "predicted_ms_here": r.predicted_ms_here,
                    "prediction_error": r.prediction_error_here,
                    "layers_swapped": swapped,
                    "layers": len(r.plan.layers),
                    "latencies_measured": r.plan.latencies_measured,
                    "latencies_cached": r.plan.latencies_cached,
                    "measured_again_speedup": again.original_ms / again.student_ms,
                    "macs": list(r.macs),
                    "seconds": time.time() - t0,
                }
                rows.append(row)
                print(
                    f"{runtime:12s} {request:>6s} {r.original_ms:8.2f} {r.student_ms:8.2f} "
                    f"{r.measured_speedup:8.2f}x {row['measured_over_requested']:6.2f} "
                    f"{r.plan.predicted_speedup:6.2f}x {r.predicted_ms_here:8.2f} "
                    f"{r.prediction_error_here:+9.1%} {r.prediction_error:+8.1%} "
                    f"{row['measured_again_speedup']:5.2f}x "
                    f"{swapped:3d}/{len(r.plan.layers):<3d} {row['seconds']:5.0f}",
                    flush=True,
                )
    ok = all(
        r["measured_over_requested"] >= 1.0
        if r["precision"] == "int8"
        else r["measured_over_requested"] >= 0.95 and abs(r["prediction_error"]) <= 0.10
        for r in rows
    )
    print(
        "criteria (fp32: measured >= 0.95x requested, prediction within 10%; int8: measured >= requested): "
        + ("met" if ok else "NOT met")
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_fingerprint(args.threads)
    report = {"model": args.model, "size": args.size, "batch": args.batch, "machine": machine, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# compress: measured vs requested speed-up ({args.model}, {args.size}x{args.size}, "
        f"batch {args.batch})",
        "",
        f"Machine: {machine['label']} ({', '.join(machine['isa'])}); threads {args.threads or 'default'}; "
        "random weights; `python benchmarks/compress_speed.py`.",
        "",
        "| runtime | plan | requested | original ms | compressed ms | measured | measured / requested "
        "| predicted speed-up | predicted ms here | prediction error | error vs ms when planned "
        "| measured again | layers swapped |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['requested']:.2f}x | {r['original_ms']:.2f} | "
            f"{r['student_ms']:.2f} | "
            f"{r['measured_speedup']:.2f}x | {r['measured_over_requested']:.2f} | "
            f"{r['predicted_speedup']:.2f}x | {r['predicted_ms_here']:.2f} | {r['prediction_error']:+.1%} | "
            f"{r['prediction_error_when_planned']:+.1%} | {r['measured_again_speedup']:.2f}x | "
            f"{r['layers_swapped']}/{r['layers']} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
