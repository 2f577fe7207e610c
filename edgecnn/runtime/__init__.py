"""One `Runner` per inference backend behind one protocol, imported only when asked for.

Export uses runners to verify artifacts and the benchmark harness uses the same runners to time
them, so "what was verified" and "what was measured" are the same code path. The backend and
precision tables (`backends.py`, `precisions.py`) describe every backend; this package imports
nothing of edgecnn above `errors`.
"""

from __future__ import annotations

from edgecnn.runtime.backends import (
    AUTO_INT8,
    BACKENDS,
    BASELINES,
    TARGETS,
    Backend,
    artifact_suffixes,
    backend_for,
    backend_packages,
    check_int8_activations,
    get_backend,
    get_target,
)
from edgecnn.runtime.base import Runner, available, check_device, ensure_ready, get_runner, require
from edgecnn.runtime.precisions import (
    INT8_ACTIVATIONS,
    PRECISIONS,
    Int8Scheme,
    Precision,
    Tolerance,
    file_label,
    get_int8_scheme,
    get_precision,
    is_baseline,
    precision_tag,
)

__all__ = [
    "AUTO_INT8",
    "BACKENDS",
    "BASELINES",
    "INT8_ACTIVATIONS",
    "PRECISIONS",
    "TARGETS",
    "Backend",
    "Int8Scheme",
    "Precision",
    "Runner",
    "Tolerance",
    "artifact_suffixes",
    "available",
    "backend_for",
    "backend_packages",
    "check_device",
    "check_int8_activations",
    "ensure_ready",
    "file_label",
    "get_backend",
    "get_int8_scheme",
    "get_precision",
    "get_runner",
    "get_target",
    "is_baseline",
    "precision_tag",
    "require",
]
