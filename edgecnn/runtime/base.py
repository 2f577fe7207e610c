"""The Runner protocol and the "is it installed?" checks, all read from the backend table."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Protocol, runtime_checkable

import numpy as np

from edgecnn.errors import BadArgumentError, MissingBackendError
from edgecnn.lazy import import_string
from edgecnn.runtime.backends import Backend, get_backend


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
    return importlib.util.find_spec(get_backend(runtime).module) is not None


def require(runtime: str):
    """Import and return the backend's module, or raise a one-line error with the install command."""
    backend = get_backend(runtime)
    if backend.before_import and backend.module not in sys.modules:
        import_string(backend.before_import)()
    try:
        return importlib.import_module(backend.module)
    except ImportError as e:
        raise MissingBackendError(
            f"{runtime} is not installed ({e.msg}); install it with: {backend.install_hint}"
        ) from None


def ensure_ready(backend: Backend):
    """Fail before any work when the backend cannot run here (missing, or no device it needs)."""
    return import_string(backend.ready)() if backend.ready else require(backend.runtime)


def get_runner(runtime: str, artifact, **options) -> Runner:
    """Build the runner for `runtime` on `artifact` (a path, or an nn.Module for torch)."""
    backend = get_backend(runtime)
    require(runtime)
    return import_string(backend.runner)(artifact, **options)


def check_device(device: str, runtime: str) -> str:
    valid = get_backend(runtime).devices
    if device not in valid:
        raise BadArgumentError(f"{runtime} runs on {' or '.join(valid)}, not '{device}'")
    return device
