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
import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SEP = "|"  # tag separator in node and tensor names: "layer1.0.conv1|/inner/.../Conv"


def tag_onnx(path: Path, layers: list[str]) -> dict[str, str]:
    """Prefix each node's name and output tensors with the layer (of `layers`) it belongs to.

    Returns {graph output name: layer}: a runtime may name the op that produces a graph output after
    the output (OpenVINO does), which no renaming inside the graph can change."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    params = {i.name for i in graph.initializer}
    prefixes = sorted(((f"inner.{n}.", n) for n in layers), key=lambda p: -len(p[0]))
    scopes = sorted(((_scope(n), n) for n in layers), key=lambda p: -len(p[0]))
    outputs = {o.name for o in graph.output}
    tag_of: dict[str, str] = {}  # tensor -> layer
    renamed: dict[str, str] = {}
    identities, aliases = [], {}
    for node in graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
        tag = next((n for p, n in prefixes for i in node.input if i in params and i.startswith(p)), None)
        if tag is None:  # weights the exporter folded under a new name: the node's scope says
            tag = next((n for p, n in scopes if node.name.startswith(p)), None)
        if tag is None and node.input:
            tag = tag_of.get(node.input[0])
        if tag is None:
            continue
        node.name = f"{tag}{SEP}{node.name}"
        for k, out in enumerate(node.output):
            if not out:
                continue
            renamed[out] = node.output[k] = f"{tag}{SEP}{out}"
            tag_of[node.output[k]] = tag
            if out in outputs:  # the graph's output keeps its name through an Identity
                identities.append(onnx.helper.make_node("Identity", [node.output[k]], [out]))
                aliases[out] = tag
    graph.node.extend(identities)
    onnx.save(model, str(path))
    return aliases


def _scope(name: str) -> str:
    """The ONNX node-name scope the TorchScript exporter gives module `name` inside export's wrapper:
    "layer1.0.conv1" -> "/inner/layer1/layer1.0/conv1/" (a numbered child joins its parent's name)."""
    parts = name.split(".")
    comps = [f"{parts[i - 1]}.{p}" if p.isdigit() and i else p for i, p in enumerate(parts)]
    return "/inner/" + "/".join(comps) + "/"


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


def probe_model(model, slots, k: int):
    """The model with every slot swapped to its k-th candidate (kept where it has fewer)."""
    probe = copy.deepcopy(model)
    for slot in slots:
        if 0 < k < len(slot.candidates):
            probe.set_submodule(slot.name, copy.deepcopy(slot.candidates[k].block))
    return probe.eval()


def profile_probe(probe, layers, input_shape, backend, *, device="cpu", threads=None, batch=1, runs=20):
    """Milliseconds per layer of `layers` inside `probe`, run in `backend` with its profiler."""
    from edgecnn.export.onnx import export_onnx
    from edgecnn.plan.latency import artifact_from_onnx
    from edgecnn.runtime import get_runner

    shape = (batch, *input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgecnn-probe-") as work:
        onnx_path = Path(work) / "probe.onnx"
        export_onnx(probe, onnx_path, input_shape=shape, simplify=False)
        aliases = tag_onnx(onnx_path, layers)
        artifact = artifact_from_onnx(onnx_path, shape, backend, Path(work))
        options = {"device": device, "threads": threads, "profile": True, **backend.options_for("fp32")}
        runner = get_runner(backend.runtime, artifact, **options)
        times = runner.node_times(x, runs=runs)
        del runner  # release the artifact's files before the folder goes
    return layer_times(times, layers, aliases)


def context_latencies(model, slots, input_shape, table, *, on_probe=None) -> None:
    """Fill every candidate's `latency_ms` with its in-context time (probes cached in `table`)."""
    count = max(len(s.candidates) for s in slots)
    names = [s.name for s in slots]
    for k in range(count):
        if on_probe:
            on_probe(k + 1, count)
        probe = probe_model(model, slots, k)
        key = table.key(probe, input_shape) + ":in-context"
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
                device=table.device,
                threads=table.threads,
                batch=table.batch,
            )
        for slot in slots:
            if k < len(slot.candidates):
                slot.candidates[k].latency_ms = times[slot.name]
    missing = [s.name for s in slots if not s.keep.latency_ms]
    if missing:
        log.warning("no profiled node matched %s; their costs count as 0", ", ".join(missing[:5]))
