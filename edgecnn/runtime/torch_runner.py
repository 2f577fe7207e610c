"""PyTorch eager (optionally torch.compile) on CPU or CUDA."""

from __future__ import annotations

import numpy as np

from edgecnn.errors import MissingBackendError
from edgecnn.runtime.base import check_device


class TorchRunner:
    runtime = "torch"

    def __init__(self, model, *, device: str = "cpu", threads: int | None = None, compile: bool = False, **_):
        import torch

        self.device = check_device(device, self.runtime)
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingBackendError(
                "torch has no usable CUDA device here (torch.cuda.is_available() is False)"
            )
        if threads:
            torch.set_num_threads(threads)
        self.artifact = f"<{type(model).__name__}>"
        self.input_name, self.batch = "input", None
        self.model = model.eval().to(device)
        self._fn = torch.compile(self.model) if compile else self.model
        self._torch = torch

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            y = self._fn(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        y = y["out"] if isinstance(y, dict) else y
        return y.float().cpu().numpy()  # .cpu() waits for the device, so timing includes the work

    def run_device(self, x_dev):
        """Output tensor left on the device (for timing kernels apart from copies)."""
        with self._torch.inference_mode():
            y = self._fn(x_dev)
        return y["out"] if isinstance(y, dict) else y

    def versions(self) -> dict[str, str]:
        return {"torch": self._torch.__version__}
