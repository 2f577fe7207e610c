"""The end-to-end measurement: the original and the student timed in the same run, alternating."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgecnn.compress.options import BLOCK_S, CompressOptions


@dataclass(frozen=True)
class EndToEnd:
    """Typical ms, all from the same interleaved rounds: the original and the student under the
    plan's baseline (both with the same float math), the same pair under the other baseline where
    that differs on this machine (OpenVINO: bf16 by default on CPUs with bf16 units, or pinned f32),
    and an int8 plan's rival."""

    original_ms: float
    student_ms: float
    float_math: str = ""  # what the baseline ran float layers in, where the runtime says
    other_ms: tuple[float, float] | None = None  # (original, student) under the other baseline
    other_math: str = ""
    plain_int8_ms: float | None = None  # export's plain INT8 of the original, under the baseline
    interval: tuple[float, float] | None = None  # 90% bootstrap interval of original_ms / student_ms
    rounds: int = 0  # rounds timed: more where the machine was too busy for a steady interval

    def result_fields(self) -> dict:
        """What CompressResult keeps of it beyond the pair's ms."""
        names = ("float_math", "other_ms", "other_math", "plain_int8_ms", "rounds")
        return {"speedup_interval": self.interval, **{n: getattr(self, n) for n in names}}


def _math(runner) -> str:
    return getattr(runner, "float_math", "") if runner is not None else ""


def time_both(original, student, artifacts, chw, opts: CompressOptions) -> EndToEnd:
    """The original and the student under each baseline that differs here (and plain INT8 of the
    original for an int8 plan), timed in alternating blocks of about BLOCK_S seconds; up to three
    times as many rounds where the speed-up's interval is not yet steady."""
    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import BASELINES, get_backend, get_runner

    backend = get_backend(opts.runtime)
    x = np.random.default_rng(0).standard_normal((opts.batch, *chw)).astype(np.float32)

    def runner(source, precision, baseline):
        options = backend.timing_options(precision, baseline)
        return get_runner(opts.runtime, source, device=opts.device, threads=opts.threads, **options)

    runners = {
        "original": runner(artifacts["original"] or original, "fp32", opts.baseline),
        "student": runner(artifacts["student"] or student, opts.precision, opts.baseline),
    }
    other = next(b for b in BASELINES if b != opts.baseline)
    if backend.float_pin and artifacts["original"]:
        alt = runner(artifacts["original"], "fp32", other)
        if _math(alt) != _math(runners["original"]):
            runners["other_original"] = alt
            runners["other_student"] = runner(artifacts["student"], opts.precision, other)
    if artifacts.get("plain_int8"):
        runners["plain_int8"] = runner(artifacts["plain_int8"], "int8", opts.baseline)
    rounds = max(1, opts.measure_rounds) * max(1, math.ceil(opts.measure_seconds / BLOCK_S))
    block_s = opts.measure_seconds * max(1, opts.measure_rounds) / rounds
    fns = [lambda r=r: r.run(x) for r in runners.values()]
    times = time_paired(fns, batch=opts.batch, rounds=rounds, block_s=block_s, max_rounds=3 * rounds)
    ms = {name: times.typical_ms(i) for i, name in enumerate(runners)}
    pair = (ms["other_original"], ms["other_student"]) if "other_original" in ms else None
    return EndToEnd(
        ms["original"],
        ms["student"],
        _math(runners["original"]),
        pair,
        _math(runners.get("other_original")),
        ms.get("plain_int8"),
        times.interval(),
        times.rounds,
    )


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
