"""In-context latencies: every candidate timed inside the whole model, by the runtime's own profiler.

A block timed alone is not what it costs in the graph: fusions (conv + ReLU + add), layout changes
and cache state differ, and on ResNet-50 (2-core x86, ONNX Runtime) plans from isolated timings
missed the measured latency by 40-70%. Here probe model k swaps every layer to its k-th candidate
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

log = logging.getLogger(__name__)

SEP = "|"  # tag separator in node and tensor names: "layer1.0.conv1|/inner/.../Conv"
RATIO = "(whole / original)"  # profile_probe's key for the whole probe's time over the original's


def typical_ms(block_medians: list[float]) -> float:
    """A model's typical time over interleaved blocks: the median of their medians. Not the lowest:
    on this shared 2-core VM an int8 ResNet-50 in OpenVINO ran 14-18 ms most of the time with
    bursts at 9 ms that fp32 did not share (3.7-3.9x over fp32, 5.0-5.4x in a burst), so the lowest
    block said 5.4x in one run and 3.8x in the next, and a plan checked in a burst missed its target
    end to end."""
    return float(np.median(block_medians))


class Reference:
    """The original model's artifact, timed interleaved with each checked choice, so a choice's whole
    time is measured as a ratio to it: drift and bursts of load on a shared machine hit both alike
    (ResNet-50 in ONNX Runtime varied 46-57 ms between minutes here). Built on first use, so a plan
    whose checks all come from the cache times nothing."""

    def __init__(
        self, model, input_shape, backend, *, device="cpu", threads=None, batch=1, seconds=0.4, shipped=False
    ):
        self.model, self.shape, self.backend = model, (batch, *input_shape), backend
        self.device, self.threads, self.seconds = device, threads, seconds
        self.shipped = shipped  # exported as export ships it (onnxslim), not as the tagged probes are
        self.x = np.random.default_rng(0).standard_normal(self.shape).astype(np.float32)
        self._work = self.runner = None

    def ratio(self, runner, rounds: int = 7) -> float:
        """The median of `runner`'s block medians over the original's, in interleaved rounds (the
        statistic compress's end-to-end timing takes, `typical_ms`)."""
        from edgecnn.plan.latency import _median

        if self.runner is None:
            self._build()
            _median(self.runner, self.x, self.seconds, 10)  # warm-up, discarded
        # A fresh artifact's first calls run slow: unwarmed, a ResNet-50 int8 student at 64x64 in
        # OpenVINO checked 3.3x, warmed 3.5-4.0x, and the plan over-compressed to make up for it.
        _median(runner, self.x, self.seconds, 10)
        blocks: list[list[float]] = [[], []]
        for _ in range(rounds):
            for i, r in enumerate((runner, self.runner)):
                blocks[i].append(_median(r, self.x, self.seconds, 10))
        return typical_ms(blocks[0]) / typical_ms(blocks[1])

    def _build(self) -> None:
        from edgecnn.export.onnx import export_onnx
        from edgecnn.plan.latency import artifact_from_onnx
        from edgecnn.runtime import get_runner

        self._work = tempfile.TemporaryDirectory(prefix="edgecnn-reference-")
        onnx_path = Path(self._work.name) / "original.onnx"
        export_onnx(self.model, onnx_path, input_shape=self.shape, simplify=self.shipped)
        artifact = artifact_from_onnx(onnx_path, self.shape, self.backend, Path(self._work.name), "fp32")
        options = self.backend.options_for("fp32")
        self.runner = get_runner(
            self.backend.runtime, artifact, device=self.device, threads=self.threads, **options
        )

    def close(self) -> None:
        self.runner = None
        if self._work is not None:
            self._work.cleanup()


def tag_onnx(path: Path, layers: list[str]) -> dict[str, str]:
    """Prefix each node's name and output tensors with the layer (of `layers`) it belongs to
    (`export.layers.assign` decides which).

    Returns {graph output name: layer}: a runtime may name the op that produces a graph output after
    the output (OpenVINO does), which no renaming inside the graph can change."""
    import onnx

    from edgecnn.export.layers import assign

    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    identities, aliases = [], {}
    for node, tag in assign(graph, layers):
        node.input[:] = [renamed.get(i, i) for i in node.input]
        if tag is None:
            continue
        node.name = f"{tag}{SEP}{node.name}"
        for k, out in enumerate(node.output):
            if not out:
                continue
            renamed[out] = node.output[k] = f"{tag}{SEP}{out}"
            if out in outputs:  # the graph's output keeps its name through an Identity
                identities.append(onnx.helper.make_node("Identity", [node.output[k]], [out]))
                aliases[out] = tag
    graph.node.extend(identities)
    onnx.save(model, str(path))
    return aliases


def layer_times(node_times: dict[str, float], layers: list[str], aliases=None) -> dict[str, float]:
    """Milliseconds per layer: the sum over nodes whose name starts with the layer's tag (or is an
    alias of it)."""
    out = dict.fromkeys(layers, 0.0)
    for name, ms in node_times.items():
        # The tag is the last word before the separator: ONNX Runtime names a fused node "fused <name>".
        tag = name.split(SEP, 1)[0].split()[-1] if SEP in name else (aliases or {}).get(name)
        if tag in out:
            out[tag] += ms
    return out


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


def tagged_nodes(path, layers) -> list[str]:
    """Names of the nodes of a tagged ONNX that belong to `layers` (the tag before the separator)."""
    import onnx

    wanted = set(layers)
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if SEP in n.name and n.name.split(SEP, 1)[0].split()[-1] in wanted]


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
):
    """Milliseconds per layer of `layers` inside `probe`, run in `backend` with its profiler;
    int8: a `Quantized` makes it an int8 Q/DQ probe (the tags survive quantization: Q/DQ nodes are
    named after the tensors they quantize), but for `fp32_layers` (a mixed-precision plan).
    reference: the same artifact is also timed whole, without the profiler, interleaved with the
    original in `rounds` rounds, and the ratio is returned under the key RATIO (what a deployment
    sees: per-node times leave out the dispatch between nodes, and the profiler's own cost).
    profile=False: only that ratio, of the model exported as export ships it (onnxslim: a ResNet-18
    student at 32x32 ran 9% faster simplified in ONNX Runtime) against a `reference` that is too."""
    from edgecnn.export.onnx import INPUT_NAME, export_onnx
    from edgecnn.export.quantize import quantize_qdq
    from edgecnn.plan.latency import artifact_from_onnx
    from edgecnn.runtime import get_runner

    shape = (batch, *input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    precision = "int8" if int8 else "fp32"
    with tempfile.TemporaryDirectory(prefix="edgecnn-probe-") as work:
        onnx_path = Path(work) / "probe.onnx"
        export_onnx(probe, onnx_path, input_shape=shape, simplify=not profile)
        aliases = tag_onnx(onnx_path, layers)
        if int8:
            q_path = Path(work) / "probe.int8.onnx"
            calib = int8.batches(batch)[:8]
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
        artifact = artifact_from_onnx(onnx_path, shape, backend, Path(work), precision)
        options = {"device": device, "threads": threads, "profile": True, **backend.options_for(precision)}
        times = {}
        if profile:
            runner = get_runner(backend.runtime, artifact, **options)
            times = layer_times(runner.node_times(x, runs=runs), layers, aliases)
            del runner  # release the artifact's files before the folder goes
        if reference is not None:
            options["profile"] = False
            plain = get_runner(backend.runtime, artifact, **options)
            times[RATIO] = reference.ratio(plain, rounds)
            del plain
    return times


def context_latencies(
    model, slots, input_shape, table, *, on_probe=None, int8: Quantized | None = None
) -> None:
    """Fill `latency_ms` of every candidate in the probed precision (fp32, or int8 when `int8` says
    how) with its in-context time (probes cached in `table`)."""
    precision = "int8" if int8 else "fp32"
    count = max(len(s.in_precision(precision)) for s in slots)
    names = [s.name for s in slots]
    for k in range(count):
        if on_probe:
            on_probe(k + 1, count)
        probe = probe_model(model, slots, k, precision)
        key = table.key(probe, input_shape) + ":in-context" + (f":int8-{int8.activations}" if int8 else "")
        if key in table.entries:
            table.hits += 1
            times = table.entries[key]
        else:
            table.misses += 1
            times = table.entries[key] = profile_probe(
                probe,
                names,
                input_shape,
                table.backend,
                int8=int8,
                **table.setting,
            )
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
    (ONNX Runtime ran a MaxPool after an fp32 stem 4.5 ms slower once the layers after it were int8);
    whole, the same artifact's wall-clock time as a ratio to the original's (`Reference`)."""
    times = dict(_time_choice(model, slots, picks, input_shape, table, reference, int8, ":ratio"))
    return times, times.pop(RATIO)


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
    within the budget) is the one whose timing came out fast, and ResNet-50 plans checked at 2.3x
    ran 2.0x end to end. Cached like the check."""
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
    return times[RATIO]


def _time_choice(
    model, slots, picks, input_shape, table, reference, int8, suffix, *, profile=True, rounds=7
) -> dict:
    """`profile_probe` of the model `picks` builds, in its mixed precision, cached in `table` under a
    key that ends in `suffix`."""
    from edgecnn.runtime import is_baseline

    chosen = [s.candidates[j] for s, j in zip(slots, picks, strict=True)]
    probe = copy.deepcopy(model)
    for slot, cand in zip(slots, chosen, strict=True):
        if cand.kind != "keep":
            probe.set_submodule(slot.name, copy.deepcopy(cand.block))
    probe.eval()
    fp32 = sorted(s.name for s, c in zip(slots, chosen, strict=True) if is_baseline(c.precision))
    quantized = int8 is not None and len(fp32) < len(slots)
    key = table.key(probe, input_shape) + ":in-context" + suffix
    if quantized:
        key += f":int8-{int8.activations}:fp32-" + hashlib.sha1(",".join(fp32).encode()).hexdigest()[:12]
    if key in table.entries:
        table.hits += 1
    else:
        table.misses += 1
        table.entries[key] = profile_probe(
            probe,
            [s.name for s in slots],
            input_shape,
            table.backend,
            int8=int8 if quantized else None,
            fp32_layers=fp32 if quantized else (),
            reference=reference,
            profile=profile,
            rounds=rounds,
            **table.setting,
        )
    return table.entries[key]
