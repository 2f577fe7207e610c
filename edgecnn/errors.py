"""The few error types edgecnn raises on bad input.

Each message is one line that names the bad value and what would be valid, so the CLI can print it
as-is and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgeCNNError(Exception):
    """Base class; `exit_code` is what the CLI exits with (2 = the user's input was wrong)."""

    exit_code = 2


class UnknownNameError(EdgeCNNError):
    """A model, target, runtime or other registered name that does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
        if not close:
            close = [v for v in valid if v.startswith(name[:3].lower())][:5]
        hint = f"; did you mean: {', '.join(close)}?" if close else f"; valid: {', '.join(valid)}"
        super().__init__(f"unknown {kind} '{name}'{hint}")
        self.name = name
        self.suggestions = close


class BadArgumentError(EdgeCNNError):
    """An option value out of range or inconsistent with the others."""


class OutOfReachError(BadArgumentError):
    """A latency budget the fastest candidates cannot meet; `best_speedup` is what they reach."""

    def __init__(self, message: str, best_speedup: float):
        super().__init__(message)
        self.best_speedup = best_speedup


class DivergedError(BadArgumentError):
    """Training whose loss stopped being finite (too high a learning rate)."""


class WeightsError(EdgeCNNError):
    """A weights file that is missing, corrupt, unsafe, or does not fit the architecture."""


class ExportError(EdgeCNNError):
    """A backend could not produce or run the artifact (unsupported op, parser error)."""

    exit_code = 1


class MissingBackendError(EdgeCNNError):
    """An optional backend (OpenVINO, TensorRT, CUDA) is not installed or not usable here."""

    exit_code = 1


class OutOfMemoryError(BadArgumentError):
    """Work that this machine's memory cannot hold (an input size or batch too large for it)."""


OOM_WORDS = ("out of memory", "can't allocate memory", "failed to allocate memory", "bad_alloc")


def is_out_of_memory(e: BaseException) -> bool:
    """Whether `e` is an allocation failure, whichever library raised it (torch's OutOfMemoryError and
    CPU allocator, ONNX Runtime's and OpenVINO's allocators, std::bad_alloc)."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e).lower()
    return any(w in text for w in OOM_WORDS)


def machine_memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(need_bytes: float, what: str, advice: str) -> None:
    """A one-line error before any allocation when `what` needs more than this machine has."""
    total = machine_memory_bytes()
    if total and need_bytes > total:
        raise OutOfMemoryError(
            f"{what} needs at least {need_bytes / 2**30:.1f} GiB; this machine has {total / 2**30:.1f} GiB: "
            f"{advice}"
        )
