"""Training and distillation: one loop (progress, atomic checkpoints, resume, early stop, DDP)."""

from edgecnn.train.ddp import is_main_process
from edgecnn.train.distillation import DistillOptions, DistillResult, distill
from edgecnn.train.evaluate import evaluate_top1
from edgecnn.train.loop import EpochLog, TrainResult, fit
from edgecnn.train.options import USES, TrainOptions, train_options

__all__ = [
    "USES",
    "DistillOptions",
    "DistillResult",
    "EpochLog",
    "TrainOptions",
    "TrainResult",
    "distill",
    "evaluate_top1",
    "fit",
    "is_main_process",
    "train_options",
]
