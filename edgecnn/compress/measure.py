"""The end-to-end measurement: the original and the student timed in the same run, alternating."""

from __future__ import annotations

import math

from edgecnn.compress.options import BLOCK_S, CompressOptions


def time_both(original, student, artifacts, chw, opts: CompressOptions) -> tuple[float, float]:
    """Each one's typical latency, timed in alternating blocks of about BLOCK_S seconds."""
    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import get_backend, get_runner

    backend = get_backend(opts.runtime)
    x = np.random.default_rng(0).standard_normal((opts.batch, *chw)).astype(np.float32)
    runners = [
        get_runner(
            opts.runtime,
            artifacts[name] or module,
            device=opts.device,
            threads=opts.threads,
            **backend.options_for(precision),
        )
        for name, module, precision in (("original", original, "fp32"), ("student", student, opts.precision))
    ]
    rounds = max(1, opts.measure_rounds) * max(1, math.ceil(opts.measure_seconds / BLOCK_S))
    block_s = opts.measure_seconds * max(1, opts.measure_rounds) / rounds
    fns = [lambda r=runner: r.run(x) for runner in runners]
    times = time_paired(fns, batch=opts.batch, rounds=rounds, block_s=block_s)
    return times.typical_ms(0), times.typical_ms(1)


def artifact_size(path) -> int | None:
    from edgecnn.runtime import backend_for

    return sum(p.stat().st_size for p in backend_for(path).files(path)) if path else None
