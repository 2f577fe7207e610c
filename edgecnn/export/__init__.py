"""Export to ONNX, OpenVINO IR and TensorRT engines (fp32, fp16, int8 Q/DQ), each verified."""

from edgecnn.export.api import PRECISIONS, TARGETS, ExportOptions, ExportResult, TargetResult, export
from edgecnn.export.onnx import ExportError
from edgecnn.export.parity import TOLERANCES, Parity

__all__ = [
    "PRECISIONS",
    "TARGETS",
    "TOLERANCES",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "Parity",
    "TargetResult",
    "export",
]
