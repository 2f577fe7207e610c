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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise WeightsError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None
