"""What `export` is asked to do, checked in one place before any model is built or file written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.card import check_mean_std
from edgecnn.errors import BadArgumentError, UnknownNameError
from edgecnn.export.onnx import DEFAULT_OPSET, EXPORTERS, OPSETS
from edgecnn.runtime import AUTO_INT8, check_int8_activations, get_precision, get_target

# Calibration method -> onnxruntime.quantization.CalibrationMethod member.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_CALIBRATION = "minmax"  # not in artifact names; any other method is


@dataclass
class ExportOptions:
    targets: tuple[str, ...] = ("onnx",)
    precision: str = "fp32"
    out_dir: Path | None = None
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: int = 32
    input_size: tuple[int, int] | None = None
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"
    simplify: bool = True
    calib: str | None = None  # image folder or "digits"
    calib_size: int = 100
    calib_method: str = DEFAULT_CALIBRATION
    per_channel: bool = True
    # "auto": each target's fast scheme (u8 for ONNX Runtime, s8 for OpenVINO and TensorRT); "s8" / "u8"
    # force one for every target.
    int8_activations: str = AUTO_INT8
    int8_fp32_layers: tuple[str, ...] = ()  # layers (module names) left in fp32 in an int8 artifact
    data: str | None = None  # real check images; default: the calibration source's held-out part
    # Python only: a dataset of real check images made already (compress: its held-out test images)
    check_images: object | None = field(default=None, repr=False)
    check_size: int = 64
    seeded_checks: int = 8
    verify: bool = True
    force: bool = False
    workspace_gib: float = 2.0
    seed: int = 0
    # An ONNX file's preprocessing (per channel, on 0..1 pixels), which the graph does not record
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def activations_for(self, target: str) -> str | None:
        """The int8 activation scheme of `target`'s artifact; None when the precision has none."""
        if not get_precision(self.precision).calibrated:
            return None
        return get_target(target).int8_scheme(self.int8_activations)

    def validate(self) -> ExportOptions:
        if not self.targets:
            raise BadArgumentError("give at least one --target (onnx, openvino, tensorrt)")
        backends = [get_target(t) for t in self.targets]
        precision = get_precision(self.precision)
        if self.exporter not in EXPORTERS:
            raise UnknownNameError("exporter", self.exporter, EXPORTERS)
        if self.opset not in OPSETS:
            raise BadArgumentError(
                f"--opset must be between {OPSETS[0]} and {OPSETS[-1]} (per-channel Q/DQ needs 13), "
                f"got {self.opset}"
            )
        check_int8_activations(self.int8_activations)
        for b in backends:
            if precision.name not in b.precisions:
                raise BadArgumentError(
                    f"--target {b.target} makes {', '.join(b.precisions)} artifacts, not {precision.name}"
                )
        if self.calib_method not in CALIBRATION_METHODS:
            raise UnknownNameError("calibration method", self.calib_method, CALIBRATION_METHODS)
        if precision.calibrated:
            if not self.calib:
                raise BadArgumentError(
                    f"--precision {precision.name} needs calibration images: --calib DIR (a folder of "
                    "images) or --calib digits (the bundled MNIST digits); a model file that records its "
                    "training images calibrates on them by default"
                )
            for b in backends:
                b.int8_scheme(self.int8_activations)
        if self.batch < 1:
            raise BadArgumentError(f"--batch must be >= 1, got {self.batch}")
        if self.dynamic_batch and self.max_batch < self.batch:  # the profile maximum: dynamic only
            raise BadArgumentError(
                f"with --dynamic-batch, need --batch <= --max-batch, got {self.batch} and {self.max_batch}"
            )
        check_mean_std(self.mean, self.std)
        if self.calib_size < 1 or self.check_size < 0 or self.seeded_checks < 1:
            raise BadArgumentError("--calib-size and the number of check inputs must be positive")
        return self
