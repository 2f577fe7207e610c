"""ONNX Runtime on CPU, or CUDA / TensorRT execution providers when the GPU build is installed."""

from __future__ import annotations

from pathlib import Path

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

    def __init__(self, path, *, device: str = "cpu", threads: int | None = None, profile: bool = False, **_):
        """profile: record per-node kernel times (read with `node_times`)."""
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
        if profile:
            import tempfile

            self._profile_dir = tempfile.TemporaryDirectory(prefix="edgecnn-ort-profile-")
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(self._profile_dir.name) / "ort")
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

    def node_times(self, x: np.ndarray, *, runs: int = 20, warmup: int = 5) -> dict[str, float]:
        """Median milliseconds per node of the optimised graph over `runs` runs (session made with
        profile=True). Node names are ONNX Runtime's: fused nodes are named after their last output."""
        import json

        for _ in range(warmup + runs):
            self.run(x)
        path = Path(self.session.end_profiling())
        durations: dict[str, list[float]] = {}
        for event in json.loads(path.read_text()):
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                durations.setdefault(event["name"].removesuffix("_kernel_time"), []).append(
                    event["dur"] / 1e3
                )
        path.unlink(missing_ok=True)
        return {name: float(np.median(d[warmup:] or d)) for name, d in durations.items()}
