"""TensorRT engines on CUDA, with torch CUDA tensors as the I/O buffers (no pycuda needed).

Written against the TensorRT 10/11 Python API: named I/O tensors (`num_io_tensors`,
`set_input_shape`, `set_tensor_address`) and `execute_async_v3` on a CUDA stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.errors import MissingBackendError, WeightsError
from edgecnn.runtime.base import check_device, require


def require_tensorrt_gpu():
    """TensorRT and a CUDA device, or a one-line error saying which is missing and how to get it."""
    trt = require("tensorrt")
    import torch

    if not torch.cuda.is_available():
        raise MissingBackendError(
            "TensorRT needs an NVIDIA GPU with CUDA and none is usable here (torch.cuda.is_available() "
            "is False); build engines on the target machine"
        )
    return trt


class TensorRTRunner:
    runtime = "tensorrt"

    def __init__(self, path, *, device: str = "cuda", **_):
        import torch

        check_device(device, self.runtime)
        trt = require_tensorrt_gpu()
        self.device, self.artifact = device, str(path)
        self._trt, self._torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise WeightsError(
                f"{path} could not be deserialized: engines only load in the TensorRT version and on "
                "the GPU type they were built for; rebuild it with `edgecnn export --target tensorrt`"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = next(n for n, i in zip(names, is_input, strict=True) if i)
        self.output_name = next(n for n, i in zip(names, is_input, strict=True) if not i)
        first = self.engine.get_tensor_shape(self.input_name)[0]
        self.batch = first if first > 0 else None
        self.stream = torch.cuda.Stream()

    def _torch_dtype(self, name: str):
        return getattr(self._torch, np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name))).name)

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x_dev = torch.from_numpy(np.ascontiguousarray(x)).to("cuda", self._torch_dtype(self.input_name))
        return self.run_device(x_dev).float().cpu().numpy()

    def run_device(self, x_dev):
        """Run on a CUDA tensor already on the device; returns the output CUDA tensor (synchronised)."""
        torch = self._torch
        self.context.set_input_shape(self.input_name, tuple(x_dev.shape))
        out = torch.empty(
            tuple(self.context.get_tensor_shape(self.output_name)),
            dtype=self._torch_dtype(self.output_name),
            device="cuda",
        )
        self.context.set_tensor_address(self.input_name, x_dev.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())  # the input copy ran on the default stream
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.artifact}")
        self.stream.synchronize()
        return out

    def versions(self) -> dict[str, str]:
        return {"tensorrt": self._trt.__version__, "cuda": str(self._torch.version.cuda)}
