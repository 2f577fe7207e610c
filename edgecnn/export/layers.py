"""Which PyTorch layer each node of an exported ONNX graph belongs to.

The planner tags nodes with their layer to time layers inside a whole model, and mixed-precision
INT8 leaves the nodes of chosen layers in fp32; both need the same answer. A node belongs to the
layer whose weights it reads (initializers named "inner.<layer>."), else to the layer whose scope
its name carries (the TorchScript exporter folds BN into new weight names but keeps node scopes),
else, when it reads no weights, to the layer of the node that feeds it: a ReLU or an add after a
conv goes with that conv, as runtimes fuse them.
"""

from __future__ import annotations


def scope(name: str) -> str:
    """The ONNX node-name scope the TorchScript exporter gives module `name` inside export's wrapper:
    "layer1.0.conv1" -> "/inner/layer1/layer1.0/conv1/" (a numbered child joins its parent's name)."""
    parts = name.split(".")
    comps = [f"{parts[i - 1]}.{p}" if p.isdigit() and i else p for i, p in enumerate(parts)]
    return "/inner/" + "/".join(comps) + "/"


def assign(graph, layers) -> list[tuple[object, str | None]]:
    """(node, layer or None) for every node of `graph` (an onnx GraphProto), in graph order, for
    `layers` (module names); nodes before the first layer's output belong to none."""
    params = {i.name for i in graph.initializer}
    weights = {i.name for i in graph.initializer if len(i.dims) >= 2}
    prefixes = sorted(((f"inner.{n}.", n) for n in layers), key=lambda p: -len(p[0]))
    scopes = sorted(((scope(n), n) for n in layers), key=lambda p: -len(p[0]))
    tag_of: dict[str, str] = {}  # tensor -> layer
    out = []
    for node in graph.node:
        if node.input and all(i in params for i in node.input):
            out.append((node, None))  # a constant (the exporter's Identity over a shared weight)
            continue
        tag = next((n for p, n in prefixes for i in node.input if i in params and i.startswith(p)), None)
        if tag is None:
            tag = next((n for p, n in scopes if node.name.startswith(p)), None)
        if tag is None and node.input and not any(i in weights for i in node.input):
            tag = tag_of.get(node.input[0])  # a weighted node of another layer never inherits
        out.append((node, tag))
        for o in node.output:
            if o and tag:
                tag_of[o] = tag
    return out


def layer_nodes(path, layers) -> list[str]:
    """Names of the nodes of the ONNX at `path` that belong to any of `layers`."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node, tag in assign(graph, layers) if tag and node.name]
