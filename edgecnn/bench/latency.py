"""Timing one runner: time-based warm-up, then at least N iterations and a minimum duration.

As timm's benchmark.py and OpenVINO's benchmark_app do: the first calls pay for lazy allocation and
kernel selection, so they are run and discarded for a fixed time, not a fixed count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# A model's cost in a paired timing or a latency probe is this percentile of its calls, not their
# median: with a CPU hog on the other core it kept a model-to-student ratio the median lost
# (benchmarks/results/hog_statistic.md).
FAST_PERCENTILE = 10


@dataclass
class LatencyStats:
    batch: int
    iterations: int
    warmup_s: float
    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    std_ms: float
    throughput: float  # images/s at this batch, from the median latency
    # the 10th-percentile call: what the model costs when no other process took its core mid-call
    fast_ms: float = float("nan")
    # CUDA only: kernel time from CUDA events, and the host<->device copies, each a median.
    device_ms: float | None = None
    h2d_ms: float | None = None
    d2h_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_times(cls, times_s: list[float], batch: int, warmup_s: float) -> LatencyStats:
        ms = np.asarray(times_s) * 1e3
        p10, p90, p95, p99 = np.percentile(ms, [FAST_PERCENTILE, 90, 95, 99])
        median = float(np.median(ms))
        return cls(
            batch,
            len(ms),
            warmup_s,
            float(ms.min()),
            float(ms.mean()),
            median,
            float(p90),
            float(p95),
            float(p99),
            float(ms.std()),
            batch * 1e3 / median,
            float(p10),
        )


def time_calls(
    fn: Callable[[], object],
    *,
    batch: int,
    warmup_s: float = 1.0,
    min_iters: int = 30,
    min_seconds: float = 3.0,
    max_seconds: float = 120.0,
) -> LatencyStats:
    start = time.perf_counter()
    fn()  # at least one warm-up call, however slow
    while time.perf_counter() - start < warmup_s:
        fn()
    warm = time.perf_counter() - start
    times: list[float] = []
    t_begin = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        spent = t1 - t_begin
        if (len(times) >= min_iters and spent >= min_seconds) or spent >= max_seconds:
            break
    return LatencyStats.from_times(times, batch, warm)


def typical_ms(block_times: Sequence[float]) -> float:
    """A model's typical time over interleaved blocks: the median of each block's fast time, not the
    lowest (a burst that speeds up one model only would decide the ratio)."""
    return float(np.median(block_times))


BOOTSTRAP = 2000  # resamples of a paired timing's rounds
# A paired ratio whose interval is wider than this is timed for more rounds before it is used
STEADY_WIDTH = 0.1


@dataclass(frozen=True)
class PairedTimes:
    """Each block's fast time (ms, `LatencyStats.fast_ms`) of each callable, timed in alternation."""

    blocks: tuple[tuple[float, ...], ...]

    def typical_ms(self, i: int) -> float:
        return typical_ms(self.blocks[i])

    def ratio(self, i: int = 0, j: int = 1) -> float:
        """Typical time of `i` over that of `j`."""
        return self.typical_ms(i) / self.typical_ms(j)

    def spread(self, i: int = 0, j: int = 1) -> tuple[float, float]:
        """The lowest and highest ratio of one round's blocks (how much the machine moved)."""
        rounds = [a / b for a, b in zip(self.blocks[i], self.blocks[j], strict=True)]
        return min(rounds), max(rounds)

    @property
    def rounds(self) -> int:
        return len(self.blocks[0])

    def interval(self, i: int = 0, j: int = 1, level: float = 0.9) -> tuple[float, float]:
        """A bootstrap interval of `ratio(i, j)`: rounds drawn with replacement, each round's two
        blocks kept together, so it says how far the ratio moves if the run were repeated here."""
        a, b = np.asarray(self.blocks[i]), np.asarray(self.blocks[j])
        picks = np.random.default_rng(0).integers(0, len(a), size=(BOOTSTRAP, len(a)))
        ratios = np.median(a[picks], axis=1) / np.median(b[picks], axis=1)
        lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def width(self, i: int = 0, j: int = 1) -> float:
        """The interval's width relative to the ratio (0.1: about +-5%)."""
        lo, hi = self.interval(i, j)
        return (hi - lo) / self.ratio(i, j)


def time_paired(
    fns: Sequence[Callable[[], object]],
    *,
    batch: int,
    rounds: int,
    block_s: float,
    warmup_s: float | Sequence[float] = 0.5,
    block_warmup_s: float = 0.0,
    min_iters: int = 10,
    max_rounds: int | None = None,
) -> PairedTimes:
    """Time `fns` in `rounds` rounds of one block each (about `block_s` seconds, at least `min_iters`
    calls), alternating, so drift and bursts of load on a shared machine hit every side alike. Each
    callable is warmed for `warmup_s` (one figure, or one per callable) before its first block: a fresh
    artifact's first calls run slow. With `max_rounds`, rounds are added while the interval of the
    first two's ratio is wider than STEADY_WIDTH (a busy machine), up to that many."""
    warm = [warmup_s] * len(fns) if isinstance(warmup_s, int | float) else list(warmup_s)
    for fn, seconds in zip(fns, warm, strict=True):
        if seconds > 0:
            time_calls(fn, batch=batch, warmup_s=seconds, min_iters=1, min_seconds=0.0)
    blocks: list[list[float]] = [[] for _ in fns]
    times = PairedTimes(((),))
    while times.rounds < max(1, rounds) or (
        len(fns) > 1 and times.rounds < (max_rounds or 0) and times.width() > STEADY_WIDTH
    ):
        for i, fn in enumerate(fns):
            stats = time_calls(
                fn, batch=batch, warmup_s=block_warmup_s, min_iters=min_iters, min_seconds=block_s
            )
            blocks[i].append(stats.fast_ms)
        times = PairedTimes(tuple(tuple(b) for b in blocks))
    return times


def measure(runner, x: np.ndarray, **kwargs) -> LatencyStats:
    """End-to-end latency of `runner.run` (host array in, host array out); on CUDA runners that
    expose `run_device`, also the device compute time and the two copies, separately."""
    stats = time_calls(lambda: runner.run(x), batch=len(x), **kwargs)
    if getattr(runner, "device", "cpu") == "cuda" and hasattr(runner, "run_device"):
        stats.device_ms, stats.h2d_ms, stats.d2h_ms = _cuda_split(
            runner, x, iters=max(10, stats.iterations // 2)
        )
    return stats


def _cuda_split(runner, x: np.ndarray, iters: int) -> tuple[float, float, float]:
    import torch

    host = torch.from_numpy(np.ascontiguousarray(x)).pin_memory()
    dev = host.to("cuda")
    out = runner.run_device(dev)
    compute, h2d, d2h = [], [], []
    for _ in range(iters):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        events[0].record()
        dev = host.to("cuda", non_blocking=True)
        events[1].record()
        out = runner.run_device(dev)
        events[2].record()
        out.to("cpu")
        events[3].record()
        torch.cuda.synchronize()
        h2d.append(events[0].elapsed_time(events[1]))
        compute.append(events[1].elapsed_time(events[2]))
        d2h.append(events[2].elapsed_time(events[3]))
    return float(np.median(compute)), float(np.median(h2d)), float(np.median(d2h))
