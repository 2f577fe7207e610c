"""PyTorch -> ONNX with named I/O, static or dynamic batch, onnxslim simplification and the checker.

Exporter choice: the TorchScript-based exporter (`dynamo=False`) exports all 31 zoo models and
takes ~0.5 s for ResNet-50; the dynamo exporter fails on ConvNeXt-T (torch.export cannot trace its
LayerNorm permutes with a symbolic batch) and is 5-10x slower, so it is opt-in (`--exporter dynamo`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from edgecnn.card import logits
from edgecnn.errors import ExportError

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEFAULT_OPSET = 17
OPSETS = tuple(range(13, 22))  # per-channel Q/DQ needs 13
# Protobuf cannot hold more than 2 GiB; larger models keep their weights in a side file.
EXTERNAL_DATA_BYTES = 1_800_000_000


def _wrap(model):
    import torch

    class Logits(torch.nn.Module):
        """Segmentation models return {"out": ...}; ONNX gets the tensor under one output name."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return logits(self.inner(x))

    return Logits(model).eval()


def _torchscript_args(*, dynamic_batch: bool, large: bool) -> dict:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    return dict(dynamo=False, dynamic_axes=axes, do_constant_folding=True)


def _dynamo_args(*, dynamic_batch: bool, large: bool) -> dict:
    import torch

    shapes = ({0: torch.export.Dim("batch", max=4096)},) if dynamic_batch else None
    return dict(dynamo=True, dynamic_shapes=shapes, external_data=large)


# Exporter name -> torch.onnx.export arguments for it (the first is the default).
EXPORTERS = {"torchscript": _torchscript_args, "dynamo": _dynamo_args}


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )


def export_onnx(
    model,
    path: Path,
    *,
    input_shape: tuple[int, int, int, int],
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    simplify: bool = True,
) -> dict:
    """Write `model` (eval mode, CPU) to `path`; returns what the manifest records about the export.

    `exporter` and `opset` are checked by ExportOptions.validate before any work."""
    import onnx
    import torch

    path = Path(path)
    raw = path.with_name(path.stem + ".raw.onnx")
    wrapped = _wrap(model)
    example = torch.zeros(input_shape)
    large = model_bytes(model) > EXTERNAL_DATA_BYTES
    kwargs = dict(opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    kwargs.update(EXPORTERS[exporter](dynamic_batch=dynamic_batch, large=large))
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (example,), str(raw), **kwargs)
    except Exception as e:  # the exporters raise many types; the first line names the op
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}") from e
    proto = onnx.load(str(raw))
    nodes_before = len(proto.graph.node)
    if simplify:
        import onnxslim

        with contextlib.redirect_stdout(chatter):
            proto = onnxslim.slim(proto)
    if large:
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, str(path))
    for leftover in path.parent.glob(raw.name + "*"):
        leftover.unlink()
    raw.unlink(missing_ok=True)
    try:
        onnx.checker.check_model(str(path), full_check=not large)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the exported graph: {str(e).splitlines()[0]}") from None
    log.info("onnx: %d nodes -> %d after onnxslim", nodes_before, len(proto.graph.node))
    return {
        "exporter": exporter,
        "opset": opset,
        "simplified": simplify,
        "nodes": len(proto.graph.node),
        "nodes_before_simplify": nodes_before,
        "external_data": path.name + ".data" if large else None,
    }
