"""Does the planner's check time a compressed model the way compress's end-to-end measurement does?

    .venv/bin/python benchmarks/check_vs_end_to_end.py [--runtime onnxruntime] [--speedup 2.0]
        [--reps 3]

Compresses ResNet-50 (224x224, batch 1, random weights, 2 threads) for `--runtime` and `--speedup`,
then times the same two artifacts (original and student, as compress exported them) `--reps` times
in each of the two ways: the check's (7 rounds of interleaved 0.4 s blocks with a 0.1 s warm-up
each, the student first) and the end-to-end one (24 interleaved 0.5 s blocks, warmed up once).
Each way takes each model's median block. Printed: both speed-ups per repetition, and the check's
blocks, so a phase in which only one model runs faster shows as it happened.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.runtime import get_backend, get_runner

    with tempfile.TemporaryDirectory() as work:
        t0 = time.time()
        opts = CompressOptions(
            runtime=args.runtime,
            speedup=args.speedup,
            calib_size=32,
            verify=False,
            measure_rounds=4,
            input_size=(224, 224),
            threads=2,
            distill_epochs=0,
            bn_batches=1,
            test_images=64,
            calib_images=16,
            out_dir=Path(work) / "out",
        )
        r = compress("resnet50", opts)
        print(
            f"resnet50 224x224 {args.runtime} {args.speedup}x, compress {time.time() - t0:.0f} s: "
            f"predicted {r.plan.predicted_speedup:.2f}x, measured {r.measured_speedup:.2f}x"
        )
        backend = get_backend(args.runtime)
        runners = [
            get_runner(args.runtime, r.artifacts[k], threads=2, **backend.options_for("fp32"))
            for k in ("original", "student")
        ]
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for rep in range(args.reps):
            fns = [lambda r=runner: r.run(x) for runner in runners]  # original, student
            # the check: 7 rounds of 0.4 s, the fresh student warmed first; end to end: 24 of 0.5 s
            check = time_paired(fns[::-1], batch=1, rounds=7, block_s=0.4, warmup_s=(0.5, 0.0))
            e2e = time_paired(fns, batch=1, rounds=24, block_s=0.5)
            c = [check.typical_ms(1), check.typical_ms(0)]
            e = [e2e.typical_ms(0), e2e.typical_ms(1)]
            print(
                f"rep {rep}: check {c[0] / c[1]:.2f}x ({c[0]:.1f} / {c[1]:.1f} ms), "
                f"end to end {e[0] / e[1]:.2f}x ({e[0]:.1f} / {e[1]:.1f} ms)"
            )
            for name, blocks in zip(("original", "student"), check.blocks[::-1], strict=True):
                print(f"  check blocks, {name:8s} ms: " + " ".join(f"{v:5.1f}" for v in blocks))
        runners.clear()  # release the artifacts before their folder goes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
