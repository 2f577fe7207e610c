"""Training and distillation: one loop (progress, atomic checkpoints, resume, early stop, DDP)."""

from edgecnn.train.distillation import DistillOptions, DistillResult, distill, is_main_process
from edgecnn.train.loop import EpochLog, TrainOptions, TrainResult, evaluate_top1, fit

__all__ = [
    "DistillOptions",
    "DistillResult",
    "EpochLog",
    "TrainOptions",
    "TrainResult",
    "distill",
    "evaluate_top1",
    "fit",
    "is_main_process",
]
