"""Training and distillation: one loop (progress, atomic checkpoints, resume, early stop, DDP)."""

from edgecnn.train.loop import EpochLog, TrainOptions, TrainResult, evaluate_top1, fit

__all__ = ["EpochLog", "TrainOptions", "TrainResult", "evaluate_top1", "fit"]
