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
    plain_int8_ms: float | None = None  # an int8 plan's rival: export's plain INT8 of the original


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

    runners = {
        "original": runner(artifacts["original"] or original, backend.options_for("fp32")),
        "student": runner(artifacts["student"] or student, backend.options_for(opts.precision)),
    }
    if backend.options_for("fp32") and artifacts["original"]:  # a pinned baseline: its default too
        default = runner(artifacts["original"], {})
        if getattr(default, "float_math", "fp32") != getattr(runners["original"], "float_math", "fp32"):
            runners["default"] = default
    if artifacts.get("plain_int8"):
        runners["plain_int8"] = runner(artifacts["plain_int8"], backend.options_for("int8"))
    rounds = max(1, opts.measure_rounds) * max(1, math.ceil(opts.measure_seconds / BLOCK_S))
    block_s = opts.measure_seconds * max(1, opts.measure_rounds) / rounds
    fns = [lambda r=r: r.run(x) for r in runners.values()]
    times = time_paired(fns, batch=opts.batch, rounds=rounds, block_s=block_s)
    ms = {name: times.typical_ms(i) for i, name in enumerate(runners)}
    math_ = runners["default"].float_math if "default" in runners else ""
    return EndToEnd(ms["original"], ms["student"], ms.get("default"), math_, ms.get("plain_int8"))


def artifact_top1(artifact, dataset, opts: CompressOptions, precision: str) -> float:
    """Top-1 of an exported artifact run in its runtime (an int8 artifact's, not its PyTorch model's)."""
    from edgecnn.bench.accuracy import evaluate
    from edgecnn.runtime import get_backend, get_runner

    options = get_backend(opts.runtime).options_for(precision)
    runner = get_runner(opts.runtime, artifact, device=opts.device, threads=opts.threads, **options)
    return evaluate(runner, dataset, batch=opts.batch).top1


def artifact_size(path) -> int | None:
    from edgecnn.runtime import backend_for

    return sum(p.stat().st_size for p in backend_for(path).files(path)) if path else None
