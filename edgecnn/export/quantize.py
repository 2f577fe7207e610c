"""Reduced precision from the fp32 ONNX: FP16 weights/activations, and INT8 Q/DQ from calibration.

One symmetric int8 Q/DQ graph (per-channel weights, per-tensor activations) is what ONNX Runtime,
OpenVINO and TensorRT 10/11 all consume unchanged: TensorRT requires zero points of 0, hence
symmetric activations; explicit Q/DQ is TensorRT 11's only INT8 path. `fp16_step` and `int8_step`
are the ONNX steps the precision table names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from edgecnn.errors import ExportError
from edgecnn.export.options import CALIBRATION_METHODS, ExportOptions
from edgecnn.runtime import get_int8_scheme

log = logging.getLogger(__name__)


def to_fp16(fp32_path: Path, out_path: Path) -> dict:
    """FP16 weights and math with fp32 inputs/outputs (Casts at the edges), so callers feed the same
    arrays; TensorRT's strongly typed mode builds an FP16 engine from exactly this graph."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.save(model, str(out_path))
    return {"fp16": "onnxruntime.transformers.float16 (keep_io_types)"}


class _Reader:
    """onnxruntime's CalibrationDataReader over preprocessed batches; counts what it fed."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self.input_name, self.batches, self.count = input_name, iter(batches), 0

    def get_next(self):
        x = next(self.batches, None)
        if x is None:
            return None
        self.count += len(x)
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):  # part of the reader protocol; calibration here is single-pass
        pass


def _unshare_initializers(path: Path) -> None:
    """Give every node its own copy of an initializer other nodes also read. The exporter shares
    equal tensors (the zero biases of fresh BN layers); once one reader stays fp32 and another is
    quantized, the shared bias is no longer an initializer for the second, and the quantizer would
    leave it, and every conv after it that shares it, in fp32."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    seen: set[str] = set()
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}_{node.name or k}_copy"
                graph.initializer.append(copy)
                node.input[k] = copy.name
            seen.add(name)
    onnx.save(model, str(path))


def _fp32_nodes(pre: Path, layers: tuple[str, ...], nodes_of) -> list[str]:
    """The nodes of `layers` in the pre-processed graph (made their own initializers first)."""
    from edgecnn.export.layers import layer_nodes

    _unshare_initializers(pre)
    nodes = (nodes_of or layer_nodes)(pre, layers)
    if not nodes:
        raise ExportError(f"no node of the graph belongs to the fp32 layers {', '.join(layers)}")
    return nodes


def quantize_qdq(
    fp32_path: Path,
    out_path: Path,
    calib_batches: Iterable[np.ndarray],
    *,
    input_name: str,
    method: str = "minmax",
    per_channel: bool = True,
    activations: str = "s8",
    fp32_layers: tuple[str, ...] = (),
    nodes_of: Callable[[Path, tuple[str, ...]], list[str]] | None = None,
) -> dict:
    """INT8 Q/DQ ONNX through onnxruntime's quant_pre_process + quantize_static.

    method: a CALIBRATION_METHODS name; activations: an INT8_ACTIVATIONS scheme (runtime.precisions
    says which runtime is fast with which); fp32_layers: module names whose nodes stay fp32 (a
    mixed-precision plan), found by `nodes_of(graph path, layers)` (default: `export.layers`).
    quant_pre_process keeps node names (the planner's layer tags survive it) and its shape inference
    is what lets the runtimes fuse the Q/DQ convs (without it, int8 ResNet-18 layers ran 2x slower
    than fp32 in ONNX Runtime).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate = getattr(CalibrationMethod, CALIBRATION_METHODS[method])
    scheme = get_int8_scheme(activations)
    reader = _Reader(input_name, calib_batches)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent, prefix=".quant-") as work:
        pre = Path(work) / "pre.onnx"
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            quant_pre_process(str(fp32_path), str(pre))
            excluded = _fp32_nodes(pre, tuple(fp32_layers), nodes_of) if fp32_layers else []
            quantize_static(
                str(pre),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=getattr(QuantType, scheme.quant_type),
                weight_type=QuantType.QInt8,
                calibrate_method=calibrate,
                nodes_to_exclude=excluded,
                extra_options={"ActivationSymmetric": scheme.symmetric, "WeightSymmetric": True},
            )
    if reader.count == 0:
        raise ExportError("calibration saw no images")
    log.info("int8: calibrated on %d images with %s", reader.count, method)
    return {
        "quantizer": "onnxruntime.quantization.quantize_static (QDQ)",
        "calibration_method": method,
        "calibration_images": reader.count,
        "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
        "activations": scheme.description,
        **({"fp32_layers": list(fp32_layers), "fp32_nodes": len(excluded)} if fp32_layers else {}),
    }


def fp16_step(
    fp32_path: Path, out_path: Path, *, options: ExportOptions, calibration, on_step, input_name: str = ""
) -> dict:
    return to_fp16(fp32_path, out_path)


def int8_step(
    fp32_path: Path,
    out_path: Path,
    *,
    options: ExportOptions,
    calibration,
    on_step: Callable[[str], None],
    input_name: str = "input",
) -> dict:
    """Calibrate on `calibration` (a dataset) in batches of the export's static batch (8 when dynamic),
    fed to the graph's `input_name`."""
    on_step(f"calibrating INT8 on {len(calibration)} images from {options.calib}")
    batch = 8 if options.dynamic_batch else options.batch
    info = quantize_qdq(
        fp32_path,
        out_path,
        (x for x, _ in calibration.batches(batch, drop_last=not options.dynamic_batch)),
        input_name=input_name,
        method=options.calib_method,
        per_channel=options.per_channel,
        activations=options.int8_activations,
        fp32_layers=tuple(options.int8_fp32_layers),
    )
    if calibration.skipped:
        info["calibration_images_skipped"] = calibration.skipped
    return info
