"""ONNX -> OpenVINO IR (.xml + .bin) through openvino.convert_model / save_model.

Converting from the same ONNX every other target uses keeps one graph for all runtimes; a Q/DQ ONNX
becomes an IR with FakeQuantize nodes that OpenVINO runs in int8.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.export.onnx import ExportError
from edgecnn.runtime import require


def export_openvino(onnx_path: Path, xml_path: Path, *, compress_to_fp16: bool) -> dict:
    ov = require("openvino")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:  # OpenVINO's conversion errors name the unsupported op on the first line
        raise ExportError(f"openvino.convert_model failed: {str(e).strip().splitlines()[0]}") from e
    ov.save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
    return {"openvino_compress_to_fp16": compress_to_fp16, "openvino": ov.get_version()}
