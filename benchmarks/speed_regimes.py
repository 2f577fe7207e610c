"""How far does one fixed pair's speed-up move over minutes on this machine?

    .venv/bin/python benchmarks/speed_regimes.py ORIGINAL STUDENT [--runtime openvino]
        [--precision fp32] [--threads 2] [--minutes 4] [--out FILE]

ORIGINAL and STUDENT are two exported artifacts (e.g. the ones `edgecnn compress` wrote). They are
timed as compress times them (interleaved 0.5 s blocks, the median of each model's block medians)
in windows of 4 rounds, one line per window: original and student ms, their ratio and the share of
CPU time the hypervisor stole. A prediction and a measurement of the same pair can differ by no less
than the ratio moves between windows minutes apart: the floor under the planner's prediction error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _steal() -> tuple[int, int]:
    """(steal jiffies, all jiffies) from /proc/stat; (0, 1) where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 1
    return (fields[7] if len(fields) > 7 else 0), max(1, sum(fields))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original")
    parser.add_argument("student")
    parser.add_argument("--runtime", default="openvino")
    parser.add_argument("--precision", default="fp32", help="the student's (the original is fp32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--shape", default="1,3,224,224", help="the input both artifacts take")
    parser.add_argument("--out", default=None, help="also write the lines to this file")
    args = parser.parse_args()
    for path in (args.original, args.student):
        if not Path(path).is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2

    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import get_backend, get_runner

    backend = get_backend(args.runtime)
    runners = [
        get_runner(args.runtime, path, threads=args.threads, **backend.options_for(precision))
        for path, precision in ((args.original, "fp32"), (args.student, args.precision))
    ]
    shape = tuple(int(d) for d in args.shape.split(","))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    lines = [f"{args.runtime}, threads {args.threads}: {args.original} vs {args.student} ({args.precision})"]
    print(lines[0], flush=True)
    start, before, first = time.time(), _steal(), True
    ratios = []
    while time.time() - start < args.minutes * 60:
        times = time_paired(
            [lambda r=runner: r.run(x) for runner in runners],
            batch=shape[0],
            rounds=4,
            block_s=0.5,
            warmup_s=0.5 if first else 0.0,
        )
        first = False
        after = _steal()
        steal = (after[0] - before[0]) / max(1, after[1] - before[1])
        before = after
        original, student = times.typical_ms(0), times.typical_ms(1)
        ratios.append(original / student)
        lines.append(
            f"{time.time() - start:5.0f} s  original {original:6.2f} ms  student {student:6.2f} ms  "
            f"ratio {original / student:5.2f}x  steal {steal:.1%}"
        )
        print(lines[-1], flush=True)
    lines.append(
        f"ratio over {len(ratios)} windows: min {min(ratios):.2f}x, median {float(np.median(ratios)):.2f}x, "
        f"max {max(ratios):.2f}x ({max(ratios) / min(ratios) - 1:.1%} apart)"
    )
    print(lines[-1])
    if args.out:
        from edgecnn.artifacts import atomic_output

        with atomic_output(args.out, force=True) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
