"""Benchmark harness: latency, memory (isolated subprocess), accuracy, machine fingerprint, schema."""

from edgecnn.bench.api import BenchOptions, bench
from edgecnn.bench.schema import BenchRow, BenchRun, ResultFileError, load, save

__all__ = ["BenchOptions", "BenchRow", "BenchRun", "ResultFileError", "bench", "load", "save"]
