"""One `Runner` per inference backend behind one protocol, imported only when asked for.

Export uses runners to verify artifacts and the benchmark harness uses the same runners to time
them, so "what was verified" and "what was measured" are the same code path.
"""

from __future__ import annotations

from edgecnn.runtime.base import (
    INSTALL_HINTS,
    RUNTIMES,
    Runner,
    available,
    get_runner,
    require,
    runtime_for,
)

__all__ = ["INSTALL_HINTS", "RUNTIMES", "Runner", "available", "get_runner", "require", "runtime_for"]
