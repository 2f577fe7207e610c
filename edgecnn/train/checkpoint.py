"""Training checkpoints: written atomically, read back without unpickling code."""

from __future__ import annotations

from pathlib import Path


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    from edgecnn.artifacts import atomic_output

    with atomic_output(path, force=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    import torch

    from edgecnn.errors import WeightsError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign: torch's own advice (weights_only=False) would unpickle it
        kind = "it is cut short" if isinstance(e, EOFError) else "it is not a checkpoint edgecnn wrote"
        raise WeightsError(
            f"cannot resume from {path}: {kind} (corrupt or another format); remove it or train "
            "without --resume"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise WeightsError(f"cannot resume from {path}: it is not a checkpoint edgecnn wrote; remove it")
    return state
