"""Export to ONNX, OpenVINO IR and TensorRT engines (fp32, fp16, int8 Q/DQ), each verified."""

from edgecnn.errors import ExportError
from edgecnn.export.api import export
from edgecnn.export.manifest import check_files, read_manifest
from edgecnn.export.options import CALIBRATION_METHODS, ExportOptions
from edgecnn.export.parity import Parity
from edgecnn.export.paths_and_images import planned_paths
from edgecnn.export.results import ExportResult, TargetResult

__all__ = [
    "CALIBRATION_METHODS",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "Parity",
    "TargetResult",
    "check_files",
    "export",
    "planned_paths",
    "read_manifest",
]
