"""Training options, the device they run on, and one default learning rate per use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadArgumentError


@dataclass
class TrainOptions:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd (momentum 0.9, nesterov) or adam
    weight_decay: float = 5e-4
    patience: int | None = None  # early stop after this many epochs without a better val top-1
    seed: int = 0
    checkpoint: Path | None = None  # written atomically after every epoch
    resume: bool = False
    max_steps: int | None = None  # per epoch; for smoke tests
    # distillation
    temperature: float = 4.0
    alpha: float = 0.9
    feature_steps: int = 0  # steps of per-layer feature reconstruction at the start
    feature_weight: float = 1.0
    eval_every: int | None = None  # steps between val evaluations recorded in `curve`
    device: str = "cpu"  # "cpu", "cuda" or "auto" (CUDA when there is one)
    amp: bool = False  # CUDA mixed precision: bf16 autocast where the GPU has it, else fp16 + loss scaling
    workers: int = 0  # DataLoader worker processes (0: decode in the training process)
    # fine-tuning: the fresh classifier head (module names); every other parameter is pretrained
    head: tuple[str, ...] = ()
    freeze_epochs: int = 0  # epochs that train the head alone before the backbone joins in
    backbone_lr_scale: float = 1.0  # the pretrained layers' learning rate, as a share of --lr

    def validate(self) -> TrainOptions:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BadArgumentError("--epochs, --batch-size and --lr must be positive")
        if self.optimizer not in ("sgd", "adam"):
            from edgecnn.errors import UnknownNameError

            raise UnknownNameError("optimizer", self.optimizer, ("sgd", "adam"))
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise BadArgumentError("--alpha must be in [0, 1] and --temperature positive")
        self.device = resolve_device(self.device)
        if self.amp and self.device != "cuda":
            raise BadArgumentError(
                "--amp is CUDA mixed precision: use it with --device cuda (or auto on a GPU)"
            )
        if self.workers < 0:
            raise BadArgumentError(f"--workers must be >= 0, got {self.workers}")
        if self.freeze_epochs < 0 or not 0 < self.backbone_lr_scale <= 1:
            raise BadArgumentError("--freeze-epochs must be >= 0 and --backbone-lr-scale in (0, 1]")
        if (self.freeze_epochs or self.backbone_lr_scale != 1) and not self.head:
            raise BadArgumentError(
                "--freeze-epochs and --backbone-lr-scale go with pretrained --weights (a new head to train)"
            )
        if self.freeze_epochs >= self.epochs:
            raise BadArgumentError(
                f"--freeze-epochs {self.freeze_epochs} leaves no epoch of --epochs {self.epochs} to train "
                "the backbone"
            )
        return self


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """ "auto" -> CUDA when torch sees a GPU, else the CPU; "cuda" without one is a one-line error."""
    if device not in DEVICES:
        from edgecnn.errors import UnknownNameError

        raise UnknownNameError("device", device, DEVICES)
    if device == "cpu":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        from edgecnn.errors import MissingBackendError

        raise MissingBackendError("--device cuda: torch sees no CUDA device here (torch.cuda.is_available())")
    return "cpu"


# One set of defaults per use: training from scratch takes a high lr; a distillation of a converted
# student a lower one with feature steps; compress's, a fine-tune of a close student, the lowest.
USES = {
    "train": dict(lr=0.05),
    # pretrained --weights with a new head, on a small folder: more, smaller steps
    # (benchmarks/finetune_lr.py)
    "finetune": dict(lr=0.01, batch_size=16),
    "distill": dict(epochs=2, lr=0.02, feature_steps=100),
    "compress": dict(lr=0.005, feature_steps=100),
}


def train_options(use: str, **given) -> TrainOptions:
    """TrainOptions for `use` (a key of USES): its defaults, overridden by every `given` value that is
    not None."""
    if use not in USES:
        from edgecnn.errors import UnknownNameError

        raise UnknownNameError("training use", use, tuple(USES))
    return TrainOptions(**{**USES[use], **{k: v for k, v in given.items() if v is not None}})
