"""The Runner protocol, the lazy backend table and the "is it installed?" checks."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edgecnn.errors import BadArgumentError, MissingBackendError, UnknownNameError

RUNTIMES = {
    "torch": "edgecnn.runtime.torch_runner:TorchRunner",
    "onnxruntime": "edgecnn.runtime.ort:OrtRunner",
    "openvino": "edgecnn.runtime.openvino:OpenVINORunner",
    "tensorrt": "edgecnn.runtime.tensorrt:TensorRTRunner",
}
# Python module that proves a backend is installed, and how to install it.
_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}
INSTALL_HINTS = {
    "torch": "pip install torch",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for CUDA)",
    "openvino": "pip install 'edgecnn[openvino]'",
    "tensorrt": "pip install 'edgecnn[tensorrt]' on a machine with an NVIDIA GPU and CUDA",
}


@runtime_checkable
class Runner(Protocol):
    runtime: str
    device: str
    artifact: str
    input_name: str
    batch: int | None  # the artifact's fixed batch size; None when the batch axis is dynamic

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for one NCHW float32 batch, as a host array (device work finished)."""
        ...

    def versions(self) -> dict[str, str]: ...


def available(runtime: str) -> bool:
    return importlib.util.find_spec(_MODULES[runtime]) is not None


def require(runtime: str):
    """Import and return the backend's module, or raise a one-line error with the install command."""
    if runtime not in RUNTIMES:
        raise UnknownNameError("runtime", runtime, RUNTIMES)
    try:
        return importlib.import_module(_MODULES[runtime])
    except ImportError as e:
        raise MissingBackendError(
            f"{runtime} is not installed ({e.msg}); install it with: {INSTALL_HINTS[runtime]}"
        ) from None


def runtime_for(artifact) -> str:
    """The runtime that runs an artifact file (or an in-memory torch module)."""
    if not isinstance(artifact, str | Path):
        return "torch"
    suffix = Path(artifact).suffix.lower()
    by_suffix = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}
    if suffix not in by_suffix:
        raise BadArgumentError(f"cannot tell the runtime of {artifact}: expected .onnx, .xml or .engine")
    return by_suffix[suffix]


def get_runner(runtime: str, artifact, **options) -> Runner:
    """Build the runner for `runtime` on `artifact` (a path, or an nn.Module for torch)."""
    if runtime not in RUNTIMES:
        raise UnknownNameError("runtime", runtime, RUNTIMES)
    require(runtime)
    module, cls = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module), cls)(artifact, **options)


def check_device(device: str, valid: tuple[str, ...], runtime: str) -> str:
    if device not in valid:
        raise BadArgumentError(f"{runtime} runs on {' or '.join(valid)}, not '{device}'")
    return device
