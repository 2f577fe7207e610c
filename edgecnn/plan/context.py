"""In-context latencies: every candidate timed inside the whole model, by the runtime's own profiler.

A block timed alone is not what it costs in the graph: fusions (conv + ReLU + add), layout changes
and cache state differ. Here probe model k swaps every layer to its k-th candidate
(the original for layers with fewer); the ONNX is tagged so that every node, and every output
tensor, carries the name of the layer it belongs to (an untagged node such as a ReLU or an add
inherits the tag of the node that feeds it, so a runtime's fused conv + ReLU node still carries its
conv's layer, whichever op it is named after); the runtime runs the probe with per-node profiling,
and a layer's cost in a probe is the sum over its nodes. Probe 0 is the original model.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.plan.tagging import layer_times, tag_onnx, tagged_nodes

log = logging.getLogger(__name__)


class Reference:
    """The original model's artifact, timed interleaved with each checked choice, so a choice's whole
    time is measured as a ratio to it: drift and bursts of load on a shared machine hit both alike
    (benchmarks/check_vs_end_to_end.py). Built on first use, so a plan
    whose checks all come from the cache times nothing."""

    def __init__(
        self,
        model,
        input_shape,
        backend,
        *,
        device="cpu",
        threads=None,
        batch=1,
        seconds=0.4,
        shipped=False,
        baseline="fp32",
    ):
        self.model, self.shape, self.backend = model, (batch, *input_shape), backend
        self.device, self.threads, self.seconds, self.baseline = device, threads, seconds, baseline
        self.shipped = shipped  # exported as export ships it (onnxslim), not as the tagged probes are
        self.x = np.random.default_rng(0).standard_normal(self.shape).astype(np.float32)
        self._work = self.runner = None

    def ratio(self, runner, rounds: int = 7) -> float:
        """`runner`'s typical time over the original's, timed in alternating blocks (the statistic of
        compress's end-to-end timing). The fresh `runner` is warmed first: unwarmed, it times slow."""
        from edgecnn.bench.latency import time_paired

        warm_reference = self.runner is None
        if warm_reference:
            self._build()
        times = time_paired(
            [lambda: runner.run(self.x), lambda: self.runner.run(self.x)],
            batch=self.shape[0],
            rounds=rounds,
            block_s=self.seconds,
            warmup_s=(self.seconds, self.seconds if warm_reference else 0.0),
            block_warmup_s=min(0.1, self.seconds),
            max_rounds=3 * rounds,  # a check acted on must be steady, not one busy second
        )
        return times.ratio()

    def _build(self) -> None:
        from edgecnn.export.onnx import export_onnx
        from edgecnn.plan.latency import artifact_from_onnx
        from edgecnn.runtime import get_runner

        self._work = tempfile.TemporaryDirectory(prefix="edgecnn-reference-")
        onnx_path = Path(self._work.name) / "original.onnx"
        export_onnx(self.model, onnx_path, input_shape=self.shape, simplify=self.shipped)
        artifact = artifact_from_onnx(onnx_path, self.shape, self.backend, Path(self._work.name), "fp32")
        options = self.backend.timing_options("fp32", self.baseline)
        self.runner = get_runner(
            self.backend.runtime, artifact, device=self.device, threads=self.threads, **options
        )

    def close(self) -> None:
        self.runner = None
        if self._work is not None:
            self._work.cleanup()


def probe_model(model, slots, k: int, precision: str = "fp32"):
    """The model with every slot swapped to its k-th candidate in `precision` (kept where it has fewer)."""
    probe = copy.deepcopy(model)
    for slot in slots:
        cands = slot.in_precision(precision)
        if 0 < k < len(cands):
            probe.set_submodule(slot.name, copy.deepcopy(cands[k].block))
    return probe.eval()


@dataclass(frozen=True)
class Quantized:
    """How an int8 probe is made: the runtime's activation scheme and a few images to calibrate on
    (their ranges do not change the time, but real ones keep the graph what deployment runs)."""

    activations: str
    images: np.ndarray  # (N, C, H, W)

    def batches(self, batch: int):
        n = len(self.images) // batch * batch
        return [self.images[i : i + batch] for i in range(0, n, batch)] or [
            np.resize(self.images, (batch, *self.images.shape[1:]))
        ]


@dataclass(frozen=True)
class ProbeTimes:
    """What one probe showed: ms per layer from the runtime's profiler, and the whole probe's time
    over the original's (None when it was not timed whole)."""

    layers: dict[str, float]
    ratio: float | None = None

    def to_entry(self) -> dict:
        return {"layers": self.layers, "ratio": self.ratio}

    @classmethod
    def from_entry(cls, entry: dict) -> ProbeTimes:
        return cls(dict(entry["layers"]), entry["ratio"])


def profile_probe(
    probe,
    layers,
    input_shape,
    backend,
    *,
    device="cpu",
    threads=None,
    batch=1,
    runs=20,
    int8=None,
    fp32_layers=(),
    reference: Reference | None = None,
    profile: bool = True,
    rounds: int = 7,
    baseline: str = "fp32",
) -> ProbeTimes:
    """Milliseconds per layer of `layers` inside `probe`, run in `backend` with its profiler;
    int8: a `Quantized` makes it an int8 Q/DQ probe, but for `fp32_layers` (a mixed-precision plan).
    reference: the same artifact is also timed whole, without the profiler, interleaved with the
    original in `rounds` rounds, for the ratio (what a deployment sees: per-node times leave out the
    dispatch between nodes, and the profiler's own cost).
    profile=False: only that ratio, of the model exported as export ships it (onnxslim) against a
    `reference` that is too. baseline: the float math of every run ("default" or pinned "fp32")."""
    from edgecnn.runtime import get_runner

    shape = (batch, *input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    precision = "int8" if int8 else "fp32"
    with tempfile.TemporaryDirectory(prefix="edgecnn-probe-") as work:
        artifact, aliases = _probe_artifact(
            probe, layers, shape, backend, Path(work), int8, fp32_layers, profile
        )
        options = {"device": device, "threads": threads, "profile": True}
        options.update(backend.timing_options(precision, baseline))
        times, ratio = {}, None
        if profile:
            runner = get_runner(backend.runtime, artifact, **options)
            times = layer_times(runner.node_times(x, runs=runs), layers, aliases)
            del runner  # release the artifact's files before the folder goes
        if reference is not None:
            plain = get_runner(backend.runtime, artifact, **{**options, "profile": False})
            ratio = reference.ratio(plain, rounds)
            del plain
    return ProbeTimes(times, ratio)


def _probe_artifact(probe, layers, shape, backend, work: Path, int8, fp32_layers, profile: bool):
    """(the backend's artifact of the tagged probe, output aliases): simplified as export ships it
    unless it is profiled (simplifying would merge the tagged nodes); int8 Q/DQ when `int8`."""
    from edgecnn.export.onnx import INPUT_NAME, export_onnx
    from edgecnn.export.quantize import quantize_qdq
    from edgecnn.plan.latency import artifact_from_onnx

    onnx_path = work / "probe.onnx"
    export_onnx(probe, onnx_path, input_shape=shape, simplify=not profile)
    aliases = tag_onnx(onnx_path, layers)
    if int8:
        q_path = work / "probe.int8.onnx"
        calib = int8.batches(shape[0])[:8]
        quantize_qdq(
            onnx_path,
            q_path,
            calib,
            input_name=INPUT_NAME,
            activations=int8.activations,
            fp32_layers=tuple(fp32_layers),
            nodes_of=tagged_nodes,
        )
        onnx_path = q_path
    return artifact_from_onnx(onnx_path, shape, backend, work, "int8" if int8 else "fp32"), aliases


def names_tag(names) -> str:
    """A short, stable tag of a list of layer names, for latency-cache keys that depend on it."""
    return hashlib.sha1(",".join(names).encode()).hexdigest()[:12]


def context_latencies(
    model, slots, input_shape, table, *, on_probe=None, int8: Quantized | None = None, extra=()
) -> None:
    """Fill `latency_ms` of every candidate in the probed precision (fp32, or int8 when `int8` says
    how) with its in-context time (probes cached in `table`). `extra`: other layers tagged in every
    probe, so their nodes are not counted in the slot that feeds them (a composite's depthwise conv)."""
    precision = "int8" if int8 else "fp32"
    count = max(len(s.in_precision(precision)) for s in slots)
    names = [s.name for s in slots] + [n for n in extra if n not in {s.name for s in slots}]
    for k in range(count):
        if on_probe:
            on_probe(k + 1, count)
        probe = probe_model(model, slots, k, precision)
        key = table.key(probe, input_shape) + ":in-context" + (f":int8-{int8.activations}" if int8 else "")
        if len(names) > len(slots):
            key += ":extra-" + names_tag(names)
        entry = table.get(key)
        if entry is None:
            entry = table.measured(
                key,
                lambda probe=probe: profile_probe(
                    probe, names, input_shape, table.backend, int8=int8, **table.setting
                ).to_entry(),
            )
        times = ProbeTimes.from_entry(entry).layers
        for slot in slots:
            cands = slot.in_precision(precision)
            if k < len(cands):
                cands[k].latency_ms = times[slot.name]
    missing = [s.name for s in slots if not s.in_precision(precision)[0].latency_ms]
    if missing:
        log.warning("no profiled node matched %s; their costs count as 0", ", ".join(missing[:5]))


def choice_latencies(
    model, slots, picks, input_shape, table, reference: Reference, *, int8: Quantized | None = None
) -> tuple[dict, float]:
    """({layer: ms}, whole time / original's) of the model the plan `picks` (a candidate index per
    slot) builds, in its mixed precision: per layer, what a probe of uniform candidates cannot show
    (a layer's cost changes with its neighbours' precision: layout changes at every boundary);
    whole, the same artifact's wall-clock time as a ratio to the original's (`Reference`)."""
    times = _time_choice(model, slots, picks, input_shape, table, reference, int8, ":ratio")
    return times.layers, times.ratio


def confirm_ratio(
    model,
    slots,
    picks,
    input_shape,
    table,
    reference: Reference,
    *,
    int8: Quantized | None = None,
    rounds: int = 12,
) -> float:
    """The whole time / original's of the model `picks` builds, timed afresh in longer rounds than
    its check, exported as shipped (`reference` must be too). The check that picked a choice is not
    an estimate of it: among several choices timed on a shared host, the one picked (least error
    within the budget) is biased towards the one whose timing came out fast
    (benchmarks/HISTORY.md). Cached like the check."""
    times = _time_choice(
        model,
        slots,
        picks,
        input_shape,
        table,
        reference,
        int8,
        ":confirm-shipped",
        profile=False,
        rounds=rounds,
    )
    return times.ratio


def _time_choice(
    model, slots, picks, input_shape, table, reference, int8, suffix, *, profile=True, rounds=7
) -> ProbeTimes:
    """`profile_probe` of the model `picks` builds, in its mixed precision, cached in `table` under a
    key that ends in `suffix`."""
    from edgecnn.runtime import is_baseline

    chosen = [s.candidates[j] for s, j in zip(slots, picks, strict=True)]
    probe = copy.deepcopy(model)
    for slot, cand in zip(slots, chosen, strict=True):
        for name, part in slot.parts(cand).items():
            probe.set_submodule(name, copy.deepcopy(part))
    probe.eval()
    fp32 = sorted(s.name for s, c in zip(slots, chosen, strict=True) if is_baseline(c.precision))
    quantized = int8 is not None and len(fp32) < len(slots)
    layers = [n for s in slots for n in s.layers]
    key = table.key(probe, input_shape) + ":in-context" + suffix
    if any(s.members for s in slots):  # composites tag their convs, not the slot's name
        key += ":layers-" + names_tag(layers)
    if quantized:
        key += f":int8-{int8.activations}:fp32-" + names_tag(fp32)
    entry = table.get(key)
    if entry is None:
        entry = table.measured(
            key,
            lambda: profile_probe(
                probe,
                layers,
                input_shape,
                table.backend,
                int8=int8 if quantized else None,
                fp32_layers=fp32 if quantized else (),
                reference=reference,
                profile=profile,
                rounds=rounds,
                **table.setting,
            ).to_entry(),
        )
    times = ProbeTimes.from_entry(entry)
    by_slot = {s.name: sum(times.layers.get(n, 0.0) for n in s.layers) for s in slots}
    return ProbeTimes(by_slot, times.ratio)
