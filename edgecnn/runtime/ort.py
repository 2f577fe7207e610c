"""ONNX Runtime on CPU, or CUDA / TensorRT execution providers when the GPU build is installed."""

from __future__ import annotations

import numpy as np

from edgecnn.errors import MissingBackendError
from edgecnn.runtime.base import check_device

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtRunner:
    runtime = "onnxruntime"

    def __init__(self, path, *, device: str = "cpu", threads: int | None = None, **_):
        import onnxruntime as ort

        self.device = check_device(device, self.runtime)
        wanted = _PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            raise MissingBackendError(
                f"onnxruntime has no {wanted} here; install onnxruntime-gpu on a machine with CUDA"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=_PROVIDERS[device])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.artifact = str(path)
        self._ort = ort

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": self._ort.__version__}
