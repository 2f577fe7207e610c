"""Layer tags in an ONNX graph: every node and output tensor named after the layer it belongs to, so
a runtime's per-node profile sums back to layers (fused nodes keep the tag of the node they fused)."""

from __future__ import annotations

from pathlib import Path

SEP = "|"  # tag separator in node and tensor names: "layer1.0.conv1|/inner/.../Conv"


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


def tagged_nodes(path, layers) -> list[str]:
    """Names of the nodes of a tagged ONNX that belong to `layers` (the tag before the separator)."""
    import onnx

    wanted = set(layers)
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if SEP in n.name and n.name.split(SEP, 1)[0].split()[-1] in wanted]
