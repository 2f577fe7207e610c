"""Graphs edgecnn did not write (an ONNX file or OpenVINO IR with no manifest): their one image input
read from the graph, so `bench` times them as they are, and an ONNX file's layers from ONNX shape
inference, so `inspect` reads one as it reads a model (`analysis.onnx_stats`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadArgumentError

# ONNX ops with weights whose MACs per output element are the weight's fan-in (conv, dense)
_MAC_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: tuple[int | None, ...]  # None: a dynamic dimension


def graph_input(path: str | Path) -> GraphInput:
    """The one image input (N x C x H x W) of an ONNX file or OpenVINO IR; a graph with another
    number of inputs, or an input of another rank, is a one-line error."""
    path = Path(path)
    inputs = _onnx_inputs(path) if path.suffix == ".onnx" else _ir_inputs(path)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise BadArgumentError(
            f"{path.name} has {len(inputs)} inputs ({names}); edgecnn takes classifiers with one image input"
        )
    (only,) = inputs
    if len(only.shape) != 4:
        shape = "x".join("?" if d is None else str(d) for d in only.shape)
        raise BadArgumentError(
            f"{path.name}: its input '{only.name}' is {shape}, not an image batch N x C x H x W"
        )
    return only


def graph_precision(path: str | Path) -> str:
    """What an ONNX file computes in, read from the graph: "int8" with Q/DQ nodes, "fp16" with fp16
    weights, else "fp32" (an OpenVINO IR: "?", its weights' type says little about its math)."""
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        return "?"
    model = onnx.load(str(path), load_external_data=False)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def input_chw(inp: GraphInput, path, batch: int, input_size=None) -> tuple[int, int, int]:
    """(C, H, W) to time `path` at `batch`: from the graph, dynamic H x W from `input_size`."""
    n, c, h, w = inp.shape
    name = Path(path).name
    if c is None:
        raise BadArgumentError(f"{name}: its input '{inp.name}' has a dynamic channel count")
    if n is not None and n != batch:
        raise BadArgumentError(f"{name} has a static batch of {n}: bench it with --batch {n}")
    if input_size:
        if (h, w) != (None, None) and (h, w) != tuple(input_size):
            raise BadArgumentError(
                f"{name} takes {h}x{w} images, not --input-size {input_size[0]},{input_size[1]}"
            )
        h, w = input_size
    if h is None or w is None:
        raise BadArgumentError(f"{name} has a dynamic image size: give --input-size N or H,W")
    return c, h, w


def _onnx_inputs(path: Path) -> list[GraphInput]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends for a file that is not ONNX
        raise BadArgumentError(f"{path.name} is not a readable ONNX file ({type(e).__name__})") from None
    weights = {t.name for t in model.graph.initializer}
    return [
        GraphInput(i.name, tuple(_dim(d) for d in i.type.tensor_type.shape.dim))
        for i in model.graph.input
        if i.name not in weights
    ]


def _dim(d) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def _ir_inputs(path: Path) -> list[GraphInput]:
    from openvino import Core

    try:
        model = Core().read_model(str(path))
    except RuntimeError as e:
        raise BadArgumentError(
            f"{path.name} is not a readable OpenVINO IR ({str(e).splitlines()[0]})"
        ) from None
    return [
        GraphInput(
            i.get_any_name(),
            tuple(d.get_length() if d.is_static else None for d in i.get_partial_shape()),
        )
        for i in model.inputs
    ]


def onnx_layers(path: str | Path, input_size=None):
    """((1, C, H, W), params, rows) of an ONNX file at batch 1: a row (name, op, output shape, weight,
    bias, MACs) per node that computes on the image (ONNX shape inference); MACs of conv and dense
    layers: output elements x fan-in."""
    import onnx

    path = Path(path)
    inp = graph_input(path)
    c, h, w = input_chw(inp, path, 1, input_size)
    model = onnx.load(str(path))
    fix_input(model, inp.name, (1, c, h, w))
    model = onnx.shape_inference.infer_shapes(model)
    values = [*model.graph.value_info, *model.graph.output]
    shapes = {v.name: tuple(_dim(d) or 0 for d in v.type.tensor_type.shape.dim) for v in values}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    const = dict(weights)  # tensors fixed before any image arrives: weights, and nodes of weights only
    rows = []
    for i, node in enumerate(model.graph.node):
        out = shapes.get(node.output[0], ())
        if node.op_type == "Constant" or all(n in const or not n for n in node.input):
            const.update({o: shapes.get(o, ()) for o in node.output})
            continue
        owned = [const[n] for n in node.input if n in const]
        weight, bias = _params(node.op_type, owned)
        rows.append(
            (node.name or f"{node.op_type}_{i}", node.op_type, out, weight, bias, _macs(node, out, owned))
        )
    return (1, c, h, w), sum(_prod(s) for s in weights.values()), rows


def fix_input(model, name: str, shape, *, symbolic_batch: bool = False) -> None:
    """Set the ONNX `model`'s input `name` to `shape` in place (its batch left symbolic, "batch", when
    `symbolic_batch`)."""
    for value in model.graph.input:
        if value.name == name:
            for i, (dim, size) in enumerate(zip(value.type.tensor_type.shape.dim, shape, strict=True)):
                dim.ClearField("dim_param")
                if i == 0 and symbolic_batch:
                    dim.dim_param = "batch"
                else:
                    dim.dim_value = size


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _params(op: str, owned: list[tuple]) -> tuple[int, int]:
    """(weight, bias) elements a node holds: a conv's or dense layer's second tensor is its bias."""
    if op in _MAC_OPS and len(owned) >= 2:
        return _prod(owned[0]), sum(_prod(s) for s in owned[1:])
    return sum(_prod(s) for s in owned), 0


def _macs(node, out: tuple, owned: list[tuple]) -> int:
    """Multiply-accumulates per image: each output element of a conv costs its kernel's fan-in
    (C_in / groups x kH x kW); of a dense layer, its input features."""
    if node.op_type not in _MAC_OPS or not owned or not out:
        return 0
    weight = owned[0]
    per_image = _prod(out[1:])
    if node.op_type == "Conv":
        return per_image * _prod(weight[1:])
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    fan_in = weight[1] if node.op_type == "Gemm" and trans_b else weight[0]
    return per_image * fan_in
