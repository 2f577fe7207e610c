"""Benchmark results: one versioned JSON schema (+ a flat CSV view), and strict loading.

A result file carries the machine fingerprint and the settings, so files from different machines
can be joined by `edgecnn compare` without guessing what produced them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.artifacts import atomic_output, check_writable
from edgecnn.bench.latency import LatencyStats
from edgecnn.data.scoring import Accuracy
from edgecnn.errors import EdgeCNNError

SCHEMA = "edgecnn-bench"
VERSION = 1


class ResultFileError(EdgeCNNError):
    """A result file that is missing, corrupt, or of another schema or version."""


@dataclass
class Memory:
    """Peak memory of one row, from a fresh process (bench.memory): RSS over the runtime's baseline."""

    peak_over_baseline_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None  # CUDA rows: torch's peak allocation
    error: str = ""  # the probe failed: why


@dataclass
class BenchRow:
    model: str
    variant: str  # what was measured, e.g. "fp32", "int8", "resnet18.converted fp32"
    runtime: str
    device: str
    precision: str
    batch: int
    threads: int | None = None
    artifact: str | None = None
    file_size_bytes: int | None = None
    params: int | None = None
    macs: int | None = None  # multiply-accumulates per image
    activation_bytes: int | None = None  # fp32 activations of one image, from `inspect`
    latency: LatencyStats | None = None
    memory: Memory | None = None
    accuracy: Accuracy | None = None
    error: str = ""
    hint: str = ""
    source: str = ""  # the item measured: a model file's stem, a zoo name, an artifact's file name
    float_math: str = ""  # what the runtime ran the float layers in, where it says (OpenVINO)

    @property
    def key(self) -> tuple:
        return (self.model, self.variant, self.runtime, self.device, self.batch)

    @property
    def peak_bytes(self) -> int | None:
        return self.memory.peak_over_baseline_bytes if self.memory else None

    @classmethod
    def from_dict(cls, d: dict) -> BenchRow:
        """A row as saved (its parts as dicts), typed again; a key of no field is a TypeError."""
        parts = {"latency": LatencyStats, "memory": Memory, "accuracy": Accuracy}
        typed = {k: parts[k](**d[k]) for k in parts if d.get(k) is not None}
        return cls(**{**d, **typed})


@dataclass
class BenchRun:
    machine: dict
    settings: dict
    rows: list[BenchRow] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    schema: str = SCHEMA
    version: int = VERSION
    path: str | None = None  # where it was loaded from (not saved)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path")
        return d

    @property
    def label(self) -> str:
        """'<machine> (cuda) threads=N': a CPU and a GPU run of one machine are two columns apart."""
        threads, device = self.settings.get("threads"), self.settings.get("device")
        return (
            self.machine.get("label", "?")
            + (f" ({device})" if device else "")
            + (f" threads={threads}" if threads else "")
        )


CSV_COLUMNS = (
    "machine", "model", "variant", "runtime", "device", "precision", "batch", "threads", "median_ms",
    "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput", "iterations", "peak_mem_mib", "file_mb",
    "params", "macs", "top1", "top5", "images", "error",
)  # fmt: skip


def flat(row: BenchRow, machine: str) -> dict:
    lat, acc, peak = row.latency, row.accuracy, row.peak_bytes
    timed = ("median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput", "iterations")
    return {
        "machine": machine,
        **{k: getattr(row, k) for k in ("model", "variant", "runtime", "device", "precision", "batch")},
        "threads": row.threads,
        **{k: getattr(lat, k) if lat else None for k in timed},
        "peak_mem_mib": None if peak is None else peak / 2**20,
        "file_mb": None if row.file_size_bytes is None else row.file_size_bytes / 1e6,
        "params": row.params,
        "macs": row.macs,
        **{k: getattr(acc, k) if acc else None for k in ("top1", "top5", "images")},
        "error": row.error,
    }


def check_outputs(path: str | Path, *, force: bool) -> None:
    """Before measuring: `path` (.json) and its CSV may be written (a one-line error otherwise)."""
    for p in (Path(path), Path(path).with_suffix(".csv")):
        check_writable(p, force=force)


def save(run: BenchRun, path: str | Path, *, force: bool = True, with_csv: bool = True) -> tuple[Path, Path]:
    """Write `path` (.json) and the CSV view beside it, atomically and together: both are written in
    full before either is renamed into place, so a full disk leaves neither (and replaces neither
    unless `force`). Without `with_csv`, the JSON alone (the returned CSV path is then not written)."""
    path = Path(path)
    check_outputs(path, force=force)
    csv_path = path.with_suffix(".csv")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS)
    writer.writeheader()
    for row in run.rows:
        writer.writerow(flat(row, run.label))
    with ExitStack() as stack:
        tmp_json = stack.enter_context(atomic_output(path, force=force))
        if with_csv:
            stack.enter_context(atomic_output(csv_path, force=force)).write_text(buf.getvalue())
        tmp_json.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    return path, csv_path


def load(path: str | Path) -> BenchRun:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultFileError(f"result file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path} is not valid JSON ({e}); re-run `edgecnn bench -o {path}`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultFileError(f"{path} is not an edgecnn benchmark result (no schema '{SCHEMA}')")
    if data.get("version") != VERSION:
        raise ResultFileError(
            f"{path} has result schema version {data.get('version')!r}; this edgecnn reads version {VERSION}"
        )
    try:
        rows = [BenchRow.from_dict(r) for r in data["rows"]]
        return BenchRun(data["machine"], data["settings"], rows, data["created"], path=str(path))
    except (KeyError, TypeError) as e:
        raise ResultFileError(f"{path} does not match result schema version {VERSION} ({e})") from None
