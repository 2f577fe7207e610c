"""OpenVINO on CPU (GPU when present), with its latency/throughput performance hints."""

from __future__ import annotations

import sys

import numpy as np

from edgecnn.runtime.base import check_device, require

# OpenVINO's inference precision -> the precision name rows use
FLOAT_MATH = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def block_telemetry() -> None:
    """Keep OpenVINO from sending usage telemetry: `import openvino` imports its converter, which
    sends an "import" event (and one per conversion) to Google Analytics unless the user opted out
    with `opt_in_out --opt_out`. edgecnn makes no network request the user did not ask for, so the
    telemetry package is hidden from this process before OpenVINO is first imported; OpenVINO then
    falls back to its own no-op stub (`openvino.tools.ovc.telemetry_stub`)."""
    sys.modules.setdefault("openvino_telemetry", None)  # `import openvino_telemetry` now fails


class OpenVINORunner:
    runtime = "openvino"

    def __init__(
        self,
        path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        hint: str = "latency",
        precision: str | None = None,
        profile: bool = False,
        **_,
    ):
        """precision: OpenVINO's INFERENCE_PRECISION_HINT ("f32" pins fp32 math; CPUs with bf16 units
        would otherwise run fp32 models in bf16). None keeps OpenVINO's default. `float_math` says
        what the float layers run in; a hint the device cannot honour is a one-line error."""
        ov = require(self.runtime)
        self.device = check_device(device, self.runtime)
        config = {"PERFORMANCE_HINT": hint.upper()}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if profile:
            config["PERF_COUNT"] = "YES"  # per-node times, read with `node_times`
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), device.upper(), config)
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.float_math = FLOAT_MATH.get(got, got)
        if precision and got != precision:
            from edgecnn.errors import MissingBackendError

            raise MissingBackendError(
                f"OpenVINO runs float layers in {self.float_math} on this {device.upper()}, "
                f"not {FLOAT_MATH.get(precision, precision)}: the device has no such units"
            )
        inp = self.compiled.inputs[0]
        self.input_name = inp.get_any_name()
        dim = inp.get_partial_shape()[0]
        self.batch = dim.get_length() if dim.is_static else None
        self.request = self.compiled.create_infer_request()
        self.artifact = str(path)
        self._ov = ov

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(out[self.compiled.outputs[0]])

    def node_times(self, x: np.ndarray, *, runs: int = 20, warmup: int = 5) -> dict[str, float]:
        """Median milliseconds per executed node over `runs` runs (compiled with profile=True); fused
        operations (a ReLU in its convolution) are not run on their own and do not appear."""
        durations: dict[str, list[float]] = {}
        for i in range(warmup + runs):
            self.run(x)
            if i < warmup:
                continue
            for info in self.request.get_profiling_info():
                if info.status == info.Status.EXECUTED:
                    durations.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e3)
        return {name: float(np.median(d)) for name, d in durations.items()}

    def versions(self) -> dict[str, str]:
        return {"openvino": self._ov.get_version()}
