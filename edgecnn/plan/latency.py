"""The latency table: each candidate block run alone, at its layer's real input shape, on the target.

A block is exported and built exactly as a deployed model would be (ONNX, then the backend's
builder), loaded by the same runner the benchmark uses, warmed up and timed to its fast time (a low
percentile of its calls, `bench.latency.FAST_PERCENTILE`). Results are cached on disk keyed by
machine, runtime and version, device, threads, batch, input shape and the block's structure (not its
weights: they do not change the time), so the second plan of a model on a machine, and every
repeated layer geometry within one, does no timing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecnn.bench.load import NOISY_CORES

log = logging.getLogger(__name__)

# A plan that fails by cached latencies older than this times them again (newer ones: this session's)
RECENT_S = 600
# After this many busy timings in a row the load is taken to stay, and each latency is timed once
BUSY_STREAK = 3

# 2: checks warm each artifact up first; 3: median blocks; 4: probes store {"layers", "ratio"};
# 5: fast times (a low percentile of the calls) instead of medians
CACHE_FORMAT = "edgecnn-latency/5"


def block_signature(block) -> list:
    """The structure that decides a block's latency: every leaf layer's type and geometry."""
    out = []
    for m in block.modules():
        if list(m.children()):
            continue
        entry = [type(m).__name__]
        for attr in ("in_channels", "out_channels", "in_features", "out_features", "kernel_size", "stride"):
            if hasattr(m, attr):
                entry.append(getattr(m, attr))
        for attr in ("padding", "dilation", "groups"):
            if hasattr(m, attr):
                entry.append(getattr(m, attr))
        if hasattr(m, "bias"):
            entry.append(m.bias is not None)
        out.append(entry)
    return out


def _non_negative(v) -> bool:
    """A real number >= 0 (not a bool), as every figure of the cache file is."""
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0


def _valid_entry(value) -> bool:
    """A block's ms, or a probe's {"layers": {name: ms}, "ratio": whole / original or None}."""
    ms = _non_negative
    if isinstance(value, dict):
        layers, ratio = value.get("layers"), value.get("ratio")
        return (
            isinstance(layers, dict)
            and all(isinstance(k, str) and ms(v) for k, v in layers.items())
            and (ratio is None or (ms(ratio) and ratio > 0))
        )
    return ms(value)


def _valid_state(value) -> bool:
    """When an entry was timed and what the machine was doing: {"at": unix time, "others": cores}."""
    return isinstance(value, dict) and all(_non_negative(value.get(k, 0)) for k in ("at", "others"))


def default_cache_dir() -> Path:
    from edgecnn.artifacts import cache_dir

    return cache_dir() / "latency"


class LatencyTable:
    """Measured milliseconds per (block, input shape) on one runtime setting, cached on disk."""

    def __init__(
        self,
        runtime: str,
        *,
        device: str = "cpu",
        threads: int | None = None,
        batch: int = 1,
        cache_dir: Path | None = None,
        use_cache: bool = True,
        seconds: float = 0.15,
        min_iters: int = 30,
        baseline: str = "fp32",
    ):
        from edgecnn.bench.fingerprint import machine_fingerprint
        from edgecnn.runtime import get_backend

        self.backend = get_backend(runtime)
        self.device, self.threads, self.batch = device, threads, batch
        self.baseline = baseline  # float math of every timing (tables of two baselines never mix)
        self.seconds, self.min_iters = seconds, min_iters
        fp = machine_fingerprint(threads)
        self.version = fp["versions"].get(self.backend.module)
        self.machine = fp["id"]
        float_math = f"-{baseline}" if self.backend.float_pin else ""  # one file where they are one
        name = f"{self.machine}-{runtime}-{device}-t{threads or 0}-b{batch}{float_math}.json"
        self.path = Path(cache_dir or default_cache_dir()) / name if use_cache else None
        self.state: dict[str, dict] = {}  # per entry: cores other processes used while it was timed
        self.entries: dict[str, float | dict] = self._load() if self.path else {}
        self.hits = self.misses = self.stale = 0
        self.old_hits = 0  # hits on entries timed over RECENT_S ago (or at an unknown time)
        self._quiet: bool | None = None
        self._busy_streak = 0  # timings in a row made while other processes held a core
        self.refreshing = False  # every entry is measured again, once, and replaces the cached one
        self._fresh: set[str] = set()

    def refresh(self) -> None:
        """Measure every entry asked for from now on afresh (once): a cached latency may come from a
        moment of different load, and a plan that fails by it must not fail for good."""
        self.refreshing, self.hits, self.misses, self.old_hits = True, 0, 0, 0

    def _load(self) -> dict:
        """The cached entries; a file that does not parse or validate is moved aside (named in a
        warning) and the table starts empty, so one bad file costs a re-measure, never a failure."""
        if not self.path.is_file():
            return {}
        try:
            body = json.loads(self.path.read_text())
            if not isinstance(body, dict) or body.get("format") != CACHE_FORMAT:
                if isinstance(body, dict) and str(body.get("format", "")).startswith("edgecnn-latency/"):
                    return {}  # an older format: replaced on the next save
                raise ValueError("not an edgecnn latency cache")
            entries = body["entries"]
            if not isinstance(entries, dict) or not all(_valid_entry(v) for v in entries.values()):
                raise ValueError("an entry is not a latency")
            state = body.get("state") if isinstance(body.get("state"), dict) else {}
            self.state = {k: v for k, v in state.items() if k in entries and _valid_state(v)}
            return entries
        except (OSError, UnicodeDecodeError, ValueError, KeyError) as e:
            aside = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):  # not movable: the next save replaces it
                self.path.replace(aside)
            log.warning(
                "latency cache %s is unreadable (%s): moved to %s; measuring again", self.path, e, aside
            )
            return {}

    def get(self, key: str):
        """The cached entry under `key` (counted as a hit), else None: also where it was timed while
        other processes held a core and the machine is quiet now (it is timed again)."""
        value = self.entries.get(key)
        if value is None or (self.refreshing and key not in self._fresh):
            return None
        if key not in self._fresh and self.state.get(key, {}).get("others", 0) > NOISY_CORES and self.quiet:
            self.stale += 1
            return None
        self.hits += 1
        self.old_hits += time.time() - self.state.get(key, {}).get("at", 0) > RECENT_S
        return value

    @property
    def quiet(self) -> bool:
        """Whether other processes leave this machine's cores alone now (sampled once per table)."""
        if self._quiet is None:
            from edgecnn.bench.load import other_load_now

            self._quiet = not other_load_now().noisy
        return self._quiet

    def measured(self, key: str, measure):
        """`measure()`, stored under `key` with the cores other processes used meanwhile; timed once
        more where they used over NOISY_CORES (a busy moment is not this machine's speed), unless
        the last BUSY_STREAK timings were busy both times (a load that stays: timing again is waste)."""
        from edgecnn.bench.load import OtherLoad

        attempts = 1 if self._busy_streak >= BUSY_STREAK else 2
        for attempt in range(1, attempts + 1):
            load = OtherLoad().start()
            value = measure()
            load.stop()
            if not load.noisy:
                break
            log.info("other processes used %.1f cores while timing (attempt %d)", load.cores, attempt)
        self._busy_streak = self._busy_streak + 1 if load.noisy else 0
        if self._busy_streak == BUSY_STREAK:
            log.warning("other processes keep over %.1f core busy: timing each latency once", NOISY_CORES)
        self.state[key] = {"at": round(time.time())}
        if load.cores is not None:
            self.state[key]["others"] = round(load.cores, 3)
        return self.put(key, value)

    def put(self, key: str, value):
        """Store what was just measured under `key` (counted as a measurement); returns it."""
        self.misses += 1
        self.entries[key] = value
        self._fresh.add(key)
        return value

    @property
    def setting(self) -> dict:
        """Where its timings run: the device, threads, batch and baseline every probe of this table uses."""
        return {
            "device": self.device,
            "threads": self.threads,
            "batch": self.batch,
            "baseline": self.baseline,
        }

    def key(self, block, in_shape) -> str:
        parts = [self.backend.runtime, self.version, self.device, self.threads, self.batch, list(in_shape)]
        text = json.dumps([*parts, block_signature(block)], default=str)
        return hashlib.sha1(text.encode()).hexdigest()

    def latency(self, block, in_shape, *, seconds: float | None = None) -> float:
        """Milliseconds of one call of `block` on a batch of `in_shape` inputs (its fast time)."""
        key = self.key(block, in_shape)
        cached = self.get(key)
        if cached is not None:
            return cached
        return self.measured(
            key,
            lambda: measure(
                block,
                (self.batch, *in_shape),
                self.backend,
                device=self.device,
                threads=self.threads,
                seconds=seconds or self.seconds,
                min_iters=self.min_iters,
                baseline=self.baseline,
            ),
        )

    def save(self) -> None:
        if self.path is None:
            return
        from edgecnn.artifacts import atomic_output

        body = {"format": CACHE_FORMAT, "machine": self.machine, "entries": self.entries, "state": self.state}
        with atomic_output(self.path, force=True) as tmp:
            tmp.write_text(json.dumps(body))


def measure(
    model, shape, backend, *, device="cpu", threads=None, seconds=0.15, min_iters=30, baseline="fp32"
) -> float:
    """Median ms of `model` at input `shape` in `backend`, built the way export builds artifacts."""
    import torch

    from edgecnn.runtime import get_runner

    model = model.eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    options = backend.timing_options("fp32", baseline)
    if backend.target is None:  # runs the module itself
        with torch.no_grad():
            runner = get_runner(backend.runtime, model, device=device, threads=threads, **options)
            return _fast_ms(runner, x, seconds, min_iters)
    with tempfile.TemporaryDirectory(prefix="edgecnn-latency-") as work:
        artifact = build_artifact(model, shape, backend, Path(work))
        runner = get_runner(backend.runtime, artifact, device=device, threads=threads, **options)
        ms = _fast_ms(runner, x, seconds, min_iters)
        del runner  # release the artifact's files before the folder goes
    return ms


def _fast_ms(runner, x, seconds, min_iters) -> float:
    from edgecnn.bench.latency import time_calls

    stats = time_calls(
        lambda: runner.run(x),
        batch=len(x),
        warmup_s=min(0.1, seconds),
        min_iters=min_iters,
        min_seconds=seconds,
    )
    return stats.fast_ms


def build_artifact(model, shape, backend, work: Path) -> Path:
    """fp32 ONNX of `model`, then the backend's own artifact when it has a builder."""
    from edgecnn.export.onnx import export_onnx

    onnx_path = work / "block.onnx"
    export_onnx(model, onnx_path, input_shape=tuple(shape), simplify=False)
    return artifact_from_onnx(onnx_path, shape, backend, work)


def artifact_from_onnx(onnx_path: Path, shape, backend, work: Path, precision: str = "fp32") -> Path:
    """The backend's artifact built from an ONNX (fp32, or int8 Q/DQ) the way export builds it (the
    ONNX itself when the backend has no builder)."""
    from edgecnn.export import ExportOptions
    from edgecnn.lazy import import_string
    from edgecnn.runtime import get_precision

    if backend.builder is None:
        return onnx_path
    artifact = work / f"{onnx_path.stem}{backend.suffixes[0]}"
    options = ExportOptions(targets=(backend.target,), batch=shape[0], precision=precision)
    import_string(backend.builder)(
        onnx_path,
        artifact,
        options=options,
        input_shape=tuple(shape),
        precision=get_precision(precision),
        out_dir=work,
    )
    return artifact
