"""Timing one runner: time-based warm-up, then at least N iterations and a minimum duration.

As timm's benchmark.py and OpenVINO's benchmark_app do: the first calls pay for lazy allocation and
kernel selection, so they are run and discarded for a fixed time, not a fixed count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


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
    # CUDA only: kernel time from CUDA events, and the host<->device copies, each a median.
    device_ms: float | None = None
    h2d_ms: float | None = None
    d2h_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_times(cls, times_s: list[float], batch: int, warmup_s: float) -> LatencyStats:
        ms = np.asarray(times_s) * 1e3
        p90, p95, p99 = np.percentile(ms, [90, 95, 99])
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
