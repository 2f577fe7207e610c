"""DistributedDataParallel under torchrun: the process group, and which rank reports."""

from __future__ import annotations

import os

DDP_BACKENDS = {"cuda": "nccl", "cpu": "gloo"}  # device type -> the collective backend it needs


def distributed(device: str = "cpu"):
    """The process group under torchrun (None otherwise), with the backend for where the model runs:
    nccl only for a model on CUDA (a CPU model on a GPU machine needs gloo), each rank on its own
    local GPU."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return None
    if not dist.is_initialized():
        import torch

        kind = torch.device(device).type
        if kind == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(DDP_BACKENDS.get(kind, "gloo"))
    return dist


def is_main_process() -> bool:
    """Rank 0 under torchrun (or a plain single process): the one that saves and reports."""
    return int(os.environ.get("RANK", "0")) == 0
