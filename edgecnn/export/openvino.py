"""ONNX -> OpenVINO IR (.xml + .bin) through openvino.convert_model / save_model.

Converting from the same ONNX every other target uses keeps one graph for all runtimes; a Q/DQ ONNX
becomes an IR with FakeQuantize nodes that OpenVINO runs in int8.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import ExportError
from edgecnn.runtime import Precision, require


def export_openvino(onnx_path: Path, xml_path: Path, *, compress_to_fp16: bool) -> dict:
    ov = require("openvino")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:  # OpenVINO's conversion errors name the unsupported op on the first line
        raise ExportError(f"openvino.convert_model failed: {str(e).strip().splitlines()[0]}") from e
    ov.save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
    return {"openvino_compress_to_fp16": compress_to_fp16, "openvino": ov.get_version()}


def build(
    onnx_path: Path, artifact: Path, *, options, input_shape, precision: Precision, out_dir: Path
) -> dict:
    """The backend table's builder: the IR from the ONNX, fp16 weights where the precision has them."""
    return export_openvino(onnx_path, artifact, compress_to_fp16=precision.fp16_weights)
