"""The end-to-end measurement: the original and the student timed in the same run, alternating."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgecnn.compress.options import BLOCK_S, CompressOptions


@dataclass(frozen=True)
class EndToEnd:
    """Typical ms of the original and the student, both with the same float math (the plan's), and
    of the original as the runtime runs it by default where that differs (OpenVINO: bf16 on CPUs
    with bf16 units), all timed in the same interleaved rounds."""

    original_ms: float
    student_ms: float
    default_ms: float | None = None  # None: the runtime's default is the pinned precision here
    default_math: str = ""  # what the default ran float layers in ("bf16")


def time_both(original, student, artifacts, chw, opts: CompressOptions) -> EndToEnd:
    """The original and the student (and the original at the runtime's default, where that differs),
    timed in alternating blocks of about BLOCK_S seconds."""
    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import get_backend, get_runner

    backend = get_backend(opts.runtime)
    x = np.random.default_rng(0).standard_normal((opts.batch, *chw)).astype(np.float32)

    def runner(source, options):
        return get_runner(opts.runtime, source, device=opts.device, threads=opts.threads, **options)

    runners = [
        runner(artifacts["original"] or original, backend.options_for("fp32")),
        runner(artifacts["student"] or student, backend.options_for(opts.precision)),
    ]
    if backend.options_for("fp32") and artifacts["original"]:  # a pinned baseline: its default too
        default = runner(artifacts["original"], {})
        if getattr(default, "float_math", "fp32") != getattr(runners[0], "float_math", "fp32"):
            runners.append(default)
    rounds = max(1, opts.measure_rounds) * max(1, math.ceil(opts.measure_seconds / BLOCK_S))
    block_s = opts.measure_seconds * max(1, opts.measure_rounds) / rounds
    fns = [lambda r=r: r.run(x) for r in runners]
    times = time_paired(fns, batch=opts.batch, rounds=rounds, block_s=block_s)
    if len(runners) == 2:
        return EndToEnd(times.typical_ms(0), times.typical_ms(1))
    return EndToEnd(times.typical_ms(0), times.typical_ms(1), times.typical_ms(2), runners[2].float_math)


def artifact_size(path) -> int | None:
    from edgecnn.runtime import backend_for

    return sum(p.stat().st_size for p in backend_for(path).files(path)) if path else None
